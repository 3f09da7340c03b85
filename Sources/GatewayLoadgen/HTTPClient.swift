import GatewayCore
import Glibc
import GatewaySystem

/// The client side of the login phase: parsing the gateway's HTTP/1.1 responses,
/// the cookie jar, and the requests openconnect sends.

/// A response status line and headers. Header names are lower-cased.
public struct HTTPResponseHead: Sendable, Equatable {
    public var version: String
    public var status: Int
    public var reason: String
    public var headers: [Header]

    public struct Header: Sendable, Equatable {
        public var name: String
        public var value: String
        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    public func header(_ name: String) -> String? { headers.first { $0.name == name }?.value }
    public func headers(_ name: String) -> [String] { headers.filter { $0.name == name }.map(\.value) }

    /// openconnect keeps the connection unless the server says otherwise or speaks 1.0.
    public var keepAlive: Bool {
        if version == "HTTP/1.0" { return header("connection")?.lowercased() == "keep-alive" }
        return header("connection")?.lowercased() != "close"
    }
}

public enum HTTPResponseParser {
    public static let maxHeadBytes = 64 * 1024
    public static let maxBodyBytes = 1024 * 1024

    public enum ParseError: Error, Equatable, Sendable, CustomStringConvertible {
        case headTooLarge
        case badStatusLine
        case badHeader
        case badContentLength
        case bodyTooLarge
        case badChunk
        case noBodyLength

        public var description: String {
            switch self {
            case .headTooLarge: return "response head larger than \(HTTPResponseParser.maxHeadBytes) bytes"
            case .badStatusLine: return "malformed status line"
            case .badHeader: return "malformed header line"
            case .badContentLength: return "malformed Content-Length"
            case .bodyTooLarge: return "response body larger than \(HTTPResponseParser.maxBodyBytes) bytes"
            case .badChunk: return "malformed chunked body"
            case .noBodyLength: return "response without Content-Length or chunked encoding on a kept-alive connection"
            }
        }
    }

    /// Parses the head at the start of `buffer`. nil: more bytes needed. Returns the
    /// head and the number of bytes it took (including the blank line).
    public static func parseHead(_ buffer: [UInt8]) throws(ParseError) -> (head: HTTPResponseHead, length: Int)? {
        guard let end = headEnd(buffer) else {
            if buffer.count > maxHeadBytes { throw .headTooLarge }
            return nil
        }
        if end.contentEnd > maxHeadBytes { throw .headTooLarge }
        // Split on bytes: as Swift Characters "\r\n" is one grapheme and matches neither.
        var lines: [Substring] = []
        for raw in buffer[0..<end.contentEnd].split(separator: 0x0A, omittingEmptySubsequences: false) {
            let line = raw.last == 0x0D ? raw.dropLast() : raw
            lines.append(Substring(String(decoding: line, as: UTF8.self)))
        }
        guard let statusLine = lines.first else { throw .badStatusLine }
        let parts = statusLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2, parts[0] == "HTTP/1.1" || parts[0] == "HTTP/1.0",
              parts[1].count == 3, let status = Int(parts[1]), status >= 100 else { throw .badStatusLine }
        var headers: [HTTPResponseHead.Header] = []
        for line in lines.dropFirst() {
            if let f = line.first, f == " " || f == "\t" {
                // An obsolete continuation line belongs to the previous header.
                guard !headers.isEmpty else { throw .badHeader }
                headers[headers.count - 1].value += " " + trim(line)
                continue
            }
            guard let colon = line.firstIndex(of: ":") else { throw .badHeader }
            let name = line[..<colon]
            guard !name.isEmpty, name.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: ":") }) else { throw .badHeader }
            headers.append(.init(name: name.lowercased(), value: String(trim(line[line.index(after: colon)...]))))
        }
        let head = HTTPResponseHead(version: String(parts[0]), status: status,
                                    reason: parts.count > 2 ? String(parts[2]) : "", headers: headers)
        return (head, end.total)
    }

    /// The end of the header block: `\r\n\r\n` (or bare `\n\n`, which some servers send).
    static func headEnd(_ b: [UInt8]) -> (contentEnd: Int, total: Int)? {
        var i = 0
        while i < b.count {
            if b[i] == 0x0A {
                if i + 1 < b.count, b[i + 1] == 0x0A { return (i, i + 2) }
                if i + 2 < b.count, b[i + 1] == 0x0D, b[i + 2] == 0x0A { return (i, i + 3) }
            }
            i += 1
        }
        return nil
    }

    static func trim(_ s: Substring) -> Substring {
        var s = s
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return s
    }

    /// The body that follows `head` in `buffer[offset...]`. nil: more bytes needed (at
    /// `atEOF`, a body delimited by the end of the connection is complete). Returns the
    /// body and the bytes consumed after `offset`.
    public static func parseBody(head: HTTPResponseHead, _ buffer: [UInt8], from offset: Int,
                                 atEOF: Bool) throws(ParseError) -> (body: [UInt8], length: Int)? {
        let available = buffer.count - offset
        if head.status < 200 || head.status == 204 || head.status == 304 { return ([], 0) }
        if let te = head.header("transfer-encoding"), te.lowercased().contains("chunked") {
            return try parseChunked(buffer, from: offset)
        }
        if let cl = head.header("content-length") {
            guard let n = Int(cl.trimmingSpaces), n >= 0 else { throw .badContentLength }
            guard n <= maxBodyBytes else { throw .bodyTooLarge }
            guard available >= n else { return nil }
            return (Array(buffer[offset..<offset + n]), n)
        }
        // No length: only a response that ends the connection can carry a body.
        guard !head.keepAlive else { throw .noBodyLength }
        if available > maxBodyBytes { throw .bodyTooLarge }
        guard atEOF else { return nil }
        return (Array(buffer[offset...]), available)
    }

    static func parseChunked(_ b: [UInt8], from offset: Int) throws(ParseError) -> (body: [UInt8], length: Int)? {
        var body: [UInt8] = []
        var i = offset
        while true {
            guard let lineEnd = findLF(b, from: i) else {
                if b.count - i > 1024 { throw .badChunk }
                return nil
            }
            var sizeText = String(decoding: b[i..<lineEnd], as: UTF8.self)
            if sizeText.hasSuffix("\r") { sizeText.removeLast() }
            if let semi = sizeText.firstIndex(of: ";") { sizeText = String(sizeText[..<semi]) }
            guard let size = Int(sizeText.trimmingSpaces, radix: 16), size >= 0 else { throw .badChunk }
            guard body.count + size <= maxBodyBytes else { throw .bodyTooLarge }
            i = lineEnd + 1
            if size == 0 {
                // Trailers, then an empty line.
                while true {
                    guard let end = findLF(b, from: i) else { return nil }
                    let empty = end == i || (end == i + 1 && b[i] == 0x0D)
                    i = end + 1
                    if empty { return (body, i - offset) }
                }
            }
            guard b.count - i >= size else { return nil }
            body.append(contentsOf: b[i..<i + size])
            i += size
            guard let crlfEnd = findLF(b, from: i) else { return nil }
            guard crlfEnd == i || (crlfEnd == i + 1 && b[i] == 0x0D) else { throw .badChunk }
            i = crlfEnd + 1
        }
    }

    static func findLF(_ b: [UInt8], from: Int) -> Int? {
        var i = from
        while i < b.count {
            if b[i] == 0x0A { return i }
            i += 1
        }
        return nil
    }
}

