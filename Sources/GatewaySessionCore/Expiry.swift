import GatewayCore

/// The clocks of connections and sessions, as pure functions of monotonic seconds: the
/// 1 s timer asks each connection and session whether it is over, and why.
public enum Expiry {
    public struct Timeouts: Equatable, Sendable {
        /// From accept to a finished login (TLS handshake, HTTP, waiting for auth), and
        /// from a login to its first CONNECT.
        public var auth: Int64
        /// A tunnel connection or DTLS channel with no traffic for this long is dead
        /// (3 × DPD: the client probes every DPD seconds).
        public var deadPeer: Int64
        /// How long a session without a connection waits for its client to come back.
        public var reconnect: Int64
        /// No tunnel traffic for this long ends the session (0: never).
        public var idle: Int64
        /// From accept to the end of the TLS handshake (a client that connects and says
        /// nothing holds a socket this long, not `auth`).
        public var handshake: Int64

        public init(auth: Int64, deadPeer: Int64, reconnect: Int64, idle: Int64, handshake: Int64 = 10) {
            self.auth = auth
            self.deadPeer = deadPeer
            self.reconnect = reconnect
            self.idle = idle
            self.handshake = min(handshake, auth)
        }

        public init(_ a: GatewaySettings.Advanced) {
            self.init(auth: Int64(a.authTimeout), deadPeer: Int64(3 * a.dpd), reconnect: Int64(a.reconnectTimeout), idle: Int64(a.idleTimeout),
                      handshake: Int64(a.handshakeTimeout))
        }
    }

    public enum Stage: Equatable, Sendable {
        /// The TLS handshake.
        case handshake
        /// HTTP, or waiting for auth.
        case login
        case tunnel
    }

    /// Why a connection must close now, or nil.
    public static func connection(stage: Stage, acceptedAt: Int64, lastReceive: Int64, now: Int64, _ t: Timeouts) -> String? {
        switch stage {
        case .handshake: return now - acceptedAt > t.handshake ? "TLS handshake not finished in \(t.handshake) s" : nil
        case .login: return now - acceptedAt > t.auth ? "login timeout" : nil
        case .tunnel: return now - lastReceive > t.deadPeer ? "dead peer (no traffic for \(t.deadPeer) s)" : nil
        }
    }

    /// A session's times (monotonic seconds; `deadline` 0 = no session-timeout).
    public struct SessionTimes: Equatable, Sendable {
        public var deadline: Int64
        public var connected: Bool
        public var everConnected: Bool
        /// When the last connection went away (or the login, before the first CONNECT).
        public var detachedAt: Int64
        public var lastTraffic: Int64

        public init(deadline: Int64, connected: Bool, everConnected: Bool, detachedAt: Int64, lastTraffic: Int64) {
            self.deadline = deadline
            self.connected = connected
            self.everConnected = everConnected
            self.detachedAt = detachedAt
            self.lastTraffic = lastTraffic
        }
    }

    /// Why a session must end now, or nil. The first that applies, in this order.
    public static func session(_ s: SessionTimes, now: Int64, _ t: Timeouts) -> String? {
        if s.deadline > 0, now >= s.deadline { return "session-timeout" }
        if !s.connected, !s.everConnected, now - s.detachedAt > t.auth { return "no CONNECT after login" }
        if !s.connected, now - s.detachedAt > t.reconnect { return "reconnect window expired" }
        if t.idle > 0, now - s.lastTraffic > t.idle { return "idle-timeout" }
        return nil
    }

    /// A CONNECT for a session past its deadline ends the session instead of attaching.
    public static func mayAttach(deadline: Int64, now: Int64) -> Bool { deadline == 0 || now < deadline }

    /// Seconds of session-timeout left, for `X-CSTP-Session-Timeout` (0: none).
    public static func remaining(deadline: Int64, now: Int64) -> Int { deadline > 0 ? Int(max(0, deadline - now)) : 0 }

    /// A DTLS channel: handshake not done in 30 s, or no traffic for `deadPeer`.
    public static let dtlsHandshakeLimit: Int64 = 30

    public enum DTLSVerdict: Equatable, Sendable {
        case keep
        /// Still handshaking: let OpenSSL retransmit if its timer ran out.
        case retransmit
        case handshakeTimedOut
        case dead(idleSeconds: Int64)
    }

    public static func dtls(established: Bool, startedAt: Int64, lastReceive: Int64, now: Int64, _ t: Timeouts) -> DTLSVerdict {
        if !established { return now - startedAt > dtlsHandshakeLimit ? .handshakeTimedOut : .retransmit }
        return now - lastReceive > t.deadPeer ? .dead(idleSeconds: now - lastReceive) : .keep
    }
}
