import Foundation
import GatewayCore
import GatewaySessionCore
import GatewaySystem
import GatewayWire
import Logging

/// Resumption tickets (docs/site.md): a new session's cookie is its `StoredSession` sealed by
/// mstunnel-auth under the ticket key (the Site key when the server is one of many). A client
/// whose server is gone reconnects through the balancer to a sibling with that cookie; the
/// sibling has its auth open it and takes the session back — same id, same identity, same
/// tunnel address — without a new login. This gateway never sees the key: it can neither
/// read nor forge a ticket.
extension Gateway {
    /// Asks mstunnel-auth to keep `s` and seal its ticket; the login is answered when it
    /// does (`sealAnswered`). False when no ticket will come (auth seals none, or cannot be
    /// reached): the caller admits `s` under `cookie`, this gateway's own.
    func sealTicket(for s: Session, cookie: String, on c: ClientConnection) -> Bool {
        guard !ticketsUnavailable, !sessionStoreUnavailable else { return false }
        guard auth.seal(stored(s), sessionSlot: s.slot, connection: c, now: monotonicSeconds()) != nil else { return false }
        sealing[s.slot] = (s, cookie)
        return true
    }

    /// mstunnel-auth answered `seal` or `openTicket`; nil: no answer (it went away, or did
    /// not answer in time).
    func ticketAnswered(_ p: AuthChannel.Pending, _ response: WireResponse?) {
        if let slot = p.sealing { return sealAnswered(slot, p, response) }
        guard let c = connection(for: p) else { return }
        switch response {
        case .openTicket(let answer)?:
            guard let stored = answer.session else {
                return perform(c.login.ticketAnswered(.refused(reason: answer.refusal ?? "the ticket does not open")), c)
            }
            if drain != nil { return perform(c.login.authUnavailable(Self.drainRefusal), c) }
            perform(c.login.ticketAnswered(resume(stored, keyId: answer.keyId, on: c)), c)
        case .error(let e)?:
            if e.code == WireErrorResponse.unknownRequest || e.code == WireErrorResponse.notAllowed {
                ticketsNotSealed(e.message)
                perform(c.login.ticketAnswered(.refused(reason: "the ticket cannot be opened here: \(e.message)")), c)
            } else {
                // Auth's trouble, not the client's: a 503 the stock client retries.
                authUnavailable(c, reason: "the authentication service could not open the ticket: \(e.message)",
                                clientReason: "authentication service unavailable")
            }
        case nil:
            authUnavailable(c, reason: "authentication service unreachable or slow; the ticket could not be opened", clientReason: "authentication service unavailable")
        case .some:
            perform(c.login.ticketAnswered(.refused(reason: "unexpected answer from the authentication service")), c)
        }
    }

    /// A CONNECT whose cookie is a ticket no session here has.
    func openTicket(_ ticket: String, for c: ClientConnection) {
        if drain != nil {
            // A 503: the client tries again, and the balancer sends it to a sibling.
            return perform(c.login.authUnavailable(Self.drainRefusal), c)
        }
        if ticketsUnavailable || sessionStoreUnavailable {
            return perform(c.login.ticketAnswered(.refused(reason: "this gateway's mstunnel-auth opens no tickets")), c)
        }
        // A logoff held while auth was away goes first: auth answers in order.
        if auth.ensureConnected(now: monotonicSeconds()) { sendPendingForgets(now: monotonicSeconds()) }
        if auth.openTicket(ticket, connection: c, now: monotonicSeconds()) == nil {
            // A 503, so the client tries again (after a restart, the text says why).
            authUnavailable(c, reason: "authentication service unreachable at \(options.authSocket); the ticket could not be opened",
                            clientReason: restoreWait() ?? "authentication service unavailable")
        }
    }

