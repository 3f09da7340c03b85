import Foundation
import GatewayCore
import GatewaySessionCore
import GatewaySystem
import GatewayWire
import Logging

/// Sessions across a gateway restart (docs/architecture.md, "Sessions across a restart").
/// Each session is handed to mstunnel-auth as it is made or renewed and forgotten when it
/// ends; a new process takes them back before its first client reconnects, with their
/// addresses, so the stock client's reconnect with its cookie finds its session and keeps
/// its address without a new login. The gateway writes no file itself (it is confined);
/// the cookie never leaves it, only its SHA-256.
extension Gateway {
    /// Hands `s` to mstunnel-auth (again, after a renewal). If auth cannot be reached the
    /// session lives on here, only not across a restart.
    func keep(_ s: Session) {
        let now = monotonicSeconds()
        let wallNow = wallSeconds()
        let stored = StoredSession(
            cookieDigest: s.cookieKey.hex, id: hex(s.id), identity: s.identity, transport: s.transport,
            address: s.address.description, createdAt: s.createdWall,
            deadline: s.deadline > 0 ? wallNow + (s.deadline - now) : 0,
            certificateChain: s.certificateChain, userAgent: s.userAgent)
        if !auth.notify(.saveSession(SaveSessionRequest(session: stored)), now: now) {
            logger.debug("session.not_kept", metadata: sessionMetadata(s, ["reason": "authentication service unreachable"]))
        }
    }

    func forget(_ s: Session) {
        auth.notify(.forgetSession(ForgetSessionRequest(cookieDigest: s.cookieKey.hex)), now: monotonicSeconds())
    }

    func requestRestoreIfNeeded(now: Int64) {
        guard !sessionsRestored, !restorePending, running else { return }
        restorePending = auth.requestRestore(now: now)
    }

    /// The sessions mstunnel-auth kept, taken back: each with its id, identity, address and
    /// deadline, detached, so its client has the reconnect window from now to come back.
    /// One that cannot be taken back (its address is outside the pool or taken, its
    /// deadline passed, group policy now denies it) is forgotten, and its client logs in
    /// again.
    func restoreSessions(_ list: [StoredSession]?) {
        restorePending = false
        guard let list else {
            logger.warning("sessions.restore_failed", metadata: ["reason": "unexpected answer from the authentication service", "retry": "in 1 s"])
            return
        }
        sessionsRestored = true
        let now = monotonicSeconds()
        let wallNow = wallSeconds()
        var restored = 0
        var dropped: [String: Int] = [:]
        for stored in list {
            func drop(_ why: String) {
                dropped[why, default: 0] += 1
                auth.notify(.forgetSession(ForgetSessionRequest(cookieDigest: stored.cookieDigest)), now: now)
            }
            guard let key = CookieKey(hex: stored.cookieDigest), let id = CookieKey.bytes(hex: stored.id), id.count == 32,
                  let address = IPv4Address(stored.address) else { drop("malformed"); continue }
            if sessions.lookup(cookie: key) != nil { continue }
            if stored.deadline > 0, stored.deadline <= wallNow { drop("past its deadline"); continue }
            let policy = settings.effectivePolicy(for: stored.identity.policySubject)
            if policy.denied { drop("denied by group policy"); continue }
            let slot = sessions.reserveSlot()
            guard pool.allocate(owner: slot, exactly: address) != nil else {
                sessions.unreserve(slot)
                drop("address outside the pool or taken")
                continue
            }
            let deadline = stored.deadline > 0 ? now + (stored.deadline - wallNow) : 0
            let s = Session(slot: slot, id: id, cookieKey: key, identity: stored.identity, transport: stored.transport,
                            address: address, now: now, sessionTimeout: 0, policy: policy,
                            restored: SessionLifecycle(restoredAt: now, deadline: deadline))
            s.createdWall = stored.createdAt
            s.certificateChain = stored.certificateChain
            s.userAgent = stored.userAgent
            sessions.insert(s)
            restored += 1
            logger.info("session.restored", metadata: sessionMetadata(s, ["reconnect_window_s": "\(settings.advanced.reconnectTimeout)"]))
        }
        logger.info("sessions.restored", metadata: [
            "sessions": "\(restored)",
            "dropped": "\(dropped.map { "\($0.value) \($0.key)" }.sorted().joined(separator: ", "))",
        ])
    }
}
