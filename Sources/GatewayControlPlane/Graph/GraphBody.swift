import Foundation
import GatewayAgentAPI
import GatewayAuth

/// The JSON type of one resource property, as the admin API accepts it.
enum GraphFieldType: Sendable, Equatable {
    case string
    case stringArray
    case int32
    case int64
    case bool
    /// `[{"name": String, "value": String}]` (Graph's keyValuePair collection).
    case keyValueArray
    /// An array of JSON objects whose members the route validates itself (extensions such
    /// as a configuration's `groupPolicies`, checked by GatewayCore).
    case objectArray
    /// Graph's TimeOfDay, `HH:mm[:ss[.fffffff]]`.
    case timeOfDay
    /// ISO 8601 with a zone (`Z` or an offset).
    case dateTime

    var name: String {
        switch self {
        case .string: return "a string"
        case .stringArray: return "an array of strings"
        case .int32: return "a 32-bit integer"
        case .int64: return "an integer"
        case .bool: return "a boolean"
        case .keyValueArray: return "an array of {\"name\",\"value\"} objects"
        case .objectArray: return "an array of objects"
        case .timeOfDay: return "a time of day (HH:mm:ss)"
        case .dateTime: return "an ISO 8601 date-time"
        }
    }
}

struct GraphField: Sendable {
    var name: String
    var type: GraphFieldType
    /// Read-only fields are accepted in a body (Graph clients echo them back) and ignored.
    var writable: Bool
    /// Whether `null` may be written (clears the value).
    var nullable: Bool

    static func rw(_ name: String, _ type: GraphFieldType, nullable: Bool = true) -> GraphField {
        GraphField(name: name, type: type, writable: true, nullable: nullable)
    }
    static func ro(_ name: String, _ type: GraphFieldType) -> GraphField {
        GraphField(name: name, type: type, writable: false, nullable: true)
    }
}

/// The properties of one Graph entity type: what a body may contain and what `$select`
/// and `$filter` may name.
struct GraphSchema: Sendable {
    var entityType: String
    var fields: [GraphField]
    /// Navigation properties a body may set (e.g. a Site's `microsoftTunnelConfiguration`),
    /// checked by the route itself.
    var navigation: [String] = []

    var fieldNames: [String] { fields.map(\.name) }
    func field(_ name: String) -> GraphField? { fields.first { $0.name == name } }
}

/// A POST or PATCH body checked against a schema: only the writable properties remain.
struct GraphBody: Sendable {
    var values: [String: JSONValue]
    var navigation: [String: JSONValue]

    /// Largest admin JSON body. The biggest legitimate one is a configuration with 500
    /// routes, about 25 KiB.
    static let maxBytes = 1 << 20

