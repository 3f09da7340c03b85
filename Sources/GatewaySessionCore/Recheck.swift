import GatewayWire

/// The re-check at `session-timeout` (docs/auth.md, "Re-validation"): a session does not
/// simply end at its deadline, nor live forever on the credential it logged in with. At
/// each deadline it goes on only if that credential is still good:
///
/// - its group policy must still allow it;
/// - a token must not have expired (`Identity.expiresAt` is the token's `exp`; the gateway
///   keeps no token, so it cannot show it to the issuer again — an expired one means a new
///   login);
/// - a client certificate is verified again by mstunnel-auth (chain, expiry, the CRL as it
///   is now), so a revocation ends the session at its next deadline at the latest.
///
/// The next deadline is `session-timeout` later, but never past the credential's expiry:
/// a session lives as long as its token, or re-checked every period as long as its
/// certificate. No I/O and no clock (RecheckTests).
public enum Recheck {
    public enum Decision: Equatable, Sendable {
        /// Good until then.
        case extend(until: Int64)
        /// Ask mstunnel-auth about the certificate; keep the session `grace` seconds
        /// meanwhile, then ask again if no answer came.
        case askAuth(grace: Int64)
        case end(reason: String)
    }

    /// How long a session waits for mstunnel-auth's answer, and how long it is kept when
    /// auth cannot answer: ending every certificate session while auth restarts would turn
    /// an auth outage into a user outage (docs/reliability.md, the auth-outage test).
    public static let authGrace: Int64 = 30
    /// When mstunnel-auth cannot be reached at all, the next try comes this much later.
    public static let unreachableRetry: Int64 = 5

    /// At the deadline, before asking anyone.
    public static func atDeadline(_ identity: Identity, hasCertificateChain: Bool, policyDenied: String?,
                                  now: Int64, wallNow: Int64, sessionTimeout: Int) -> Decision {
        if let policy = policyDenied { return .end(reason: "denied by group policy '\(policy)'") }
        if identity.expiresAt <= wallNow {
            return .end(reason: "session-timeout (the credential it logged in with has expired; log in again)")
        }
        if identity.certificateSHA256 != nil {
            guard hasCertificateChain else { return .end(reason: "session-timeout (no certificate to re-check)") }
            return .askAuth(grace: authGrace)
        }
        return .extend(until: next(now: now, wallNow: wallNow, expiresAt: identity.expiresAt, sessionTimeout: sessionTimeout))
    }

    /// mstunnel-auth answered the certificate re-check.
    public static func afterAuth(_ response: ValidateTokenResponse, session identity: Identity,
                                 now: Int64, wallNow: Int64, sessionTimeout: Int) -> Decision {
        if let r = response.rejection {
            // Not the user's doing: keep the session and ask again later.
            if r.code == .issuerUnavailable { return .askAuth(grace: authGrace) }
            return .end(reason: "re-check refused: \(r.code.rawValue): \(r.reason)")
        }
        guard let fresh = response.identity else { return .askAuth(grace: authGrace) }
        guard fresh.certificateSHA256 == identity.certificateSHA256 else {
            return .end(reason: "re-check refused: the certificate re-checked is not the session's")
        }
        // By name: in certificate+token the session's userId is the token's oid, while a
        // certificate maps to a name; the login checked that name against the token's.
        guard fresh.userName.lowercased() == identity.userName.lowercased() else {
            return .end(reason: "re-check refused: the certificate now maps to another user")
        }
        // In certificate+token mode the session's token expiry still bounds it.
        let expiresAt = min(fresh.expiresAt, identity.expiresAt)
        guard expiresAt > wallNow else { return .end(reason: "session-timeout (the credential it logged in with has expired; log in again)") }
        return .extend(until: next(now: now, wallNow: wallNow, expiresAt: expiresAt, sessionTimeout: sessionTimeout))
    }

    /// `session-timeout` from now, or the credential's expiry if sooner.
    /// (`session-timeout` changed to 0 while the session lived: until the credential expires.)
    static func next(now: Int64, wallNow: Int64, expiresAt: Int64, sessionTimeout: Int) -> Int64 {
        let left = expiresAt - wallNow
        return now + max(1, sessionTimeout > 0 ? min(Int64(sessionTimeout), left) : left)
    }

}
