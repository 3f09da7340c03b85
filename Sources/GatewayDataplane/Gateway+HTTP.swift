import Foundation
import GatewayCore
import GatewaySessionCore
import GatewayTLS
import GatewayWire
import Logging

/// The login phase, carried out: `LoginConversation` (GatewaySessionCore) reads the
/// requests and says what to do; this file does it — sends, asks mstunnel-auth, logs,
/// creates sessions, starts tunnels.
extension Gateway {
    /// Decrypted bytes from a connection in its login phase.
    func loginInput(_ c: ClientConnection, _ bytes: UnsafeRawBufferPointer) {
        perform(c.login.received(bytes) { isSession($0) }, c)
    }

    func isSession(_ cookie: String) -> Bool {
        sessions.lookup(cookie: CookieKey(digest: GatewayCrypto.sha256(cookie.utf8))) != nil
    }

    func perform(_ actions: [LoginAction], _ c: ClientConnection) {
        for action in actions {
            guard c.phase != .closed else { return }
            switch action {
            case .reply(var answer):
                if case .livenessPage = answer, drain != nil {
                    // The balancer's probe: leave this server out.
                    answer = .unavailable(Self.drainRefusal)
                } else if answer == .cookieNotAcceptable, let wait = restoreWait() {
                    // Its session may be among those not yet taken back: a 401 would make the
                    // stock client give up; a 503 makes it try again.
                    answer = .unavailable(wait)
                } else if answer == .cookieNotAcceptable {
                    logger.info("connect.refused", metadata: ["peer.address": "\(c.peer)", "reason": "no session has this cookie, or it has expired"])
                }
                writeRecord(c, answer.response().serialized())
            case .validate(let token, let transport):
                startValidation(c, token: token, transport: transport)
            case .reject(let transport, let code, let reason):
                rejectLogin(c, transport: transport, code: code, reason: reason)
            case .malformed(let why):
                logger.info("http.bad_request", metadata: ["peer.address": "\(c.peer)", "error": "\(why)"])
                penalize(c)
            case .tunnelFrameBeforeConnect:
                malformedInput(.cstpBeforeConnect, on: c)
                penalize(c)
            case .flood:
                logger.info("http.flood", metadata: ["peer.address": "\(c.peer)"])
                closeConnection(c, reason: "request flood while waiting for auth")
            case .createSession(let identity, let transport):
                if drain != nil {
                    perform(c.login.sessionDecided(.unavailable(Self.drainRefusal)) { isSession($0) }, c)
                    continue
                }
                let cookie = ownCookie()
                let key = CookieKey(digest: GatewayCrypto.sha256(cookie.utf8))
                switch prepareSession(c, identity: identity, transport: transport, cookieKey: key) {
                case .success(let s):
                    // Its cookie is a ticket sealed by mstunnel-auth (Gateway+Tickets), or,
                    // when auth seals none, one of this gateway's own.
                    if sealTicket(for: s, cookie: cookie, on: c) { continue }
                    admit(s, transport: transport)
                    perform(c.login.sessionDecided(.loginComplete(cookie: cookie, banner: settings.advanced.banner)) { isSession($0) }, c)
                case .failure(let refusal):
                    guard let reply = refusal.reply else { continue }
                    perform(c.login.sessionDecided(reply) { isSession($0) }, c)
                }
            case .openTicket(let cookie):
                openTicket(cookie, for: c)
            case .startTunnel(let cookie, let identity, let request):
                startTunnel(c, cookie: cookie, identity: identity, request: request)
            }
        }
    }

    /// A failed login or a malformed request from `c`'s address adds to its ban score.
    private func penalize(_ c: ClientConnection) {
        if sourceGuard.penalize(c.source, now: monotonicSeconds()) {
            logger.warning("source.banned", metadata: [
                "peer.address": "\(c.peer)", "score": "\(sourceGuard.score(of: c.source, now: monotonicSeconds()))",
                "for_seconds": "\(settings.advanced.banResetTime)"])
        }
    }

