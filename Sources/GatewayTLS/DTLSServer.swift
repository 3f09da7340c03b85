internal import COpenSSL
import GatewayUDP
import Glibc

/// DTLS 1.2 with a pre-shared key per session (openconnect's PSK-NEGOTIATE mode): the
/// key is exported from the TLS connection that carried the CONNECT. No certificate,
/// no cookie exchange: the session id in the ClientHello (the X-DTLS-App-ID) is what
/// admits a handshake.
public final class DTLSServerContext: @unchecked Sendable {
    // @unchecked: the SSL_CTX is configured once in init and only read afterwards.
    let ctx: OpaquePointer

    /// Whether established channels seal application data themselves
    /// (`DTLSRecordSealer`) instead of going through `SSL_write`.
    public let directRecords: Bool

    public init(directRecords: Bool = true) throws {
        self.directRecords = directRecords
        _ = mst_OPENSSL_init_ssl()
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(DTLS_server_method()) else { throw TLSError.drain("SSL_CTX_new(DTLS)") }
        self.ctx = ctx
        _ = mst_SSL_CTX_set_min_proto_version(ctx, DTLS1_2_VERSION)
        // The plain-PSK AEAD suites openconnect offers (GnuTLS and OpenSSL builds alike).
        guard SSL_CTX_set_cipher_list(ctx, "PSK-AES256-GCM-SHA384:PSK-AES128-GCM-SHA256:PSK-CHACHA20-POLY1305") == 1 else {
            throw TLSError.drain("DTLS cipher list")
        }
        SSL_CTX_set_options(ctx, MST_SSL_OP_NO_TICKET | MST_SSL_OP_NO_QUERY_MTU | MST_SSL_OP_NO_RENEGOTIATION | MST_SSL_OP_CIPHER_SERVER_PREFERENCE)
        _ = mst_SSL_CTX_set_session_cache_mode(ctx, MST_SSL_SESS_CACHE_OFF)
        _ = mst_SSL_CTX_set_mode(ctx, MST_SSL_MODE_RELEASE_BUFFERS)
        SSL_CTX_set_psk_server_callback(ctx) { ssl, _, psk, maxLength in
            guard let ssl, let psk, let raw = mst_SSL_get_app_data(ssl) else { return 0 }
            let conn = Unmanaged<DTLSConnection>.fromOpaque(raw).takeUnretainedValue()
            guard conn.psk.count <= Int(maxLength) else { return 0 }
            conn.psk.withUnsafeBytes { psk.update(from: $0.bindMemory(to: UInt8.self).baseAddress!, count: conn.psk.count) }
            return UInt32(conn.psk.count)
        }
    }

    deinit { SSL_CTX_free(ctx) }

    /// A server-side DTLS connection for one client address. Records it produces go to
    /// `batch`, addressed to `peer`.
    public func makeConnection(psk: [UInt8], peer: sockaddr_storage, peerLength: UInt32, linkMTU: Int,
                               batch: DatagramBatch) throws -> DTLSConnection {
        ERR_clear_error()
        guard let ssl = SSL_new(ctx) else { throw TLSError.drain("SSL_new(DTLS)") }
        let conn = DTLSConnection(ssl: ssl, psk: psk, peer: peer, peerLength: peerLength, batch: batch, directRecords: directRecords)
        guard let bio = BIO_new(DatagramBIO.method) else {
            throw TLSError.drain("BIO_new(datagram)")
        }
        // The BIO refers to the connection without owning it (the connection owns the
        // SSL, which owns the BIO), so there is no cycle.
        BIO_set_data(bio, Unmanaged.passUnretained(conn).toOpaque())
        SSL_set_bio(ssl, bio, bio)
        _ = mst_SSL_set_app_data(ssl, Unmanaged.passUnretained(conn).toOpaque())
        SSL_set_options(ssl, MST_SSL_OP_NO_QUERY_MTU)
        _ = mst_DTLS_set_link_mtu(ssl, linkMTU)
        SSL_set_accept_state(ssl)
        return conn
    }
}

