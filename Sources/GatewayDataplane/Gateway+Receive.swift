import Glibc
import GatewayCore
import GatewaySessionCore
import Logging
import GatewaySystem

/// Client → network, over TLS. The steps a packet takes, in the order this file does them:
///
/// 1. `readClient` (Gateway+Connections) drains the socket through `SSL_read` into the
///    loop's one read buffer and hands the plaintext to `receiveCSTP`.
/// 2. `receiveCSTP` / `processFrames`: CSTP frames parsed in place (`CSTP.parseHeader`); only
///    a frame split across TLS records is copied (`partial`).
/// 3. `handleFrame`: what the frame means (`TunnelFrame.step`): data goes on; DPD is
///    answered; DISCONNECT ends or detaches the session.
/// 4. `forwardToTUN`: the packet must be IP and its source the session's own address
///    (`SourceCheck`); counted.
///
/// Malformed input on the way (a CSTP header that does not parse, an unknown frame type, a
/// packet that is not IP) is counted and logged by Gateway+Malformed: the connection is
/// closed (a frame) or the packet dropped.
/// 5. The ACK filter may hold a pure ACK until a later one supersedes it (`TCPAckFilter`).
/// 6. `writeTUN`: to the `TunnelDevice`, which with offload merges segments of one flow
///    (`TCPCoalescer`) and writes them once; anything else is written alone.
/// 7. What a turn still holds (held ACKs, the merged segment) is written by `flushTUNWrites`
///    from `flushTurn`, the loop turn's one flush.
///
/// Over DTLS the same packet arrives through Gateway+DTLS and joins at step 4.
extension Gateway {
    /// Bytes decrypted from a tunnel connection. Frames are parsed in place; only a
    /// frame split across TLS records is copied (into `c.partial`).
    func receiveCSTP(_ c: ClientConnection, _ bytes: UnsafeRawBufferPointer, now: Int64) {
        if c.partial.isEmpty {
            let used = processFrames(c, bytes, now: now)
            if used < bytes.count, c.phase == .tunnel { c.partial.append(contentsOf: bytes[used...]) }
        } else {
            c.partial.append(contentsOf: bytes)
            let used = c.partial.withUnsafeBytes { processFrames(c, $0, now: now) }
            if c.phase == .tunnel {
                c.partial.removeFirst(used)
                if c.partial.isEmpty { c.partial = [] }
            }
        }
    }

    /// Handles every whole frame in `p`; returns the bytes consumed.
    func processFrames(_ c: ClientConnection, _ p: UnsafeRawBufferPointer, now: Int64) -> Int {
        var offset = 0
        while case .tunnel(let s) = c.state {
            let rest = UnsafeRawBufferPointer(rebasing: p[offset...])
            switch CSTP.parseHeader(rest) {
            case .incomplete:
                return offset
            case .invalid:
                let kind = TunnelFrame.invalidHeaderClass(rest)
                malformedInput(kind, on: c, detail: kind == .cstpOversize
                               ? "length \(Int(rest[4]) << 8 | Int(rest[5])) > \(CSTP.maxPayload)"
                               : "header \(hex(Array(rest.prefix(CSTP.headerSize))))")
                closeConnection(c, reason: "invalid CSTP frame")
                return offset
            case .header(let type, let length):
                guard rest.count >= CSTP.headerSize + length else { return offset }
                let payload = UnsafeRawBufferPointer(rebasing: rest[CSTP.headerSize..<(CSTP.headerSize + length)])
                offset += CSTP.headerSize + length
                handleFrame(c, s, type: type, payload: payload, now: now)
            }
        }
        return offset
    }

    func handleFrame(_ c: ClientConnection, _ s: Session, type: UInt8, payload: UnsafeRawBufferPointer, now: Int64) {
        switch TunnelFrame.step(type: type, payload: payload) {
        case .forward:
            // Data over TLS while DTLS is up: the client fell back to TLS (UDP blocked?).
            if let ch = s.dtls, ch.preferred { ch.preferred = false }
            forwardToTUN(s, payload, overDTLS: false, now: now)
        case .answerDPD: writeRecord(c, CSTP.frame(.dpdResponse, payload: Array(payload)))
        case .nothing: break
        case .logoff(let reason): endSession(s, reason: "logoff", clientReason: reason)
        case .detach: closeConnection(c, reason: "client disconnect (session kept)")
        case .dropUnsupported: counters.dropsUnsupported += 1
        case .close(let reason):
            malformedInput(.cstpUnknownType, on: c, detail: "type \(type)")
            closeConnection(c, reason: reason)
        }
    }

    @inline(__always)
    func forwardToTUN(_ s: Session, _ packet: UnsafeRawBufferPointer, overDTLS: Bool, now: Int64) {
        // Only packets whose source is this session's own address (IPv4, or IPv6 when the
        // CONNECT gave one): a client cannot spoof another client or an internal address.
        switch SourceCheck.verdict(packet, sessionAddress: s.address, sessionAddress6: s.address6) {
        case .pass: break
        case .unsupported:
            counters.dropsUnsupported += 1
            return
        case .malformed:
            malformedPacket(s, packet)
            return
        case .spoofed:
            counters.dropsSpoofed += 1
            return
        }
        if !(options.ackFilter && ackFilter.offer(packet, write: { writeTUN($0) })) {
            writeTUN(packet)
        }
        s.rxBytes &+= UInt64(packet.count)
        s.rxPackets &+= 1
        counters.rxBytes &+= UInt64(packet.count)
        if overDTLS {
            counters.dtls.packetsFromClients &+= 1
            counters.dtls.bytesFromClients &+= UInt64(packet.count)
        } else {
            counters.tls.packetsFromClients &+= 1
            counters.tls.bytesFromClients &+= UInt64(packet.count)
        }
        s.lastTraffic = now
    }

    /// One IP packet to the TUN (merged with its neighbours when offload allows).
    @inline(__always)
    func writeTUN(_ p: UnsafeRawBufferPointer) {
        let e = tun.writePacket(p)
        if e != 0 { tunWriteFailed(e) }
    }

    /// Writes what this loop turn still holds for the TUN: ACKs the filter kept back,
    /// then the merged segment being built.
    func flushTUNWrites() {
        if ackFilter.heldCount > 0 { ackFilter.drain { writeTUN($0) } }
        let e = tun.flush()
        if e != 0 { tunWriteFailed(e) }
    }

    /// A packet the kernel refused on the TUN: counted, and the first of each kind logged.
    func tunWriteFailed(_ e: Int32) {
        counters.dropsTunWrite &+= 1
        if counters.dropsTunWrite == 1 || e != lastTunWriteErrno {
            lastTunWriteErrno = e
            logger.warning("tun.write_failed", metadata: ["code": "\(SystemError.name(of: e))", "error": "\(SystemError.reason(e))"])
        }
    }
}
