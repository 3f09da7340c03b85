import Testing
@testable import GatewayCore

/// Builds TCP/IPv4 packets with correct checksums.
enum PacketFactory {
    static func tcp(payload: [UInt8], seq: UInt32, flags: UInt8 = 0x10, id: UInt16 = 100, options: [UInt8] = [],
                    srcPort: UInt16 = 5201, dstPort: UInt16 = 40000, window: UInt16 = 500, ack: UInt32 = 0x1122_3344) -> [UInt8] {
        let tcpHL = 20 + options.count
        var p = [UInt8](repeating: 0, count: 20 + tcpHL + payload.count)
        let total = p.count
        p[0] = 0x45; p[2] = UInt8(total >> 8); p[3] = UInt8(total & 0xFF)
        p[4] = UInt8(id >> 8); p[5] = UInt8(id & 0xFF); p[6] = 0x40; p[8] = 64; p[9] = 6
        p[12] = 198; p[13] = 18; p[14] = 1; p[15] = 2
        p[16] = 100; p[17] = 64; p[18] = 0; p[19] = 5
        p[20] = UInt8(srcPort >> 8); p[21] = UInt8(srcPort & 0xFF); p[22] = UInt8(dstPort >> 8); p[23] = UInt8(dstPort & 0xFF)
        p[24] = UInt8(seq >> 24); p[25] = UInt8(seq >> 16 & 0xFF); p[26] = UInt8(seq >> 8 & 0xFF); p[27] = UInt8(seq & 0xFF)
        p[28] = UInt8(ack >> 24); p[29] = UInt8(ack >> 16 & 0xFF); p[30] = UInt8(ack >> 8 & 0xFF); p[31] = UInt8(ack & 0xFF)
        p[32] = UInt8(tcpHL / 4) << 4; p[33] = flags; p[34] = UInt8(window >> 8); p[35] = UInt8(window & 0xFF)
        p.replaceSubrange(40..<(40 + options.count), with: options)
        p.replaceSubrange((20 + tcpHL)..., with: payload)
        p.withUnsafeMutableBytes { b in
            InternetChecksum.fixIPv4Header(b.baseAddress!, headerLength: 20)
            let s = InternetChecksum.sum(b.baseAddress! + 20, total - 20,
                                         initial: InternetChecksum.pseudoHeaderV4(b.baseAddress!, protocolNumber: 6, length: total - 20))
            InternetChecksum.store(InternetChecksum.finish(s), b.baseAddress! + 20, at: 16)
        }
        return p
    }

    static func ipHeaderValid(_ p: ArraySlice<UInt8>) -> Bool {
        Array(p).withUnsafeBytes { InternetChecksum.fold(InternetChecksum.sum($0.baseAddress!, 20)) == 0xFFFF }
    }

    static func tcpChecksumValid(_ p: [UInt8]) -> Bool {
        p.withUnsafeBytes { b in
            let s = InternetChecksum.sum(b.baseAddress! + 20, p.count - 20,
                                         initial: InternetChecksum.pseudoHeaderV4(b.baseAddress!, protocolNumber: 6, length: p.count - 20))
            return InternetChecksum.fold(s) == 0xFFFF
        }
    }
}

@Suite struct InternetChecksumTests {
    @Test func rfc1071Example() {
        // RFC 1071 §3: the sum of 0001 f203 f4f5 f6f7 is ddf2 (folded).
        let bytes: [UInt8] = [0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7]
        #expect(bytes.withUnsafeBytes { InternetChecksum.fold(InternetChecksum.sum($0.baseAddress!, 8)) } == 0xDDF2)
        let odd: [UInt8] = [0x00, 0x01, 0xF2]
        #expect(odd.withUnsafeBytes { InternetChecksum.fold(InternetChecksum.sum($0.baseAddress!, 3)) } == 0xF201)
    }

    /// The word-order trick in `sum` against the textbook definition: big-endian 16-bit
    /// words, a zero-padded odd byte, at every length and alignment up to 3,000 bytes.
    @Test func matchesTheDefinitionAtEveryLengthAndAlignment() {
        func reference(_ b: [UInt8], _ initial: UInt64) -> UInt16 {
            var s = initial
            var i = 0
            while i + 1 < b.count { s += UInt64(b[i]) << 8 | UInt64(b[i + 1]); i += 2 }
            if i < b.count { s += UInt64(b[i]) << 8 }
            return InternetChecksum.fold(s)
        }
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15  // splitmix64: reproducible bytes
        func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 3100, alignment: 16)
        defer { buffer.deallocate() }
        for length in Array(0..<64) + Array(stride(from: 64, through: 3000, by: 37)) + [0xFF, 1400, 1434, 2999] {
            for alignment in 0..<4 {
                let bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: next()) }
                buffer.advanced(by: alignment).copyMemory(from: bytes, byteCount: length)
                let initial = next() & 0xF_FFFF
                #expect(InternetChecksum.fold(InternetChecksum.sum(buffer + alignment, length, initial: initial)) == reference(bytes, initial),
                        "length \(length) alignment \(alignment)")
            }
        }
        // All-ones words: carries everywhere.
        let ones = [UInt8](repeating: 0xFF, count: 1401)
        #expect(ones.withUnsafeBytes { InternetChecksum.fold(InternetChecksum.sum($0.baseAddress!, 1401)) } == reference(ones, 0))
    }

    @Test func factoryPacketsAreValid() {
        let p = PacketFactory.tcp(payload: Array(0..<77), seq: 1)
        #expect(PacketFactory.ipHeaderValid(p[0..<20]))
        #expect(PacketFactory.tcpChecksumValid(p))
    }
}

