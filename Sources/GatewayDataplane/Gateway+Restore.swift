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
        guard !sessionStoreUnavailable else { return }
        if !auth.notify(.saveSession(SaveSessionRequest(session: stored(s))), now: monotonicSeconds()) {
            logger.debug("session.not_kept", metadata: sessionMetadata(s, ["reason": "authentication service unreachable"]))
        }
    }

    /// What of `s` outlives this process (and goes into its ticket).
    func stored(_ s: Session) -> StoredSession {
        let now = monotonicSeconds()
        let wallNow = wallSeconds()
        return StoredSession(
            cookieDigest: s.cookieKey.hex, id: hex(s.id), identity: s.identity, transport: s.transport,
            address: s.address.description, createdAt: s.createdWall,
            deadline: s.deadline > 0 ? wallNow + (s.deadline - now) : 0,
            certificateChain: s.certificateChain, userAgent: s.userAgent)
    }

    /// The session ended here. Its ticket is revoked only when the user's session ended for
    /// good (docs/site.md, "Revocation"): a logoff, a refused re-check, a policy denial, or
    /// any end of a session whose client is connected here right now. A copy whose client is
    /// away may live on at a sibling (it stayed away past the reconnect window, a balancer
    /// moved it, a drain handed it over): ending that copy must not end the session there.
    func forget(_ s: Session, reason: String, wasConnected: Bool) {
        guard !sessionStoreUnavailable else { return }
        let revoke = reason != Self.revokedElsewhereReason && reason != Self.drainReason
            && (reason == "logoff" || reason.hasPrefix("re-check refused") || reason.hasPrefix("denied by group policy") || wasConnected)
        let request = ForgetSessionRequest(cookieDigest: s.cookieKey.hex, sessionId: hex(s.id), revoke: revoke)
        if !auth.notify(.forgetSession(request), now: monotonicSeconds()) {
            // Sent when auth is back, before it is asked for anything else (a ticket of this
            // very session, or the reconcile pass).
            if pendingForgets.count < Self.maxPendingForgets { pendingForgets.append(request) }
        }
    }

    static let maxPendingForgets = 100_000

    /// Forgets that could not be sent while auth was away, in order.
    func sendPendingForgets(now: Int64) {
        guard !pendingForgets.isEmpty, auth.connected else { return }
        var sent = 0
        for request in pendingForgets {
            guard auth.notify(.forgetSession(request), now: now) else { break }
            sent += 1
        }
        pendingForgets.removeFirst(sent)
        if sent > 0 { logger.info("sessions.forgets_sent", metadata: ["count": "\(sent)", "why": "held while the authentication service was away"]) }
    }

    /// At start, and whenever the auth connection is new (auth restarted, or was away),
    /// read back what mstunnel-auth keeps, a page at a time: the first time in this process
    /// to take the sessions back; later to reconcile, because saves and forgets sent while
    /// auth was away, or in flight when it died, are lost — a session made then would not
    /// survive the next restart, and one that ended then would come back with it.
    /// While the sessions a previous process left are not yet taken back: why an unknown
    /// cookie gets 503, not 401. For at most the reconnect window after start (no session
    /// could be waiting longer); in practice until mstunnel-auth answers, milliseconds when it
    /// is up — and while it is down nobody can log in anyway.
    func restoreWait() -> String? {
        guard !sessionsRestored, !sessionStoreUnavailable,
              monotonicSeconds() - startedMono < Int64(settings.advanced.reconnectTimeout) else { return nil }
        return "sessions are being restored after a restart; try again"
    }

    func requestRestoreIfNeeded(now: Int64) {
        guard running, !sessionStoreUnavailable, !restorePending, auth.connected, auth.connects != restoreConnect || restoreCursor != nil else { return }
        // Held forgets first: auth answers in order, so the pass below sees the store after them.
        sendPendingForgets(now: now)
        if restoreCursor == nil {
            // A new pass (a new connection, or the first).
            if auth.connects != restoreConnect { ticketsUnavailable = false }
            restoreConnect = auth.connects
            restoreSeen.removeAll(keepingCapacity: true)
            restoreCounts = (0, 0, 0)
            restoreDropped = [:]
        }
        restorePending = auth.requestRestore(after: restoreCursor, now: now)
    }

    /// One page of the sessions mstunnel-auth keeps.
    func restoreSessions(_ page: RestoreSessionsResponse?, refused: WireErrorResponse? = nil) {
        restorePending = false
        if let refused, refused.code == WireErrorResponse.unknownRequest || refused.code == WireErrorResponse.notAllowed {
            sessionStoreUnavailable = true
            sessionsRestored = true
            logger.warning("sessions.store_unavailable", metadata: [
                "reason": "\(refused.message)", "effect": "sessions will not outlive a restart of this gateway"])
            return
        }
        guard let page else {
            restoreCursor = nil
            restoreConnect = 0  // ask again at the next tick
            logger.warning("sessions.restore_failed", metadata: ["reason": "unexpected answer from the authentication service", "retry": "in 1 s"])
            return
        }
        let now = monotonicSeconds()
        let wallNow = wallSeconds()
        let takeBack = !sessionsRestored
        for stored in page.sessions {
            if takeBack { takeBackSession(stored, now: now, wallNow: wallNow) } else { reconcile(stored, now: now) }
        }
        restoreCursor = page.more ? page.sessions.last?.cookieDigest : nil
        if restoreCursor != nil {
            requestRestoreIfNeeded(now: now)
            return
        }
        // The last page.
        if takeBack {
            sessionsRestored = true
            logger.info("sessions.restored", metadata: [
                "sessions": "\(restoreCounts.restored)",
                "dropped": "\(restoreDropped.map { "\($0.value) \($0.key)" }.sorted().joined(separator: ", "))",
            ])
        } else {
            for s in sessions.all where !restoreSeen.contains(s.cookieKey) {
                keep(s)
                restoreCounts.saved += 1
            }
            if restoreCounts.saved + restoreCounts.forgotten > 0 {
                logger.info("sessions.reconciled", metadata: [
                    "saved": "\(restoreCounts.saved)", "forgotten": "\(restoreCounts.forgotten)",
                    "why": "the authentication service was away or restarted",
                ])
            }
        }
        restoreSeen.removeAll()
    }

    /// After auth came back: a kept session this process no longer has is forgotten.
    private func reconcile(_ stored: StoredSession, now: Int64) {
        if let key = CookieKey(hex: stored.cookieDigest), sessions.lookup(cookie: key) != nil {
            restoreSeen.insert(key)
        } else {
            // Not revoked: every session that ended here for good while auth was away was
            // forgotten (and revoked) by `sendPendingForgets` before this pass; what is left
            // (a ticket sealed after the gateway gave up waiting, a copy that moved on) may
            // live on elsewhere.
            auth.notify(.forgetSession(ForgetSessionRequest(cookieDigest: stored.cookieDigest, sessionId: stored.id, revoke: false)), now: now)
            restoreCounts.forgotten += 1
        }
    }

    /// A kept session taken back: with its id, identity, address and deadline, detached, so
    /// its client has the reconnect window from now to come back. One that cannot be taken
    /// back (its address is outside the pool or taken, its deadline passed, group policy now
    /// denies it) is forgotten, and its client logs in again.
    private func takeBackSession(_ stored: StoredSession, now: Int64, wallNow: Int64) {
        switch takeBack(stored, now: now, wallNow: wallNow) {
        case .success(let s):
            guard let s else { return }
            s.quarantineUntil = stored.ticketNotAfter
            restoreCounts.restored += 1
            logger.info("session.restored", metadata: sessionMetadata(s, ["reconnect_window_s": "\(settings.advanced.reconnectTimeout)"]))
        case .failure(let refusal):
            restoreDropped[refusal.reason, default: 0] += 1
            // Not revoked: the session may live on at a sibling of the Site.
            auth.notify(.forgetSession(ForgetSessionRequest(cookieDigest: stored.cookieDigest, revoke: false)), now: now)
        }
    }

    struct TakeBackRefusal: Error {
        let reason: String
    }

    /// A stored session (from the store after a restart, or from a ticket) becomes a detached
    /// session here with its id, identity, address and deadline; its client has the
    /// reconnect window from now to CONNECT. nil: this process has it already.
    func takeBack(_ stored: StoredSession, now: Int64, wallNow: Int64) -> Result<Session?, TakeBackRefusal> {
        func refuse(_ why: String) -> Result<Session?, TakeBackRefusal> { .failure(TakeBackRefusal(reason: why)) }
        guard let key = CookieKey(hex: stored.cookieDigest), let id = CookieKey.bytes(hex: stored.id), id.count == 32,
              let address = IPv4Address(stored.address) else { return refuse("malformed") }
        // Made by this process already (a login in its first moments, or a CONNECT with the
        // same ticket a moment ago): nothing to take back.
        if sessions.lookup(cookie: key) != nil { return .success(nil) }
        let policy = settings.effectivePolicy(for: stored.identity.policySubject)
        if policy.denied { return refuse("denied by group policy") }
        let slot = sessions.reserveSlot()
        guard pool.allocate(owner: slot, exactly: address) != nil else {
            sessions.unreserve(slot)
            return refuse("address outside the pool or taken")
        }
        // A deadline that passed meanwhile (the gateway was down, or the ticket was sealed at
        // login and the session renewed since on another server): re-checked shortly — not
        // `now`, which would refuse the CONNECT that is about to attach as "session-timeout".
        let deadline = stored.deadline > 0 ? now + max(Recheck.authGrace, stored.deadline - wallNow) : 0
        let s = Session(slot: slot, id: id, cookieKey: key, identity: stored.identity, transport: stored.transport,
                        address: address, now: now, sessionTimeout: 0, policy: policy,
                        restored: SessionLifecycle(restoredAt: now, deadline: deadline))
        s.createdWall = stored.createdAt
        s.certificateChain = stored.certificateChain
        s.userAgent = stored.userAgent
        sessions.insert(s)
        return .success(s)
    }
}
