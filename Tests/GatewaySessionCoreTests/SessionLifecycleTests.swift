import Testing
@testable import GatewaySessionCore

/// Whole session lives with an injected clock: login, CONNECT, detach, reconnect inside
/// the window, the window running out, session-timeout, idle-timeout, logoff, a stale
/// connection that must not detach its successor's session.
@Suite struct SessionLifecycleTests {
    final class Conn {
        let name: String
        init(_ name: String) { self.name = name }
    }
    typealias Life = SessionLifecycle<Conn>
    /// auth-timeout 30, dead peer 90, reconnect window 300, idle-timeout 600.
    let t = Expiry.Timeouts(auth: 30, deadPeer: 90, reconnect: 300, idle: 600)

    @Test func aLoginThatNeverConnectsEndsAfterAuthTimeout() {
        let life = Life(now: 1000, sessionTimeout: 3600)
        #expect(life.connection == nil && !life.everConnected)
        #expect(life.expiry(now: 1030, lastTraffic: 1000, t) == nil)
        #expect(life.expiry(now: 1031, lastTraffic: 1000, t) == "no CONNECT after login")
    }

    @Test func connectDetachReconnectInsideTheWindowKeepsTheSession() {
        var life = Life(now: 0, sessionTimeout: 0)
        let a = Conn("a"), b = Conn("b")
        guard case .attached(first: true, replaced: nil) = life.attach(a, now: 5) else {
            Issue.record("first CONNECT must attach")
            return
        }
        #expect(life.connection === a && life.everConnected)
        let r1 = life.detach(a, now: 100)
        #expect(r1)
        #expect(life.connection == nil)
        // Inside the window: nothing expires, and the same cookie attaches again.
        #expect(life.expiry(now: 400, lastTraffic: 100, t) == nil)
        guard case .attached(first: false, replaced: nil) = life.attach(b, now: 400) else {
            Issue.record("a reconnect inside the window must attach")
            return
        }
        #expect(life.connection === b)
    }

    @Test func theReconnectWindowRunsOut() {
        var life = Life(now: 0, sessionTimeout: 0)
        let a = Conn("a")
        _ = life.attach(a, now: 1)
        life.detach(a, now: 10)
        #expect(life.expiry(now: 310, lastTraffic: 10, t) == nil)
        #expect(life.expiry(now: 311, lastTraffic: 10, t) == "reconnect window expired")
    }

    @Test func aReconnectWhileTheOldSocketLingersReplacesIt() {
        var life = Life(now: 0, sessionTimeout: 0)
        let old = Conn("old"), new = Conn("new")
        _ = life.attach(old, now: 1)
        guard case .attached(first: false, let replaced) = life.attach(new, now: 50) else {
            Issue.record("expected the reconnect to attach")
            return
        }
        #expect(replaced === old)
        // The stale socket closing later must not detach the session from its new one.
        let r2 = life.detach(old, now: 60)
        #expect(!r2)
        #expect(life.connection === new)
        // The same connection sending CONNECT twice replaces nothing.
        guard case .attached(first: false, replaced: nil) = life.attach(new, now: 61) else {
            Issue.record("expected a second CONNECT on the same connection to attach")
            return
        }
    }

    @Test func sessionTimeoutEndsAConnectedSessionAndRefusesAReconnect() {
        var life = Life(now: 100, sessionTimeout: 3600)
        #expect(life.deadline == 3700)
        let a = Conn("a")
        _ = life.attach(a, now: 101)
        #expect(life.remaining(now: 700) == 3000)
        #expect(life.expiry(now: 3699, lastTraffic: 3690, t) == nil)
        #expect(life.expiry(now: 3700, lastTraffic: 3699, t) == "session-timeout")
        life.detach(a, now: 3650)
        guard case .refused(reason: "session-timeout") = life.attach(Conn("b"), now: 3700) else {
            Issue.record("a CONNECT past the deadline must be refused")
            return
        }
        // Refusing changes nothing; the caller ends the session.
        #expect(!life.isEnded)
        let r3 = life.end(reason: "session-timeout")
        #expect(r3 == nil)
        #expect(life.isEnded)
    }

    @Test func idleTimeoutCountsTrafficNotConnection() {
        var life = Life(now: 0, sessionTimeout: 0)
        _ = life.attach(Conn("a"), now: 1)
        #expect(life.expiry(now: 601, lastTraffic: 1, t) == nil)
        #expect(life.expiry(now: 602, lastTraffic: 1, t) == "idle-timeout")
        #expect(life.expiry(now: 602, lastTraffic: 500, t) == nil)
        let noIdle = Expiry.Timeouts(auth: 30, deadPeer: 90, reconnect: 300, idle: 0)
        #expect(life.expiry(now: 100_000, lastTraffic: 1, noIdle) == nil)
    }

    @Test func logoffEndsAtOnceAndHandsBackTheConnection() {
        var life = Life(now: 0, sessionTimeout: 0)
        let a = Conn("a")
        _ = life.attach(a, now: 1)
        let r4 = life.end(reason: "logoff")
        #expect(r4 === a)
        #expect(life.connection == nil && life.isEnded)
        // Nothing more happens to an ended session.
        #expect(life.expiry(now: 1_000_000, lastTraffic: 0, t) == nil)
        guard case .refused(reason: "logoff") = life.attach(a, now: 2) else {
            Issue.record("an ended session must not attach")
            return
        }
        let r5 = life.detach(a, now: 3)
        #expect(!r5)
        let r6 = life.end(reason: "again")
        #expect(r6 == nil)
        guard case .ended(reason: "logoff") = life.state else {
            Issue.record("the first reason stays")
            return
        }
    }

    /// A whole day, minute by minute: the first reason that applies ends it, once.
    @Test func aDayWithDropsAndReconnects() throws {
        var life = Life(now: 0, sessionTimeout: 8 * 3600)
        var connection: Conn? = nil
        var ended: (Int64, String)?
        var lastTraffic: Int64 = 0
        for minute in Int64(0)..<(24 * 60) {
            let now = minute * 60
            if ended != nil { break }
            // Connects right after the login; the network drops every 90 minutes and the
            // client is back 3 minutes later, inside the reconnect window.
            if connection == nil, minute == 0 || minute % 90 == 3 {
                let c = Conn("\(minute)")
                if case .attached = life.attach(c, now: now) { connection = c }
            } else if let c = connection, minute > 0, minute % 90 == 0 {
                life.detach(c, now: now)
                connection = nil
            }
            if connection != nil { lastTraffic = now }
            if let reason = life.expiry(now: now, lastTraffic: lastTraffic, t) {
                ended = (now, reason)
                _ = life.end(reason: reason)
            }
        }
        let (when, why) = try #require(ended)
        #expect(when == Int64(8 * 3600))
        #expect(why == "session-timeout")
    }
}
