import GatewayCore
import GatewayWire
import Testing
@testable import GatewaySessionCore

/// The re-check at session-timeout, with an injected clock: monotonic `now` and wall time
/// differ on purpose (the deadline is monotonic, credential expiry is wall time).
@Suite struct RecheckTests {
    let wall: Int64 = 1_800_000_000
    func token(expiresIn: Int64) -> Identity {
        Identity(userId: "u1", userName: "alice@corp.test", tenantId: "t", expiresAt: wall + expiresIn)
    }
    func certificate(expiresIn: Int64, hash: String = "aa") -> Identity {
        Identity(userId: "u1", userName: "alice@corp.test", expiresAt: wall + expiresIn, certificateSHA256: hash)
    }

    @Test func aTokenSessionLivesAsLongAsItsTokenAtMost() {
        // 40 min of token left, session-timeout 1 h: the next check is at the token's expiry.
        #expect(Recheck.atDeadline(token(expiresIn: 2400), hasCertificateChain: false, policyDenied: nil,
                                   now: 100, wallNow: wall, sessionTimeout: 3600) == .extend(until: 2500))
        // Plenty left: one more period.
        #expect(Recheck.atDeadline(token(expiresIn: 86_400), hasCertificateChain: false, policyDenied: nil,
                                   now: 100, wallNow: wall, sessionTimeout: 3600) == .extend(until: 3700))
        // Expired: the session ends and says why.
        guard case .end(let why) = Recheck.atDeadline(token(expiresIn: 0), hasCertificateChain: false, policyDenied: nil,
                                                      now: 100, wallNow: wall, sessionTimeout: 3600) else {
            Issue.record("an expired token's session went on"); return
        }
        #expect(why.hasPrefix("session-timeout") && why.contains("expired"))
    }

    @Test func aDenyingPolicyEndsTheSessionWhateverItsCredential() {
        #expect(Recheck.atDeadline(token(expiresIn: 86_400), hasCertificateChain: false, policyDenied: "Contractors",
                                   now: 0, wallNow: wall, sessionTimeout: 3600) == .end(reason: "denied by group policy 'Contractors'"))
    }

    @Test func aCertificateIsVerifiedAgainByAuth() {
        let id = certificate(expiresIn: 86_400 * 30)
        #expect(Recheck.atDeadline(id, hasCertificateChain: true, policyDenied: nil, now: 0, wallNow: wall, sessionTimeout: 3600)
                == .askAuth(grace: Recheck.authGrace))
        // Without the chain there is nothing to verify: the session ends rather than go unchecked.
        guard case .end = Recheck.atDeadline(id, hasCertificateChain: false, policyDenied: nil, now: 0, wallNow: wall, sessionTimeout: 3600) else {
            Issue.record("a certificate session without its chain went on unchecked"); return
        }
        // Accepted, same certificate and user: one more period.
        #expect(Recheck.afterAuth(.accepted(id), session: id, now: 50, wallNow: wall, sessionTimeout: 3600) == .extend(until: 3650))
        // Revoked since the login: the session ends with auth's code and reason.
        #expect(Recheck.afterAuth(.rejected(.certificateRevoked, "serial 02 revoked"), session: id, now: 50, wallNow: wall, sessionTimeout: 3600)
                == .end(reason: "re-check refused: certificateRevoked: serial 02 revoked"))
        // Auth cannot tell (CRL missing, issuer down): not the user's fault; ask again later.
        #expect(Recheck.afterAuth(.rejected(.issuerUnavailable, "CRL expired"), session: id, now: 50, wallNow: wall, sessionTimeout: 3600)
                == .askAuth(grace: Recheck.authGrace))
        // Another certificate's or another user's answer is never taken as this session's.
        guard case .end = Recheck.afterAuth(.accepted(certificate(expiresIn: 86_400, hash: "bb")), session: id, now: 50, wallNow: wall, sessionTimeout: 3600),
              case .end = Recheck.afterAuth(.accepted(Identity(userId: "u1", userName: "mallory@corp.test", expiresAt: wall + 86_400, certificateSHA256: "aa")),
                                            session: id, now: 50, wallNow: wall, sessionTimeout: 3600) else {
            Issue.record("a mismatched answer extended the session"); return
        }
    }

    @Test func certificatePlusTokenIsBoundedByTheToken() {
        // The session's identity carries the token's oid and exp (sooner) and the certificate
        // hash; the re-check answers with the certificate's identity (its user by name).
        let session = Identity(userId: "oid-1", userName: "Alice@corp.test", tenantId: "t", expiresAt: wall + 600, certificateSHA256: "aa")
        let fresh = Identity(userId: "alice@corp.test", userName: "alice@corp.test", expiresAt: wall + 86_400 * 30, certificateSHA256: "aa")
        #expect(Recheck.afterAuth(.accepted(fresh), session: session, now: 0, wallNow: wall, sessionTimeout: 3600) == .extend(until: 600))
    }

    @Test func sessionTimeoutTurnedOffLiveMeansUntilTheCredentialExpires() {
        #expect(Recheck.atDeadline(token(expiresIn: 900), hasCertificateChain: false, policyDenied: nil,
                                   now: 10, wallNow: wall, sessionTimeout: 0) == .extend(until: 910))
    }

    @Test func renewSetsTheNextDeadline() {
        final class Conn {}
        var life = SessionLifecycle<Conn>(now: 0, sessionTimeout: 60)
        // A grace period while auth answers, then the real next deadline, which is sooner.
        life.renew(until: 90)
        #expect(life.deadline == 90)
        life.renew(until: 75)
        #expect(life.deadline == 75)
        life.end(reason: "logoff")
        life.renew(until: 500)
        #expect(life.deadline == 75)
        // A session without a deadline (session-timeout 0 at login) keeps none.
        var forever = SessionLifecycle<Conn>(now: 0, sessionTimeout: 0)
        forever.renew(until: 100)
        #expect(forever.deadline == 0)
    }
}

@Suite struct RestoredSessionTests {
    final class Conn {}

    @Test func aRestoredSessionWaitsForItsClientForTheReconnectWindow() {
        var life = SessionLifecycle<Conn>(restoredAt: 1000, deadline: 4000)
        let t = Expiry.Timeouts(auth: 60, deadPeer: 90, reconnect: 300, idle: 0, handshake: 10)
        // Not "no CONNECT after login": it was connected before the restart.
        #expect(life.expiry(now: 1100, lastTraffic: 1000, t) == nil)
        #expect(life.expiry(now: 1301, lastTraffic: 1000, t) == "reconnect window expired")
        guard case .attached(let first, nil) = life.attach(Conn(), now: 1100) else { Issue.record("refused"); return }
        #expect(!first)
        #expect(life.deadline == 4000)
    }

    @Test func cookieDigestsRoundTripThroughHex() {
        let bytes = (0..<32).map { UInt8($0 * 7 & 0xFF) }
        let key = CookieKey(digest: bytes)
        #expect(key.hex.count == 64)
        #expect(CookieKey(hex: key.hex) == key)
        #expect(CookieKey(hex: key.hex.uppercased()) == key)
        #expect(CookieKey(hex: "abc") == nil)
        #expect(CookieKey(hex: String(repeating: "g", count: 64)) == nil)
        #expect(CookieKey.bytes(hex: "00ff10") == [0, 255, 16])
    }
}