    private func rejectLogin(_ c: ClientConnection, transport: TokenTransport, code: String, reason: String) {
        counters.authFailures += 1
        // The issuer being unreachable is not the client's doing.
        if code != TokenRejection.Code.issuerUnavailable.rawValue { penalize(c) }
        logger.notice("login.rejected", metadata: ["peer.address": "\(c.peer)", "transport": "\(transport.rawValue)", "code": "\(code)", "reason": "\(reason)"])
        events.record(.loginRejected, time: wallMilliseconds()) { e in
            e.clientAddress = c.peer
            e.reason = "\(code): \(reason)"
        }
    }

    private func startValidation(_ c: ClientConnection, token: String, transport: TokenTransport) {
        if auth.validate(token: token, transport: transport, peer: c.peer, connection: c, now: monotonicSeconds()) == nil {
            authUnavailable(c, reason: "authentication service unreachable at \(options.authSocket)",
                            clientReason: "authentication service unavailable")
        }
    }

    /// No answer will come for `c`'s token: a 503 that says why.
    func authUnavailable(_ c: ClientConnection, reason: String, clientReason: String? = nil) {
        counters.logins.authUnavailable &+= 1
        logger.warning("login.unavailable", metadata: ["peer.address": "\(c.peer)", "reason": "\(reason)"])
        perform(c.login.authUnavailable(clientReason ?? reason), c)
    }

    /// The answer from mstunnel-auth for a waiting connection.
    func authCompleted(_ p: AuthChannel.Pending, _ response: ValidateTokenResponse) {
        counters.authLatency.record(nanos: monotonicNanos() &- p.sentNanos)
        if let target = p.recheck { return recheckAnswered(target, response) }
        guard let c = connection(for: p) else { return }
        perform(c.login.authAnswered(response) { isSession($0) }, c)
    }

    /// A CONNECT: the session under `cookie` (created for `identity` when the cookie was
    /// a token and no session has it yet) takes this connection as its tunnel.
    private func startTunnel(_ c: ClientConnection, cookie: String, identity: Identity?, request: HTTPRequest) {
        let key = CookieKey(digest: GatewayCrypto.sha256(cookie.utf8))
        var session = sessions.lookup(cookie: key)
        if session == nil, let identity {
            if drain != nil {
                perform(c.login.sessionDecided(.unavailable(Self.drainRefusal)) { isSession($0) }, c)
                return
            }
            switch createSession(c, identity: identity, transport: .cookie, cookieKey: key) {
            case .success(let s): session = s
            case .failure(let refusal):
                if let reply = refusal.reply { perform(c.login.sessionDecided(reply) { isSession($0) }, c) }
                return
            }
        }
        guard let session else {
            // The session ended between the lookup and now (never within one call today).
            logger.info("connect.refused", metadata: ["peer.address": "\(c.peer)", "reason": "unknown or expired session cookie"])
            perform(c.login.sessionDecided(.cookieNotAcceptable) { isSession($0) }, c)
            return
        }
        if let bound = session.identity.certificateSHA256, bound != c.clientCertificateSHA256 {
            // The cookie of a certificate login, on a connection without that certificate:
            // a copied cookie, not the client that logged in.
            rejectLogin(c, transport: .cookie, code: "certificateMismatch",
                        reason: "the session's cookie was presented \(c.clientCertificateSHA256 == nil ? "without a client certificate" : "with another client certificate"); it is bound to the certificate it logged in with")
            perform(c.login.sessionDecided(.cookieNotAcceptable) { isSession($0) }, c)
            return
        }
        // Group policy is looked at again on every CONNECT: a configuration change since
        // the login applies when the client reconnects.
        session.policy = settings.effectivePolicy(for: session.identity.policySubject)
        if session.policy.denied {
            refuseByPolicy(c, session.identity, session.policy)
            endSession(session, reason: "denied by group policy '\(session.policy.policyName ?? "")'")
            return
        }
        attach(c, session, request)
    }

