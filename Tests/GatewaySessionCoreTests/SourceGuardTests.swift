import Testing
@testable import GatewaySessionCore

/// Per-address limits and ban scores, with the clock in the test's hands.
@Suite struct SourceGuardTests {
    // Mutating calls cannot sit inside #expect: these make them and return the result.
    func admitted<S>(_ g: inout SourceGuard<S>, _ source: S, now: Int64) -> Bool { g.admit(source, now: now) == .admit }
    func banned<S>(_ g: inout SourceGuard<S>, _ source: S, now: Int64) -> Bool { g.penalize(source, now: now) }
    func logs<S>(_ g: inout SourceGuard<S>, _ source: S, now: Int64) -> Bool { g.shouldLogRefusal(source, now: now) }
    func holds(_ condition: Bool, _ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(condition, comment, sourceLocation: sourceLocation)
    }

    static let limits = SourceGuardLimits(maxLoginConnectionsPerSource: 3, maxBanScore: 80, banResetSeconds: 300)

    @Test func loginConnectionsPerAddressAreCappedAndFreedAgain() {
        var g = SourceGuard<String>(limits: Self.limits)
        for _ in 0..<3 { holds(admitted(&g, "a", now: 0)) }
        guard case .refuse(let why) = g.admit("a", now: 0) else { Issue.record("4th admitted"); return }
        #expect(why.contains("max-login-connections-per-ip 3"))
        // Another address is not affected.
        holds(admitted(&g, "b", now: 0))
        // One reaches its tunnel (or closes): room for one more.
        g.loginEnded("a")
        holds(admitted(&g, "a", now: 1))
        #expect(g.refusedConnections == 1)
    }

    @Test func loginConnectionsFromAllAddressesTogetherAreCapped() {
        var g = SourceGuard<String>(limits: SourceGuardLimits(maxLoginConnectionsPerSource: 2, maxBanScore: 0, banResetSeconds: 300,
                                                              maxLoginConnections: 4))
        for source in ["a", "b", "c", "d"] { holds(admitted(&g, source, now: 0)) }
        #expect(g.loginConnections == 4)
        guard case .refuse(let why) = g.admit("e", now: 0) else { Issue.record("5th connection admitted"); return }
        #expect(why.contains("max-login-connections 4"))
        // One leaves its login phase: room for one more, from anywhere.
        g.loginEnded("b")
        holds(admitted(&g, "e", now: 1))
        #expect(g.loginConnections == 4)
        holds(!admitted(&g, "f", now: 2))
    }

    @Test func untrackedAddressesStillFreeTheGlobalCount() {
        // A table of one, held by an address with a connection logging in: the next address
        // is admitted untracked. Its loginEnded must still count down, or the global cap
        // would fill up for good with connections long gone.
        var g = SourceGuard<String>(limits: SourceGuardLimits(maxLoginConnectionsPerSource: 0, maxBanScore: 0, banResetSeconds: 300,
                                                              maxLoginConnections: 2), capacity: 1)
        holds(admitted(&g, "a", now: 0))
        holds(admitted(&g, "b", now: 0))
        #expect(g.trackedSources == 1)
        holds(!admitted(&g, "c", now: 0))
        g.loginEnded("b")
        #expect(g.loginConnections == 1)
        holds(admitted(&g, "c", now: 0))
    }

    @Test func eightFailedLoginsBanUntilTheScoreResets() {
        var g = SourceGuard<String>(limits: Self.limits)
        for i in 1...7 {
            holds(!banned(&g, "a", now: Int64(i)))
        }
        holds(admitted(&g, "a", now: 8))
        g.loginEnded("a")
        holds(banned(&g, "a", now: 8), "the 8th failure (80 points) bans")
        #expect(g.bans == 1)
        guard case .refuse(let why) = g.admit("a", now: 9) else { Issue.record("banned address admitted"); return }
        #expect(why.hasPrefix("banned"))
        holds(admitted(&g, "b", now: 9))
        // Still banned just before ban-reset-time after the last failure, free at it.
        holds(!admitted(&g, "a", now: 8 + 299))
        holds(admitted(&g, "a", now: 8 + 300))
        #expect(g.score(of: "a", now: 8 + 300) == 0)
    }

    @Test func scoresFadeWhenFailuresAreFarApart() {
        var g = SourceGuard<String>(limits: Self.limits)
        // One failure every 301 s never adds up.
        for i in 0..<20 { holds(!banned(&g, "a", now: Int64(i) * 301)) }
        #expect(g.score(of: "a", now: 20 * 301) == 0)
    }

    @Test func zeroTurnsEachLimitOff() {
        var g = SourceGuard<String>(limits: SourceGuardLimits(maxLoginConnectionsPerSource: 0, maxBanScore: 0, banResetSeconds: 300))
        for _ in 0..<1000 { holds(admitted(&g, "a", now: 0)) }
        for _ in 0..<100 { holds(!banned(&g, "a", now: 0)) }
        holds(admitted(&g, "a", now: 0))
    }

    @Test func theTableStaysBounded() {
        var g = SourceGuard<Int>(limits: Self.limits, capacity: 100)
        for source in 0..<10_000 {
            _ = g.admit(source, now: Int64(source))
            g.loginEnded(source)
        }
        #expect(g.trackedSources <= 100)
        // An address with connections still logging in is never the one forgotten.
        var h = SourceGuard<Int>(limits: Self.limits, capacity: 10)
        for source in 0..<10 { _ = h.admit(source, now: 0) }
        _ = h.admit(99, now: 1)
        for source in 0..<10 { holds(admitted(&h, source, now: 2)) }
    }

    /// A stream of new addresses against a full table neither lifts a ban nor costs a scan
    /// per connection (new addresses go untracked until a scan a second frees room).
    @Test func churningNewAddressesDoesNotLiftABan() {
        var g = SourceGuard<Int>(limits: Self.limits, capacity: 4)
        for _ in 0..<8 { _ = banned(&g, 0, now: 0) }
        for source in 1...3 { _ = banned(&g, source, now: 0) }  // scored, not banned, no connection
        for source in 100..<1100 {
            holds(admitted(&g, source, now: Int64(source) / 100))
            g.loginEnded(source)
        }
        #expect(g.trackedSources <= 4)
        holds(!admitted(&g, 0, now: 11), "still banned")
    }

    @Test func refusalsAreLoggedOnceAMinutePerAddress() {
        var g = SourceGuard<String>(limits: Self.limits)
        _ = g.admit("a", now: 0)
        holds(logs(&g, "a", now: 0))
        holds(!logs(&g, "a", now: 59))
        holds(logs(&g, "a", now: 60))
    }
}