    private func sealAnswered(_ slot: Int32, _ p: AuthChannel.Pending, _ response: WireResponse?) {
        guard let (s, ownCookie) = sealing.removeValue(forKey: slot) else { return }
        var cookie = ownCookie
        var sealed = false
        switch response {
        case .sealSession(let answer)?:
            if let key = CookieKey(hex: answer.cookieDigest) {
                s.cookieKey = key
                cookie = answer.ticket
                sealed = true
            }
        case .error(let e)? where e.code == WireErrorResponse.unknownRequest || e.code == WireErrorResponse.notAllowed:
            ticketsNotSealed(e.message)
        case .error(let e)?:
            logger.warning("session.ticket_failed", metadata: sessionMetadata(s, ["reason": "\(e.message)", "effect": "this session can resume only on this server"]))
        default:
            logger.warning("session.ticket_failed", metadata: sessionMetadata(s, ["reason": "no answer from the authentication service", "effect": "this session can resume only on this server"]))
        }
        guard let c = connection(for: p) else {
            // The client went away while its ticket was sealed: nothing was given out.
            if let emptied = pool.release(s.address, owner: s.slot) { retiredPrefixEmptied(emptied) }
            sessions.unreserve(s.slot)
            if sealed { auth.notify(.forgetSession(ForgetSessionRequest(cookieDigest: s.cookieKey.hex, sessionId: hex(s.id))), now: monotonicSeconds()) }
            return
        }
        admit(s, transport: s.transport, kept: sealed)
        perform(c.login.sessionDecided(.loginComplete(cookie: cookie, banner: settings.advanced.banner)) { isSession($0) }, c)
    }

    static let revokedElsewhereReason = "revoked on another server of the Site (logoff there)"

    /// The agent passes on revocations from the Site: a copy of such a session here ends
    /// (its ticket is revoked here already, so not again).
    func endSessions(_ r: EndSessionsRequest) -> EndSessionsResponse {
        let ids = Set(r.sessionIds.prefix(1000))
        var ended = 0
        for s in sessions.all where !s.life.isEnded && ids.contains(hex(s.id)) {
            endSession(s, reason: Self.revokedElsewhereReason)
            ended += 1
        }
        return EndSessionsResponse(ended: ended)
    }

    private func ticketsNotSealed(_ why: String) {
        guard !ticketsUnavailable else { return }
        ticketsUnavailable = true
        logger.warning("tickets.unavailable", metadata: ["reason": "\(why)", "effect": "cookies are this gateway's own; sessions resume only on this server"])
    }

    /// The session in an opened ticket, taken back here (a foreign lease of its address when
    /// it was made on a sibling). The same path as a restore after a restart.
    private func resume(_ stored: StoredSession, keyId: String?, on c: ClientConnection) -> LoginConversation.TicketOutcome {
        if let bound = stored.identity.certificateSHA256, bound != c.clientCertificateSHA256 {
            // Checked before the session is taken: a copied ticket without its certificate
            // must not even hold the address.
            return .refused(reason: "certificateMismatch: the ticket of a certificate login was presented \(c.clientCertificateSHA256 == nil ? "without a client certificate" : "with another client certificate")")
        }
        // The session limits hold for a session taken back as for a new one (a user must not
        // collect sessions by logging in on several servers and bringing every ticket here).
        if let key = CookieKey(hex: stored.cookieDigest), sessions.lookup(cookie: key) == nil {
            let limits = SessionAdmission.Limits(maxSessions: settings.advanced.maxSessions, maxSessionsPerUser: settings.advanced.maxSessionsPerUser)
            switch sessions.admission(ofUser: stored.identity.userId, limits) {
            case .admit: break
            case .admitReplacing(let slot):
                if let idle = sessions.session(at: slot) { endSession(idle, reason: "replaced by a newer login (max-sessions-per-user)") }
            case .refuse(_, let reason):
                counters.logins.sessionLimit &+= 1
                logger.warning("session.refused", metadata: ["reason": "\(reason)", "user.id": "\(stored.identity.userId)", "resume": "true"])
                return .unavailable(reason: "session limit reached on this server (\(reason))")
            }
        }
        switch takeBack(stored, now: monotonicSeconds(), wallNow: wallSeconds()) {
        case .failure(let refusal):
            logger.notice("session.not_resumed", metadata: ["peer.address": "\(c.peer)", "session.id": "\(stored.id.prefix(8))",
                                                             "user.id": "\(stored.identity.userId)", "reason": "\(refusal.reason)"])
            return .refused(reason: "the session in the ticket cannot be taken here: \(refusal.reason)")
        case .success(let s):
            guard let s else { return .resumed }  // here already (the same ticket a moment ago)
            if stored.identity.certificateSHA256 != nil { s.certificateChain = c.clientCertificateChain }
            keep(s)
            counters.sessionsResumed &+= 1
            logger.info("session.resumed", metadata: sessionMetadata(s, ["peer.address": "\(c.peer)", "ticket.key": "\(keyId ?? "-")",
                                                                         "reconnect_window_s": "\(settings.advanced.reconnectTimeout)"]))
            return .resumed
        }
    }
}
