internal import COpenSSL

/// One TLS connection. Not thread-safe: owned by the event loop that drives it. Results
/// are values, never throws, because they are on the per-packet path;
/// WANT_READ/WANT_WRITE are ordinary outcomes.
///
/// It does no I/O of its own on the gateway: it reads the bytes its owner put in `input`
/// and writes records into `output`, which the owner sends. The same connection therefore
/// runs over a socket in production and over plain memory in tests (a whole login is
/// played that way in GatewayDataplaneTests).
public final class TLSConnection {
    let ssl: OpaquePointer
    /// Where this connection's records accumulate until flushed.
    public let output: OutboundBuffer
    /// What it reads; nil when OpenSSL reads the socket itself (the load generator's
    /// clients).
    public let input: InboundBuffer?

    init(ssl: OpaquePointer, input: InboundBuffer?, output: OutboundBuffer) {
        self.ssl = ssl
        self.input = input
        self.output = output
    }

    deinit { SSL_free(ssl) }

    /// Where a connection's bytes come from.
    enum Source {
        /// libssl reads the socket (client side, load generator).
        case socket(Int32)
        /// The owner fills an `InboundBuffer` (the gateway, tests).
        case buffer(InboundBuffer)
    }

    /// Reads from `source`, writes into `output` (flushed by the caller, so a batch of
    /// records leaves in one `send`). Frees `ssl` if it throws.
    static func attach(_ ssl: OpaquePointer, reading source: Source, output: OutboundBuffer) throws {
        let made: OpaquePointer?
        switch source {
        case .socket(let fd): made = BIO_new_socket(fd, BIO_NOCLOSE)
        case .buffer(let input): made = InboundBIO.make(input)
        }
        guard let rbio = made else {
            SSL_free(ssl)
            throw TLSError.drain("BIO_new(read)")
        }
        guard let wbio = OutboundBIO.make(output) else {
            BIO_free(rbio)
            SSL_free(ssl)
            throw TLSError.drain("BIO_new(outbound)")
        }
        SSL_set_bio(ssl, rbio, wbio)
    }

    public enum IOResult: Equatable {
        case done(Int)
        case wantRead
        case wantWrite
        /// The peer closed the TLS session (close_notify) or the TCP stream.
        case closed
        case failed(String)
    }

    private func classify(_ rc: Int32) -> IOResult {
        let err = SSL_get_error(ssl, rc)
        switch err {
        case SSL_ERROR_WANT_READ: return .wantRead
        case SSL_ERROR_WANT_WRITE: return .wantWrite
        case SSL_ERROR_ZERO_RETURN: ERR_clear_error(); return .closed
        case SSL_ERROR_SYSCALL:
            let detail = OpenSSLErrors.drain()
            return detail == "no OpenSSL error detail" ? .closed : .failed(detail)
        default:
            // TCP closed without a close_notify (OpenSSL 3 makes it an error): the peer went
            // away, its bytes were not malformed.
            if mst_ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING {
                ERR_clear_error()
                return .closed
            }
            return .failed(OpenSSLErrors.drain())
        }
    }

    /// Advances the handshake. `.done(0)` once complete.
    public func handshake() -> IOResult {
        ERR_clear_error()
        let rc = SSL_do_handshake(ssl)
        return rc == 1 ? .done(0) : classify(rc)
    }

    public var isHandshakeDone: Bool { SSL_is_init_finished(ssl) == 1 }

    /// Reads decrypted bytes (at most one record's worth). No `ERR_clear_error` first
    /// (per record it costs ~2 % of the data path): failures drain the queue (`classify`).
    @inline(__always)
    public func read(_ buffer: UnsafeMutableRawPointer, _ count: Int) -> IOResult {
        let rc = SSL_read(ssl, buffer, Int32(count))
        return rc > 0 ? .done(Int(rc)) : classify(rc)
    }

