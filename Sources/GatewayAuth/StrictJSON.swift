/// A JSON parser (RFC 8259) that refuses what a token must not contain.
///
/// Written by hand because no parser at hand says when an object repeats a member name:
/// Foundation's `JSONDecoder` and `JSONSerialization` silently keep one of the values, and a
/// JWT whose payload says `"aud":"ours", …, "aud":"theirs"` must not be read one way here and
/// another way by the next component (RFC 7519 §4: reject it, or take the last; we reject).
/// It also bounds nesting, so a payload of ten thousand `[` cannot exhaust the stack.
///
/// Input is bytes (what base64url decoding gives); strings must be valid UTF-8 and control
/// characters must be escaped, as the RFC says. Numbers without a fraction or exponent that
/// fit in 64 bits are `.int`, so `exp` and friends are read exactly.
public enum StrictJSON {
    /// Deeper than any token, JWKS or admin body; shallow enough for any thread's stack.
    public static let maxDepth = 64

    public enum Failure: Error, Equatable, Sendable, CustomStringConvertible {
        /// An object names the same member twice (the name, clipped).
        case duplicateName(String)
        case tooDeep
        /// Not JSON: what was wrong and at which byte offset.
        case invalid(String, offset: Int)

        public var description: String {
            switch self {
            case .duplicateName(let name): return "repeats the member name '\(name)'"
            case .tooDeep: return "nests deeper than \(StrictJSON.maxDepth) levels"
            case .invalid(let what, let offset): return "is not JSON (\(what) at byte \(offset))"
            }
        }
    }

    public static func parse(_ bytes: some Collection<UInt8>) throws(Failure) -> JSONValue {
        let array = Array(bytes)
        return try array.withUnsafeBufferPointer { (buffer) throws(Failure) -> JSONValue in
            var parser = Parser(bytes: buffer)
            parser.skipWhitespace()
            let value = try parser.value(depth: 0)
            parser.skipWhitespace()
            guard parser.index == buffer.count else { throw parser.invalid("text after the value") }
            return value
        }
    }

    /// A document whose top level must be an object.
    public static func parseObject(_ bytes: some Collection<UInt8>) throws(Failure) -> [String: JSONValue] {
        guard case .object(let object) = try parse(bytes) else {
            throw .invalid("the top level is not an object", offset: 0)
        }
        return object
    }

    private struct Parser {
        let bytes: UnsafeBufferPointer<UInt8>
        var index = 0

        func invalid(_ what: String) -> Failure { .invalid(what, offset: index) }

        mutating func skipWhitespace() {
            while index < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) { index += 1 }
        }

