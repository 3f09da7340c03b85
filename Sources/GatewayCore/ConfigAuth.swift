/// A client's `<config-auth>` message from the XML (aggregate-auth) login, reduced to
/// what the gateway acts on.
///
/// Parsed by hand (`ConfigAuthXML`), not with Foundation's XMLParser: this is the first
/// thing the gateway reads from an unauthenticated client, and fuzzing found
/// swift-corelibs-foundation's parser dereferencing NULL on a processing instruction without
/// data (`<?pi?>`, a remote crash), trapping on names that are not UTF-8, and leaking on
/// every parse error. The language openconnect and AnyConnect send is small: an XML
/// declaration, elements with attributes, character data and the five predefined or numeric
/// character references. Anything else (DOCTYPE, entities, comments, CDATA, other processing
/// instructions) is refused.
public struct ConfigAuthMessage: Sendable, Equatable {
    /// `init`, `auth-reply`, `logout`, …
    public var type: String
    /// Fields inside `<auth>`: `username`, `password`, …
    public var authFields: [String: String]
    public var groupSelect: String?
    public var opaque: String?
    public var deviceId: String?
    public var clientVersion: String?

    /// Parses a request body. Returns nil when it is not a well-formed `config-auth` document.
    public static func parse(_ body: [UInt8]) -> ConfigAuthMessage? {
        guard !body.isEmpty, body.count <= HTTPRequestParser.maxBodyBytes,
              String(validating: body, as: UTF8.self) != nil else { return nil }
        var message = ConfigAuthMessage(type: "", authFields: [:])
        var sawRoot = false
        var rootClosed = false
        var stack: [String] = []
        var text: [UInt8] = []
        let ok = ConfigAuthXML.walk(body) { event in
            switch event {
            case .start(let name, let attributes):
                if stack.isEmpty {
                    guard !sawRoot, name == "config-auth", let type = attributes["type"] else { return false }
                    sawRoot = true
                    message.type = type
                }
                stack.append(name)
                text = []
            case .text(let bytes):
                guard !stack.isEmpty else { return bytes.allSatisfy(ConfigAuthXML.isSpace) }
                text += bytes
            case .end(let name):
                guard stack.last == name else { return false }
                let depth = stack.count
                let value = String(decoding: text, as: UTF8.self)
                if depth == 3, stack[1] == "auth" {
                    message.authFields[name] = value
                } else if depth == 2 {
                    switch name {
                    case "group-select": message.groupSelect = value
                    case "device-id": message.deviceId = value
                    case "version": message.clientVersion = value
                    default: break
                    }
                }
                stack.removeLast()
                if stack.isEmpty { rootClosed = true }
                text = []
            }
            return true
        }
        guard ok, sawRoot, rootClosed else { return nil }
        return message
    }
}

/// The XML subset of config-auth messages, as events. Hand-written for the reasons in
/// `ConfigAuthMessage`; no I/O, no recursion, depth bounded.
enum ConfigAuthXML {
    enum Event {
        case start(String, [String: String])
        case text([UInt8])
        case end(String)
    }

    static let maxDepth = 32

