import COpenSSL
import GatewayUDP
import Glibc
import Testing
@testable import GatewayTLS

/// The gateway's own DTLS record sealing against a real OpenSSL DTLS 1.2 PSK client in
/// memory: the client must decrypt every sealed record, in sequence after the ones
/// OpenSSL wrote itself, and reject a tampered one.
@Suite struct DTLSRecordSealerTests {
    static let psk: [UInt8] = (0..<32).map { UInt8($0 &* 7 &+ 3) }

    /// One DTLS client over memory BIOs: what it writes is read from `wbio`, what it
    /// should receive is written to `rbio`, a datagram at a time.
    final class Client {
        let ctx: OpaquePointer
        let ssl: OpaquePointer
        let rbio: OpaquePointer
        let wbio: OpaquePointer

        init(cipher: String) throws {
            ctx = SSL_CTX_new(DTLS_client_method())!
            guard SSL_CTX_set_cipher_list(ctx, cipher) == 1 else { throw TLSError("cipher \(cipher)") }
            SSL_CTX_set_psk_client_callback(ctx) { _, _, identity, maxIdentity, psk, maxPSK in
                guard let identity, let psk, maxIdentity > 4, maxPSK >= 32 else { return 0 }
                _ = "psk".withCString { strcpy(identity, $0) }
                for (i, b) in DTLSRecordSealerTests.psk.enumerated() { psk[i] = b }
                return UInt32(DTLSRecordSealerTests.psk.count)
            }
            ssl = SSL_new(ctx)!
            rbio = BIO_new(BIO_s_mem())!
            wbio = BIO_new(BIO_s_mem())!
            // An empty read BIO means "try again", not end of stream.
            _ = BIO_ctrl(rbio, BIO_C_SET_BUF_MEM_EOF_RETURN, -1, nil)
            SSL_set_bio(ssl, rbio, wbio)
            SSL_set_options(ssl, MST_SSL_OP_NO_QUERY_MTU)
            _ = mst_DTLS_set_link_mtu(ssl, 1500)
            SSL_set_connect_state(ssl)
        }

        deinit {
            SSL_free(ssl)
            SSL_CTX_free(ctx)
        }

        /// Everything the client wrote since the last call.
        func takeOutput() -> [UInt8] {
            var out: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = BIO_read(wbio, &chunk, Int32(chunk.count))
                if n <= 0 { return out }
                out += chunk[0..<Int(n)]
            }
        }

        func deliver(_ datagram: UnsafeRawBufferPointer) {
            _ = BIO_write(rbio, datagram.baseAddress, Int32(datagram.count))
        }