extension String {
    var trimmingSpaces: Substring { HTTPResponseParser.trim(Substring(self)) }
}

/// The cookies a server set, sent back on every later request (openconnect's rules:
/// `NAME=VALUE` up to the first `;`, same name replaces, empty value deletes).
public struct CookieJar: Sendable, Equatable {
    public private(set) var cookies: [(name: String, value: String)] = []

    public init() {}

    public static func == (a: CookieJar, b: CookieJar) -> Bool {
        a.cookies.map(\.name) == b.cookies.map(\.name) && a.cookies.map(\.value) == b.cookies.map(\.value)
    }

    public mutating func apply(setCookie header: String) {
        let pair = header.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        guard let eq = pair.firstIndex(of: "=") else { return }
        let name = String(HTTPResponseParser.trim(pair[..<eq]))
        let value = String(HTTPResponseParser.trim(pair[pair.index(after: eq)...]))
        guard !name.isEmpty else { return }
        set(name, value)
    }

    public mutating func set(_ name: String, _ value: String) {
        cookies.removeAll { $0.name == name }
        // A cookie value ends up in our request headers: refuse what could break them.
        if !value.isEmpty, value.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: ";") }) {
            cookies.append((name, value))
        }
    }

    public func value(_ name: String) -> String? { cookies.first { $0.name == name }?.value }

    /// The `Cookie:` header value, or nil with no cookies.
    public var header: String? {
        cookies.isEmpty ? nil : cookies.map { "\($0.name)=\($0.value)" }.joined(separator: "; ")
    }
}

/// The requests, byte for byte in the shape openconnect 9.01 sends them (section 3.2 and
/// 4.1 of the protocol notes), minus the STRAP keys the gateways ignore.
public enum LoginRequests {
    static let clientVersion = "v9.01-3"

    static func commonHeaders(_ t: URLTarget, userAgent: String) -> String {
        "Host: \(t.hostHeader)\r\nUser-Agent: \(userAgent)\r\nAccept: */*\r\nAccept-Encoding: identity\r\n"
            + "X-Transcend-Version: 1\r\nX-Aggregate-Auth: 1\r\n"
    }

