internal import COpenSSL
import Foundation

/// The gateway's TLS server context: TLS 1.3 with 1.2 fallback, the site certificate
/// chain and key, no renegotiation. One per process, shared by every connection.
public final class TLSServerContext: @unchecked Sendable {
    // @unchecked: SSL_CTX is internally locked by OpenSSL for the operations we use
    // after setup (SSL_new); it is never reconfigured once built.
    let ctx: OpaquePointer

    /// Loads `certs/site.crt` (PEM, leaf first) + `private/site.key`, or a PKCS#12 file.
    public init(certificate: CertificateSource) throws {
        _ = mst_OPENSSL_init_ssl()
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(TLS_server_method()) else { throw TLSError.drain("SSL_CTX_new") }
        self.ctx = ctx
        _ = mst_SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)
        // AEAD suites only for TLS 1.2; ECDSA and RSA keys both work.
        SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL")
        SSL_CTX_set_options(ctx, MST_SSL_OP_NO_RENEGOTIATION | MST_SSL_OP_CIPHER_SERVER_PREFERENCE | MST_SSL_OP_NO_COMPRESSION)
        // Partial writes stay off: one SSL_write is one CSTP frame is one TLS record.
        // Moving buffers are allowed so a retried write may come from a copy.
        // No SSL_MODE_RELEASE_BUFFERS: with read-ahead off the read buffer would be freed
        // and allocated again around every record. The gateway gives an idle connection's
        // buffers back itself (`TLSConnection.releaseIdleBuffers`, from its 1 s timer).
        _ = mst_SSL_CTX_set_mode(ctx, MST_SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER)
        // Read-ahead stays off: one recv per wakeup takes in every record that has arrived
        // anyway (into the loop's area, `InboundBuffer`), and libssl then asks for
        // exactly one record at a time, so it never moves buffered bytes around.
        switch certificate {
        case .pem(let chainPath, let keyPath):
            guard SSL_CTX_use_certificate_chain_file(ctx, chainPath) == 1 else {
                throw TLSError.drain("cannot load certificate chain \(chainPath)")
            }
            guard SSL_CTX_use_PrivateKey_file(ctx, keyPath, SSL_FILETYPE_PEM) == 1 else {
                let detail = OpenSSLErrors.drain()
                if detail.contains("mismatch") {
                    throw TLSError("the private key \(keyPath) does not match the certificate \(chainPath)")
                }
                throw TLSError("cannot load private key \(keyPath) (it must be unencrypted PEM): \(detail)")
            }
        case .pkcs12(let path, let password):
            try Self.loadPKCS12(ctx: ctx, path: path, password: password)
        }
        guard SSL_CTX_check_private_key(ctx) == 1 else {
            throw TLSError.drain("the private key does not match the certificate")
        }
    }

    deinit { SSL_CTX_free(ctx) }

    /// Sends a CertificateRequest in every handshake and accepts whatever the client
    /// presents, or nothing. libssl still checks the client's CertificateVerify (it holds the
    /// leaf's private key); whether the chain is trusted, revoked, and whose it is, is
    /// mstunnel-auth's decision, which holds the CAs and CRLs (the gateway holds no secret
    /// and no trust policy). Call once, before the first connection.
    public func requestClientCertificates() {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, { _, _ in 1 })
        // Resumed sessions keep the peer's certificate; OpenSSL requires a session id
        // context once peer verification is on, or refuses to resume.
        let context = Array("mstunnel-server".utf8)
        _ = SSL_CTX_set_session_id_context(ctx, context, UInt32(context.count))
    }

    public enum CertificateSource: Sendable {
        case pem(chain: String, key: String)
        case pkcs12(path: String, password: String)
    }

    private static func loadPKCS12(ctx: OpaquePointer, path: String, password: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else { throw TLSError("cannot read \(path)") }
        let p12: OpaquePointer? = data.withUnsafeBytes { raw in
            var p = raw.baseAddress?.assumingMemoryBound(to: UInt8.self)
            return d2i_PKCS12(nil, &p, raw.count)
        }
        guard let p12 else { throw TLSError.drain("\(path) is not a PKCS#12 file") }
        defer { PKCS12_free(p12) }
        var key: OpaquePointer?
        var cert: OpaquePointer?
        var ca: OpaquePointer?
        guard PKCS12_parse(p12, password, &key, &cert, &ca) == 1, let key, let cert else {
            throw TLSError.drain("cannot open \(path) (wrong password?)")
        }
        defer {
            EVP_PKEY_free(key)
            X509_free(cert)
        }
        guard SSL_CTX_use_certificate(ctx, cert) == 1, SSL_CTX_use_PrivateKey(ctx, key) == 1 else {
            throw TLSError.drain("cannot use the certificate in \(path)")
        }
        if let ca {
            // The context takes ownership of each extra chain certificate; the stack
            // itself is freed without freeing them.
            for i in 0..<mst_sk_X509_num(ca) {
                if let x = mst_sk_X509_value(ca, i), X509_up_ref(x) == 1 {
                    _ = mst_SSL_CTX_add_extra_chain_cert(ctx, x)
                }
            }
            mst_sk_X509_pop_free(ca)
        }
    }

    /// `pin-sha256:` of the leaf's public key, as `openconnect --servercert` takes it.
    public var publicKeyPin: String? {
        guard let ssl = SSL_new(ctx) else { return nil }
        defer { SSL_free(ssl) }
        guard let x = SSL_get_certificate(ssl) else { return nil }
        return Self.pin(of: x)
    }

    /// Seconds since 1970 when the leaf certificate expires.
    public var leafNotAfter: Int64? {
        guard let ssl = SSL_new(ctx) else { return nil }
        defer { SSL_free(ssl) }
        guard let x = SSL_get_certificate(ssl), let t = X509_get0_notAfter(x) else { return nil }
        var tmv = tm()
        guard ASN1_TIME_to_tm(t, &tmv) == 1 else { return nil }
        return Int64(timegm(&tmv))
    }

    static func pin(of x: OpaquePointer) -> String? {
        guard let pub = X509_get_X509_PUBKEY(x) else { return nil }
        var der: UnsafeMutablePointer<UInt8>?
        let len = i2d_X509_PUBKEY(pub, &der)
        guard len > 0, let der else { return nil }
        defer { CRYPTO_free(der, #fileID, #line) }
        var digest = [UInt8](repeating: 0, count: 32)
        guard EVP_Digest(der, Int(len), &digest, nil, EVP_sha256(), nil) == 1 else { return nil }
        return "pin-sha256:" + Data(digest).base64EncodedString()
    }

    /// A new server-side connection that reads what its owner puts in `input` (one `recv`
    /// per wakeup into the loop's area, or bytes in a test) and writes into `output`,
    /// which the owner flushes, so a batch of records leaves in one `send`.
    public func makeConnection(input: InboundBuffer, output: OutboundBuffer) throws -> TLSConnection {
        ERR_clear_error()
        guard let ssl = SSL_new(ctx) else { throw TLSError.drain("SSL_new") }
        try TLSConnection.attach(ssl, reading: .buffer(input), output: output)
        SSL_set_accept_state(ssl)
        return TLSConnection(ssl: ssl, input: input, output: output)
    }
}