/// One client's DTLS channel. Owned by the event loop; not thread-safe.
public final class DTLSConnection {
    let ssl: OpaquePointer
    let psk: [UInt8]
    // Unchecked exclusivity: taken by pointer once per record (`withUnsafePointer`) and
    // only replaced between records on roaming; see DatagramBatch.count.
    @exclusivity(unchecked) public internal(set) var peer: sockaddr_storage
    public let peerLength: UInt32
    // unowned(unsafe): the loop's batch outlives every connection (the gateway owns
    // both), and a checked unowned reference cost a retain/release per record.
    unowned(unsafe) let batch: DatagramBatch
    /// The datagram being processed; the BIO hands it to OpenSSL once.
    var input: UnsafeRawBufferPointer?
    /// The newest (epoch, sequence) among the records OpenSSL has written: where the
    /// direct record path continues.
    private var lastWritten: (epoch: UInt16, sequence: UInt64)?
    /// Seals application data without `SSL_write` once the client has proven, by
    /// sending a record, that it completed the handshake (so OpenSSL will not need to
    /// retransmit its last flight, the only records it would still write).
    @exclusivity(unchecked) private var sealer: DTLSRecordSealer?  // read per record; see DatagramBatch.count
    private var directWrite: DirectWrite
    private enum DirectWrite { case pending, unavailable }
    /// Why records go through `SSL_write` after all (unsupported cipher…), for the log.
    public private(set) var directWriteUnavailable: String?

    init(ssl: OpaquePointer, psk: [UInt8], peer: sockaddr_storage, peerLength: UInt32, batch: DatagramBatch, directRecords: Bool) {
        self.ssl = ssl
        self.psk = psk
        self.peer = peer
        self.peerLength = peerLength
        self.batch = batch
        directWrite = directRecords ? .pending : .unavailable
        if !directRecords { directWriteUnavailable = "turned off" }
    }

    /// Whether application data is sealed by `DTLSRecordSealer` rather than `SSL_write`.
    public var sealsDirectly: Bool { sealer != nil }

    /// Whether a datagram OpenSSL wrote must not leave: once the sealer has taken over,
    /// a record of OpenSSL's in the sealer's epoch (a retransmitted Finished after a
    /// reordered or replayed client Finished, an alert) would carry a sequence number the
    /// sealer has used, and under ChaCha20-Poly1305 reuse its nonce. The client already
    /// has the handshake's last flight, so nothing is lost by dropping it.
    func suppressedAfterSealing(_ p: UnsafeRawPointer, _ n: Int) -> Bool {
        guard let sealer else { return false }
        var off = 0
        while off + DTLSRecordSealer.headerSize <= n {
            if UInt16(bigEndian: p.loadUnaligned(fromByteOffset: off + 3, as: UInt16.self)) >= sealer.epoch { return true }
            off += DTLSRecordSealer.headerSize + Int(UInt16(bigEndian: p.loadUnaligned(fromByteOffset: off + 11, as: UInt16.self)))
        }
        return false
    }

