/// The `virtio_net_hdr` that prefixes every packet on a TUN opened with IFF_VNET_HDR.
/// With TSO enabled, the kernel hands the gateway TCP segments of up to 64 KiB (one
/// read instead of dozens) and accepts such segments back (one write, one trip through
/// routing, conntrack and NAT instead of dozens). That is the largest per-byte saving
/// available to a TUN-based gateway; wireguard-go does the same.
public struct VirtioNetHeader: Equatable, Sendable {
    public static let size = 10
    public static let needsChecksum: UInt8 = 1
    public static let gsoNone: UInt8 = 0
    public static let gsoTCPv4: UInt8 = 1
    public static let gsoTCPv6: UInt8 = 4
    public static let gsoECN: UInt8 = 0x80

    public var flags: UInt8 = 0
    public var gsoType: UInt8 = 0
    public var headerLength: UInt16 = 0
    public var gsoSize: UInt16 = 0
    public var checksumStart: UInt16 = 0
    public var checksumOffset: UInt16 = 0

    public init() {}

    /// Little-endian, as a legacy virtio header on x86 and arm64 (the TUN's byte order).
    public init(_ p: UnsafeRawPointer) {
        flags = p.load(fromByteOffset: 0, as: UInt8.self)
        gsoType = p.load(fromByteOffset: 1, as: UInt8.self)
        headerLength = UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
        gsoSize = UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
        checksumStart = UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
        checksumOffset = UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt16.self))
    }

    public func write(_ p: UnsafeMutableRawPointer) {
        p.storeBytes(of: flags, toByteOffset: 0, as: UInt8.self)
        p.storeBytes(of: gsoType, toByteOffset: 1, as: UInt8.self)
        p.storeBytes(of: headerLength.littleEndian, toByteOffset: 2, as: UInt16.self)
        p.storeBytes(of: gsoSize.littleEndian, toByteOffset: 4, as: UInt16.self)
        p.storeBytes(of: checksumStart.littleEndian, toByteOffset: 6, as: UInt16.self)
        p.storeBytes(of: checksumOffset.littleEndian, toByteOffset: 8, as: UInt16.self)
    }
}

/// Turns what the TUN delivered into wire-ready IP packets.
public enum TUNPacketSplitter {
    public enum Failure: Error, Equatable {
        case truncated
        case unsupported
    }

    /// Completes a partial checksum (NEEDS_CSUM without GSO) in place.
    public static func completeChecksum(_ header: VirtioNetHeader, packet p: UnsafeMutableRawBufferPointer) -> Bool {
        let start = Int(header.checksumStart), field = start + Int(header.checksumOffset)
        guard field + 2 <= p.count, start < p.count else { return false }
        let base = p.baseAddress!
        let s = InternetChecksum.sum(base + start, p.count - start)
        InternetChecksum.store(InternetChecksum.finish(s), base, at: field)
        return true
    }