    /// Writes one record. After `.wantWrite`, the same bytes must be written again.
    @inline(__always)
    public func write(_ buffer: UnsafeRawPointer, _ count: Int) -> IOResult {
        let rc = SSL_write(ssl, buffer, Int32(count))
        return rc > 0 ? .done(Int(rc)) : classify(rc)
    }

    /// Whether bytes wait that epoll cannot see: in OpenSSL (decrypted or a partial
    /// record) or in `input`.
    public var hasPending: Bool { SSL_has_pending(ssl) == 1 || (input?.isEmpty == false) }

    /// Gives libssl's record buffers back while the connection is idle (they are
    /// allocated again with the next record). False when a partial record holds them.
    /// Instead of `SSL_MODE_RELEASE_BUFFERS`, which with read-ahead off would free and
    /// allocate the read buffer around every record.
    /// Never on a libssl older than the fix of CVE-2024-4741 (3.0.14, 3.1.6, 3.2.2, 3.3.1):
    /// with read-ahead off a record header can sit in the read buffer while OpenSSL
    /// reports it empty, and those versions freed it anyway (a use-after-free a client
    /// could trigger by stalling mid-record). There, buffers are simply kept.
    @discardableResult
    public func releaseIdleBuffers() -> Bool {
        guard Self.libsslReleasesBuffersSafely else { return false }
        return SSL_free_buffers(ssl) == 1
    }

    /// Whether the libssl this process runs with has the CVE-2024-4741 fix, from its
    /// version number (0xMNN00PP0: major, minor, patch).
    public static let libsslReleasesBuffersSafely: Bool = safeToFreeBuffers(version: UInt(OpenSSL_version_num()))

    static func safeToFreeBuffers(version v: UInt) -> Bool {
        let major = (v >> 28) & 0xF, minor = (v >> 20) & 0xFF, patch = (v >> 4) & 0xFF
        guard major == 3 else { return major > 3 }
        switch minor {
        case 0: return patch >= 14
        case 1: return patch >= 6
        case 2: return patch >= 2
        case 3: return patch >= 1
        default: return true
        }
    }

    /// Sends close_notify (best effort, non-blocking).
    public func shutdown() {
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
    }

    /// RFC 5705 / RFC 8446 §7.5 exporter with no context, as the DTLS-PSK key.
    public func exportKeyingMaterial(label: String, length: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: length)
        let labelBytes = Array(label.utf8)
        let rc = labelBytes.withUnsafeBufferPointer { lb in
            lb.withMemoryRebound(to: CChar.self) { l in
                SSL_export_keying_material(ssl, &out, length, l.baseAddress, labelBytes.count, nil, 0, 0)
            }
        }
        return rc == 1 ? out : nil
    }

    /// The certificates the client presented (DER, leaf first), empty if none. After a
    /// resumed handshake only the leaf is known (the session kept it, not the chain).
    public var peerCertificateChain: [[UInt8]] {
        guard let leaf = SSL_get1_peer_certificate(ssl) else { return [] }
        defer { X509_free(leaf) }
        var chain = [Self.der(leaf)]
        // On the server side the stack holds the certificates after the leaf.
        if let stack = SSL_get_peer_cert_chain(ssl) {
            for i in 0..<mst_sk_X509_num(stack) {
                if let x = mst_sk_X509_value(stack, i) { chain.append(Self.der(x)) }
            }
        }
        return chain.filter { !$0.isEmpty }
    }

    static func der(_ x: OpaquePointer) -> [UInt8] {
        let length = i2d_X509(x, nil)
        guard length > 0 else { return [] }
        var out = [UInt8](repeating: 0, count: Int(length))
        out.withUnsafeMutableBufferPointer { buffer in
            var p = buffer.baseAddress
            _ = i2d_X509(x, &p)
        }
        return out
    }

    public var protocolVersion: String { String(cString: SSL_get_version(ssl)) }

    public var cipherName: String {
        guard let c = SSL_get_current_cipher(ssl) else { return "none" }
        return String(cString: SSL_CIPHER_get_name(c))
    }
}
