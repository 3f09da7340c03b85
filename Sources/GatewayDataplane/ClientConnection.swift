import Foundation
import GatewayCore
import GatewaySessionCore
import GatewayTLS
import GatewaySystem

/// One client TCP connection: TLS handshake, then HTTP login requests, then (after a
/// CONNECT) the CSTP tunnel of one session.
final class ClientConnection {
    /// Where the connection is. The login phase's own states (handshake, reading,
    /// waiting for auth, closing) are the conversation's; the tunnel state carries its
    /// session, so "in the tunnel" and "has a session" cannot disagree.
    enum State {
        case login
        case tunnel(Session)
        case closed
    }

    /// The state without its data, for comparisons and timeouts.
    enum Phase: Equatable {
        case handshake, http, waitingAuth, tunnel, closed
    }

    let slot: Int32
    let generation: UInt32
    let fd: Int32
    let tls: TLSConnection
    /// What `tls` reads: filled by one `recv` per wakeup (see `Gateway.readClient`).
    let input: InboundBuffer
    /// The client's address: the socket's peer, or the one a trusted proxy's PROXY header
    /// gave (`Gateway.takeProxyHeader`).
    var peer: String
    /// Accepted from a trusted proxy (`proxy-protocol-from`): its PROXY header comes before
    /// any TLS byte; `proxyHeader` keeps a header that arrived in pieces (rare).
    var proxyHeaderPending = false
    var proxyHeader: [UInt8] = []
    let acceptedAt: Int64
    var state: State = .login
    /// The login phase (GatewaySessionCore): requests, token paths, the wait for auth.
    var login = LoginConversation()
    /// What the client presented in its TLS handshake (DER, leaf first), passed to
    /// mstunnel-auth with every validation; nil if nothing.
    var clientCertificateChain: [Data]?
    /// SHA-256 of the presented leaf (lowercase hex): a session bound to a certificate
    /// attaches only to connections that present the same one.
    var clientCertificateSHA256: String?
    /// The peer's address without its port: what `SourceGuard` counts and scores.
    var source = SocketAddress.Key(high: 0, low: 0, port: 0)
    /// Counted among its source's login connections until it reaches the tunnel or closes.
    var countedAsLogin = false

    /// The TLS handshake finished: keep what certificate the client presented, and let the
    /// login begin.
    func handshakeDone() {
        let chain = tls.peerCertificateChain
        if let leaf = chain.first {
            clientCertificateChain = chain.map { Data($0) }
            clientCertificateSHA256 = GatewayCrypto.sha256(leaf).map { String(format: "%02x", $0) }.joined()
        }
        login.handshakeDone(clientCertificate: !chain.isEmpty)
    }
    var lastReceive: Int64
    /// Bytes of a CSTP frame split across TLS records (rare: openconnect sends one frame
    /// per record). Empty, and unallocated, in the common case.
    var partial: [UInt8] = []
    var writeBlocked = false
    var inDirtyList = false
    var inReadAgainList = false

    init(slot: Int32, generation: UInt32, fd: Int32, tls: TLSConnection, input: InboundBuffer, peer: String, now: Int64) {
        self.slot = slot
        self.generation = generation
        self.fd = fd
        self.tls = tls
        self.input = input
        self.peer = peer
        acceptedAt = now
        lastReceive = now
    }

    var token: UInt64 { Token.make(.client, slot: slot, generation: generation) }

    @inline(__always)
    var phase: Phase {
        switch state {
        case .tunnel: return .tunnel
        case .closed: return .closed
        case .login:
            switch login.state {
            case .handshake: return .handshake
            case .awaitingAuth, .awaitingTicket, .awaitingSession: return .waitingAuth
            case .reading, .closing, .tunnel: return .http
            }
        }
    }

    /// A final response is queued: close once it is sent.
    var closesAfterFlush: Bool {
        if case .login = state { return login.state == .closing }
        return false
    }

    /// The session this connection carries (only in the tunnel).
    var session: Session? {
        if case .tunnel(let s) = state { return s }
        return nil
    }
}
