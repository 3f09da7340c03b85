import GatewayCore
import GatewayTLS

/// One client TCP connection: TLS handshake, then HTTP login requests, then (after a
/// CONNECT) the CSTP tunnel of one session.
final class ClientConnection {
    /// Where the connection is; the tunnel state carries its session, so "in the tunnel"
    /// and "has a session" cannot disagree.
    enum State {
        case handshake
        case http
        /// A request waits for mstunnel-auth; its id is in the auth channel's table.
        case waitingAuth
        case tunnel(Session)
        case closed
    }

    /// The state without its data, for comparisons.
    enum Phase: Equatable {
        case handshake, http, waitingAuth, tunnel, closed
    }

    let slot: Int32
    let generation: UInt32
    let fd: Int32
    let tls: TLSConnection
    let peer: String
    let acceptedAt: Int64
    var state: State = .handshake
    var parser = HTTPRequestParser()
    var lastReceive: Int64
    /// Bytes of a CSTP frame split across TLS records (rare: openconnect sends one frame
    /// per record). Empty, and unallocated, in the common case.
    var partial: [UInt8] = []
    var userAgent: String?
    var writeBlocked = false
    var inDirtyList = false
    var inReadAgainList = false
    var closeAfterFlush = false

    init(slot: Int32, generation: UInt32, fd: Int32, tls: TLSConnection, peer: String, now: Int64) {
        self.slot = slot
        self.generation = generation
        self.fd = fd
        self.tls = tls
        self.peer = peer
        acceptedAt = now
        lastReceive = now
    }

    var token: UInt64 { Token.make(.client, slot: slot, generation: generation) }

    @inline(__always)
    var phase: Phase {
        switch state {
        case .handshake: return .handshake
        case .http: return .http
        case .waitingAuth: return .waitingAuth
        case .tunnel: return .tunnel
        case .closed: return .closed
        }
    }

    /// The session this connection carries (only in the tunnel).
    var session: Session? {
        if case .tunnel(let s) = state { return s }
        return nil
    }
}
