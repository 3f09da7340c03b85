import Glibc
import GatewayCore
import GatewaySessionCore
import Logging
import GatewaySystem

/// Network → client. The steps a packet takes, in the order this file does them:
///
/// 1. `readTUN`: the TUN is drained in a batch into one buffer with headroom
///    (`TunnelDevice.readPackets`; with offload a read may be a TCP segment of up to 64 KiB,
///    which the device splits in place into MTU-size packets, `TUNPacketSplitter`).
/// 2. `deliverFromTUN` / `sendToClient`: the destination is looked up in the pool's owner
///    array (one index, no hashing) → session → its connection.
/// 3. The channel: DTLS while it is up and the client keeps using it and the packet fits,
///    else TLS.
/// 4. DTLS: the record is sealed straight into the loop turn's datagram batch
///    (`DTLSRecordSealer`, or `SSL_write` until the client has proven the handshake);
///    TLS: the CSTP header goes into the headroom and header + packet become one TLS record
///    in the connection's outbound buffer (`SSL_write`).
/// 5. `flushTurn` (Gateway.swift) sends it: one `sendmmsg` (UDP GSO for runs to one client)
///    for every DTLS record of the turn, one `send` per connection with TLS output. Only a
///    batch that is nearly full mid-turn is sent earlier, by `makeDatagramRoom` before the
///    write that would not fit.
extension Gateway {
    /// Drains the TUN in a batch and sends each packet to its session. With offload a
    /// read may be a TCP segment of up to 64 KiB, which the device splits in place into
    /// MTU-size packets (fewer reads, and one pass through the kernel for the whole segment).
    func readTUN() {
        let off = Self.tunReadOffset
        let now = monotonicSeconds()
        defer {
            // ACKs held back by the filter leave with this batch.
            if ackFilterOut.heldCount > 0 {
                ackFilterOut.drain { sendToClient(UnsafeMutableRawPointer(mutating: $0.baseAddress!), $0.count, now: now) }
            }
        }
        let read = tun.readPackets(into: io, headroom: off, maxFrames: 256) { o, l in deliverFromTUN(o, l, now: now) }
        turnWork &+= read.frames
        counters.dropsUnsupported &+= UInt64(read.unsupported)
        if read.error != 0, read.error != lastTunReadErrno {
            // The TUN itself failed (its link deleted under us?): said once per kind.
            lastTunReadErrno = read.error
            logger.error("tun.read_failed", metadata: ["code": "\(SystemError.name(of: read.error))", "error": "\(SystemError.reason(read.error))"])
        }
    }

    /// Sends the IP packet at `io[offset..<offset+n]` to its session, unless the ACK
    /// filter holds it back (a pure ACK that a later one may supersede).
    @inline(__always)
    func deliverFromTUN(_ offset: Int, _ n: Int, now: Int64) {
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
    func sendToClient(_ p: UnsafeMutableRawPointer, _ n: Int, now: Int64) {
        let packet = UnsafeRawBufferPointer(start: p, count: n)
        let dst: IPv4Address
        let version = n >= 20 ? packet[0] >> 4 : 0
        if version == 4 {
            dst = IPv4Address.read(packet, at: 16)
        } else if version == 6, n >= 40, let leases6 {
            // The IPv4 lease the destination embeds; a session that was not given IPv6 on
            // its current connection gets none (`s.address6` below). Outside the prefix: the
            // kernel's own multicast on the TUN (MLD, router solicitations), nobody's.
            guard let lease = leases6.lease(of: IPv6Leases.read(packet, at: 24)) else {
                counters.dropsUnsupported += 1
                return
            }
            dst = lease
        } else {
            counters.dropsUnsupported += 1
            return
        }
        guard let owner = pool.owner(of: dst), let s = sessions.session(at: owner), let c = s.connection, c.phase == .tunnel,
              version == 4 || s.address6 != nil else {
            counters.dropsNoSession += 1
            return
        }
        if let ch = s.dtls, ch.established, ch.preferred, now - ch.lastReceive <= Self.dtlsQuietSwitch, n <= s.mtu {
            let record = p - 1
            record.storeBytes(of: CSTP.PacketType.data.rawValue, as: UInt8.self)
            makeDatagramRoom()
            if case .done = ch.connection.write(record, n + 1) {
                s.txBytes &+= UInt64(n)
                s.txPackets &+= 1
                s.lastTraffic = now
                counters.txBytes &+= UInt64(n)
                counters.dtls.packetsToClients &+= 1
                counters.dtls.bytesToClients &+= UInt64(n)
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
            counters.tls.packetsToClients &+= 1
            counters.tls.bytesToClients &+= UInt64(n)
            markDirty(c)
        } else {
            closeConnection(c, reason: "TLS write failed")
        }
    }
}
