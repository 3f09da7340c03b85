import GatewayCore
import Testing
@testable import GatewaySessionCore

@Suite struct SessionAdmissionTests {
    let limits = SessionAdmission.Limits(maxSessions: 100, maxSessionsPerUser: 2)

    @Test func firstSessionIsAdmitted() {
        #expect(SessionAdmission.decide(limits, total: 0, user: []) == .admit)
    }

    @Test func underThePerUserLimit() {
        #expect(SessionAdmission.decide(limits, total: 5, user: [.init(slot: 3, connected: true)]) == .admit)
    }

    @Test func atThePerUserLimitTheOldestIdleSessionIsReplaced() {
        let user: [SessionAdmission.Existing] = [.init(slot: 3, connected: true), .init(slot: 7, connected: false)]
        #expect(SessionAdmission.decide(limits, total: 5, user: user) == .admitReplacing(slot: 7))
        let two: [SessionAdmission.Existing] = [.init(slot: 1, connected: false), .init(slot: 2, connected: false)]
        #expect(SessionAdmission.decide(limits, total: 5, user: two) == .admitReplacing(slot: 1))
    }

    @Test func atThePerUserLimitWithOnlyLiveSessionsIsRefused() {
        let user: [SessionAdmission.Existing] = [.init(slot: 3, connected: true), .init(slot: 4, connected: true)]
        #expect(SessionAdmission.decide(limits, total: 5, user: user)
            == .refuse(.unavailable("too many sessions for this user"), reason: "max-sessions-per-user reached"))
    }

    @Test func theGatewayLimitComesFirst() {
        #expect(SessionAdmission.decide(limits, total: 100, user: [])
            == .refuse(.unavailable("gateway is at its session limit"), reason: "max-sessions reached"))
        // Even when an idle session of the same user could be replaced.
        #expect(SessionAdmission.decide(limits, total: 100, user: [.init(slot: 1, connected: false), .init(slot: 2, connected: false)])
            == .refuse(.unavailable("gateway is at its session limit"), reason: "max-sessions reached"))
    }

    @Test func zeroMeansNoLimit() {
        let none = SessionAdmission.Limits(maxSessions: 0, maxSessionsPerUser: 0)
        let many = (0..<50).map { SessionAdmission.Existing(slot: Int32($0), connected: true) }
        #expect(SessionAdmission.decide(none, total: 1_000_000, user: many) == .admit)
    }
}

@Suite struct ExpiryTests {
    // auth 60 s, dead peer 3 × 30 s, reconnect 300 s, idle 600 s.
    let t = Expiry.Timeouts(auth: 60, deadPeer: 90, reconnect: 300, idle: 600)

    @Test func timeoutsFromSettings() {
        var a = GatewaySettings.Advanced()
        a.dpd = 30
        a.authTimeout = 45
        a.reconnectTimeout = 120
        a.idleTimeout = 0
        #expect(Expiry.Timeouts(a) == Expiry.Timeouts(auth: 45, deadPeer: 90, reconnect: 120, idle: 0))
    }

    @Test func loginMustFinishWithinTheAuthTimeout() {
        #expect(Expiry.connection(stage: .login, acceptedAt: 1000, lastReceive: 1059, now: 1060, t) == nil)
        #expect(Expiry.connection(stage: .login, acceptedAt: 1000, lastReceive: 1060, now: 1061, t) == "login timeout")
    }

    /// A client that connects and never finishes its TLS handshake holds its socket for
    /// `handshake-timeout` (10 s), not the whole `auth-timeout`.
    @Test func theTLSHandshakeHasItsOwnShorterDeadline() {
        #expect(Expiry.connection(stage: .handshake, acceptedAt: 1000, lastReceive: 1000, now: 1010, t) == nil)
        #expect(Expiry.connection(stage: .handshake, acceptedAt: 1000, lastReceive: 1000, now: 1011, t) == "TLS handshake not finished in 10 s")
        var a = GatewaySettings.Advanced()
        a.handshakeTimeout = 3
        #expect(Expiry.Timeouts(a).handshake == 3)
        // Never longer than the whole login may take.
        #expect(Expiry.Timeouts(auth: 5, deadPeer: 90, reconnect: 300, idle: 0, handshake: 30).handshake == 5)
    }

