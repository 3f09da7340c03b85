import Foundation

/// A parsed JSON value. Token headers and payloads are decoded into this instead of
/// `[String: Any]` so claims stay typed and Sendable, and so an integer claim such as
/// `exp` is read exactly rather than through a Double.
public enum JSONValue: Codable, Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let i = try? c.decode(Int64.self) {
            self = .int(i)
        } else if let d = try? c.decode(Double.self) {
            self = .double(d)
        } else if let s = try? c.decode(String.self) {
            self = .string(s)
        } else if let a = try? c.decode([JSONValue].self) {
            self = .array(a)
        } else if let o = try? c.decode([String: JSONValue].self) {
            self = .object(o)
        } else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "not a JSON value")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .int(let i): try c.encode(i)
        case .double(let d): try c.encode(d)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    /// Parses a JSON document whose top level must be an object; nil for anything else,
    /// including an object that repeats a member name (see `StrictJSON`).
    public static func parseObject(_ data: Data) -> [String: JSONValue]? {
        try? StrictJSON.parseObject(data)
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// A numeric value as seconds since 1970. Fractional NumericDates are allowed by RFC 7519
    /// and truncated here; non-finite or absurd values are refused.
    public var numericDate: Int64? {
        switch self {
        // Bounded (about ±31 million years) so `exp + skew` and friends never overflow.
        case .int(let i): return (-999_999_999_999_999...999_999_999_999_999).contains(i) ? i : nil
        case .double(let d):
            guard d.isFinite, abs(d) < 1e15 else { return nil }
            return Int64(d.rounded(.down))
        default: return nil
        }
    }

    /// The value as it would be compared against a configured string: strings as is,
    /// numbers and booleans in their JSON spelling. Arrays, objects and null have none.
    var scalarText: String? {
        switch self {
        case .string(let s): return s
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .double(let d): return d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : String(d)
        case .null, .array, .object: return nil
        }
    }

    /// A short, human name of the JSON type, for rejection reasons.
    var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .int, .double: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }
}
