/// Where a UDP datagram goes: every session's DTLS shares the gateway's one UDP socket, so
/// a datagram is matched by its source address, or — from an address no channel is bound
/// to — by the session id its ClientHello carries (the `X-DTLS-App-ID` of the CONNECT).
/// The second path is also roaming: the client's new address takes over the session's DTLS.
public enum DatagramRoute {
    /// Where a datagram goes, by what its source address has: an established channel
    /// (`bound`), a handshake in progress (`handshake`), or neither.
    public enum Target: Equatable, Sendable {
        /// The channel established at this address.
        case bound
        /// The handshake in progress at this address.
        case handshake
        /// A ClientHello that starts a new handshake here (if `newChannel` allows it).
        case newHandshake
        /// Nothing here takes it.
        case unknown
    }

    /// A new handshake never replaces an established channel; it runs beside it until it
    /// finishes. So a ClientHello replayed by someone who saw it costs the session nothing
    /// (that handshake cannot finish without the key), while a client that really restarted
    /// DTLS (after its DPD timed out, or from a new address) gets its new channel when its
    /// handshake completes. Application data goes to the established channel; handshake
    /// records go to the handshake. A ClientHello with the random of the handshake in
    /// progress at this address is that handshake's own (a retransmission, or the second
    /// hello after a HelloVerifyRequest); any other ClientHello starts over.
    /// - Parameters:
    ///   - isApplicationData: the first record's content type is 23.
    ///   - sameHello: nil if the datagram is not a ClientHello; otherwise whether its random
    ///     is that of the handshake in progress at this address (false when there is none).
    @inlinable
    public static func target(bound: Bool, handshake: Bool, isApplicationData: Bool, sameHello: () -> Bool?) -> Target {
        if isApplicationData { return bound ? .bound : handshake ? .handshake : .unknown }
        if let same = sameHello() { return same ? .handshake : .newHandshake }
        return handshake ? .handshake : bound ? .bound : .unknown
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
        /// Start a DTLS handshake for this session from the datagram's address (the channel
        /// it has stays until the handshake completes).
        case handshake(Session)
        case drop(reason: String)
    }

    /// A ClientHello (`.newHandshake`), or a datagram nothing at its address takes
    /// (`.unknown`, `helloSessionID` nil).
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
