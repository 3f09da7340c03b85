import Testing
@testable import GatewaySessionCore

/// One log line per key per minute, in a bounded table, with the clock in the test's hands.
@Suite struct LogThrottleTests {
    func verdict<K>(_ t: inout LogThrottle<K>, _ key: K, _ now: Int64) -> LogThrottle<K>.Verdict { t.admit(key, now: now) }

    @Test func onceAMinutePerKeyAndTheSuppressedAreReported() {
        var t = LogThrottle<String>()
        #expect(verdict(&t, "a", 0) == .log(suppressed: 0))
        for now in 1..<60 { #expect(verdict(&t, "a", Int64(now)) == .suppress) }
        // Another address is not held back by the first.
        #expect(verdict(&t, "b", 30) == .log(suppressed: 0))
        #expect(verdict(&t, "a", 60) == .log(suppressed: 59))
        #expect(verdict(&t, "a", 61) == .suppress)
        #expect(verdict(&t, "a", 500) == .log(suppressed: 1))
        #expect(t.unlogged == 0)
    }

    @Test func theIntervalIsTheCallersChoice() {
        var t = LogThrottle<Int>(capacity: 16, interval: 5)
        #expect(verdict(&t, 1, 0) == .log(suppressed: 0))
        #expect(verdict(&t, 1, 4) == .suppress)
        #expect(verdict(&t, 1, 5) == .log(suppressed: 1))
    }

    /// More addresses than slots within one minute: the table does not grow, the excess is
    /// not logged (and counted as such), so the log is capped however many addresses send.
    @Test func aFullTableCapsTheLogInsteadOfGrowing() {
        var t = LogThrottle<Int>(capacity: 64)
        #expect(t.capacity == 64)
        var logged = 0
        for key in 0..<10_000 where verdict(&t, key, 0) != .suppress { logged += 1 }
        // Every slot is some key's window many times over: all 64 fill, then nothing more.
        #expect(logged == 64)
        #expect(t.unlogged == UInt64(10_000 - logged))
        #expect(t.live(now: 0) == logged)
        // A minute later every slot is free again: new addresses are logged.
        #expect(verdict(&t, 20_000, 60) == .log(suppressed: 0))
        // A key that was logged keeps its place while its minute runs.
        var u = LogThrottle<Int>(capacity: 8)
        #expect(verdict(&u, 1, 0) == .log(suppressed: 0))
        for key in 2..<100 { _ = verdict(&u, key, 0) }
        #expect(verdict(&u, 1, 1) == .suppress)
    }

    @Test func capacityIsAPowerOfTwoNoSmallerThanTheProbeWindow() {
        #expect(LogThrottle<Int>(capacity: 1).capacity == LogThrottle<Int>.probes)
        #expect(LogThrottle<Int>(capacity: 1000).capacity == 1024)
    }

    /// SourceGuard logs its refusals through the same throttle.
    @Test func sourceGuardRefusalsUseIt() {
        var g = SourceGuard<String>(limits: SourceGuardLimits(maxLoginConnectionsPerSource: 1, maxBanScore: 0, banResetSeconds: 300))
        var logged = 0
        for now in 0..<120 where g.shouldLogRefusal("a", now: Int64(now)) { logged += 1 }
        #expect(logged == 2)
    }
}