    /// Notes the sequence numbers of the records in a datagram OpenSSL wrote.
    func noteWritten(_ p: UnsafeRawPointer, _ n: Int) {
        var off = 0
        while off + DTLSRecordSealer.headerSize <= n {
            let epoch = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: off + 3, as: UInt16.self))
            let high = UInt64(UInt16(bigEndian: p.loadUnaligned(fromByteOffset: off + 5, as: UInt16.self)))
            let low = UInt64(UInt32(bigEndian: p.loadUnaligned(fromByteOffset: off + 7, as: UInt32.self)))
            let sequence = high << 32 | low
            if let last = lastWritten, (last.epoch, last.sequence) >= (epoch, sequence) {} else {
                lastWritten = (epoch, sequence)
            }
            off += DTLSRecordSealer.headerSize + Int(UInt16(bigEndian: p.loadUnaligned(fromByteOffset: off + 11, as: UInt16.self)))
        }
    }

    private func startDirectWrite() {
        directWrite = .unavailable  // tried once, whatever the outcome
        guard let last = lastWritten, last.epoch > 0 else {
            directWriteUnavailable = "no encrypted record from OpenSSL to continue from"
            return
        }
        do {
            sealer = try DTLSRecordSealer.make(ssl: ssl, epoch: last.epoch, sequence: last.sequence + 1)
        } catch {
            directWriteUnavailable = "\(error)"
        }
    }

    deinit { SSL_free(ssl) }

    /// Offers one received datagram to OpenSSL while `body` runs; `body` calls `handshake()`
    /// or `read()` (until it says `.wantRead`). The datagram is borrowed, not kept: once
    /// `body` returns it is gone, and a later handshake step or timer finds no input, so a
    /// caller cannot leave OpenSSL holding a pointer whose memory has been reused.
    @inline(__always)
    public func receive<R>(_ datagram: UnsafeRawBufferPointer, _ body: (DTLSConnection) throws -> R) rethrows -> R {
        input = datagram
        defer { input = nil }
        return try body(self)
    }

    public var isHandshakeDone: Bool { SSL_is_init_finished(ssl) == 1 }

    private func classify(_ rc: Int32) -> TLSConnection.IOResult {
        switch SSL_get_error(ssl, rc) {
        case SSL_ERROR_WANT_READ: return .wantRead
        case SSL_ERROR_WANT_WRITE: return .wantWrite
        case SSL_ERROR_ZERO_RETURN: ERR_clear_error(); return .closed
        default: return .failed(OpenSSLErrors.drain())
        }
    }

    public func handshake() -> TLSConnection.IOResult {
        ERR_clear_error()
        let rc = SSL_do_handshake(ssl)
        return rc == 1 ? .done(0) : classify(rc)
    }

    /// One record's plaintext (type byte + payload). No `ERR_clear_error` first (it was
    /// ~2 % of the data path's CPU): every outcome that leaves entries on OpenSSL's error
    /// queue drains it (`classify`), so the queue is empty whenever a record comes.
    @inline(__always)
    public func read(_ buffer: UnsafeMutableRawPointer, _ count: Int) -> TLSConnection.IOResult {
        let rc = SSL_read(ssl, buffer, Int32(count))
        guard rc > 0 else { return classify(rc) }
        if case .pending = directWrite { startDirectWrite() }
        return .done(Int(rc))
    }

    /// One record out (into the batch).
    @inline(__always)
    public func write(_ buffer: UnsafeRawPointer, _ count: Int) -> TLSConnection.IOResult {
        if let sealer { return writeDirect(sealer, type: 23, buffer, count) }
        let rc = SSL_write(ssl, buffer, Int32(count))
        return rc > 0 ? .done(Int(rc)) : classify(rc)
    }

    @inline(__always)
    private func writeDirect(_ sealer: DTLSRecordSealer, type: UInt8, _ buffer: UnsafeRawPointer, _ count: Int) -> TLSConnection.IOResult {
        guard count <= 16384 else { return .failed("DTLS record of \(count) bytes") }
        // A datagram the batch cannot take is lost, as one the network drops.
        guard let out = batch.reserve(sealer.sealedSize(count)) else { return .done(count) }
        (out + sealer.prefix).copyMemory(from: buffer, byteCount: count)
        guard let size = sealer.seal(type: type, at: out, plaintextLength: count) else {
            return .failed("DTLS record sealing failed (sequence exhausted or cipher error)")
        }
        withUnsafePointer(to: &peer) { batch.commit(size, to: $0, length: peerLength) }
        return .done(count)
    }

    /// Retransmits a handshake flight if its timer ran out.
    public func handleTimeout() {
        ERR_clear_error()
        _ = mst_DTLSv1_handle_timeout(ssl)
        ERR_clear_error()
    }

    public func shutdown() {
        if let sealer {
            // OpenSSL's own sequence number is behind ours: its alert would look like a
            // replay to the client. close_notify is a warning-level alert (1, 0).
            let alert: [UInt8] = [1, 0]
            _ = writeDirect(sealer, type: 21, alert, alert.count)
            return
        }
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
    }

    public var cipherName: String {
        guard let c = SSL_get_current_cipher(ssl) else { return "none" }
        return String(cString: SSL_CIPHER_get_name(c))
    }

    public var protocolVersion: String { String(cString: SSL_get_version(ssl)) }
}

