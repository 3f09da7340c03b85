import GatewaySessionCore
import GatewayWire
import Logging
import GatewaySystem

/// Malformed tunnel input (TLS, CSTP, DTLS, the IP packets inside): every one is counted by
/// class (`malformed`, in `mst-cli server show status`), and logged at most once a minute
/// per peer address (`malformedLog`), so a client sending garbage in a loop costs a counter
/// increment per input, not a log line. What happens to the input itself is decided where
/// it was found: a TLS connection is closed, a datagram or packet dropped; no other session
/// is touched. docs/security.md lists the classes.
extension Gateway {
    /// The address a peer is counted and throttled by: without its port, and an IPv6
    /// address by its /64 (as `SourceGuard` does).
    static func sourceKey(_ peer: SocketAddress.Key) -> SocketAddress.Key {
        SocketAddress.Key(high: peer.high, low: peer.isIPv4 ? peer.low : 0, port: 0)
    }

    /// Counts one malformed input of `kind` from `source`, and logs it unless a line for
    /// that address was written within the minute. `peer` and `detail` are only evaluated
    /// for the lines written.
    @inline(never)
    func malformedInput(_ kind: MalformedInput, source: SocketAddress.Key, peer: @autoclosure () -> String,
                        detail: @autoclosure () -> String = "", session: Session? = nil) {
        malformed.count(kind)
        guard case .log(let suppressed) = malformedLog.admit(source, now: monotonicSeconds()) else { return }
        var meta: Logger.Metadata = session.map { sessionMetadata($0) } ?? [:]
        meta["peer.address"] = "\(peer())"
        meta["class"] = "\(kind.rawValue)"
        meta["action"] = "\(kind.action)"
        meta["suppressed"] = "\(suppressed)"
        meta["logged"] = "once a minute per address"
        let why = detail()
        if !why.isEmpty { meta["detail"] = "\(why)" }
        switch kind.area {
        case .tls: logger.notice("tls.malformed", metadata: meta)
        case .cstp: logger.notice("cstp.malformed", metadata: meta)
        case .dtls: logger.notice("dtls.malformed", metadata: meta)
        case .packet: logger.notice("packet.malformed", metadata: meta)
        }
    }

    /// Malformed input on a client's TLS connection (login or tunnel phase).
    func malformedInput(_ kind: MalformedInput, on c: ClientConnection, detail: @autoclosure () -> String = "") {
        malformedInput(kind, source: c.source, peer: c.peer, detail: detail(), session: c.session)
    }

    /// Malformed input in a UDP datagram from `peer`.
    func malformedDatagram(_ kind: MalformedInput, from peer: SocketAddress.Key, session: Session? = nil,
                           detail: @autoclosure () -> String = "") {
        malformedInput(kind, source: Self.sourceKey(peer), peer: "\(peer)", detail: detail(), session: session)
    }

    /// An IP packet inside the tunnel that is not one (`SourceCheck` said `.malformed`).
    @inline(never)
    func malformedPacket(_ s: Session, _ packet: UnsafeRawBufferPointer) {
        if let c = s.connection {
            malformedInput(.ipMalformed, source: c.source, peer: c.peer, detail: Self.packetDetail(packet), session: s)
        } else if let ch = s.dtls {
            malformedDatagram(.ipMalformed, from: ch.peer, session: s, detail: Self.packetDetail(packet))
        } else {
            malformed.count(.ipMalformed)
        }
    }

    static func packetDetail(_ packet: UnsafeRawBufferPointer) -> String {
        "\(packet.count) bytes, first byte 0x\(packet.first.map { String($0, radix: 16) } ?? "none")"
    }
}
