import Foundation
import GatewayCore
import GatewaySessionCore
import GatewayTLS
import GatewayWire
import Logging

/// The login phase, carried out: `LoginFlow` (GatewaySessionCore) decides from the
/// request what happens; this file does it — sends, asks mstunnel-auth, creates sessions.
extension Gateway {
    func processRequests(_ c: ClientConnection) {
        while c.phase == .http, !c.closeAfterFlush {
            let request: HTTPRequest?
            do {
                request = try c.parser.next()
            } catch {
                logger.info("http.bad_request", metadata: ["peer.address": "\(c.peer)", "error": "\(error)"])
                c.parser.reset()
                reply(c, .badRequest("bad request: \(error)"))
                return
            }
            guard let request else { return }
            c.userAgent = request.header("user-agent")
            perform(LoginFlow.step(for: request), c, request)
        }
    }

    private func perform(_ step: LoginStep, _ c: ClientConnection, _ r: HTTPRequest) {
        switch step {
        case .reply(let answer):
            if answer == .cookieNotAcceptable { logger.info("connect.refused", metadata: ["peer.address": "\(c.peer)", "reason": "no webvpn cookie"]) }
            reply(c, answer)
        case .validate(let token, let transport):
            startValidation(c, token: token, transport: transport, purpose: .login(transport))
        case .refuseToken(let transport, let reason):
            rejectLogin(c, transport: transport, code: "malformed", reason: reason)
            reply(c, .unauthorized)
        case .connect(let cookie):
            let key = CookieKey(digest: GatewayCrypto.sha256(cookie.utf8))
            let session = sessions.lookup(key)
            switch LoginFlow.connect(cookie: cookie, hasSession: session != nil) {
            case .attach: if let session { attach(c, session, r) }
            case .validateCookie(let token):
                startValidation(c, token: token, transport: .cookie, purpose: .connect(request: r, cookieKey: key))
            case .reply(let answer):
                logger.info("connect.refused", metadata: ["peer.address": "\(c.peer)", "reason": "unknown or expired session cookie"])
                reply(c, answer)
            }
        }
    }

    func reply(_ c: ClientConnection, _ answer: LoginReply) {
        writeRecord(c, answer.response().serialized())
        if answer.closes { c.closeAfterFlush = true }
    }

    private func rejectLogin(_ c: ClientConnection, transport: TokenTransport, code: String, reason: String) {
        counters.authFailures += 1
        logger.notice("login.rejected", metadata: ["peer.address": "\(c.peer)", "transport": "\(transport.rawValue)", "code": "\(code)", "reason": "\(reason)"])
        events.record(.loginRejected, time: wallMilliseconds()) { e in
            e.clientAddress = c.peer
            e.reason = "\(code): \(reason)"
        }
    }

    private func startValidation(_ c: ClientConnection, token: String, transport: TokenTransport, purpose: AuthChannel.Purpose) {
        c.state = .waitingAuth
        if auth.validate(token: token, transport: transport, peer: c.peer, purpose: purpose, connection: c, now: monotonicSeconds()) == nil {
            c.state = .http
            logger.warning("login.unavailable", metadata: ["peer.address": "\(c.peer)", "reason": "authentication service unreachable at \(options.authSocket)"])
            reply(c, .unavailable("authentication service unavailable"))
        }
    }

    /// The answer from mstunnel-auth for a waiting connection.
    func authCompleted(_ p: AuthChannel.Pending, _ response: ValidateTokenResponse) {
        guard let c = connection(for: p) else { return }
        c.state = .http
        let transport: TokenTransport
        let forConnect: Bool
        switch p.purpose {
        case .login(let t): (transport, forConnect) = (t, false)
        case .connect: (transport, forConnect) = (.cookie, true)
        }
        switch LoginFlow.outcome(response, forConnect: forConnect) {
        case .refuse(let answer, let code, let reason):
            rejectLogin(c, transport: transport, code: code, reason: reason)
            reply(c, answer)
            return
        case .accept(let identity):
            switch p.purpose {
            case .login(let t):
                let cookieBytes = GatewayCrypto.randomBytes(32)
                let cookie = Data(cookieBytes).base64EncodedString().replacingOccurrences(of: "+", with: "-")
                    .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
                guard createSession(c, identity: identity, transport: t, cookieKey: CookieKey(digest: GatewayCrypto.sha256(cookie.utf8))) != nil else { return }
                reply(c, .loginComplete(cookie: cookie, banner: settings.advanced.banner))
            case .connect(let request, let key):
                // Another connection may have created the session for this token meanwhile.
                let session = sessions.lookup(key) ?? createSession(c, identity: identity, transport: .cookie, cookieKey: key)
                guard let session else { return }
                attach(c, session, request)
            }
        }
        // Requests the client pipelined while we waited.
        if c.phase == .http { processRequests(c) }
    }

