import FuzzSupport
import GatewayCore

/// ConfigAuthMessage.parse (GatewayCore/ConfigAuth.swift): the XML (aggregate-auth) login
/// body, parsed with FoundationXML (libxml2). Input: the request body.
///
/// Invariants:
/// - a body that parses is valid UTF-8 and at most HTTPRequestParser.maxBodyBytes;
/// - round trip: the message written back as a plain config-auth document (every value
///   escaped) parses to the same message, so what the gateway read is what the XML said
///   and no value can carry markup of its own.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let body = Array(UnsafeBufferPointer(start: data, count: size))
    if KnownIssue.xmlProcessingInstruction(body) { return 0 }
    guard let message = ConfigAuthMessage.parse(body) else { return 0 }
    invariant(String(validating: body, as: UTF8.self) != nil, "a body that is not UTF-8 parsed")
    invariant(body.count <= HTTPRequestParser.maxBodyBytes, "a body of \(body.count) bytes parsed")

    guard roundTrippable(message) else { return 0 }
    let again = Array(render(message).utf8)
    guard let reparsed = ConfigAuthMessage.parse(again) else {
        invariant(again.count > HTTPRequestParser.maxBodyBytes, "the message written back does not parse: \(render(message))")
        return 0
    }
    invariant(reparsed == message, "round trip changed the message:\n\(message)\nvs\n\(reparsed)")
    return 0
}

/// Values with characters XML 1.0 cannot carry at all (they can only have come from a
/// parser leniency) and names with namespace prefixes (which would need declarations)
/// are left out of the round trip.
private func roundTrippable(_ m: ConfigAuthMessage) -> Bool {
    let values = [m.type, m.groupSelect, m.opaque, m.deviceId, m.clientVersion].compactMap { $0 } + Array(m.authFields.values)
    guard values.allSatisfy({ $0.unicodeScalars.allSatisfy(isXMLChar) }) else { return false }
    return m.authFields.keys.allSatisfy { !$0.contains(":") && !$0.isEmpty }
}

private func isXMLChar(_ s: Unicode.Scalar) -> Bool {
    switch s.value {
    case 0x9, 0xA, 0xD, 0x20...0xD7FF, 0xE000...0xFFFD, 0x10000...0x10FFFF: return true
    default: return false
    }
}

private func escape(_ s: String) -> String {
    var out = ""
    for c in s.unicodeScalars {
        switch c {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "\r": out += "&#13;"
        case "\n": out += "&#10;"
        case "\t": out += "&#9;"
        default: out.unicodeScalars.append(c)
        }
    }
    return out
}

private func render(_ m: ConfigAuthMessage) -> String {
    var x = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<config-auth client=\"vpn\" type=\"\(escape(m.type))\">"
    if let v = m.clientVersion { x += "<version who=\"vpn\">\(escape(v))</version>" }
    if let v = m.deviceId { x += "<device-id>\(escape(v))</device-id>" }
    if let v = m.groupSelect { x += "<group-select>\(escape(v))</group-select>" }
    if !m.authFields.isEmpty {
        x += "<auth>"
        for (name, value) in m.authFields.sorted(by: { $0.key < $1.key }) { x += "<\(name)>\(escape(value))</\(name)>" }
        x += "</auth>"
    }
    return x + "</config-auth>"
}

/// The entry point a debug build links as `main` (see CFuzzDriver/include/fuzz_driver.h).
@_cdecl("fuzz_config_auth_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runLibFuzzer(argc, argv)
}