    /// Parses `data` and checks every property: unknown names and wrong types are refused,
    /// all of them named in one message so a client fixes its request in one go.
    static func parse(_ data: Data, schema: GraphSchema, allowEmpty: Bool = false) throws(GraphError) -> GraphBody {
        if data.count > maxBytes {
            throw GraphError(.contentTooLarge, code: "RequestEntityTooLarge", "request body is \(data.count) bytes, at most \(maxBytes) accepted")
        }
        if data.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) {
            if allowEmpty { return GraphBody(values: [:], navigation: [:]) }
            throw GraphError.badRequest("the request needs a JSON object body (\(schema.entityType))")
        }
        guard let object = JSONValue.parseObject(data) else {
            throw GraphError.badRequest("request body is not a JSON object")
        }
        var problems: [String] = []
        var unknown: [String] = []
        var values: [String: JSONValue] = [:]
        var navigation: [String: JSONValue] = [:]
        for key in object.keys.sorted() {
            let value = object[key] ?? .null
            if key == "@odata.type" {
                let expected = "#microsoft.graph.\(schema.entityType)"
                if value.stringValue != expected && value.stringValue != String(expected.dropFirst()) {
                    problems.append("@odata.type must be '\(expected)'")
                }
                continue
            }
            if schema.navigation.contains(key) || schema.navigation.contains(where: { key == "\($0)@odata.bind" }) {
                navigation[key] = value
                continue
            }
            guard let field = schema.field(key) else {
                unknown.append(key)
                continue
            }
            if !field.writable { continue }
            if value == .null {
                if field.nullable { values[key] = .null } else { problems.append("'\(key)' cannot be null") }
                continue
            }
            if let why = check(value, field.type) {
                problems.append("'\(key)' must be \(field.type.name)\(why.isEmpty ? "" : " (\(why))")")
            } else {
                values[key] = value
            }
        }
        if !unknown.isEmpty {
            problems.insert("unknown propert\(unknown.count == 1 ? "y" : "ies") \(unknown.map { "'\($0)'" }.joined(separator: ", ")) for \(schema.entityType) (known: \(schema.fieldNames.joined(separator: ", ")))", at: 0)
        }
        if !problems.isEmpty { throw GraphError.validation(problems.joined(separator: "; ")) }
        return GraphBody(values: values, navigation: navigation)
    }

    /// nil when `value` has the type; otherwise a short reason ("" when the type name says it all).
    static func check(_ value: JSONValue, _ type: GraphFieldType) -> String? {
        switch (type, value) {
        case (.string, .string): return nil
        case (.bool, .bool): return nil
        case (.int64, .int): return nil
        case (.int32, .int(let i)):
            return (Int64(Int32.min)...Int64(Int32.max)).contains(i) ? nil : "\(i) is out of range"
        case (.stringArray, .array(let items)):
            return items.allSatisfy { $0.stringValue != nil } ? nil : "every item must be a string"
        case (.keyValueArray, .array(let items)):
            for item in items {
                guard case .object(let o) = item else { return "every item must be an object" }
                let extra = Set(o.keys).subtracting(["name", "value", "@odata.type"])
                if !extra.isEmpty { return "unknown key(s) \(extra.sorted().joined(separator: ", ")) in an item" }
                guard o["name"]?.stringValue != nil, o["value"]?.stringValue != nil else {
                    return "every item needs string 'name' and 'value'"
                }
            }
            return nil
        case (.objectArray, .array(let items)):
            return items.allSatisfy { if case .object = $0 { return true } else { return false } } ? nil : "every item must be an object"
        case (.timeOfDay, .string(let s)):
            return TimeOfDay.parse(s) == nil ? "'\(s)' is not HH:mm:ss" : nil
        case (.dateTime, .string(let s)):
            return GraphDateParsing.parse(s) == nil ? "'\(s)' is not ISO 8601" : nil
        default:
            return ""
        }
    }
}

/// Graph's TimeOfDay: `HH:mm`, `HH:mm:ss` or `HH:mm:ss.fffffff`; written back as
/// `HH:mm:ss.0000000` like Graph does.
enum TimeOfDay {
    static func parse(_ text: String) -> String? {
        let mainAndFraction = text.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        let parts = mainAndFraction[0].split(separator: ":", omittingEmptySubsequences: false)
        guard (2...3).contains(parts.count), parts.allSatisfy({ $0.count == 2 && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }),
              let h = Int(parts[0]), let m = Int(parts[1]), h < 24, m < 60 else { return nil }
        let s = parts.count == 3 ? Int(parts[2]) ?? 99 : 0
        guard s < 60 else { return nil }
        if mainAndFraction.count == 2 {
            let fraction = mainAndFraction[1]
            guard !fraction.isEmpty, fraction.count <= 7, fraction.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        }
        return String(format: "%02d:%02d:%02d.0000000", h, m, s)
    }
}

/// Dates from clients: Graph examples carry offsets (`-08:00`) and 7 fractional digits,
/// which ISO8601DateFormatter does not take; this trims the fraction to milliseconds first.
enum GraphDateParsing {
    static func parse(_ text: String) -> Date? {
        // Real calendar fields only (no 2020-02-30, no 24:00), as GraphDate checks them.
        guard text.count <= 64, GraphDate.fieldsInRange(Array(text.utf8)) else { return nil }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        var s = text
        var fraction = 0.0
        if let dot = s.firstIndex(of: ".") {
            var end = s.index(after: dot)
            while end < s.endIndex, s[end].isASCII, s[end].isNumber { end = s.index(after: end) }
            let digits = s[s.index(after: dot)..<end]
            guard !digits.isEmpty else { return nil }
            fraction = Double("0." + digits) ?? 0
            s.removeSubrange(dot..<end)
        }
        return formatter.date(from: s).map { $0.addingTimeInterval(fraction) }
    }
}
