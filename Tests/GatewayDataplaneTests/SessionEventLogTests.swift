@testable import GatewayDataplane
import GatewayWire
import Testing

@Suite struct SessionEventLogTests {
    @Test func returnsEventsAfterASequenceInOrder() {
        let log = SessionEventLog(capacity: 8)
        for i in 0..<5 { log.record(.sessionConnected, time: Int64(i)) { $0.userId = "u\(i)" } }
        let all = log.after(0, limit: 100)
        #expect(all.events.map(\.sequence) == [1, 2, 3, 4, 5])
        #expect(all.missed == 0)
        let tail = log.after(3, limit: 100)
        #expect(tail.events.map(\.userId) == ["u3", "u4"])
        #expect(log.after(5, limit: 100).events.isEmpty)
        #expect(log.after(2, limit: 2).events.map(\.sequence) == [3, 4])
    }

    @Test func countsWhatTheRingNoLongerHolds() {
        let log = SessionEventLog(capacity: 4)
        for i in 0..<10 { log.record(.sessionDisconnected, time: Int64(i)) }
        let r = log.after(0, limit: 100)
        #expect(r.events.map(\.sequence) == [7, 8, 9, 10])
        #expect(r.missed == 6)
        #expect(log.after(8, limit: 100).events.map(\.sequence) == [9, 10])
        #expect(log.after(8, limit: 100).missed == 0)
    }

    @Test func hostileSequencesDoNotTrap() {
        let log = SessionEventLog(capacity: 4)
        #expect(log.after(.max, limit: 10).events.isEmpty)
        log.record(.loginRejected, time: 1)
        #expect(log.after(.max, limit: -5).events.isEmpty)
        #expect(log.after(0, limit: -5).events.isEmpty)
        #expect(log.bootId.count == 16)
    }
}
