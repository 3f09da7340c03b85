import Foundation
import Testing
@testable import GatewayAgent
import GatewayWire

@Suite struct MetricsTests {
    @Test func procStatDeltas() throws {
        let a = try #require(CPUTimes.parse(procStat: """
            cpu  100 0 100 700 100 0 0 0 0 0
            cpu0 50 0 50 350 50 0 0 0 0 0
            intr 12345
            """))
        #expect(a == CPUTimes(busy: 200, total: 1000))
        let b = try #require(CPUTimes.parse(procStat: "cpu  150 10 140 1000 100 0 0 0 0 0\n"))
        // busy +100 of total +400 → 25 %.
        #expect(CPUTimes.usagePercent(from: a, to: b) == 25)
        #expect(CPUTimes.usagePercent(from: b, to: b) == nil)
        #expect(CPUTimes.usagePercent(from: b, to: a) == nil)
        #expect(CPUTimes.parse(procStat: "garbage\n") == nil)
        #expect(CPUTimes.parse(procStat: "cpu  x y z\n") == nil)
    }

    @Test func meminfo() {
        let text = """
            MemTotal:       16000000 kB
            MemFree:          500000 kB
            MemAvailable:    4000000 kB
            Buffers:          100000 kB
            """
        #expect(MemoryInfo.usagePercent(procMeminfo: text) == 75)
        #expect(MemoryInfo.usagePercent(procMeminfo: "MemTotal: 100 kB\n") == nil)
        #expect(MemoryInfo.usagePercent(procMeminfo: "") == nil)
        #expect(MemoryInfo.usagePercent(procMeminfo: "MemTotal: 0 kB\nMemAvailable: 0 kB") == nil)
    }

    @Test func diskFreeIsMeasuredOrNil() {
        #expect((DiskSpace.freeBytes(path: NSTemporaryDirectory()) ?? -1) >= 0)
        #expect(DiskSpace.freeBytes(path: "/nonexistent/\(UUID().uuidString)") == nil)
    }

    @Test func throughputNeedsTwoSamplesOfOneBoot() {
        let t0 = Date(timeIntervalSince1970: 1000)
        #expect(HealthCollector.rate(previous: nil, startedAt: 1, bytes: 100, now: t0) == nil)
        #expect(HealthCollector.rate(previous: (1, 1000, t0), startedAt: 1, bytes: 3000, now: t0 + 10) == 200)
        // Gateway restarted: counters start over, no rate this round.
        #expect(HealthCollector.rate(previous: (1, 1000, t0), startedAt: 2, bytes: 3000, now: t0 + 10) == nil)
        #expect(HealthCollector.rate(previous: (1, 5000, t0), startedAt: 1, bytes: 3000, now: t0 + 10) == nil)
    }

    @Test func latencyIsTheGatewaysTransitTimeBetweenReports() throws {
        let collector = HealthCollector(paths: AgentPaths(stateDirectory: "/nonexistent"), gateway: GatewayControl(runDirectory: "/nonexistent"))
        func status(startedAt: Int64, packets: UInt64, nanos: UInt64) -> ServerStatusResponse {
            var s = ServerStatusResponse(version: "t", startedAt: startedAt, listenPort: 443, tunDevice: "t", activeSessions: 0, connectedSessions: 0,
                                         totalSessions: 0, authFailures: 0, poolSize: 1, poolInUse: 0, poolExhaustedCount: 0, rxBytes: 0, txBytes: 0,
                                         authAvailable: true)
            s.transitPackets = packets
            s.transitNanos = nanos
            return s
        }
        #expect(collector.transitMilliseconds(status: status(startedAt: 1, packets: 100, nanos: 1_000_000)) == nil, "first reading")
        #expect(collector.transitMilliseconds(status: status(startedAt: 1, packets: 300, nanos: 101_000_000)) == 0.5)
        #expect(collector.transitMilliseconds(status: status(startedAt: 1, packets: 300, nanos: 101_000_000)) == nil, "idle: unknown, not zero")
        #expect(collector.transitMilliseconds(status: status(startedAt: 2, packets: 900, nanos: 9_000_000_000)) == nil, "gateway restarted")
    }

    @Test func refusedInputIsReportedByClassOrNotAtAll() {
        var s = ServerStatusResponse(version: "t", startedAt: 1, listenPort: 443, tunDevice: "t", activeSessions: 0, connectedSessions: 0,
                                     totalSessions: 0, authFailures: 0, poolSize: 1, poolInUse: 0, poolExhaustedCount: 0, rxBytes: 0, txBytes: 0,
                                     authAvailable: true)
        #expect(HealthCollector.refused(status: s) == nil, "a gateway that does not count: nothing, not zeros")
        var m = MalformedInputCounts()
        m.dtlsReplayed = 20
        m.cstpBadHeader = 2
        s.malformed = m
        s.connectionsRefused = 7
        s.bansSinceStart = 1
        let r = HealthCollector.refused(status: s)
        #expect(r?.malformed.count == 13, "every class, zeros too")
        #expect(r?.malformed["dtlsReplayed"] == 20 && r?.malformed["cstpBadHeader"] == 2 && r?.malformed["ipMalformed"] == 0)
        #expect(r?.malformedTotal == 22 && r?.connectionsRefused == 7 && r?.bans == 1 && r?.policyDenials == nil)
    }

    @Test func backoffDoublesToTheCapAndJitterStaysWithinTenPercent() {
        var b = Backoff(initial: 1, cap: 10)
        #expect([b.next(), b.next(), b.next(), b.next(), b.next()] == [1, 2, 4, 8, 10])
        b.reset()
        #expect(b.next() == 1)
        #expect(abs(Jitter.around(100, random: 1) - 110) < 1e-9)
        #expect(abs(Jitter.around(100, random: -1) - 90) < 1e-9)
        #expect(abs(Jitter.around(100, random: 7) - 110) < 1e-9)
    }
}
