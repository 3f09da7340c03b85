import GatewayCore

/// What one CSTP frame from a connected client means (docs/openconnect-protocol.md). Pure
/// and inlinable: it runs for every packet a client sends over TLS.
public enum TunnelFrame {
    public enum Step: Equatable {
        /// A packet for the network: check its source (`SourceCheck`), then the TUN.
        case forward
        /// DPD request: answer with a DPD response carrying the same payload (ocserv does,
        /// and openconnect's MTU probe needs the payload back).
        case answerDPD
        /// DPD response, keepalive: the traffic itself is what matters (`lastReceive`).
        case nothing
        /// DISCONNECT with the logoff reason: end the session now, with the client's words.
        case logoff(reason: String)
        /// Any other DISCONNECT: close this connection, keep the session for the
        /// reconnect window.
        case detach
        /// A compressed frame: never offered, so a client bug; drop and count it.
        case dropUnsupported
        /// TERMINATE or an unknown type: the stream cannot be trusted; close it.
        case close(reason: String)
    }

    @inlinable
    public static func step(type: UInt8, payload: UnsafeRawBufferPointer) -> Step {
        switch CSTP.PacketType(rawValue: type) {
        case .data: return .forward
        case .dpdRequest: return .answerDPD
        case .dpdResponse, .keepalive: return .nothing
        case .disconnect:
            guard payload.first == CSTP.logoffReason else { return .detach }
            return .logoff(reason: logoffText(payload))
        case .compressed: return .dropUnsupported
        case .terminate, .none: return .close(reason: "unexpected CSTP frame type \(type)")
        }
    }

    /// The client's logoff words: printable ASCII only, at most 128 bytes, so nothing it
    /// sends can forge a log line.
    public static func logoffText(_ payload: UnsafeRawBufferPointer) -> String {
        String(decoding: payload.dropFirst().prefix(128).filter { $0 >= 0x20 && $0 < 0x7F }, as: UTF8.self)
    }
}

/// Whether a packet from a client may enter the network: IPv4 from the session's own
/// address, or IPv6 from its own IPv6 address when it has one (a client can spoof neither
/// another client nor an internal host).
public enum SourceCheck {
    public enum Verdict: Equatable {
        case pass
        /// IPv6 from a session without an IPv6 address, or from a link-local or unspecified
        /// source (the client's own neighbour discovery and MLD, never to be routed):
        /// dropped, and not counted as spoofing.
        case unsupported
        /// Not an IP packet: shorter than its header, a version other than 4 or 6, or a
        /// header whose lengths the packet contradicts (IPv4: header length under 20 bytes,
        /// total length under the header or past the packet's end; IPv6: payload length
        /// past the packet's end).
        case malformed
        /// The source address is not the session's.
        case spoofed
    }

    @inlinable
    public static func verdict(_ packet: UnsafeRawBufferPointer, sessionAddress: IPv4Address,
                               sessionAddress6: IPv6Address? = nil) -> Verdict {
        guard packet.count >= 20 else { return .malformed }
        let first = packet[0]
        if first >> 4 == 6 { return verdict6(packet, sessionAddress6) }
        guard first >> 4 == 4 else { return .malformed }
        let headerLength = Int(first & 0x0F) << 2
        let totalLength = Int(packet[2]) << 8 | Int(packet[3])
        guard headerLength >= 20, totalLength >= headerLength, totalLength <= packet.count else { return .malformed }
        return IPv4Address.read(packet, at: 12) == sessionAddress ? .pass : .spoofed
    }

    @inlinable
    static func verdict6(_ packet: UnsafeRawBufferPointer, _ mine: IPv6Address?) -> Verdict {
        guard packet.count >= 40 else { return .malformed }
        let payloadLength = Int(packet[4]) << 8 | Int(packet[5])
        // A jumbogram (payload length 0, RFC 2675) cannot fit a tunnel's MTU.
        guard payloadLength > 0 || packet.count == 40, 40 + payloadLength <= packet.count else { return .malformed }
        guard let mine else { return .unsupported }
        let source = IPv6Leases.read(packet, at: 8)
        if source == mine { return .pass }
        // fe80::/10 (link-local) and :: (duplicate address detection, MLD before an address).
        if source.high >> 54 == 0x3FA || (source.high == 0 && source.low == 0) { return .unsupported }
        return .spoofed
    }
}