    /// The user logged in fine but their group policy denies the tunnel: a 403 that says
    /// so, a log line and an event naming the policy. No ban score (not an attack).
    private func refuseByPolicy(_ c: ClientConnection, _ identity: Identity, _ policy: EffectivePolicy) {
        let name = policy.policyName ?? ""
        logger.notice("session.denied_by_policy", metadata: [
            "peer.address": "\(c.peer)", "user.id": "\(identity.userId)", "user.name": "\(identity.userName)", "policy": "\(name)"])
        events.record(.loginRejected, time: wallMilliseconds()) { e in
            e.clientAddress = c.peer
            e.userId = identity.userId
            e.userName = identity.userName
            e.deviceId = identity.deviceId
            e.reason = "groupPolicyDenied: group policy '\(name)' gives this user no tunnel"
        }
        counters.policyDenials += 1
        perform(c.login.sessionDecided(.forbidden("your account's group policy does not allow a tunnel here")) { isSession($0) }, c)
    }

    struct SessionRefusal: Error {
        /// nil: already answered.
        let reply: LoginReply?
    }

    /// 32 random bytes, base64url: the cookie of a session when mstunnel-auth seals no ticket.
    func ownCookie() -> String {
        Data(GatewayCrypto.randomBytes(32)).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    /// Creates a session with a fresh address, or says what to answer instead.
    private func createSession(_ c: ClientConnection, identity: Identity, transport: TokenTransport, cookieKey: CookieKey) -> Result<Session, SessionRefusal> {
        prepareSession(c, identity: identity, transport: transport, cookieKey: cookieKey).map { s in
            admit(s, transport: transport)
            return s
        }
    }

    /// A session with a fresh address and a reserved slot, not yet in the directory (it has
    /// no final cookie yet when a ticket is sealed for it), or what to answer instead.
    func prepareSession(_ c: ClientConnection, identity: Identity, transport: TokenTransport, cookieKey: CookieKey) -> Result<Session, SessionRefusal> {
        let policy = settings.effectivePolicy(for: identity.policySubject)
        if identity.groupsOverage == true, !settings.groupPolicies.isEmpty {
            logger.warning("policy.groups_overage", metadata: [
                "user.id": "\(identity.userId)", "user.name": "\(identity.userName)", "policy": "\(policy.policyName ?? "-")",
                "why": "the token carries no groups (too many); policies on groups cannot match this user, use app roles"])
        }
        if policy.denied {
            refuseByPolicy(c, identity, policy)
            return .failure(SessionRefusal(reply: nil))
        }
        let limits = SessionAdmission.Limits(maxSessions: settings.advanced.maxSessions, maxSessionsPerUser: settings.advanced.maxSessionsPerUser)
        switch sessions.admission(ofUser: identity.userId, limits) {
        case .admit: break
        case .admitReplacing(let slot):
            if let idle = sessions.session(at: slot) { endSession(idle, reason: "replaced by a newer login (max-sessions-per-user)") }
        case .refuse(let answer, let reason):
            counters.logins.sessionLimit &+= 1
            logger.warning("session.refused", metadata: ["reason": "\(reason)", "limit": "\(reason.hasPrefix("max-sessions-per-user") ? limits.maxSessionsPerUser : limits.maxSessions)",
                                                         "user.id": "\(identity.userId)", "user.name": "\(identity.userName)"])
            return .failure(SessionRefusal(reply: answer))
        }
        let slot = sessions.reserveSlot()
        guard let address = pool.allocate(owner: slot, hint: stableHash(identity.userId)) else {
            sessions.unreserve(slot)
            logger.error("pool.exhausted", metadata: ["pool": "\(settings.pool)", "in_use": "\(pool.inUse)", "user.id": "\(identity.userId)"])
            return .failure(SessionRefusal(reply: .unavailable("no free client address")))
        }
        let s = Session(slot: slot, id: GatewayCrypto.randomBytes(32), cookieKey: cookieKey, identity: identity, transport: transport,
                        address: address, now: monotonicSeconds(), sessionTimeout: settings.advanced.sessionTimeout, policy: policy)
        // The first re-check comes no later than the credential's expiry: a token session never
        // outlives its token (Recheck), however long session-timeout is.
        if s.deadline > 0 {
            s.life.renew(until: min(s.deadline, monotonicSeconds() + max(1, identity.expiresAt - wallSeconds())))
        }
        s.remoteAddress = c.peer
        s.userAgent = c.login.userAgent
        // Kept to verify it again at each deadline (`Recheck`); certificates are public.
        if identity.certificateSHA256 != nil { s.certificateChain = c.clientCertificateChain }
        return .success(s)
    }

    /// The session goes into the directory under its cookie. `kept`: mstunnel-auth already
    /// keeps it (it sealed its ticket), else it is handed over now.
    func admit(_ s: Session, transport: TokenTransport, kept: Bool = false) {
        sessions.insert(s)
        if !kept { keep(s) }
        counters.totalSessions += 1
        logger.info("session.created", metadata: sessionMetadata(s, ["transport": "\(transport.rawValue)", "policy": "\(s.policy.policyName ?? "-")",
                                                                     "cookie": "\(kept ? "ticket" : "own")"]))
    }

    /// Binds `c` to `s` and starts the tunnel. A session already on another connection
    /// moves to this one (the client reconnected; the old socket is stale).
    private func attach(_ c: ClientConnection, _ s: Session, _ r: HTTPRequest) {
        let now = monotonicSeconds()
        let firstConnect: Bool
        switch s.life.attach(c, now: now) {
        case .refused(let reason):
            endSession(s, reason: reason)
            perform(c.login.sessionDecided(.cookieNotAcceptable) { isSession($0) }, c)
            return
        case .attached(let first, let replaced):
            firstConnect = first
            s.quarantineUntil = nil
            if let replaced { closeConnection(replaced, reason: "replaced by a reconnect", detach: false) }
        }
        if let asked = r.header("x-cstp-address"), asked != s.address.description {
            logger.notice("session.address_mismatch", metadata: sessionMetadata(s, ["client.asked": "\(asked)"]))
        }
        let reconnect = s.rxPackets + s.txPackets > 0 || r.header("x-cstp-address") != nil
        s.remoteAddress = c.peer
        s.hostname = r.header("x-cstp-hostname")
        s.userAgent = r.header("user-agent") ?? s.userAgent
        dropAllDTLS(s)
        let remaining = s.life.remaining(now: now)
        var params = TunnelParameters(settings: settings, address: s.address, sessionTimeoutRemaining: remaining, request: r, policy: s.policy)
        s.dtlsPSK = nil
        if !settings.disableUdpConnections, TunnelParameters.clientOffersPSK(r),
           let psk = c.tls.exportKeyingMaterial(label: "EXPORTER-openconnect-psk", length: 32) {
            s.dtlsPSK = psk
            params.dtls = .init(port: settings.listenPort, appID: hex(s.id), dpd: settings.advanced.dpd,
                                keepalive: min(settings.advanced.keepalive, Self.dtlsKeepalive))
        }
        s.baseMTU = params.baseMTU
        s.mtu = params.mtu
        s.address6 = params.address6
        let head = Array(params.responseHead(serverName: "mstunnel \(options.version)").utf8)
        let rest = c.login.tunnelStarted()
        c.state = .tunnel(s)
        leftLogin(c)
        writeRecord(c, head)
        logger.info(reconnect ? "session.reconnected" : "session.connected",
                    metadata: sessionMetadata(s, ["mtu": "\(params.mtu)", "tls": "\(c.tls.protocolVersion) \(c.tls.cipherName)",
                                                  "dtls.offered": "\(params.dtls != nil)"]))
        if firstConnect { recordEvent(.sessionConnected, s) }
        if !rest.isEmpty {
            rest.withUnsafeBytes { receiveCSTP(c, $0, now: now) }
        }
    }

    /// Writes bytes through TLS into the connection's outbound buffer; flushed at the end
    /// of the loop turn.
    func writeRecord(_ c: ClientConnection, _ bytes: [UInt8]) {
        guard c.phase != .closed else { return }
        let result = bytes.withUnsafeBytes { c.tls.write($0.baseAddress!, $0.count) }
        if case .done = result {
            markDirty(c)
        } else {
            closeConnection(c, reason: "TLS write failed")
        }
    }
}
