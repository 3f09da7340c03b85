/// One parsed HTTP/1.1 request from the login phase. Header names are lower-cased.
public struct HTTPRequest: Sendable, Equatable {
    public var method: String
    public var target: String
    public var version: String
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public static func == (a: HTTPRequest, b: HTTPRequest) -> Bool {
        a.method == b.method && a.target == b.target && a.version == b.version && a.body == b.body
            && a.headers.map(\.name) == b.headers.map(\.name) && a.headers.map(\.value) == b.headers.map(\.value)
    }

    public func header(_ name: String) -> String? {
        headers.first { $0.name == name }?.value
    }

    /// The path without query string.
    public var path: String {
        if let q = target.firstIndex(of: "?") { return String(target[..<q]) }
        return target
    }

    /// All cookies from every `Cookie:` header, in order.
    public var cookies: [(name: String, value: String)] {
        var out: [(String, String)] = []
        for h in headers where h.name == "cookie" {
            for part in h.value.split(separator: ";") {
                let trimmed = part.trimmingSpaces
                guard let eq = trimmed.firstIndex(of: "=") else { continue }
                out.append((String(trimmed[..<eq]), String(trimmed[trimmed.index(after: eq)...])))
            }
        }
        return out
    }

    public func cookie(_ name: String) -> String? { cookies.first { $0.name == name }?.value }
}

extension Substring {
    var trimmingSpaces: Substring {
        var s = self
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return s
    }
}

/// Incremental HTTP/1.1 request parser with hard limits. Feed it bytes; it yields whole
/// requests. Only what the login phase needs: no chunked request bodies (clients send
/// Content-Length), no pipelining beyond what arrives in order.
public struct HTTPRequestParser: Sendable {
    public static let maxHeaderBytes = 32 * 1024
    public static let maxBodyBytes = 64 * 1024
    public static let maxHeaders = 100

    public enum ParseError: Error, Equatable, Sendable, CustomStringConvertible {
        case headerTooLarge
        case bodyTooLarge(Int)
        case tooManyHeaders
        case badRequestLine
        case badHeader
        case badContentLength
        case conflictingContentLength
        case unsupportedTransferEncoding
        /// The bytes start with the CSTP magic (`STF\x01`): a tunnel frame sent before the
        /// gateway accepted a CONNECT on this connection.
        case tunnelFrame

        public var description: String {
            switch self {
            case .headerTooLarge: return "request header larger than \(HTTPRequestParser.maxHeaderBytes) bytes"
            case .bodyTooLarge(let n): return "request body of \(n) bytes exceeds \(HTTPRequestParser.maxBodyBytes)"
            case .tooManyHeaders: return "more than \(HTTPRequestParser.maxHeaders) header lines"
            case .badRequestLine: return "malformed request line"
            case .badHeader: return "malformed header line"
            case .badContentLength: return "malformed Content-Length"
            case .conflictingContentLength: return "Content-Length headers that disagree"
            case .unsupportedTransferEncoding: return "Transfer-Encoding in a request is not supported"
            case .tunnelFrame: return "a CSTP frame before the tunnel started (no CONNECT accepted on this connection)"
            }
        }
    }

    private var buffer: [UInt8] = []
    /// Where the search for the end of the header block resumes: bytes before it were
    /// already scanned, so feeding a header one byte per record stays linear.
    private var scanned = 0
    /// A parsed head whose body has not all arrived: kept, so a body fed a byte per
    /// record is not a reparse of the whole head per byte (fuzzing found 197 s of CPU for
    /// one 31 KB head + 64 KB body sent in 1–2-byte records).
    private var pendingHead: (request: HTTPRequest, bodyStart: Int, bodyLength: Int)?

    public init() {}

