/// Where a UDP datagram goes: every session's DTLS shares the gateway's one UDP socket, so
/// a datagram is matched by its source address, or — from an address no channel is bound
/// to — by the session id its ClientHello carries (the `X-DTLS-App-ID` of the CONNECT).
/// The second path is also roaming: the client's new address takes over the session's DTLS.
public enum DatagramRoute {
    /// A datagram from the address a session's channel is bound to: feed that channel,
    /// unless the channel is up and this is a fresh ClientHello — the client restarting
    /// DTLS (after its DPD timed out, say), which starts over as a new channel.
    @inlinable
    public static func feedsBoundChannel(established: Bool, isClientHello: @autoclosure () -> Bool) -> Bool {
        !(established && isClientHello())
    }

    /// What the named session allows.
    public struct Candidate: Equatable, Sendable {
        /// A DTLS key was exported at its latest CONNECT (the client offered PSK-NEGOTIATE).
        public var hasKey: Bool
        /// Its TLS connection is up (DTLS dies with it).
        public var connected: Bool

        public init(hasKey: Bool, connected: Bool) {
            self.hasKey = hasKey
            self.connected = connected
        }
    }

    public enum NewChannel<Session> {
        /// Start a DTLS handshake for this session from the datagram's address (any
        /// channel it had, at another address, is dropped first).
        case handshake(Session)
        case drop(reason: String)
    }

    /// A datagram from an address with no bound channel.
    public static func newChannel<Key, Session>(helloSessionID: Key?, udpDisabled: Bool,
                                                          lookup: (Key) -> (Session, Candidate)?) -> NewChannel<Session> {
        guard let id = helloSessionID else { return .drop(reason: "not a ClientHello, from an address no session uses") }
        guard !udpDisabled else { return .drop(reason: "DTLS is turned off (disableUdpConnections)") }
        guard let (session, c) = lookup(id) else { return .drop(reason: "the ClientHello names no session") }
        guard c.hasKey else { return .drop(reason: "the session's client did not offer DTLS") }
        guard c.connected else { return .drop(reason: "the session has no TLS connection") }
        return .handshake(session)
    }
}

extension DatagramRoute.NewChannel: Equatable where Session: Equatable {}
