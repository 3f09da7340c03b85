import Glibc
import GatewayCore
import GatewaySessionCore
import Logging
import GatewaySystem

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
        while case .tunnel(let s) = c.state {
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
        switch TunnelFrame.step(type: type, payload: payload) {
        case .forward:
            // Data over TLS while DTLS is up: the client fell back to TLS (UDP blocked?).
            if let ch = s.dtls, ch.preferred { ch.preferred = false }
            forwardToTUN(s, payload, now: now)
        case .answerDPD: writeRecord(c, CSTP.frame(.dpdResponse, payload: Array(payload)))
        case .nothing: break
        case .logoff(let reason): endSession(s, reason: "logoff", clientReason: reason)
        case .detach: closeConnection(c, reason: "client disconnect (session kept)")
        case .dropUnsupported: counters.dropsUnsupported += 1
        case .close(let reason):
            logger.notice("cstp.unexpected_type", metadata: sessionMetadata(s, ["type": "\(type)"]))
            closeConnection(c, reason: reason)
        }
    }

    @inline(__always)
    func forwardToTUN(_ s: Session, _ packet: UnsafeRawBufferPointer, now: Int64) {
        // Only IPv4 packets whose source is this session's own address: a client cannot
        // spoof another client or an internal address.
        switch SourceCheck.verdict(packet, sessionAddress: s.address) {
        case .pass: break
        case .unsupported:
            counters.dropsUnsupported += 1
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
        s.lastTraffic = now
    }

    /// One IP packet to the TUN (merged with its neighbours when offload allows).
    @inline(__always)
    private func writeTUN(_ p: UnsafeRawBufferPointer) {
        if tun.offload {
            writeTUNOffload(p)
        } else if write(tun.fd, p.baseAddress, p.count) <= 0 {
            tunWriteFailed(errno)
        }
    }

    /// Writes what this loop turn still holds for the TUN: ACKs the filter kept back,
    /// then the merged segment being built.
    func flushTUNWrites() {
        if ackFilter.heldCount > 0 { ackFilter.drain { writeTUN($0) } }
        flushCoalescer()
    }

    /// With TUN offload: TCP segments of one flow that arrive together are merged into
    /// one large segment (one write, one pass through routing and NAT); anything else is
    /// written alone behind an empty virtio header.
    private func writeTUNOffload(_ p: UnsafeRawBufferPointer) {
        if TCPCoalescer.eligible(p) {
            if coalescer.active {
                if coalescer.append(p) { return }
                flushCoalescer()
            }
            coalescer.start(p)
            return
        }
        flushCoalescer()
        withUnsafeTemporaryAllocation(of: iovec.self, capacity: 2) { iov in
            iov[0] = iovec(iov_base: zeroVirtioHeader, iov_len: VirtioNetHeader.size)
            iov[1] = iovec(iov_base: UnsafeMutableRawPointer(mutating: p.baseAddress), iov_len: p.count)
            if writev(tun.fd, iov.baseAddress, 2) < 0 { tunWriteFailed(errno) }
        }
    }

    /// Writes the merged segment being built, if any. Called whenever the flow changes
    /// and at the end of every loop turn, so nothing waits longer than one turn.
    func flushCoalescer() {
        guard coalescer.active else { return }
        let out = coalescer.finish()
        if write(tun.fd, out.baseAddress, out.count) < 0 { tunWriteFailed(errno) }
    }

    /// A packet the kernel refused on the TUN: counted, and the first of each kind logged.
    func tunWriteFailed(_ e: Int32) {
        counters.dropsTunWrite &+= 1
        if counters.dropsTunWrite == 1 || e != lastTunWriteErrno {
            lastTunWriteErrno = e
            logger.warning("tun.write_failed", metadata: ["code": "\(SystemError.name(of: e))", "error": "\(SystemError.reason(e))"])
        }
    }

    /// Drains the TUN in a batch and sends each packet to its session. With offload a
    /// read may be a TCP segment of up to 64 KiB, split here in place into MTU-size
    /// packets (fewer reads, and one pass through the kernel for the whole segment).
    func readTUN() {
        let base = io.baseAddress!
        let off = Self.tunReadOffset
        let now = monotonicSeconds()
        defer {
            // ACKs held back by the filter leave with this batch.
            if ackFilterOut.heldCount > 0 {
                ackFilterOut.drain { sendToClient(UnsafeMutableRawPointer(mutating: $0.baseAddress!), $0.count, now: now) }
            }
        }
        for _ in 0..<256 {
            let n = read(tun.fd, base + off, io.count - off)
            if n <= 0 { return }
            turnWork &+= 1
            guard tun.offload else {
                deliverFromTUN(off, n, now: now)
                continue
            }
            guard n > VirtioNetHeader.size else { continue }
            let h = VirtioNetHeader(base + off)
            let packetOffset = off + VirtioNetHeader.size
            let length = n - VirtioNetHeader.size
            switch h.gsoType & ~VirtioNetHeader.gsoECN {
            case VirtioNetHeader.gsoNone:
                if h.flags & VirtioNetHeader.needsChecksum != 0,
                   !TUNPacketSplitter.completeChecksum(h, packet: UnsafeMutableRawBufferPointer(start: base + packetOffset, count: length)) {
                    counters.dropsUnsupported += 1
                    continue
                }
                deliverFromTUN(packetOffset, length, now: now)
            case VirtioNetHeader.gsoTCPv4:
                let failure = TUNPacketSplitter.segmentTCPv4(h, buffer: io, packetOffset: packetOffset, length: length) { o, l in
                    deliverFromTUN(o, l, now: now)
                }
                if failure != nil { counters.dropsUnsupported += 1 }
            default:
                counters.dropsUnsupported += 1
            }
        }
    }

    /// Sends the IP packet at `io[offset..<offset+n]` to its session, unless the ACK
    /// filter holds it back (a pure ACK that a later one may supersede).
    @inline(__always)
    private func deliverFromTUN(_ offset: Int, _ n: Int, now: Int64) {
        let p = io.baseAddress! + offset
        if options.ackFilter, n <= TCPAckFilter.maxPacket,
           ackFilterOut.offer(UnsafeRawBufferPointer(start: p, count: n), write: {
               sendToClient(UnsafeMutableRawPointer(mutating: $0.baseAddress!), $0.count, now: now)
           }) {
            return
        }
        sendToClient(p, n, now: now)
    }

    /// Sends the IP packet at `p` (`n` bytes) to its session. The 8 bytes before `p` are
    /// free for the CSTP header or the DTLS type byte.
    @inline(__always)
    private func sendToClient(_ p: UnsafeMutableRawPointer, _ n: Int, now: Int64) {
        let packet = UnsafeRawBufferPointer(start: p, count: n)
        guard n >= 20, packet[0] >> 4 == 4 else {
            counters.dropsUnsupported += 1
            return
        }
        let dst = IPv4Address.read(packet, at: 16)
        guard let owner = pool.owner(of: dst), let s = sessions.session(at: owner), let c = s.connection, c.phase == .tunnel else {
            counters.dropsNoSession += 1
            return
        }
        if let ch = s.dtls, ch.established, ch.preferred, now - ch.lastReceive <= Self.dtlsQuietSwitch, n <= s.mtu {
            let record = p - 1
            record.storeBytes(of: CSTP.PacketType.data.rawValue, as: UInt8.self)
            if case .done = ch.connection.write(record, n + 1) {
                s.txBytes &+= UInt64(n)
                s.txPackets &+= 1
                s.lastTraffic = now
                counters.txBytes &+= UInt64(n)
                return
            }
            dropDTLS(s)
        }
        guard n <= CSTP.maxPayload, c.tls.output.freeSpace >= n + CSTP.headerSize + 64 else {
            counters.dropsQueueFull += 1
            return
        }
        let frame = p - CSTP.headerSize
        CSTP.writeHeader(frame, type: .data, length: n)
        if case .done = c.tls.write(frame, n + CSTP.headerSize) {
            s.txBytes &+= UInt64(n)
            s.txPackets &+= 1
            s.lastTraffic = now
            counters.txBytes &+= UInt64(n)
            markDirty(c)
        } else {
            closeConnection(c, reason: "TLS write failed")
        }
    }

    /// Ends a session for good: its cookie stops working and its address is freed.
    func endSession(_ s: Session, reason: String, clientReason: String? = nil) {
        if let c = s.connection {
            if reason != "logoff" { writeRecord(c, CSTP.frame(.disconnect)) }
            s.connection = nil
            closeConnection(c, reason: reason, detach: false)
        }
        dropDTLS(s)
        if let emptied = pool.release(s.address, owner: s.slot) { retiredPrefixEmptied(emptied) }
        sessions.remove(s)
        var meta: Logger.Metadata = ["reason": "\(reason)", "duration_s": "\(monotonicSeconds() - s.createdMono)",
                                     "rx.bytes": "\(s.rxBytes)", "tx.bytes": "\(s.txBytes)"]
        if let clientReason, !clientReason.isEmpty { meta["client.reason"] = "\(clientReason)" }
        logger.info("session.ended", metadata: sessionMetadata(s, meta))
        recordEvent(.sessionDisconnected, s, reason: reason)
    }
}