    public var buffered: Int { buffer.count }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        buffer.append(contentsOf: bytes)
    }

    public mutating func append(_ bytes: [UInt8]) {
        buffer.append(contentsOf: bytes)
    }

    /// Whatever is buffered beyond the last parsed request (e.g. the first CSTP bytes
    /// sent right after a CONNECT), handed over and cleared.
    public mutating func takeRemainder() -> [UInt8] {
        defer {
            buffer = []
            scanned = 0
            pendingHead = nil
        }
        return buffer
    }

    /// Drops everything buffered (the connection is being closed).
    public mutating func reset() {
        buffer = []
        scanned = 0
        pendingHead = nil
    }

    public mutating func next() throws(ParseError) -> HTTPRequest? {
        if let pending = pendingHead {
            guard buffer.count >= pending.bodyStart + pending.bodyLength else { return nil }
            pendingHead = nil
            return complete(pending.request, bodyStart: pending.bodyStart, bodyLength: pending.bodyLength)
        }
        if let refused = Self.requestStartError(buffer) { throw refused }
        guard let headerEnd = Self.findHeaderEnd(buffer, from: scanned) else {
            scanned = max(0, buffer.count - 3)
            if buffer.count > Self.maxHeaderBytes { throw .headerTooLarge }
            return nil
        }
        if headerEnd > Self.maxHeaderBytes { throw .headerTooLarge }
        let head = buffer[0..<headerEnd]
        var lines = head.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map { line -> ArraySlice<UInt8> in
            line.last == UInt8(ascii: "\r") ? line.dropLast() : line
        }
        guard !lines.isEmpty else { throw .badRequestLine }
        let requestLine = lines.removeFirst()
        let parts = requestLine.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: true)
        guard parts.count == 3 else { throw .badRequestLine }
        let method = String(decoding: parts[0], as: UTF8.self)
        let target = String(decoding: parts[1], as: UTF8.self)
        let version = String(decoding: parts[2], as: UTF8.self)
        guard method.utf8.allSatisfy({ $0 >= 0x41 && $0 <= 0x5A }), version.hasPrefix("HTTP/1.") else { throw .badRequestLine }

        var headers: [(name: String, value: String)] = []
        for line in lines where !line.isEmpty {
            if line.first == UInt8(ascii: " ") || line.first == UInt8(ascii: "\t") {
                // Obsolete line folding: continue the previous header's value.
                guard !headers.isEmpty else { throw .badHeader }
                headers[headers.count - 1].value += " " + String(decoding: line, as: UTF8.self).trimmingSet(" \t")
                continue
            }
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > line.startIndex else { throw .badHeader }
            let name = String(decoding: line[line.startIndex..<colon], as: UTF8.self).lowercased()
            guard !name.contains(" "), !name.contains("\t") else { throw .badHeader }
            let value = String(decoding: line[(colon + 1)...], as: UTF8.self).trimmingSet(" \t")
            headers.append((name, value))
            if headers.count > Self.maxHeaders { throw .tooManyHeaders }
        }
        if headers.contains(where: { $0.name == "transfer-encoding" }) { throw .unsupportedTransferEncoding }
        var bodyLength = 0
        let lengths = headers.filter { $0.name == "content-length" }.map(\.value)
        if let cl = lengths.first {
            // RFC 9112 §6.3: lengths that disagree make the framing ambiguous (the classic
            // request-smuggling shape); repeating the same value is harmless.
            guard lengths.allSatisfy({ $0 == cl }) else { throw .conflictingContentLength }
            guard let n = Int(cl), n >= 0, cl.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { throw .badContentLength }
            guard n <= Self.maxBodyBytes else { throw .bodyTooLarge(n) }
            bodyLength = n
        }
        let bodyStart = headerEnd + 4
        let parsed = HTTPRequest(method: method, target: target, version: version, headers: headers, body: [])
        guard buffer.count >= bodyStart + bodyLength else {
            pendingHead = (parsed, bodyStart, bodyLength)
            return nil
        }
        return complete(parsed, bodyStart: bodyStart, bodyLength: bodyLength)
    }

    private mutating func complete(_ head: HTTPRequest, bodyStart: Int, bodyLength: Int) -> HTTPRequest {
        var request = head
        request.body = Array(buffer[bodyStart..<(bodyStart + bodyLength)])
        buffer.removeFirst(bodyStart + bodyLength)
        scanned = 0
        return request
    }

    /// Longest method the start of a request may have before its space.
    static let maxMethodLength = 16

    /// What is wrong with the first bytes of a request, known before its head is complete:
    /// a CSTP frame, or a method that is not 1–16 letters A–Z followed by a space. Without
    /// it, bytes that are not HTTP would wait for a blank line that may never come, holding
    /// the connection until the login timeout.
    static func requestStartError(_ b: [UInt8]) -> ParseError? {
        if b.count >= 4, b[0] == 0x53, b[1] == 0x54, b[2] == 0x46, b[3] == 0x01 { return .tunnelFrame }
        for (i, c) in b.prefix(maxMethodLength + 1).enumerated() {
            if c == 0x20 { return i == 0 ? .badRequestLine : nil }
            if c < 0x41 || c > 0x5A { return .badRequestLine }
        }
        return b.count > maxMethodLength ? .badRequestLine : nil
    }

    /// Index of the "\r\n\r\n" that ends the header block.
    static func findHeaderEnd(_ b: [UInt8], from start: Int = 0) -> Int? {
        guard b.count >= 4 else { return nil }
        var i = start
        while i + 3 < b.count {
            if b[i] == 13, b[i + 1] == 10, b[i + 2] == 13, b[i + 3] == 10 { return i }
            i += 1
        }
        return nil
    }
}

extension String {
    func trimmingSet(_ set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s.removeFirst() }
        while let l = s.last, set.contains(l) { s.removeLast() }
        return String(s)
    }
}