    /// `GET <path>` with `Authorization: Bearer` (what openconnect --token-mode=oidc ends with).
    public static func bearer(_ t: URLTarget, userAgent: String, token: String) -> [UInt8] {
        Array(("GET \(t.path) HTTP/1.1\r\n" + commonHeaders(t, userAgent: userAgent)
               + "Authorization: Bearer \(token)\r\n\r\n").utf8)
    }

    /// An XML POST (init or auth-reply) with the cookies so far.
    public static func xmlPost(_ t: URLTarget, path: String, userAgent: String, cookies: String?, body: String) -> [UInt8] {
        var h = "POST \(path) HTTP/1.1\r\n" + commonHeaders(t, userAgent: userAgent)
        if let cookies { h += "Cookie: \(cookies)\r\n" }
        let b = Array(body.utf8)
        h += "Content-Type: application/xml; charset=utf-8\r\nContent-Length: \(b.count)\r\n\r\n"
        return Array(h.utf8) + b
    }

    static let capabilities = "<capabilities><auth-method>single-sign-on-v2</auth-method>"
        + "<auth-method>single-sign-on-external-browser</auth-method></capabilities>"

    public static func initBody(_ t: URLTarget) -> String {
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<config-auth client=\"vpn\" type=\"init\" aggregate-auth-version=\"2\">"
            + "<version who=\"vpn\">\(clientVersion)</version><device-id>linux-64</device-id>\(capabilities)"
            + "<group-access>\(xmlEscape(t.groupAccess))</group-access></config-auth>"
    }

    /// `fields` become `<name>value</name>` inside `<auth>`; `opaque` (verbatim XML the
    /// server sent) and `groupSelect` go at config-auth level.
    public static func authReplyBody(fields: [(name: String, value: String)], groupSelect: String?, opaque: String?) -> String {
        var s = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<config-auth client=\"vpn\" type=\"auth-reply\" aggregate-auth-version=\"2\">"
        s += "<version who=\"vpn\">\(clientVersion)</version><device-id>linux-64</device-id>\(capabilities)"
        if let opaque { s += opaque }
        if let groupSelect { s += "<group-select>\(xmlEscape(groupSelect))</group-select>" }
        s += "<auth>"
        for f in fields { s += "<\(f.name)>\(xmlEscape(f.value))</\(f.name)>" }
        s += "</auth></config-auth>"
        return s
    }

    /// `CONNECT /CSCOSSLC/tunnel`, TLS only (no DTLS offer: the load generator has no
    /// UDP channel), IPv4 only.
    public static func connect(_ t: URLTarget, userAgent: String, cookie: String) -> [UInt8] {
        Array(("CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: \(t.hostHeader)\r\nUser-Agent: \(userAgent)\r\n"
               + "Cookie: webvpn=\(cookie)\r\nX-CSTP-Version: 1\r\nX-CSTP-Hostname: mst-loadgen\r\n"
               + "X-CSTP-Base-MTU: 1500\r\nX-CSTP-MTU: 1390\r\nX-CSTP-Address-Type: IPv4\r\n\r\n").utf8)
    }

    /// The gateway's own escaping (also drops control characters XML cannot carry).
    public static func xmlEscape(_ s: String) -> String { LoginResponses.xmlEscape(s) }
}

/// The tunnel parameters the loadgen acts on, from `HTTP/1.1 200 CONNECTED`.
public struct TunnelGrant: Sendable, Equatable {
    public var address: String
    /// Seconds; 0 when absent.
    public var dpd: Int
    public var keepalive: Int
    public var mtu: Int?

    public enum Problem: Error, Equatable, CustomStringConvertible {
        case noAddress
        case badAddress(String)

        public var description: String {
            switch self {
            case .noAddress: return "200 CONNECTED without X-CSTP-Address"
            case .badAddress(let a): return "X-CSTP-Address '\(a)' is not an IPv4 address"
            }
        }
    }

    public init(address: String, dpd: Int, keepalive: Int, mtu: Int?) {
        self.address = address
        self.dpd = dpd
        self.keepalive = keepalive
        self.mtu = mtu
    }

    /// Reads the headers openconnect requires and the timers.
    public init(_ head: HTTPResponseHead) throws(Problem) {
        guard let a = head.header("x-cstp-address") else { throw .noAddress }
        guard SocketAddress(literal: a, port: 0)?.family == AF_INET else { throw .badAddress(String(a.prefix(64))) }
        address = a
        dpd = Self.seconds(head.header("x-cstp-dpd"))
        keepalive = Self.seconds(head.header("x-cstp-keepalive"))
        mtu = head.header("x-cstp-mtu").flatMap { Int($0.trimmingSpaces) }
    }

    /// Whole seconds; absent, `none` or nonsense counts as 0 (off). Capped at a year.
    static func seconds(_ v: String?) -> Int {
        guard let v, let n = Int(v.trimmingSpaces), n > 0 else { return 0 }
        return min(n, 366 * 86400)
    }
}