        /// One record's plaintext, or nil (nothing valid to read).
        func read() -> [UInt8]? {
            var buf = [UInt8](repeating: 0, count: 20000)
            let n = SSL_read(ssl, &buf, Int32(buf.count))
            ERR_clear_error()
            return n > 0 ? Array(buf[0..<Int(n)]) : nil
        }
    }

    struct Pair {
        let server: DTLSConnection
        let batch: DatagramBatch
        let client: Client
        let context: DTLSServerContext

        /// Server datagrams queued so far, then emptied.
        func takeServerOutput() -> [[UInt8]] {
            var out: [[UInt8]] = []
            batch.forEachQueued { out.append(Array($0)) }
            batch.discardQueued()
            return out
        }

        /// Handing the client's output to the server once.
        func clientToServer<R>(_ body: (DTLSConnection) -> R) -> R? {
            let bytes = client.takeOutput()
            guard !bytes.isEmpty else { return nil }
            return bytes.withUnsafeBytes { server.receive($0, body) }
        }
    }

    func connect(cipher: String, direct: Bool = true) throws -> Pair {
        let context = try DTLSServerContext(directRecords: direct)
        let batch = DatagramBatch()
        var peer = sockaddr_storage()
        peer.ss_family = sa_family_t(AF_INET)
        let server = try context.makeConnection(psk: Self.psk, peer: peer, peerLength: UInt32(MemoryLayout<sockaddr_in>.size),
                                                linkMTU: 1500, batch: batch)
        let pair = Pair(server: server, batch: batch, client: try Client(cipher: cipher), context: context)
        for _ in 0..<20 {
            _ = SSL_do_handshake(pair.client.ssl)
            ERR_clear_error()
            _ = pair.clientToServer { server in
                if !server.isHandshakeDone { _ = server.handshake() }
            }
            for d in pair.takeServerOutput() { d.withUnsafeBytes { pair.client.deliver($0) } }
            if server.isHandshakeDone, SSL_is_init_finished(pair.client.ssl) == 1 { break }
        }
        return pair
    }

    @Test(arguments: ["PSK-AES256-GCM-SHA384", "PSK-AES128-GCM-SHA256", "PSK-CHACHA20-POLY1305"])
    func clientDecryptsSealedRecordsInSequence(cipher: String) throws {
        let pair = try connect(cipher: cipher)
        #expect(pair.server.isHandshakeDone)
        #expect(SSL_is_init_finished(pair.client.ssl) == 1)
        #expect(pair.server.cipherName == cipher)

        // Before the client has sent anything, records still go through SSL_write.
        #expect(!pair.server.sealsDirectly)
        var first: [UInt8] = [0x00] + Array("through libssl".utf8)
        #expect(pair.server.write(&first, first.count) == .done(first.count))
        let viaLibssl = pair.takeServerOutput()
        try #require(viaLibssl.count == 1)
        viaLibssl[0].withUnsafeBytes { pair.client.deliver($0) }
        #expect(pair.client.read() == first)

        // The client's first record switches the server to sealing records itself.
        var hello: [UInt8] = [0x03]
        #expect(SSL_write(pair.client.ssl, &hello, 1) == 1)
        var buf = [UInt8](repeating: 0, count: 2048)
        #expect(pair.clientToServer { $0.read(&buf, buf.count) } == .done(1))
        #expect(pair.server.sealsDirectly)
        #expect(pair.server.directWriteUnavailable == nil)

        // Anything OpenSSL itself would still encrypt now (a retransmitted Finished, an
        // alert) must not leave: it would reuse the sealer's sequence numbers (and, with
        // ChaCha20-Poly1305, a nonce).
        var stray: [UInt8] = [0x00, 0xEE]
        #expect(SSL_write(pair.server.ssl, &stray, 2) == 2)
        ERR_clear_error()
        #expect(pair.takeServerOutput().isEmpty)

        let gcm = cipher.contains("GCM")
        // The sealer continues right after OpenSSL's last record.
        var expectedSequence: UInt64? = viaLibssl[0][5..<11].reduce(UInt64(0)) { $0 << 8 | UInt64($1) } + 1
        for i in 0..<300 {
            let n = [1, 2, 15, 16, 17, 100, 1400, 1435][i % 8]
            var record = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i) }
            #expect(pair.server.write(&record, n) == .done(n))
            let out = pair.takeServerOutput()
            try #require(out.count == 1)
            #expect(out[0].count == 13 + (gcm ? 8 : 0) + n + 16, "record size for \(n) bytes")
            #expect(Array(out[0][0..<3]) == [23, 0xFE, 0xFD])
            // Consecutive sequence numbers, no gaps (epoch 1).
            let es = out[0][3..<11].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            #expect(es >> 48 == 1)
            if let e = expectedSequence { #expect(es & 0xFFFF_FFFF_FFFF == e) }
            expectedSequence = (es & 0xFFFF_FFFF_FFFF) + 1
            out[0].withUnsafeBytes { pair.client.deliver($0) }
            #expect(pair.client.read() == record, "record \(i) of \(n) bytes")
        }

        // A tampered record does not authenticate: the client drops it and reads on.
        var secret: [UInt8] = [0x00, 1, 2, 3, 4]
        _ = pair.server.write(&secret, secret.count)
        var tampered = pair.takeServerOutput()[0]
        tampered[tampered.count - 20] ^= 0x01
        tampered.withUnsafeBytes { pair.client.deliver($0) }
        #expect(pair.client.read() == nil)
        var after: [UInt8] = [0x00, 9, 9]
        _ = pair.server.write(&after, after.count)
        for d in pair.takeServerOutput() { d.withUnsafeBytes { pair.client.deliver($0) } }
        #expect(pair.client.read() == after)

        // Replaying an old record is refused too (the sequence numbers are real).
        var once: [UInt8] = [0x00, 7]
        _ = pair.server.write(&once, once.count)
        let sealed = pair.takeServerOutput()[0]
        sealed.withUnsafeBytes { pair.client.deliver($0) }
        #expect(pair.client.read() == once)
        sealed.withUnsafeBytes { pair.client.deliver($0) }
        #expect(pair.client.read() == nil)

        // close_notify, sealed in sequence, ends the client's side cleanly.
        pair.server.shutdown()
        for d in pair.takeServerOutput() { d.withUnsafeBytes { pair.client.deliver($0) } }
        var sink = [UInt8](repeating: 0, count: 64)
        #expect(SSL_read(pair.client.ssl, &sink, 64) == 0)
        #expect(SSL_get_error(pair.client.ssl, 0) == SSL_ERROR_ZERO_RETURN)
        ERR_clear_error()
    }

    @Test func turnedOffKeepsLibssl() throws {
        let pair = try connect(cipher: "PSK-AES256-GCM-SHA384", direct: false)
        var hello: [UInt8] = [0x03]
        #expect(SSL_write(pair.client.ssl, &hello, 1) == 1)
        var buf = [UInt8](repeating: 0, count: 2048)
        #expect(pair.clientToServer { $0.read(&buf, buf.count) } == .done(1))
        #expect(!pair.server.sealsDirectly)
        var record: [UInt8] = [0x00, 1, 2, 3]
        #expect(pair.server.write(&record, record.count) == .done(4))
        for d in pair.takeServerOutput() { d.withUnsafeBytes { pair.client.deliver($0) } }
        #expect(pair.client.read() == record)
    }
}
