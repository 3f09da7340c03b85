import GatewayCore
import Testing

@Suite struct TransitTimeTests {
    @Test func averageIsWeightedByPacketsBetweenTwoReadings() {
        var t = TransitTime()
        t.add(nanos: 100_000, packets: 10)   // 10 packets that waited at most 0.1 ms
        let (p0, n0) = (t.packets, t.weightedNanos)
        t.add(nanos: 300_000, packets: 30)   // 30 at 0.3 ms
        t.add(nanos: 100_000, packets: 10)   // 10 at 0.1 ms
        let ms = TransitTime.averageMilliseconds(fromPackets: p0, nanos: n0, toPackets: t.packets, nanos: t.weightedNanos)
        #expect(ms == 0.25)
    }

    @Test func noPacketsNoFigure() {
        #expect(TransitTime.averageMilliseconds(fromPackets: 5, nanos: 10, toPackets: 5, nanos: 10) == nil)
        #expect(TransitTime.averageMilliseconds(fromPackets: 9, nanos: 10, toPackets: 5, nanos: 10) == nil, "counters went backwards")
    }

    @Test func theNanosecondSumSurvivesAWrap() {
        var t = TransitTime()
        t.add(nanos: UInt64.max / 2, packets: 2)   // wraps to near the top
        let (p0, n0) = (t.packets, t.weightedNanos)
        t.add(nanos: 1_000_000, packets: 4)        // wraps past zero
        #expect(TransitTime.averageMilliseconds(fromPackets: p0, nanos: n0, toPackets: t.packets, nanos: t.weightedNanos) == 1)
    }
}
