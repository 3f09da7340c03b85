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

/// Whether a packet from a client may enter the network: IPv4, and from the session's own
/// address (a client can spoof neither another client nor an internal host).
public enum SourceCheck {
    public enum Verdict: Equatable {
        case pass
        /// An IPv6 packet (not routed yet).
        case unsupported
        /// Not an IP packet: shorter than its header, a version other than 4 or 6, or an
        /// IPv4 header whose lengths the packet contradicts (header length under 20 bytes,
        /// total length under the header or past the packet's end).
        case malformed
        /// The source address is not the session's.
        case spoofed
    }

    @inlinable
    public static func verdict(_ packet: UnsafeRawBufferPointer, sessionAddress: IPv4Address) -> Verdict {
        guard packet.count >= 20 else { return .malformed }
        let first = packet[0]
        guard first >> 4 == 4 else { return first >> 4 == 6 && packet.count >= 40 ? .unsupported : .malformed }
        let headerLength = Int(first & 0x0F) << 2
        let totalLength = Int(packet[2]) << 8 | Int(packet[3])
        guard headerLength >= 20, totalLength >= headerLength, totalLength <= packet.count else { return .malformed }
        return IPv4Address.read(packet, at: 12) == sessionAddress ? .pass : .spoofed
    }
}