    /// Splits the TCP/IPv4 segment at `packetOffset..<packetOffset+length` of `buffer`
    /// into segments of `gsoSize` payload bytes, **in place**: segment i's headers are
    /// written just before its payload, over the tail of segment i-1, which `emit` has
    /// already consumed. `emit(offset, length)` gets each finished packet's position
    /// in `buffer`; the caller must leave `headroom` free bytes before each packet
    /// alone (they may be used by `emit` for its own framing) and `packetOffset` must
    /// be at least `headroom`.
    public static func segmentTCPv4(_ header: VirtioNetHeader, buffer: UnsafeMutableRawBufferPointer, packetOffset: Int,
                                    length: Int, emit: (Int, Int) -> Void) -> Failure? {
        let base = buffer.baseAddress!
        let ip = base + packetOffset
        guard length >= 40, ip.load(as: UInt8.self) >> 4 == 4 else { return .truncated }
        let ipHL = Int(ip.load(as: UInt8.self) & 0x0F) * 4
        guard ipHL >= 20, length >= ipHL + 20, ip.load(fromByteOffset: 9, as: UInt8.self) == 6 else { return .unsupported }
        let tcpHL = Int(ip.load(fromByteOffset: ipHL + 12, as: UInt8.self) >> 4) * 4
        let hdrLen = ipHL + tcpHL
        let gso = Int(header.gsoSize)
        guard tcpHL >= 20, length >= hdrLen, gso > 0, hdrLen <= 120 else { return .unsupported }
        let payloadLen = length - hdrLen
        if payloadLen <= gso {
            // Nothing to split; the checksum may still be partial.
            finishSegment(ip, ipHL: ipHL, tcpHL: tcpHL, payload: payloadLen)
            emit(packetOffset, length)
            return nil
        }
        // The original headers, kept aside (on the stack): segment 0's are overwritten
        // by later ones.
        return withUnsafeTemporaryAllocation(byteCount: hdrLen, alignment: 8) { saved in
        saved.baseAddress!.copyMemory(from: ip, byteCount: hdrLen)
        let id0 = UInt16(bigEndian: ip.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
        let seq0 = UInt32(bigEndian: ip.loadUnaligned(fromByteOffset: ipHL + 4, as: UInt32.self))
        let flags0 = ip.load(fromByteOffset: ipHL + 13, as: UInt8.self)
        let ecn = header.gsoType & VirtioNetHeader.gsoECN != 0
        var offset = 0
        var index = 0
        while offset < payloadLen {
            let n = min(gso, payloadLen - offset)
            let segStart = packetOffset + offset  // headers right before this payload
            let seg = base + segStart
            if index > 0 { seg.copyMemory(from: saved.baseAddress!, byteCount: hdrLen) }
            seg.storeBytes(of: UInt16(hdrLen + n).bigEndian, toByteOffset: 2, as: UInt16.self)
            seg.storeBytes(of: (id0 &+ UInt16(truncatingIfNeeded: index)).bigEndian, toByteOffset: 4, as: UInt16.self)
            seg.storeBytes(of: (seq0 &+ UInt32(truncatingIfNeeded: offset)).bigEndian, toByteOffset: ipHL + 4, as: UInt32.self)
            var f = flags0
            if offset + n < payloadLen { f &= ~0x09 }  // FIN and PSH only on the last segment
            if index > 0, ecn { f &= ~0x80 }  // CWR only on the first
            seg.storeBytes(of: f, toByteOffset: ipHL + 13, as: UInt8.self)
            finishSegment(seg, ipHL: ipHL, tcpHL: tcpHL, payload: n)
            emit(segStart, hdrLen + n)
            offset += n
            index += 1
        }
        return nil
        }
    }

    /// Final IPv4 header and full TCP checksums for one segment.
    @inlinable
    static func finishSegment(_ seg: UnsafeMutableRawPointer, ipHL: Int, tcpHL: Int, payload: Int) {
        InternetChecksum.fixIPv4Header(seg, headerLength: ipHL)
        let tcp = seg + ipHL
        let tcpLen = tcpHL + payload
        InternetChecksum.store(0, tcp, at: 16)
        let s = InternetChecksum.sum(tcp, tcpLen, initial: InternetChecksum.pseudoHeaderV4(seg, protocolNumber: 6, length: tcpLen))
        InternetChecksum.store(InternetChecksum.finish(s), tcp, at: 16)
    }
}

/// Merges consecutive TCP/IPv4 segments of one flow into one large segment for the TUN
/// (the reverse of `TUNPacketSplitter`), the way the kernel's GRO does: same addresses,
/// ports, ACK, window, flags and options; contiguous sequence numbers; equal payload
/// sizes except a smaller last one. Packets that do not qualify go through unchanged.
public struct TCPCoalescer: ~Copyable {
    public static let capacity = VirtioNetHeader.size + 65535
    /// The super-packet being built: virtio header, then IP packet.
    public let buffer: UnsafeMutableRawPointer
    public private(set) var active = false
    private var length = 0          // bytes of IP packet in the buffer
    private var ipHL = 0
    private var tcpHL = 0
    private var segmentSize = 0
    private var segments = 0
    private var nextSeq: UInt32 = 0
    private var closed = false

    public init() {
        buffer = .allocate(byteCount: Self.capacity, alignment: 16)
    }

    deinit { buffer.deallocate() }

    /// Whether `p` is a TCP/IPv4 data segment that could be merged at all.
    public static func eligible(_ p: UnsafeRawBufferPointer) -> Bool {
        guard p.count >= 40, p[0] == 0x45, p[9] == 6 else { return false }  // IPv4, no IP options, TCP
        // Not a fragment (MF clear, offset zero).
        guard p[6] & 0x3F == 0, p[7] == 0 else { return false }
        let tcpHL = Int(p[32] >> 4) * 4
        guard tcpHL >= 20, p.count > 20 + tcpHL else { return false }  // has payload
        let flags = p[33]
        return flags & ~UInt8(0x18) == 0 && flags & 0x10 != 0  // ACK, optionally PSH; nothing else
    }