@Suite struct TUNOffloadTests {
    @Test func virtioHeaderRoundTrip() {
        var h = VirtioNetHeader()
        h.flags = 1; h.gsoType = 1; h.headerLength = 52; h.gsoSize = 1382; h.checksumStart = 20; h.checksumOffset = 16
        var bytes = [UInt8](repeating: 0, count: 10)
        bytes.withUnsafeMutableBytes { h.write($0.baseAddress!) }
        #expect(bytes == [1, 1, 52, 0, 0x66, 0x05, 20, 0, 16, 0])
        #expect(bytes.withUnsafeBytes { VirtioNetHeader($0.baseAddress!) } == h)
    }

    /// A 64 KiB-ish segment as the kernel hands it over with TSO: one header, a big
    /// payload, a partial (pseudo-header) checksum.
    func superPacket(payload: [UInt8], flags: UInt8 = 0x18, options: [UInt8] = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]) -> [UInt8] {
        var p = PacketFactory.tcp(payload: payload, seq: 1000, flags: flags, id: 7, options: options)
        let tcpLength = p.count - 20
        p.withUnsafeMutableBytes { b in
            let s = InternetChecksum.pseudoHeaderV4(b.baseAddress!, protocolNumber: 6, length: tcpLength)
            InternetChecksum.store(InternetChecksum.fold(s), b.baseAddress! + 20, at: 16)
        }
        return p
    }

    @Test func segmentsInPlaceWithValidChecksums() {
        let payload = (0..<5000).map { UInt8($0 % 251) }
        let pkt = superPacket(payload: payload)
        let headroom = 16
        var buffer = [UInt8](repeating: 0xEE, count: headroom) + pkt
        var h = VirtioNetHeader()
        h.flags = 1; h.gsoType = VirtioNetHeader.gsoTCPv4; h.gsoSize = 1400; h.checksumStart = 20; h.checksumOffset = 16
        var segments: [[UInt8]] = []
        let failure = buffer.withUnsafeMutableBytes { b in
            TUNPacketSplitter.segmentTCPv4(h, buffer: b, packetOffset: headroom, length: pkt.count) { off, len in
                segments.append(Array(b[off..<(off + len)]))
            }
        }
        #expect(failure == nil)
        #expect(segments.map { $0.count - 52 } == [1400, 1400, 1400, 800])
        var rebuilt: [UInt8] = []
        for (i, s) in segments.enumerated() {
            #expect(PacketFactory.ipHeaderValid(s[0..<20]), "IP checksum of segment \(i)")
            #expect(PacketFactory.tcpChecksumValid(s), "TCP checksum of segment \(i)")
            #expect(Int(s[2]) << 8 | Int(s[3]) == s.count)
            #expect(Int(s[4]) << 8 | Int(s[5]) == 7 + i)
            let seq = UInt32(s[24]) << 24 | UInt32(s[25]) << 16 | UInt32(s[26]) << 8 | UInt32(s[27])
            #expect(seq == 1000 + UInt32(i * 1400))
            #expect(s[33] == (i == 3 ? 0x18 : 0x10), "PSH only on the last")
            #expect(Array(s[40..<52]) == [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2])
            rebuilt += s[52...]
        }
        #expect(rebuilt == payload)
    }

    @Test func smallPacketWithPartialChecksumIsCompleted() {
        let pkt = superPacket(payload: Array(repeating: 9, count: 300))
        var buffer = [UInt8](repeating: 0, count: 8) + pkt
        var h = VirtioNetHeader()
        h.flags = 1; h.gsoType = VirtioNetHeader.gsoTCPv4; h.gsoSize = 1400
        var out: [UInt8] = []
        _ = buffer.withUnsafeMutableBytes { b in
            TUNPacketSplitter.segmentTCPv4(h, buffer: b, packetOffset: 8, length: pkt.count) { o, l in out = Array(b[o..<(o + l)]) }
        }
        #expect(PacketFactory.tcpChecksumValid(out))
        var plain = pkt
        h.gsoType = 0; h.checksumStart = 20; h.checksumOffset = 16
        #expect(plain.withUnsafeMutableBytes { TUNPacketSplitter.completeChecksum(h, packet: $0) })
        #expect(PacketFactory.tcpChecksumValid(plain))
    }

    @Test func refusesGarbage() {
        var junk = [UInt8](repeating: 0x45, count: 60)
        var h = VirtioNetHeader()
        h.gsoType = VirtioNetHeader.gsoTCPv4; h.gsoSize = 100
        let r = junk.withUnsafeMutableBytes { TUNPacketSplitter.segmentTCPv4(h, buffer: $0, packetOffset: 0, length: 60) { _, _ in } }
        #expect(r == .unsupported)
        var short = [UInt8](repeating: 0, count: 10)
        #expect(short.withUnsafeMutableBytes { TUNPacketSplitter.segmentTCPv4(h, buffer: $0, packetOffset: 0, length: 10) { _, _ in } } == .truncated)
        h.checksumStart = 200
        #expect(!short.withUnsafeMutableBytes { TUNPacketSplitter.completeChecksum(h, packet: $0) })
    }
}