        mutating func value(depth: Int) throws(Failure) -> JSONValue {
            guard index < bytes.count else { throw invalid("unexpected end") }
            switch bytes[index] {
            case UInt8(ascii: "{"): return try object(depth: depth + 1)
            case UInt8(ascii: "["): return try array(depth: depth + 1)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): try literal("true"); return .bool(true)
            case UInt8(ascii: "f"): try literal("false"); return .bool(false)
            case UInt8(ascii: "n"): try literal("null"); return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
            default: throw invalid("unexpected byte 0x\(String(bytes[index], radix: 16))")
            }
        }

        mutating func literal(_ word: StaticString) throws(Failure) {
            let count = word.utf8CodeUnitCount
            guard index + count <= bytes.count else { throw invalid("unexpected end") }
            for i in 0..<count where bytes[index + i] != word.utf8Start[i] { throw invalid("bad literal") }
            index += count
        }

        mutating func object(depth: Int) throws(Failure) -> JSONValue {
            guard depth <= StrictJSON.maxDepth else { throw .tooDeep }
            index += 1
            var members: [String: JSONValue] = [:]
            skipWhitespace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "}") { index += 1; return .object(members) }
            while true {
                skipWhitespace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw invalid("expected a member name") }
                let name = try string()
                skipWhitespace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw invalid("expected ':'") }
                index += 1
                skipWhitespace()
                let member = try value(depth: depth)
                guard members.updateValue(member, forKey: name) == nil else {
                    throw .duplicateName(name.count <= 64 ? name : String(name.prefix(64)) + "…")
                }
                skipWhitespace()
                guard index < bytes.count else { throw invalid("unexpected end") }
                if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                if bytes[index] == UInt8(ascii: "}") { index += 1; return .object(members) }
                throw invalid("expected ',' or '}'")
            }
        }

        mutating func array(depth: Int) throws(Failure) -> JSONValue {
            guard depth <= StrictJSON.maxDepth else { throw .tooDeep }
            index += 1
            var elements: [JSONValue] = []
            skipWhitespace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "]") { index += 1; return .array(elements) }
            while true {
                skipWhitespace()
                elements.append(try value(depth: depth))
                skipWhitespace()
                guard index < bytes.count else { throw invalid("unexpected end") }
                if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                if bytes[index] == UInt8(ascii: "]") { index += 1; return .array(elements) }
                throw invalid("expected ',' or ']'")
            }
        }

        mutating func string() throws(Failure) -> String {
            index += 1  // the opening quote
            var out: [UInt8] = []
            while true {
                guard index < bytes.count else { throw invalid("unterminated string") }
                let byte = bytes[index]
                switch byte {
                case UInt8(ascii: "\""):
                    index += 1
                    guard let text = String(validating: out, as: UTF8.self) else { throw invalid("string is not UTF-8") }
                    return text
                case UInt8(ascii: "\\"):
                    index += 1
                    guard index < bytes.count else { throw invalid("unterminated escape") }
                    let escaped = bytes[index]
                    index += 1
                    switch escaped {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(escaped)
                    case UInt8(ascii: "b"): out.append(0x08)
                    case UInt8(ascii: "f"): out.append(0x0C)
                    case UInt8(ascii: "n"): out.append(0x0A)
                    case UInt8(ascii: "r"): out.append(0x0D)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "u"):
                        var scalar = try hex4()
                        if (0xD800...0xDBFF).contains(scalar) {
                            // A high surrogate must be followed by an escaped low one.
                            guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                                throw invalid("lone surrogate")
                            }
                            index += 2
                            let low = try hex4()
                            guard (0xDC00...0xDFFF).contains(low) else { throw invalid("lone surrogate") }
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        } else if (0xDC00...0xDFFF).contains(scalar) {
                            throw invalid("lone surrogate")
                        }
                        guard let unicode = Unicode.Scalar(scalar) else { throw invalid("bad \\u escape") }
                        out.append(contentsOf: UTF8.encode(unicode)!)
                    default:
                        throw invalid("bad escape")
                    }
                case 0x00..<0x20:
                    throw invalid("control character in string")
                default:
                    out.append(byte)
                    index += 1
                }
            }
        }

        mutating func hex4() throws(Failure) -> UInt32 {
            guard index + 4 <= bytes.count else { throw invalid("short \\u escape") }
            var value: UInt32 = 0
            for _ in 0..<4 {
                let c = bytes[index]
                let digit: UInt32
                switch c {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(c - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(c - UInt8(ascii: "a") + 10)
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(c - UInt8(ascii: "A") + 10)
                default: throw invalid("bad \\u escape")
                }
                value = value << 4 | digit
                index += 1
            }
            return value
        }

        mutating func number() throws(Failure) -> JSONValue {
            let start = index
            var integral = true
            if bytes[index] == UInt8(ascii: "-") { index += 1 }
            // int = zero / ( digit1-9 *DIGIT )
            guard index < bytes.count, isDigit(bytes[index]) else { throw invalid("bad number") }
            if bytes[index] == UInt8(ascii: "0") {
                index += 1
            } else {
                while index < bytes.count, isDigit(bytes[index]) { index += 1 }
            }
            if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
                integral = false
                index += 1
                guard index < bytes.count, isDigit(bytes[index]) else { throw invalid("bad fraction") }
                while index < bytes.count, isDigit(bytes[index]) { index += 1 }
            }
            if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
                integral = false
                index += 1
                if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
                guard index < bytes.count, isDigit(bytes[index]) else { throw invalid("bad exponent") }
                while index < bytes.count, isDigit(bytes[index]) { index += 1 }
            }
            let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
            if integral, let i = Int64(text) { return .int(i) }
            guard let d = Double(text), d.isFinite else { throw .invalid("number out of range", offset: start) }
            return .double(d)
        }

        func isDigit(_ b: UInt8) -> Bool { b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") }
    }
}
