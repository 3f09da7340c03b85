import Foundation
import GatewayCore
import GatewayTLS
import GatewayWire
import Logging

/// The login phase: liveness page, the three token paths, CONNECT.
extension Gateway {
    func processRequests(_ c: ClientConnection) {
        while c.phase == .http, !c.closeAfterFlush {
            let request: HTTPRequest?
            do {
                request = try c.parser.next()
            } catch {
                logger.info("http.bad_request", metadata: ["peer.address": "\(c.peer)", "error": "\(error)"])
                c.parser.reset()
                sendHTTP(c, HTTPResponse(status: 400, reason: "Bad Request", text: "bad request: \(error)\n"), close: true)
                return
            }
            guard let request else { return }
            handle(c, request)
        }
    }

    static func isVPNClient(_ r: HTTPRequest) -> Bool {
        if r.header("x-aggregate-auth") != nil || r.header("x-transcend-version") != nil { return true }
        let ua = (r.header("user-agent") ?? "").lowercased()
        return ua.contains("anyconnect") || ua.contains("openconnect")
    }

    private func handle(_ c: ClientConnection, _ r: HTTPRequest) {
        c.userAgent = r.header("user-agent")
        if r.method == "CONNECT" {
            guard r.path == "/CSCOSSLC/tunnel" else {
                sendHTTP(c, HTTPResponse(status: 404, reason: "Not Found"), close: true)
                return
            }
            handleConnect(c, r)
            return
        }
        guard r.method == "GET" || r.method == "POST" || r.method == "HEAD" else {
            sendHTTP(c, HTTPResponse(status: 405, reason: "Method Not Allowed", headers: [("Allow", "GET, POST, CONNECT")]), close: true)
            return
        }
        if !Self.isVPNClient(r) {
            // Load balancers and browsers: a static liveness page, nothing about sessions.
            if r.path == "/" || r.path == "/healthz" {
                let body = r.method == "HEAD" ? "" : "<!doctype html><title>mstunnel</title><p>mstunnel gateway is running.</p>\n"
                sendHTTP(c, HTTPResponse(status: 200, reason: "OK", headers: [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")], text: body), close: false)
            } else {
                sendHTTP(c, HTTPResponse(status: 404, reason: "Not Found"), close: true)
            }
            return
        }
        handleLogin(c, r)
    }

    /// Token paths, in the order the stock client exercises them:
    /// 1. `Authorization: Bearer` → validate.
    /// 2. `X-Support-HTTP-Auth: true` without credentials → 401 + `WWW-Authenticate: Bearer`
    ///    + `X-HTTP-Auth-Support: fallback`. A `--token-mode=oidc` client answers with
    ///    Bearer; a password client retries without HTTP auth and lands in 3.
    /// 3. The form: an XML `auth-reply` or a urlencoded POST carrying `password` → validate;
    ///    anything else gets the form.
    private func handleLogin(_ c: ClientConnection, _ r: HTTPRequest) {
        if let authz = r.header("authorization") {
            let parts = authz.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "bearer" {
                let token = parts[1].trimmingCharacters(in: .whitespacesAndNewlines)
                startValidation(c, token: token, transport: .bearer, purpose: .login(.bearer))
                return
            }
        }
        if r.header("x-support-http-auth")?.lowercased() == "true" {
            sendHTTP(c, HTTPResponse(status: 401, reason: "Unauthorized",
                                     headers: [("WWW-Authenticate", "Bearer"), ("X-HTTP-Auth-Support", "fallback")]), close: false)
            return
        }
        var password: String?
        if let first = r.body.first(where: { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }), first == UInt8(ascii: "<") {
            guard let msg = ConfigAuthMessage.parse(r.body) else {
                sendHTTP(c, HTTPResponse(status: 400, reason: "Bad Request", text: "malformed config-auth XML\n"), close: true)
                return
            }
            if msg.type == "logout" {
                sendHTTP(c, HTTPResponse(status: 200, reason: "OK"), close: false)
                return
            }
            if msg.type == "auth-reply" { password = msg.authFields["password"] ?? "" }
        } else if r.method == "POST", !r.body.isEmpty {
            password = Self.formField("password", in: r.body) ?? ""
        }
        if let password {
            let token = password.trimmingCharacters(in: .whitespacesAndNewlines)
            if token.isEmpty {
                sendForm(c, error: "An access token is required.")
                return
            }
            startValidation(c, token: token, transport: .password, purpose: .login(.password))
            return
        }
        sendForm(c, error: nil)
    }

    private func sendForm(_ c: ClientConnection, error: String?) {
        let xml = LoginResponses.tokenForm(message: "Enter any user name, and your access token as the password.", error: error)
        sendHTTP(c, HTTPResponse(status: 200, reason: "OK", headers: [("Content-Type", "text/xml"), ("X-Transcend-Version", "1")], text: xml), close: false)
    }

    /// `application/x-www-form-urlencoded` field lookup.
    static func formField(_ name: String, in body: [UInt8]) -> String? {
        let text = String(decoding: body, as: UTF8.self)
        for pair in text.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard kv.count == 2 else { continue }
            let key = String(kv[0]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding
            if key == name { return String(kv[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding }
        }
        return nil
    }

    private func startValidation(_ c: ClientConnection, token: String, transport: TokenTransport, purpose: AuthChannel.Purpose) {
        guard !token.isEmpty, token.utf8.count <= 16 * 1024 else {
            counters.authFailures += 1
            logger.notice("login.rejected", metadata: ["peer.address": "\(c.peer)", "transport": "\(transport.rawValue)", "code": "malformed", "reason": "token is empty or larger than 16 KiB"])
            events.record(.loginRejected, time: wallMilliseconds()) { e in
                e.clientAddress = c.peer
                e.reason = "malformed: token is empty or larger than 16 KiB"
            }
            sendHTTP(c, HTTPResponse(status: 401, reason: "Unauthorized"), close: true)
            return
        }
        c.phase = .waitingAuth
        if auth.validate(token: token, transport: transport, peer: c.peer, purpose: purpose, connection: c, now: monotonicSeconds()) == nil {
            c.phase = .http
            logger.warning("login.unavailable", metadata: ["peer.address": "\(c.peer)", "reason": "authentication service unreachable at \(options.authSocket)"])
            sendHTTP(c, HTTPResponse(status: 503, reason: "Service Unavailable", headers: [("X-Reason", "authentication service unavailable")]), close: true)
        }
    }

    /// The answer from mstunnel-auth for a waiting connection.
    func authCompleted(_ p: AuthChannel.Pending, _ response: ValidateTokenResponse) {
        guard let c = connection(for: p) else { return }
        c.phase = .http
        let transport: TokenTransport
        switch p.purpose {
        case .login(let t): transport = t
        case .connect: transport = .cookie
        }
        guard let identity = response.identity else {
            let rejection = response.rejection ?? TokenRejection(code: .malformed, reason: "no identity")
            counters.authFailures += 1
            logger.notice("login.rejected", metadata: ["peer.address": "\(c.peer)", "transport": "\(transport.rawValue)",
                                                       "code": "\(rejection.code.rawValue)", "reason": "\(rejection.reason)"])
            events.record(.loginRejected, time: wallMilliseconds()) { e in
                e.clientAddress = c.peer
                e.reason = "\(rejection.code.rawValue): \(rejection.reason)"
            }
            if rejection.code == .issuerUnavailable {
                sendHTTP(c, HTTPResponse(status: 503, reason: "Service Unavailable", headers: [("X-Reason", "token issuer unavailable")]), close: true)
            } else if case .connect = p.purpose {
                sendHTTP(c, HTTPResponse(status: 401, reason: "Cookie is not acceptable"), close: true)
            } else {
                sendHTTP(c, HTTPResponse(status: 401, reason: "Unauthorized"), close: true)
            }
            return
        }
        switch p.purpose {
        case .login(let t):
            let cookieBytes = GatewayCrypto.randomBytes(32)
            let cookie = Data(cookieBytes).base64EncodedString().replacingOccurrences(of: "+", with: "-")
                .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
            guard createSession(c, identity: identity, transport: t, cookieKey: CookieKey(digest: GatewayCrypto.sha256(cookie.utf8))) != nil else { return }
            let xml = LoginResponses.complete(banner: settings.advanced.banner)
            sendHTTP(c, HTTPResponse(status: 200, reason: "OK", headers: [
                ("Content-Type", "text/xml"), ("X-Transcend-Version", "1"),
                ("Set-Cookie", "webvpn=\(cookie); Secure; HttpOnly"),
            ], text: xml), close: false)
        case .connect(let request, let key):
            // Another connection may have created the session for this token meanwhile.
            let session = sessions.lookup(key) ?? createSession(c, identity: identity, transport: .cookie, cookieKey: key)
            guard let session else { return }
            attach(c, session, request)
        }
        // Requests the client pipelined while we waited.
        if c.phase == .http { processRequests(c) }
    }

    /// Creates a session with a fresh address. On failure the client has been answered.
    private func createSession(_ c: ClientConnection, identity: Identity, transport: TokenTransport, cookieKey: CookieKey) -> Session? {
        if settings.advanced.maxSessions > 0, sessions.count >= settings.advanced.maxSessions {
            logger.warning("session.refused", metadata: ["reason": "max-sessions reached", "limit": "\(settings.advanced.maxSessions)", "user.id": "\(identity.userId)"])
            sendHTTP(c, HTTPResponse(status: 503, reason: "Service Unavailable", headers: [("X-Reason", "gateway is at its session limit")]), close: true)
            return nil
        }
        if settings.advanced.maxSessionsPerUser > 0 {
            let mine = sessions.sessions(ofUser: identity.userId)
            if mine.count >= settings.advanced.maxSessionsPerUser {
                // Make room by retiring the oldest session that is not connected (a
                // client that logged in again without logging off); never a live one.
                guard let idle = mine.first(where: { $0.connection == nil }) else {
                    logger.warning("session.refused", metadata: ["reason": "max-sessions-per-user reached", "limit": "\(settings.advanced.maxSessionsPerUser)",
                                                                 "user.id": "\(identity.userId)", "user.name": "\(identity.userName)"])
                    sendHTTP(c, HTTPResponse(status: 503, reason: "Service Unavailable", headers: [("X-Reason", "too many sessions for this user")]), close: true)
                    return nil
                }
                endSession(idle, reason: "replaced by a newer login (max-sessions-per-user)")
            }
        }
        let slot = sessions.reserveSlot()
        guard let address = pool.allocate(owner: slot, hint: stableHash(identity.userId)) else {
            sessions.unreserve(slot)
            logger.error("pool.exhausted", metadata: ["pool": "\(settings.pool)", "in_use": "\(pool.inUse)", "user.id": "\(identity.userId)"])
            sendHTTP(c, HTTPResponse(status: 503, reason: "Service Unavailable", headers: [("X-Reason", "no free client address")]), close: true)
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

    private func handleConnect(_ c: ClientConnection, _ r: HTTPRequest) {
        guard let cookie = r.cookie("webvpn"), !cookie.isEmpty else {
            logger.info("connect.refused", metadata: ["peer.address": "\(c.peer)", "reason": "no webvpn cookie"])
            sendHTTP(c, HTTPResponse(status: 401, reason: "Cookie is not acceptable"), close: true)
            return
        }
        let key = CookieKey(digest: GatewayCrypto.sha256(cookie.utf8))
        if let s = sessions.lookup(key) {
            attach(c, s, r)
            return
        }
        // Not one of our cookies: perhaps an access token used as the cookie
        // (`openconnect --cookie 'webvpn=<JWT>'`).
        if cookie.split(separator: ".", omittingEmptySubsequences: false).count == 3 {
            startValidation(c, token: cookie, transport: .cookie, purpose: .connect(request: r, cookieKey: key))
            return
        }
        logger.info("connect.refused", metadata: ["peer.address": "\(c.peer)", "reason": "unknown or expired session cookie"])
        sendHTTP(c, HTTPResponse(status: 401, reason: "Cookie is not acceptable"), close: true)
    }

    /// Binds `c` to `s` and starts the tunnel. A session already on another connection
    /// moves to this one (the client reconnected; the old socket is stale).
    func attach(_ c: ClientConnection, _ s: Session, _ r: HTTPRequest) {
        let now = monotonicSeconds()
        if s.deadline > 0, now >= s.deadline {
            endSession(s, reason: "session-timeout")
            sendHTTP(c, HTTPResponse(status: 401, reason: "Cookie is not acceptable"), close: true)
            return
        }
        if let old = s.connection, old !== c {
            old.session = nil
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
        c.session = s
        dropDTLS(s)
        let remaining = s.deadline > 0 ? Int(s.deadline - now) : 0
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
        c.phase = .tunnel
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

    func sendHTTP(_ c: ClientConnection, _ response: HTTPResponse, close: Bool) {
        var response = response
        if close { response.headers.append(("Connection", "close")) }
        writeRecord(c, response.serialized())
        if close { c.closeAfterFlush = true }
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
