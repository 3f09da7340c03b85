import Glibc
import GatewayCore
import Logging

/// The tunnel phase: CSTP frames from clients, packets from the TUN.
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
    private func processFrames(_ c: ClientConnection, _ p: UnsafeRawBufferPointer, now: Int64) -> Int {
        var offset = 0
        while c.phase == .tunnel, let s = c.session {
            let rest = UnsafeRawBufferPointer(rebasing: p[offset...])
            switch CSTP.parseHeader(rest) {
            case .incomplete:
                return offset
            case .invalid:
                logger.notice("cstp.invalid_frame", metadata: sessionMetadata(s))
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

    private func handleFrame(_ c: ClientConnection, _ s: Session, type: UInt8, payload: UnsafeRawBufferPointer, now: Int64) {
        switch CSTP.PacketType(rawValue: type) {
        case .data:
            // Data over TLS while DTLS is up: the client fell back to TLS (UDP blocked?).
            if let ch = s.dtls, ch.preferred { ch.preferred = false }
            forwardToTUN(s, payload, now: now)
        case .dpdRequest:
            // Echo the payload: ocserv does, and an MTU probe needs it.
            writeRecord(c, CSTP.frame(.dpdResponse, payload: Array(payload)))
        case .dpdResponse, .keepalive:
            break
        case .disconnect:
            if payload.first == CSTP.logoffReason {
                let reason = String(decoding: payload.dropFirst().prefix(128).filter { $0 >= 0x20 && $0 < 0x7F }, as: UTF8.self)
                endSession(s, reason: "logoff", clientReason: reason)
            } else {
                closeConnection(c, reason: "client disconnect (session kept)")
            }
        case .compressed:
            // We never offer compression; a compressed frame is a client bug. Drop it.
            counters.dropsUnsupported += 1
        case .terminate, .none:
            logger.notice("cstp.unexpected_type", metadata: sessionMetadata(s, ["type": "\(type)"]))
            closeConnection(c, reason: "unexpected CSTP frame type \(type)")
        }
    }

    @inline(__always)
    func forwardToTUN(_ s: Session, _ packet: UnsafeRawBufferPointer, now: Int64) {
        // Only IPv4 packets whose source is this session's own address: a client cannot
        // spoof another client or an internal address.
        guard packet.count >= 20, packet[0] >> 4 == 4 else {
            counters.dropsUnsupported += 1
            return
        }
        guard IPv4Address.read(packet, at: 12) == s.address else {
            counters.dropsSpoofed += 1
            return
        }
        let n = write(tun.fd, packet.baseAddress, packet.count)
        if n > 0 {
            s.rxBytes &+= UInt64(packet.count)
            s.rxPackets &+= 1
            counters.rxBytes &+= UInt64(packet.count)
            s.lastTraffic = now
        }
    }

    /// Drains the TUN in a batch and sends each packet to its session.
    func readTUN() {
        let base = io.baseAddress!
        let cap = io.count - Self.headroom
        let now = monotonicSeconds()
        for _ in 0..<256 {
            let n = read(tun.fd, base + Self.headroom, cap)
            if n <= 0 { return }
            let packet = UnsafeRawBufferPointer(start: base + Self.headroom, count: n)
            guard n >= 20, packet[0] >> 4 == 4 else {
                counters.dropsUnsupported += 1
                continue
            }
            let dst = IPv4Address.read(packet, at: 16)
            guard let owner = pool.owner(of: dst), let s = sessions.session(at: owner), let c = s.connection, c.phase == .tunnel else {
                counters.dropsNoSession += 1
                continue
            }
            if let ch = s.dtls, ch.established, ch.preferred, now - ch.lastReceive <= Self.dtlsQuietSwitch, n <= s.mtu {
                // DTLS record: type byte right before the packet, in the headroom.
                let record = base + Self.headroom - 1
                record.storeBytes(of: CSTP.PacketType.data.rawValue, as: UInt8.self)
                if case .done = ch.connection.write(record, n + 1) {
                    s.txBytes &+= UInt64(n)
                    s.txPackets &+= 1
                    s.lastTraffic = now
                    counters.txBytes &+= UInt64(n)
                    continue
                }
                dropDTLS(s)
            }
            guard n <= CSTP.maxPayload, c.tls.output.freeSpace >= n + CSTP.headerSize + 64 else {
                counters.dropsQueueFull += 1
                continue
            }
            CSTP.writeHeader(base, type: .data, length: n)
            if case .done = c.tls.write(base, n + CSTP.headerSize) {
                s.txBytes &+= UInt64(n)
                s.txPackets &+= 1
                s.lastTraffic = now
                counters.txBytes &+= UInt64(n)
                markDirty(c)
            } else {
                closeConnection(c, reason: "TLS write failed")
            }
        }
    }

    /// Ends a session for good: its cookie stops working and its address is freed.
    func endSession(_ s: Session, reason: String, clientReason: String? = nil) {
        if let c = s.connection {
            if reason != "logoff" { writeRecord(c, CSTP.frame(.disconnect)) }
            c.session = nil
            s.connection = nil
            closeConnection(c, reason: reason, detach: false)
        }
        dropDTLS(s)
        pool.release(s.address, owner: s.slot)
        sessions.remove(s)
        var meta: Logger.Metadata = ["reason": "\(reason)", "duration_s": "\(monotonicSeconds() - s.createdMono)",
                                     "rx.bytes": "\(s.rxBytes)", "tx.bytes": "\(s.txBytes)"]
        if let clientReason, !clientReason.isEmpty { meta["client.reason"] = "\(clientReason)" }
        logger.info("session.ended", metadata: sessionMetadata(s, meta))
    }
}