    /// Tries to append `p` to the segment being built. False: the caller must `finish`
    /// the current one (if active) and then `start` with `p`.
    public mutating func append(_ p: UnsafeRawBufferPointer) -> Bool {
        guard active, !closed else { return false }
        let tcpHLp = Int(p[32] >> 4) * 4
        let payload = p.count - 20 - tcpHLp
        guard tcpHLp == tcpHL, payload <= segmentSize, length + payload <= 65535, segments < 64 else { return false }
        let ip = buffer + VirtioNetHeader.size
        let cur = UnsafeRawBufferPointer(start: ip, count: length)
        // Same TOS, DF, TTL, protocol and addresses.
        guard p[1] == cur[1], p[6] == cur[6], p[8] == cur[8], p[9] == cur[9] else { return false }
        for i in 12..<20 where p[i] != cur[i] { return false }
        // Same ports, ACK number, data offset, window; flags equal except PSH.
        for i in 20..<24 where p[i] != cur[i] { return false }
        for i in 28..<32 where p[i] != cur[i] { return false }
        guard p[32] == cur[32], p[33] & ~UInt8(0x08) == cur[33] & ~UInt8(0x08), p[34] == cur[34], p[35] == cur[35] else { return false }
        // Options byte for byte (timestamps usually match within a burst).
        for i in 40..<(20 + tcpHL) where p[i] != cur[i] { return false }
        let seq = UInt32(p[24]) << 24 | UInt32(p[25]) << 16 | UInt32(p[26]) << 8 | UInt32(p[27])
        guard seq == nextSeq else { return false }
        (ip + length).copyMemory(from: p.baseAddress! + 20 + tcpHL, byteCount: payload)
        length += payload
        segments += 1
        nextSeq &+= UInt32(payload)
        if p[33] & 0x08 != 0 {
            // PSH: carry it on the merged segment and end it here.
            ip.storeBytes(of: cur[33] | 0x08, toByteOffset: 33, as: UInt8.self)
            closed = true
        }
        if payload < segmentSize { closed = true }
        return true
    }

    /// Starts a new segment with `p` (which must be `eligible`).
    public mutating func start(_ p: UnsafeRawBufferPointer) {
        let ip = buffer + VirtioNetHeader.size
        ip.copyMemory(from: p.baseAddress!, byteCount: p.count)
        length = p.count
        ipHL = 20
        tcpHL = Int(p[32] >> 4) * 4
        segmentSize = p.count - 20 - tcpHL
        segments = 1
        nextSeq = (UInt32(p[24]) << 24 | UInt32(p[25]) << 16 | UInt32(p[26]) << 8 | UInt32(p[27])) &+ UInt32(segmentSize)
        closed = p[33] & 0x08 != 0
        active = true
    }

    /// Finishes the segment: header fields, checksums and the virtio header. Returns
    /// the bytes to write to the TUN (virtio header + packet), and resets.
    public mutating func finish() -> UnsafeRawBufferPointer {
        precondition(active, "finish() without a segment")  // internal misuse, not input
        active = false
        let ip = buffer + VirtioNetHeader.size
        var h = VirtioNetHeader()
        if segments > 1 {
            ip.storeBytes(of: UInt16(length).bigEndian, toByteOffset: 2, as: UInt16.self)
            InternetChecksum.fixIPv4Header(ip, headerLength: ipHL)
            // A partial checksum: the pseudo-header sum, which the kernel completes
            // (or each segment's, when it splits the segment again).
            let tcpLen = length - ipHL
            InternetChecksum.store(InternetChecksum.fold(InternetChecksum.pseudoHeaderV4(ip, protocolNumber: 6, length: tcpLen)), ip + ipHL, at: 16)
            h.flags = VirtioNetHeader.needsChecksum
            h.gsoType = VirtioNetHeader.gsoTCPv4
            h.headerLength = UInt16(ipHL + tcpHL)
            h.gsoSize = UInt16(segmentSize)
            h.checksumStart = UInt16(ipHL)
            h.checksumOffset = 16
        }
        h.write(buffer)
        return UnsafeRawBufferPointer(start: buffer, count: VirtioNetHeader.size + length)
    }

    public var segmentCount: Int { segments }
}
