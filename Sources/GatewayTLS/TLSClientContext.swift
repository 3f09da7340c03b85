internal import COpenSSL

/// A TLS client context for test and benchmark tools (mst-loadgen): TLS 1.3 with 1.2
/// fallback, like the stock client. The server certificate is not verified against a
/// CA — lab gateways use self-signed certificates — but the caller can compare the
/// peer's `pin-sha256:` (see `TLSConnection.peerPublicKeyPin`) as `openconnect
/// --servercert` does.
public final class TLSClientContext: @unchecked Sendable {
    // @unchecked: the SSL_CTX is fully configured in init and never changed afterwards;
    // OpenSSL locks the reference counts SSL_new touches, so sharing it is safe.
    let ctx: OpaquePointer

    /// `maxVersion12` caps the protocol at TLS 1.2 (to measure the 1.2 handshake cost).
    public init(maxVersion12: Bool = false) throws {
        _ = mst_OPENSSL_init_ssl()
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(TLS_client_method()) else { throw TLSError.drain("SSL_CTX_new") }
        self.ctx = ctx
        _ = mst_SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)
        if maxVersion12 { _ = mst_SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION) }
        // No chain verification: pinning, when asked for, is done after the handshake.
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nil)
        SSL_CTX_set_options(ctx, MST_SSL_OP_NO_RENEGOTIATION | MST_SSL_OP_NO_COMPRESSION)
        // Each connection is new (a load generator measures full handshakes), so
        // nothing is cached; tickets the server sends are read and dropped.
        _ = mst_SSL_CTX_set_session_cache_mode(ctx, MST_SSL_SESS_CACHE_OFF)
        // As on the server side: one SSL_write is one record (one CSTP frame), and
        // idle connections give their read/write buffers back (thousands of them).
        _ = mst_SSL_CTX_set_mode(ctx, MST_SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | MST_SSL_MODE_RELEASE_BUFFERS)
    }

    deinit { SSL_CTX_free(ctx) }

    /// A new client-side connection on a connected (or connecting), non-blocking socket.
    /// Reads come straight from the socket; writes go to `output`, which the caller
    /// flushes. `serverName` is sent as SNI; leave it nil for an IP literal (as
    /// openconnect does).
    public func makeConnection(fd: Int32, output: OutboundBuffer, serverName: String? = nil) throws -> TLSConnection {
        try makeConnection(reading: .socket(fd), output: output, serverName: serverName)
    }

    /// A client-side connection over memory: it reads what the caller puts in `input`.
    public func makeConnection(input: InboundBuffer, output: OutboundBuffer, serverName: String? = nil) throws -> TLSConnection {
        try makeConnection(reading: .buffer(input), output: output, serverName: serverName)
    }

    private func makeConnection(reading source: TLSConnection.Source, output: OutboundBuffer, serverName: String?) throws -> TLSConnection {
        ERR_clear_error()
        guard let ssl = SSL_new(ctx) else { throw TLSError.drain("SSL_new") }
        if let serverName {
            // SSL_set_tlsext_host_name is a macro over SSL_ctrl; the SSL copies the name.
            let rc = serverName.withCString { name in
                SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, Int(TLSEXT_NAMETYPE_host_name), UnsafeMutableRawPointer(mutating: name))
            }
            guard rc == 1 else {
                SSL_free(ssl)
                throw TLSError.drain("SNI \(serverName)")
            }
        }
        try TLSConnection.attach(ssl, reading: source, output: output)
        SSL_set_connect_state(ssl)
        let input: InboundBuffer? = if case .buffer(let b) = source { b } else { nil }
        return TLSConnection(ssl: ssl, input: input, output: output)
    }
}

extension TLSConnection {
    /// `pin-sha256:` of the peer's leaf public key (what `openconnect --servercert`
    /// compares), or nil before the handshake or without a peer certificate.
    public var peerPublicKeyPin: String? {
        guard let x = SSL_get1_peer_certificate(ssl) else { return nil }
        defer { X509_free(x) }
        return TLSServerContext.pin(of: x)
    }
}