    @Test func aTunnelWithoutTrafficForThreeDPDsIsDead() {
        #expect(Expiry.connection(stage: .tunnel, acceptedAt: 0, lastReceive: 1000, now: 1090, t) == nil)
        #expect(Expiry.connection(stage: .tunnel, acceptedAt: 0, lastReceive: 1000, now: 1091, t) == "dead peer (no traffic for 90 s)")
        // A long-lived tunnel is not subject to the login timeout.
        #expect(Expiry.connection(stage: .tunnel, acceptedAt: 0, lastReceive: 99_999, now: 100_000, t) == nil)
    }

    func times(deadline: Int64 = 0, connected: Bool = true, ever: Bool = true, detachedAt: Int64 = 0, lastTraffic: Int64 = 1000) -> Expiry.SessionTimes {
        Expiry.SessionTimes(deadline: deadline, connected: connected, everConnected: ever, detachedAt: detachedAt, lastTraffic: lastTraffic)
    }

    @Test func aConnectedActiveSessionLives() {
        #expect(Expiry.session(times(), now: 1100, t) == nil)
    }

    @Test func sessionTimeoutAtTheDeadlineEvenWhileConnected() {
        #expect(Expiry.session(times(deadline: 5000, lastTraffic: 4990), now: 4999, t) == nil)
        #expect(Expiry.session(times(deadline: 5000, lastTraffic: 4999), now: 5000, t) == "session-timeout")
    }

    @Test func aLoginThatNeverConnectsEndsAfterTheAuthTimeout() {
        let s = times(connected: false, ever: false, detachedAt: 1000, lastTraffic: 1000)
        #expect(Expiry.session(s, now: 1060, t) == nil)
        #expect(Expiry.session(s, now: 1061, t) == "no CONNECT after login")
    }

    @Test func aDetachedSessionWaitsForTheReconnectWindow() {
        let s = times(connected: false, detachedAt: 2000, lastTraffic: 1990)
        #expect(Expiry.session(s, now: 2300, t) == nil)
        #expect(Expiry.session(s, now: 2301, t) == "reconnect window expired")
    }

    @Test func idleTimeoutCountsTunnelTrafficOnly() {
        #expect(Expiry.session(times(lastTraffic: 1000), now: 1600, t) == nil)
        #expect(Expiry.session(times(lastTraffic: 1000), now: 1601, t) == "idle-timeout")
        var noIdle = t
        noIdle.idle = 0
        #expect(Expiry.session(times(lastTraffic: 0), now: 1_000_000, noIdle) == nil)
    }

    @Test func theDeadlineWinsOverEveryOtherReason() {
        let s = times(deadline: 100, connected: false, ever: false, detachedAt: 0, lastTraffic: 0)
        #expect(Expiry.session(s, now: 100_000, t) == "session-timeout")
    }

    @Test func attachIsRefusedAtTheDeadline() {
        #expect(Expiry.mayAttach(deadline: 0, now: 1 << 40))
        #expect(Expiry.mayAttach(deadline: 500, now: 499))
        #expect(!Expiry.mayAttach(deadline: 500, now: 500))
        #expect(Expiry.remaining(deadline: 500, now: 200) == 300)
        #expect(Expiry.remaining(deadline: 500, now: 900) == 0)
        #expect(Expiry.remaining(deadline: 0, now: 900) == 0)
    }

    @Test func dtlsHandshakeGetsThirtySecondsThenRetransmitsNoMore() {
        #expect(Expiry.dtls(established: false, startedAt: 1000, lastReceive: 1000, now: 1030, t) == .retransmit)
        #expect(Expiry.dtls(established: false, startedAt: 1000, lastReceive: 1000, now: 1031, t) == .handshakeTimedOut)
    }

    @Test func anEstablishedDTLSChannelDiesLikeATunnel() {
        #expect(Expiry.dtls(established: true, startedAt: 0, lastReceive: 1000, now: 1090, t) == .keep)
        #expect(Expiry.dtls(established: true, startedAt: 0, lastReceive: 1000, now: 1091, t) == .dead(idleSeconds: 91))
    }
}
