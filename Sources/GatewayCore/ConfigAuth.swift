import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// A client's `<config-auth>` message from the XML (aggregate-auth) login, reduced to
/// what the gateway acts on. Parsed with a real XML parser: element order, whitespace,
/// namespaces and entities vary between client versions.
public struct ConfigAuthMessage: Sendable, Equatable {
    /// `init`, `auth-reply`, `logout`, …
    public var type: String
    /// Fields inside `<auth>`: `username`, `password`, …
    public var authFields: [String: String]
    public var groupSelect: String?
    public var opaque: String?
    public var deviceId: String?
    public var clientVersion: String?

    /// Parses a request body. Returns nil when it is not a `config-auth` document.
    public static func parse(_ body: [UInt8]) -> ConfigAuthMessage? {
        guard !body.isEmpty, body.count <= HTTPRequestParser.maxBodyBytes else { return nil }
        // FoundationXML traps (SIGILL) on element or attribute names that are not valid
        // UTF-8; refuse such bodies before they reach it.
        guard String(validating: body, as: UTF8.self) != nil else { return nil }
        let delegate = Delegate()
        let parser = XMLParser(data: Data(body))
        parser.shouldResolveExternalEntities = false
        parser.delegate = delegate
        guard parser.parse(), delegate.sawRoot, delegate.rootClosed, let type = delegate.type else { return nil }
        return ConfigAuthMessage(type: type, authFields: delegate.authFields, groupSelect: delegate.groupSelect,
                                 opaque: delegate.opaque, deviceId: delegate.deviceId, clientVersion: delegate.version)
    }

    private final class Delegate: NSObject, XMLParserDelegate {
        var sawRoot = false
        /// libxml2 in push mode accepts a truncated document; a missing end tag is a
        /// malformed message for us.
        var rootClosed = false
        var type: String?
        var authFields: [String: String] = [:]
        var groupSelect: String?
        var opaque: String?
        var deviceId: String?
        var version: String?
        private var stack: [String] = []
        private var text = ""
        private var opaqueDepth: Int?

        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                    attributes: [String: String] = [:]) {
            if stack.isEmpty {
                guard name == "config-auth" else {
                    parser.abortParsing()
                    return
                }
                sawRoot = true
                type = attributes["type"]
            }
            stack.append(name)
            text = ""
            if name == "opaque", stack.count == 2 { opaqueDepth = stack.count }
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) {
            text += string
        }

        func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
            let depth = stack.count
            let parent = depth >= 2 ? stack[depth - 2] : nil
            if depth == 3, parent == "auth" {
                authFields[name] = text
            } else if depth == 2 {
                switch name {
                case "group-select": groupSelect = text
                case "device-id": deviceId = text
                case "version": version = text
                default: break
                }
            }
            if name == "opaque", opaqueDepth == depth { opaqueDepth = nil }
            if depth == 1 { rootClosed = true }
            stack.removeLast()
            text = ""
        }
    }
}
