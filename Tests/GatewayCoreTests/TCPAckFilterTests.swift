import Testing
@testable import GatewayCore

@Suite struct TCPAckFilterTests {
    /// NOP NOP timestamps, as Linux sends them.
    let ts: [UInt8] = [1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 7]

    func ack(_ n: UInt32, seq: UInt32 = 1, port: UInt16 = 40000, flags: UInt8 = 0x10, window: UInt16 = 500, options: [UInt8]? = nil) -> [UInt8] {
        PacketFactory.tcp(payload: [], seq: seq, flags: flags, options: options ?? ts, srcPort: port, dstPort: 5201, window: window, ack: n)
    }

    /// Runs packets through a filter the way the gateway does: offered one by one,
    /// drained at the end of the "turn". Returns what reached the "TUN", in order.
    func run(_ f: inout TCPAckFilter, _ packets: [[UInt8]]) -> [[UInt8]] {
        var out: [[UInt8]] = []
        for p in packets {
            let taken = p.withUnsafeBytes { f.offer($0) { out.append(Array($0)) } }
            if !taken { out.append(p) }
        }
        f.drain { out.append(Array($0)) }
        return out
    }

    @Test func keepsOnlyTheNewestCumulativeAckOfAFlow() {
        var f = TCPAckFilter()
        let acks = (1...5).map { ack(UInt32(1000 * $0)) }
        let out = run(&f, acks)
        #expect(out == [acks[4]])
        #expect(f.superseded == 4)
        #expect(f.heldCount == 0)
    }

    @Test func duplicateAcksAndWindowUpdatesAllPass() {
        var f = TCPAckFilter()
        // Three duplicate ACKs (same number) are a loss signal: every one must arrive.
        let dups = [ack(5000), ack(5000), ack(5000)]
        #expect(run(&f, dups) == dups)
        // Same number, new window (a window update): passes too.
        let upd = [ack(6000, window: 100), ack(6000, window: 900)]
        #expect(run(&f, upd) == upd)
        #expect(f.superseded == 0)
    }

    @Test func neverHoldsAnythingButAPureAck() {
        var f = TCPAckFilter()
        let wscale = ack(1, options: [1, 3, 3, 7])
        let cases: [([UInt8], String)] = [
            (PacketFactory.tcp(payload: [1, 2, 3], seq: 1, ack: 9), "data"),
            (ack(9, flags: 0x11), "FIN"),
            (ack(9, flags: 0x14), "RST"),
            (ack(9, flags: 0x12), "SYN-ACK"),
            (ack(9, flags: 0x18), "PSH"),
            (ack(9, flags: 0x50), "ECE"),
            (ack(9, flags: 0x90), "CWR"),
            (wscale, "window scale option"),
            ([UInt8](repeating: 0x60, count: 60), "IPv6"),
        ]
        for (p, what) in cases {
            #expect(!TCPAckFilter.isPureAck(p.withUnsafeBytes { $0 }), "\(what)")
            #expect(!p.withUnsafeBytes { f.offer($0) { _ in Issue.record("nothing held, nothing to write") } }, "\(what)")
        }
        #expect(TCPAckFilter.isPureAck(ack(1).withUnsafeBytes { $0 }))
        #expect(TCPAckFilter.isPureAck(ack(1, options: []).withUnsafeBytes { $0 }))
        // A data segment after an ACK of its flow: the held ACK goes first.
        let plain = ack(100)
        let data = PacketFactory.tcp(payload: [1], seq: 1, options: ts, srcPort: 40000, dstPort: 5201, ack: 100)
        #expect(run(&f, [plain, data]) == [plain, data])
    }