/// A BIO over one datagram at a time: read returns the datagram being fed (once),
/// write queues a datagram in the loop's batch. OpenSSL 3.0 has no datagram memory BIO
/// (BIO_s_dgram_mem arrived in 3.2), so this method table is written by hand.
enum DatagramBIO {
    nonisolated(unsafe) static let method: OpaquePointer = {
        let m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "mstunnel-datagram")!
        BIO_meth_set_read(m) { bio, out, outLength in
            guard let bio, let out, let raw = BIO_get_data(bio) else { return -1 }
            let conn = Unmanaged<DTLSConnection>.fromOpaque(raw).takeUnretainedValue()
            mst_BIO_clear_retry_flags(bio)
            guard let input = conn.input else {
                mst_BIO_set_retry_read(bio)
                return -1
            }
            conn.input = nil
            // A datagram larger than OpenSSL's buffer is truncated, as recvfrom would.
            let n = min(input.count, Int(outLength))
            if n > 0 { memcpy(out, input.baseAddress!, n) }
            return Int32(n)
        }
        BIO_meth_set_write(m) { bio, data, length in
            guard let bio, let data, length >= 0, let raw = BIO_get_data(bio) else { return -1 }
            let conn = Unmanaged<DTLSConnection>.fromOpaque(raw).takeUnretainedValue()
            mst_BIO_clear_retry_flags(bio)
            if conn.suppressedAfterSealing(data, Int(length)) { return length }
            conn.noteWritten(data, Int(length))
            withUnsafePointer(to: &conn.peer) { peer in
                _ = conn.batch.append(data, Int(length), to: peer, length: conn.peerLength)
            }
            // A datagram the batch could not take is lost, exactly like one the network
            // drops; DTLS and the tunnelled protocols cope.
            return length
        }
        BIO_meth_set_ctrl(m) { bio, cmd, _, _ in
            switch cmd {
            case BIO_CTRL_FLUSH: return 1
            case BIO_CTRL_DGRAM_GET_MTU_OVERHEAD:
                guard let bio, let raw = BIO_get_data(bio) else { return 28 }
                let conn = Unmanaged<DTLSConnection>.fromOpaque(raw).takeUnretainedValue()
                return conn.peer.ss_family == sa_family_t(AF_INET6) && !DatagramBIO.isMappedV4(conn.peer) ? 48 : 28
            case BIO_CTRL_DGRAM_QUERY_MTU, BIO_CTRL_DGRAM_GET_FALLBACK_MTU: return 0
            case BIO_CTRL_DGRAM_SET_NEXT_TIMEOUT, BIO_CTRL_DGRAM_MTU_EXCEEDED: return 0
            case BIO_CTRL_WPENDING, BIO_CTRL_PENDING: return 0
            default: return 0
            }
        }
        BIO_meth_set_create(m) { bio in
            BIO_set_init(bio, 1)
            return 1
        }
        BIO_meth_set_destroy(m) { bio in
            guard let bio else { return 0 }
            BIO_set_data(bio, nil)
            return 1
        }
        return m
    }()

    static func isMappedV4(_ ss: sockaddr_storage) -> Bool {
        var copy = ss
        return withUnsafePointer(to: &copy) {
            $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { p in
                withUnsafeBytes(of: p.pointee.sin6_addr) { b in
                    b[0..<10].allSatisfy { $0 == 0 } && b[10] == 0xFF && b[11] == 0xFF
                }
            }
        }
    }
}
