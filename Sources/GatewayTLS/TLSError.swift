internal import COpenSSL

/// A TLS setup failure with OpenSSL's own error strings (drained from its queue).
public struct TLSError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }

    /// Drains OpenSSL's thread-local error queue into one readable line.
    static func drain(_ context: String) -> TLSError {
        TLSError("\(context): \(OpenSSLErrors.drain())")
    }
}

enum OpenSSLErrors {
    static func drain() -> String {
        var parts: [String] = []
        while true {
            let e = ERR_get_error()
            if e == 0 { break }
            var buf = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(e, &buf, buf.count)
            parts.append(String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return parts.isEmpty ? "no OpenSSL error detail" : parts.joined(separator: "; ")
    }
}