    /// Creates a session with a fresh address. On failure the client has been answered.
    private func createSession(_ c: ClientConnection, identity: Identity, transport: TokenTransport, cookieKey: CookieKey) -> Session? {
        let limits = SessionAdmission.Limits(maxSessions: settings.advanced.maxSessions, maxSessionsPerUser: settings.advanced.maxSessionsPerUser)
        let mine = sessions.sessions(ofUser: identity.userId)
        switch SessionAdmission.decide(limits, total: sessions.count, user: mine.map { .init(slot: $0.slot, connected: $0.connection != nil) }) {
        case .admit: break
        case .admitReplacing(let slot):
            if let idle = mine.first(where: { $0.slot == slot }) { endSession(idle, reason: "replaced by a newer login (max-sessions-per-user)") }
        case .refuse(let answer, let reason):
            logger.warning("session.refused", metadata: ["reason": "\(reason)", "limit": "\(reason.hasPrefix("max-sessions-per-user") ? limits.maxSessionsPerUser : limits.maxSessions)",
                                                         "user.id": "\(identity.userId)", "user.name": "\(identity.userName)"])
            reply(c, answer)
            return nil
        }
        let slot = sessions.reserveSlot()
        guard let address = pool.allocate(owner: slot, hint: stableHash(identity.userId)) else {
            sessions.unreserve(slot)
            logger.error("pool.exhausted", metadata: ["pool": "\(settings.pool)", "in_use": "\(pool.inUse)", "user.id": "\(identity.userId)"])
            reply(c, .unavailable("no free client address"))
            return nil
        }
        let now = monotonicSeconds()
        let timeout = settings.advanced.sessionTimeout
        let s = Session(slot: slot, id: GatewayCrypto.randomBytes(32), cookieKey: cookieKey, identity: identity, transport: transport,
                        address: address, now: now, deadline: timeout > 0 ? now + Int64(timeout) : 0)
        s.detachedAt = now
        s.remoteAddress = c.peer
        s.userAgent = c.userAgent
        sessions.insert(s)
        counters.totalSessions += 1
        logger.info("session.created", metadata: sessionMetadata(s, ["transport": "\(transport.rawValue)"]))
        return s
    }

    /// Binds `c` to `s` and starts the tunnel. A session already on another connection
    /// moves to this one (the client reconnected; the old socket is stale).
    func attach(_ c: ClientConnection, _ s: Session, _ r: HTTPRequest) {
        let now = monotonicSeconds()
        guard Expiry.mayAttach(deadline: s.deadline, now: now) else {
            endSession(s, reason: "session-timeout")
            reply(c, .cookieNotAcceptable)
            return
        }
        if let old = s.connection, old !== c {
            closeConnection(old, reason: "replaced by a reconnect", detach: false)
        }
        if let asked = r.header("x-cstp-address"), asked != s.address.description {
            logger.notice("session.address_mismatch", metadata: sessionMetadata(s, ["client.asked": "\(asked)"]))
        }
        let reconnect = s.rxPackets + s.txPackets > 0 || r.header("x-cstp-address") != nil
        let firstConnect = !s.everConnected
        s.connection = c
        s.detachedAt = 0
        s.everConnected = true
        s.remoteAddress = c.peer
        s.hostname = r.header("x-cstp-hostname")
        s.userAgent = r.header("user-agent") ?? s.userAgent
        dropDTLS(s)
        let remaining = Expiry.remaining(deadline: s.deadline, now: now)
        var params = TunnelParameters(settings: settings, address: s.address, sessionTimeoutRemaining: remaining, request: r)
        s.dtlsPSK = nil
        if !settings.disableUdpConnections, TunnelParameters.clientOffersPSK(r),
           let psk = c.tls.exportKeyingMaterial(label: "EXPORTER-openconnect-psk", length: 32) {
            s.dtlsPSK = psk
            params.dtls = .init(port: settings.listenPort, appID: hex(s.id), dpd: settings.advanced.dpd,
                                keepalive: min(settings.advanced.keepalive, Self.dtlsKeepalive))
        }
        s.baseMTU = params.baseMTU
        s.mtu = params.mtu
        let head = Array(params.responseHead(serverName: "mstunnel \(options.version)").utf8)
        c.state = .tunnel(s)
        writeRecord(c, head)
        logger.info(reconnect ? "session.reconnected" : "session.connected",
                    metadata: sessionMetadata(s, ["mtu": "\(params.mtu)", "tls": "\(c.tls.protocolVersion) \(c.tls.cipherName)",
                                                  "dtls.offered": "\(params.dtls != nil)"]))
        if firstConnect { recordEvent(.sessionConnected, s) }
        let rest = c.parser.takeRemainder()
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
