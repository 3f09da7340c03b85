import Testing
@testable import GatewayCore
import GatewayTUN

/// The gateway's TUN boundary in memory: packets in batches, the GSO split of what is read
/// and the merge of what is written behind offload, with the same code the kernel device
/// runs (`TunnelDevice`'s extension over `MemoryTUN`'s frames).
@Suite struct TunnelDeviceTests {
    static let headroom = 16

    func read(_ tun: MemoryTUN) -> (packets: [[UInt8]], result: TUNReadResult) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 70_000, alignment: 16)
        defer { buffer.deallocate() }
        var packets: [[UInt8]] = []
        let r = tun.readPackets(into: buffer, headroom: Self.headroom, maxFrames: 256) { o, l in
            #expect(o >= Self.headroom)
            packets.append(Array(buffer[o..<(o + l)]))
        }
        return (packets, r)
    }

    func write(_ tun: MemoryTUN, _ p: [UInt8]) -> Int32 { p.withUnsafeBytes { tun.writePacket($0) } }

    func virtio(_ frame: [UInt8]) -> VirtioNetHeader { frame.withUnsafeBytes { VirtioNetHeader($0.baseAddress!) } }

    @Test func withoutOffloadFramesArePackets() {
        let tun = MemoryTUN(offload: false)
        let a = PacketFactory.tcp(payload: Array(repeating: 1, count: 100), seq: 1)
        let b = PacketFactory.tcp(payload: Array(repeating: 2, count: 100), seq: 101)
        tun.inbound = [a, b]
        let got = read(tun)
        #expect(got.packets == [a, b] && got.result.frames == 2)
        #expect(write(tun, a) == 0 && write(tun, b) == 0)
        #expect(tun.takeWritten() == [a, b])
    }

    @Test func segmentsOfOneFlowLeaveAsOneFrame() {
        let tun = MemoryTUN(offload: true)
        var segs: [[UInt8]] = []
        for i in 0..<3 {
            let payload = [UInt8](repeating: UInt8(i), count: 1000)
            segs.append(PacketFactory.tcp(payload: payload, seq: 1 + UInt32(i) * 1000, id: UInt16(10 + i)))
        }
        for s in segs { #expect(write(tun, s) == 0) }
        // Held until the turn ends (or the flow changes).
        #expect(tun.written.isEmpty)
        #expect(tun.flush() == 0)
        let frames = tun.takeWritten()
        #expect(frames.count == 1)
        let h = virtio(frames[0])
        #expect(h.gsoType == VirtioNetHeader.gsoTCPv4 && h.gsoSize == 1000)
        #expect(frames[0].count == VirtioNetHeader.size + 40 + 3000)
        #expect(Array(frames[0][(VirtioNetHeader.size + 40)...]) == segs.flatMap { $0[40...] })
        #expect(tun.flush() == 0 && tun.written.isEmpty)
    }

    @Test func anythingElseFlushesTheMergeAndGoesAlone() {
        let tun = MemoryTUN(offload: true)
        let seg = PacketFactory.tcp(payload: Array(repeating: 5, count: 500), seq: 1)
        var icmp = [UInt8](repeating: 0, count: 28)
        icmp[0] = 0x45; icmp[3] = 28; icmp[9] = 1
        #expect(write(tun, seg) == 0)
        #expect(write(tun, icmp) == 0)
        let frames = tun.takeWritten()
        #expect(frames.count == 2)
        // The held segment first (a single segment: no GSO), then the other packet behind
        // an empty header.
        #expect(virtio(frames[0]) == VirtioNetHeader() && Array(frames[0][VirtioNetHeader.size...]) == seg)
        #expect(virtio(frames[1]) == VirtioNetHeader() && Array(frames[1][VirtioNetHeader.size...]) == icmp)
    }

    @Test func aFlowChangeWritesTheFirstFlowsSegment() {
        let tun = MemoryTUN(offload: true)
        let a1 = PacketFactory.tcp(payload: Array(repeating: 1, count: 800), seq: 1, srcPort: 1000)
        let a2 = PacketFactory.tcp(payload: Array(repeating: 1, count: 800), seq: 801, srcPort: 1000)
        let b1 = PacketFactory.tcp(payload: Array(repeating: 2, count: 800), seq: 1, srcPort: 2000)
        for p in [a1, a2, b1] { #expect(write(tun, p) == 0) }
        #expect(tun.written.count == 1)
        #expect(virtio(tun.written[0]).gsoSize == 800)
        tun.flush()
        #expect(tun.takeWritten().count == 2)
    }

    @Test func aGSOFrameReadIsSplitIntoValidPackets() {
        let tun = MemoryTUN(offload: true)
        let payload = (0..<4200).map { UInt8($0 % 251) }
        var big = PacketFactory.tcp(payload: payload, seq: 5000, flags: 0x18, id: 9)
        // As the kernel hands a TSO segment over: the pseudo-header sum in the checksum field.
        let tcpLength = big.count - 20
        big.withUnsafeMutableBytes { b in
            let s = InternetChecksum.pseudoHeaderV4(b.baseAddress!, protocolNumber: 6, length: tcpLength)
            InternetChecksum.store(InternetChecksum.fold(s), b.baseAddress! + 20, at: 16)
        }
        var h = VirtioNetHeader()
        h.flags = VirtioNetHeader.needsChecksum; h.gsoType = VirtioNetHeader.gsoTCPv4; h.gsoSize = 1400
        h.headerLength = 40; h.checksumStart = 20; h.checksumOffset = 16
        var frame = [UInt8](repeating: 0, count: VirtioNetHeader.size)
        frame.withUnsafeMutableBytes { h.write($0.baseAddress!) }
        tun.inbound = [frame + big]
        let got = read(tun)
        #expect(got.result.frames == 1 && got.result.unsupported == 0)
        #expect(got.packets.map { $0.count - 40 } == [1400, 1400, 1400])
        for p in got.packets {
            #expect(PacketFactory.ipHeaderValid(p[0..<20]))
            #expect(PacketFactory.tcpChecksumValid(p))
        }
        #expect(got.packets.flatMap { $0[40...] } == payload)
    }

    @Test func framesThatCannotBeSplitAreCountedNotDelivered() {
        let tun = MemoryTUN(offload: true)
        var h = VirtioNetHeader()
        h.gsoType = VirtioNetHeader.gsoTCPv6; h.gsoSize = 1000
        var frame = [UInt8](repeating: 0, count: VirtioNetHeader.size)
        frame.withUnsafeMutableBytes { h.write($0.baseAddress!) }
        tun.inbound = [frame + [UInt8](repeating: 0x60, count: 100), [1, 2, 3]]
        let got = read(tun)
        #expect(got.packets.isEmpty)
        #expect(got.result.frames == 2 && got.result.unsupported == 2)
    }
}