@Suite struct TCPCoalescerTests {
    let opts: [UInt8] = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]

    @Test func mergesAFlowIntoOneSegment() {
        var c = TCPCoalescer()
        var pkts: [[UInt8]] = []
        for i in 0..<4 {
            let size: Int = i == 3 ? 500 : 1388
            let flags: UInt8 = i == 3 ? 0x18 : 0x10
            let seq = UInt32(5000 + i * 1388)
            pkts.append(PacketFactory.tcp(payload: [UInt8](repeating: UInt8(i), count: size), seq: seq, flags: flags, id: UInt16(i), options: opts))
        }
        #expect(pkts.allSatisfy { $0.withUnsafeBytes { TCPCoalescer.eligible($0) } })
        pkts[0].withUnsafeBytes { c.start($0) }
        for p in pkts.dropFirst() { #expect(p.withUnsafeBytes { c.append($0) }) }
        #expect(c.segmentCount == 4)
        let out = Array(c.finish())
        let h = out.withUnsafeBytes { VirtioNetHeader($0.baseAddress!) }
        #expect(h.gsoType == VirtioNetHeader.gsoTCPv4 && h.gsoSize == 1388 && h.headerLength == 52 && h.flags == 1)
        #expect(h.checksumStart == 20 && h.checksumOffset == 16)
        let ip = Array(out[10...])
        #expect(ip.count == 52 + 3 * 1388 + 500)
        #expect(Int(ip[2]) << 8 | Int(ip[3]) == ip.count)
        #expect(PacketFactory.ipHeaderValid(ip[0..<20]))
        #expect(ip[33] == 0x18)
        // Splitting it again (what the kernel will do) gives back valid packets.
        var buf = [UInt8](repeating: 0, count: 8) + ip
        var again: [[UInt8]] = []
        _ = buf.withUnsafeMutableBytes { b in
            TUNPacketSplitter.segmentTCPv4(h, buffer: b, packetOffset: 8, length: ip.count) { o, l in again.append(Array(b[o..<(o + l)])) }
        }
        #expect(again.count == 4)
        #expect(again.allSatisfy { PacketFactory.tcpChecksumValid($0) })
        #expect(again.map { Array($0[52...]) } == pkts.map { Array($0[52...]) })
    }

    @Test func stopsAtGapsOtherFlowsAndFlags() {
        var c = TCPCoalescer()
        let a = PacketFactory.tcp(payload: Array(repeating: 1, count: 1000), seq: 1, options: opts)
        a.withUnsafeBytes { c.start($0) }
        #expect(!PacketFactory.tcp(payload: Array(repeating: 1, count: 1000), seq: 5000, options: opts).withUnsafeBytes { c.append($0) }, "seq gap")
        #expect(!PacketFactory.tcp(payload: Array(repeating: 1, count: 1000), seq: 1001, options: opts, srcPort: 1).withUnsafeBytes { c.append($0) }, "other flow")
        #expect(!PacketFactory.tcp(payload: Array(repeating: 1, count: 1000), seq: 1001, options: opts, window: 9).withUnsafeBytes { c.append($0) }, "window")
        #expect(!PacketFactory.tcp(payload: Array(repeating: 1, count: 1200), seq: 1001, options: opts).withUnsafeBytes { c.append($0) }, "bigger")
        #expect(PacketFactory.tcp(payload: Array(repeating: 1, count: 600), seq: 1001, options: opts).withUnsafeBytes { c.append($0) })
        #expect(!PacketFactory.tcp(payload: Array(repeating: 1, count: 600), seq: 1601, options: opts).withUnsafeBytes { c.append($0) }, "closed after a short one")
        let single = Array(c.finish())
        #expect(single.count == 10 + 52 + 1600)
        #expect(!PacketFactory.tcp(payload: [1], seq: 1, flags: 0x02).withUnsafeBytes { TCPCoalescer.eligible($0) }, "SYN")
        #expect(!PacketFactory.tcp(payload: [], seq: 1).withUnsafeBytes { TCPCoalescer.eligible($0) }, "pure ACK")
        #expect(![UInt8](repeating: 0x60, count: 60).withUnsafeBytes { TCPCoalescer.eligible($0) }, "IPv6")
    }

    @Test func singlePacketKeepsItsChecksum() {
        var c = TCPCoalescer()
        let a = PacketFactory.tcp(payload: Array(repeating: 3, count: 100), seq: 9)
        a.withUnsafeBytes { c.start($0) }
        let out = Array(c.finish())
        #expect(out.prefix(10).allSatisfy { $0 == 0 })
        #expect(Array(out[10...]) == a)
    }
}