    static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D }

    static func isNameByte(_ b: UInt8) -> Bool {
        (b >= 0x61 && b <= 0x7A) || (b >= 0x41 && b <= 0x5A) || (b >= 0x30 && b <= 0x39)
            || b == UInt8(ascii: "-") || b == UInt8(ascii: "_") || b == UInt8(ascii: ".") || b == UInt8(ascii: ":") || b >= 0x80
    }

    /// Calls `handle` for each event; false if the document is not in the subset or
    /// `handle` says stop.
    static func walk(_ b: [UInt8], _ handle: (Event) -> Bool) -> Bool {
        var i = 0
        // An optional byte-order mark and XML declaration.
        if b.starts(with: [0xEF, 0xBB, 0xBF]) { i = 3 }
        while i < b.count, isSpace(b[i]) { i += 1 }
        if b[i...].starts(with: Array("<?xml".utf8)) {
            guard let end = find(b, Array("?>".utf8), from: i) else { return false }
            i = end + 2
        }
        var depth = 0
        var textStart = i
        func flushText(_ upTo: Int) -> Bool {
            guard upTo > textStart else { return true }
            guard let decoded = decode(b[textStart..<upTo]) else { return false }
            return handle(.text(decoded))
        }
        while i < b.count {
            guard b[i] == UInt8(ascii: "<") else { i += 1; continue }
            guard flushText(i) else { return false }
            guard i + 1 < b.count else { return false }
            if b[i + 1] == UInt8(ascii: "/") {
                var j = i + 2
                let nameStart = j
                while j < b.count, isNameByte(b[j]) { j += 1 }
                guard j > nameStart else { return false }
                let name = String(decoding: b[nameStart..<j], as: UTF8.self)
                while j < b.count, isSpace(b[j]) { j += 1 }
                guard j < b.count, b[j] == UInt8(ascii: ">"), depth > 0 else { return false }
                depth -= 1
                guard handle(.end(name)) else { return false }
                i = j + 1
            } else {
                // `<!…>` (DOCTYPE, comments, CDATA) and `<?…?>` after the declaration: refused.
                var j = i + 1
                let nameStart = j
                while j < b.count, isNameByte(b[j]) { j += 1 }
                guard j > nameStart else { return false }
                let name = String(decoding: b[nameStart..<j], as: UTF8.self)
                var attributes: [String: String] = [:]
                var selfClosing = false
                while true {
                    while j < b.count, isSpace(b[j]) { j += 1 }
                    guard j < b.count else { return false }
                    if b[j] == UInt8(ascii: ">") { j += 1; break }
                    if b[j] == UInt8(ascii: "/") {
                        guard j + 1 < b.count, b[j + 1] == UInt8(ascii: ">") else { return false }
                        selfClosing = true
                        j += 2
                        break
                    }
                    let attrStart = j
                    while j < b.count, isNameByte(b[j]) { j += 1 }
                    guard j > attrStart else { return false }
                    let attr = String(decoding: b[attrStart..<j], as: UTF8.self)
                    while j < b.count, isSpace(b[j]) { j += 1 }
                    guard j < b.count, b[j] == UInt8(ascii: "=") else { return false }
                    j += 1
                    while j < b.count, isSpace(b[j]) { j += 1 }
                    guard j < b.count, b[j] == UInt8(ascii: "\"") || b[j] == UInt8(ascii: "'") else { return false }
                    let quote = b[j]
                    j += 1
                    let valueStart = j
                    while j < b.count, b[j] != quote, b[j] != UInt8(ascii: "<") { j += 1 }
                    guard j < b.count, b[j] == quote, let value = decode(b[valueStart..<j]) else { return false }
                    j += 1
                    guard attributes.updateValue(String(decoding: value, as: UTF8.self), forKey: attr) == nil else { return false }
                }
                depth += 1
                guard depth <= maxDepth, handle(.start(name, attributes)) else { return false }
                if selfClosing {
                    depth -= 1
                    guard handle(.end(name)) else { return false }
                }
                i = j
            }
            textStart = i
        }
        guard flushText(b.count) else { return false }
        return depth == 0
    }

    static func find(_ b: [UInt8], _ needle: [UInt8], from: Int) -> Int? {
        var i = from
        while i + needle.count <= b.count {
            if b[i..<(i + needle.count)].elementsEqual(needle) { return i }
            i += 1
        }
        return nil
    }

    /// Character data with its references resolved; nil for a bad reference or a raw `>`-less
    /// markup character that XML forbids in text (`<`).
    static func decode(_ s: ArraySlice<UInt8>) -> [UInt8]? {
        guard s.contains(UInt8(ascii: "&")) else { return Array(s) }
        var out: [UInt8] = []
        out.reserveCapacity(s.count)
        var i = s.startIndex
        while i < s.endIndex {
            guard s[i] == UInt8(ascii: "&") else { out.append(s[i]); i += 1; continue }
            guard let semi = s[i...].prefix(12).firstIndex(of: UInt8(ascii: ";")) else { return nil }
            let ref = String(decoding: s[(i + 1)..<semi], as: UTF8.self)
            switch ref {
            case "lt": out.append(UInt8(ascii: "<"))
            case "gt": out.append(UInt8(ascii: ">"))
            case "amp": out.append(UInt8(ascii: "&"))
            case "quot": out.append(UInt8(ascii: "\""))
            case "apos": out.append(UInt8(ascii: "'"))
            default:
                let value: UInt32?
                if ref.hasPrefix("#x") { value = UInt32(ref.dropFirst(2), radix: 16) }
                else if ref.hasPrefix("#") { value = UInt32(ref.dropFirst(), radix: 10) }
                else { value = nil }  // named entities beyond the five: there is no DTD
                guard let v = value, v != 0, let scalar = Unicode.Scalar(v) else { return nil }
                out += Array(String(Character(scalar)).utf8)
            }
            i = semi + 1
        }
        return out
    }
}
