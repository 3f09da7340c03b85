/// The XML bodies and headers of the login phase, as openconnect reads them
/// (see docs/protocol.md). All text inserted into XML is escaped.
public enum LoginResponses {
    /// The form shown to a client that posts `init` without credentials: one text field
    /// (any user name) and one password field that takes the access token.
    public static func tokenForm(message: String, error: String? = nil) -> String {
        var s = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<config-auth client=\"vpn\" type=\"auth-request\" aggregate-auth-version=\"2\">\n"
        s += "<version who=\"sg\">mstunnel</version>\n<auth id=\"main\">\n<message>\(xmlEscape(message))</message>\n"
        if let error { s += "<error id=\"main\" param1=\"\" param2=\"\">\(xmlEscape(error))</error>\n" }
        s += "<form method=\"post\" action=\"/auth\">\n"
        s += "<input type=\"text\" name=\"username\" label=\"Username:\" />\n"
        s += "<input type=\"password\" name=\"password\" label=\"Access token:\" />\n"
        s += "</form></auth>\n</config-auth>\n"
        return s
    }

    /// `complete` with `auth id="success"`: the client takes the `webvpn` cookie from
    /// Set-Cookie (sent alongside) and proceeds to CONNECT.
    public static func complete(banner: String?) -> String {
        var s = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<config-auth client=\"vpn\" type=\"complete\" aggregate-auth-version=\"2\">\n"
        s += "<version who=\"sg\">mstunnel</version>\n<auth id=\"success\">\n<title>mstunnel</title>"
        if let banner, !banner.isEmpty { s += "<banner>\(xmlEscape(banner))</banner>" }
        s += "</auth></config-auth>\n"
        return s
    }

    public static func xmlEscape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for ch in s.unicodeScalars {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            case _ where ch.value < 0x20 && ch != "\n" && ch != "\t": continue
            default: out.unicodeScalars.append(ch)
            }
        }
        return out
    }
}

/// Builds an HTTP/1.1 response with Content-Length always set (openconnect requires a
/// body length on every response it reads).
public struct HTTPResponse: Sendable {
    public var status: Int
    public var reason: String
    public var headers: [(String, String)] = []
    public var body: [UInt8] = []

    public init(status: Int, reason: String, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
    }

    public init(status: Int, reason: String, headers: [(String, String)] = [], text: String) {
        self.init(status: status, reason: reason, headers: headers, body: Array(text.utf8))
    }

    public func serialized() -> [UInt8] {
        var head = "HTTP/1.1 \(status) \(reason)\r\n"
        for (n, v) in headers { head += "\(n): \(v)\r\n" }
        head += "Content-Length: \(body.count)\r\n\r\n"
        return Array(head.utf8) + body
    }
}