    func sack(_ n: UInt32, _ blocks: [(UInt32, UInt32)], tsval: UInt8 = 9) -> [UInt8] {
        var o: [UInt8] = [1, 1, 8, 10, 0, 0, 0, tsval, 0, 0, 0, 7, 1, 1, 5, UInt8(2 + 8 * blocks.count)]
        for (s, e) in blocks {
            for v in [s, e] { o += [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
        }
        return ack(n, options: o)
    }

    @Test func sackAcksAreSupersededOnlyByOnesThatCoverThem() {
        var f = TCPAckFilter()
        // Loss recovery: same cumulative ACK, the SACKed range growing. Only the last matters.
        let grow = [sack(1000, [(2000, 3000)]), sack(1000, [(2000, 4000)]), sack(1000, [(2000, 4000), (5000, 6000)])]
        #expect(run(&f, grow) == [grow[2]])
        // The hole filled: the cumulative ACK jumps past the SACKed data.
        #expect(run(&f, [sack(1000, [(2000, 4000)]), ack(4000)]) == [ack(4000)])
        #expect(run(&f, [sack(1000, [(2000, 4000)]), ack(3000)]) == [sack(1000, [(2000, 4000)]), ack(3000)],
                "the ACK moved on but not past the SACKed data, and says nothing of it")
        // Not covered: a different range, or the same SACK repeated (a duplicate ACK).
        let other = [sack(1000, [(2000, 3000)]), sack(1000, [(5000, 6000)])]
        #expect(run(&f, other) == other)
        let dup = [sack(1000, [(2000, 3000)]), sack(1000, [(2000, 3000)])]
        #expect(run(&f, dup) == dup)
        // A newer ACK with an older timestamp is not trusted to supersede.
        let back = [sack(1000, [(2000, 3000)], tsval: 9), sack(1000, [(2000, 4000)], tsval: 8)]
        #expect(run(&f, back) == back)
        // Malformed SACK lengths are not pure ACKs.
        #expect(!TCPAckFilter.isPureAck(ack(1, options: [1, 1, 5, 9, 0, 0, 0, 1, 0, 0, 0, 0]).withUnsafeBytes { $0 }))
        #expect(!TCPAckFilter.isPureAck(ack(1, options: [1, 1, 5, 18, 0, 0, 0, 1, 0, 0, 0, 2]).withUnsafeBytes { $0 }))
    }

    @Test func keepsOrderWithinAFlowAndLetsFlowsInterleave() {
        var f = TCPAckFilter()
        let a1 = ack(100, port: 1), a2 = ack(200, port: 1)
        let b1 = ack(100, port: 2), b2 = ack(300, port: 2)
        let dataA = PacketFactory.tcp(payload: [7, 7], seq: 1, srcPort: 1, dstPort: 5201, ack: 200)
        // Flows a and b interleaved: one ACK each survives; a's data follows a's held ACK.
        let out = run(&f, [a1, b1, a2, b2, dataA])
        #expect(out == [a2, dataA, b2])
        #expect(f.superseded == 2)
        // An older ACK after a newer one (reordered on the way) is not dropped: written in order.
        let late = run(&f, [ack(500, port: 3), ack(400, port: 3)])
        #expect(late == [ack(500, port: 3), ack(400, port: 3)])
        // A different sequence number (the host sent data in between) is not superseded either.
        let moved = run(&f, [ack(10, seq: 1, port: 4), ack(20, seq: 50, port: 4)])
        #expect(moved.count == 2)
    }

    @Test func ackNumbersWrapAround() {
        var f = TCPAckFilter()
        let out = run(&f, [ack(0xFFFF_FF00), ack(0x0000_0100)])
        #expect(out == [ack(0x0000_0100)])
    }

    @Test func aFullTableIsWrittenOutNotLost() {
        var f = TCPAckFilter()
        let many = (0..<(TCPAckFilter.slotCount + 3)).map { ack(10, port: UInt16(100 + $0)) }
        let out = run(&f, many)
        #expect(out.count == many.count)
        #expect(Set(out.map { $0[21] }) == Set(many.map { $0[21] }))
    }

    @Test func hostileHeadersAreNotTrusted() {
        // Total length disagreeing with the bytes, a data offset past the end, a
        // truncated timestamp option: none is a pure ACK, none crashes.
        var p = ack(1)
        p[3] &+= 4
        #expect(!TCPAckFilter.isPureAck(p.withUnsafeBytes { $0 }))
        var q = ack(1)
        q[32] = 0xF0
        #expect(!TCPAckFilter.isPureAck(q.withUnsafeBytes { $0 }))
        let r = ack(1, options: [1, 1, 1, 8])  // timestamp kind with no room
        #expect(!TCPAckFilter.isPureAck(r.withUnsafeBytes { $0 }))
        var f = TCPAckFilter()
        for junk in [[UInt8](repeating: 0x45, count: 40), [UInt8](repeating: 0xFF, count: 80), [UInt8](repeating: 0x45, count: 3)] {
            _ = junk.withUnsafeBytes { f.offer($0) { _ in } }
        }
        f.drain { _ in }
    }
}
