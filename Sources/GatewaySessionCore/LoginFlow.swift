import Foundation
import GatewayCore
import GatewayWire

/// What the login phase does next, decided from the request alone (no I/O, no clock).
public enum LoginStep: Equatable, Sendable {
    case reply(LoginReply)
    /// Ask mstunnel-auth about this token (a Bearer header or the form's password).
    case validate(token: String, transport: TokenTransport)
    /// A token refused without asking (empty, or larger than any real one): 401, close.
    case refuseToken(transport: TokenTransport, reason: String)
    /// `CONNECT /CSCOSSLC/tunnel` with a `webvpn` cookie; `LoginFlow.connect` says what next
    /// once the gateway has looked the cookie up.
    case connect(cookie: String)
}

/// After a CONNECT's cookie was looked up in the session table.
public enum ConnectStep: Equatable, Sendable {
    /// The cookie is a session's: bind this connection to it and start the tunnel.
    case attach
    /// No session, but the cookie has a token's shape (`openconnect --cookie 'webvpn=<JWT>'`).
    case validateCookie(token: String)
    /// No session here, but the cookie is a resumption ticket: have mstunnel-auth open it
    /// (the session was made on a sibling of the Site, or here before it left; docs/site.md).
    case openTicket(String)
    case reply(LoginReply)
}

/// What to do with mstunnel-auth's answer.
public enum AuthOutcome: Equatable, Sendable {
    /// The token is good: create (or, for a CONNECT, find) the session.
    case accept(Identity)
    /// Refused: answer with `reply`; `code` and `reason` go to the log and the event log.
    case refuse(LoginReply, code: String, reason: String)
}

/// The login phase as the stock client drives it (docs/openconnect-protocol.md): the
/// liveness page, the three token paths, CONNECT. Pure functions of their inputs.
public enum LoginFlow {
    /// Tokens larger than this are refused unread (Entra's are 2–4 KiB).
    public static let maxTokenBytes = 16 * 1024

    public static func isVPNClient(_ r: HTTPRequest) -> Bool {
        if r.header("x-aggregate-auth") != nil || r.header("x-transcend-version") != nil { return true }
        let ua = (r.header("user-agent") ?? "").lowercased()
        return ua.contains("anyconnect") || ua.contains("openconnect")
    }

    /// Token paths, in the order the stock client exercises them:
    /// 1. `Authorization: Bearer` → validate.
    /// 2. `X-Support-HTTP-Auth: true` without credentials → the Bearer challenge. A
    ///    `--token-mode=oidc` client answers with Bearer; a password client retries
    ///    without HTTP auth and lands in 3.
    /// 3. The form: an XML `auth-reply` or a urlencoded POST carrying `password` →
    ///    validate; anything else gets the form.
    public static func step(for r: HTTPRequest) -> LoginStep {
        if r.method == "CONNECT" {
            guard r.path == "/CSCOSSLC/tunnel" else { return .reply(.notFound) }
            guard let cookie = r.cookie("webvpn"), !cookie.isEmpty else { return .reply(.cookieNotAcceptable) }
            return .connect(cookie: cookie)
        }
        guard r.method == "GET" || r.method == "POST" || r.method == "HEAD" else { return .reply(.methodNotAllowed) }
        guard isVPNClient(r) else {
            return r.path == "/" || r.path == "/healthz" ? .reply(.livenessPage(headOnly: r.method == "HEAD")) : .reply(.notFound)
        }
        if let authz = r.header("authorization") {
            let parts = authz.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "bearer" {
                return token(parts[1].trimmingCharacters(in: .whitespacesAndNewlines), .bearer)
            }
        }
        if r.header("x-support-http-auth")?.lowercased() == "true" { return .reply(.bearerChallenge) }
        var password: String?
        if let first = r.body.first(where: { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }), first == UInt8(ascii: "<") {
            guard let msg = ConfigAuthMessage.parse(r.body) else { return .reply(.badRequest("malformed config-auth XML")) }
            if msg.type == "logout" { return .reply(.loggedOut) }
            if msg.type == "auth-reply" { password = msg.authFields["password"] ?? "" }
        } else if r.method == "POST", !r.body.isEmpty {
            password = formField("password", in: r.body) ?? ""
        }
        guard let password else { return .reply(.tokenForm(error: nil)) }
        let token = password.trimmingCharacters(in: .whitespacesAndNewlines)
        if token.isEmpty { return .reply(.tokenForm(error: "An access token is required.")) }
        return self.token(token, .password)
    }

    private static func token(_ token: String, _ transport: TokenTransport) -> LoginStep {
        guard !token.isEmpty, token.utf8.count <= maxTokenBytes else {
            return .refuseToken(transport: transport, reason: "token is empty or larger than 16 KiB")
        }
        return .validate(token: token, transport: transport)
    }

    /// CONNECT, once the gateway knows whether `cookie` is a session's.
    public static func connect(cookie: String, hasSession: Bool) -> ConnectStep {
        if hasSession { return .attach }
        if TicketFormat.looksLikeTicket(cookie) { return .openTicket(cookie) }
        if cookie.split(separator: ".", omittingEmptySubsequences: false).count == 3, cookie.utf8.count <= maxTokenBytes {
            return .validateCookie(token: cookie)
        }
        return .reply(.cookieNotAcceptable)
    }

    /// mstunnel-auth answered. `forConnect`: the token came as a CONNECT's cookie.
    public static func outcome(_ response: ValidateTokenResponse, forConnect: Bool) -> AuthOutcome {
        if let identity = response.identity { return .accept(identity) }
        let rejection = response.rejection ?? TokenRejection(code: .malformed, reason: "no identity")
        let reply: LoginReply
        if rejection.code == .issuerUnavailable {
            reply = .unavailable("token issuer unavailable")
        } else {
            reply = forConnect ? .cookieNotAcceptable : .unauthorized
        }
        return .refuse(reply, code: rejection.code.rawValue, reason: rejection.reason)
    }

    /// A reply that asks the client for credentials it has not sent: where a client
    /// certificate can stand in for them.
    public static func asksForCredentials(_ reply: LoginReply) -> Bool {
        switch reply {
        case .tokenForm(error: nil), .bearerChallenge: return true
        default: return false
        }
    }

    /// A refusal that is about the certificate itself (untrusted, revoked, nobody in it,
    /// another user's): a failed login, as opposed to "a certificate is not enough here".
    public static func isCertificateFailure(_ code: TokenRejection.Code) -> Bool {
        switch code {
        case .certificateUntrusted, .certificateRevoked, .certificateNoUser, .certificateUserMismatch: return true
        default: return false
        }
    }

    /// `application/x-www-form-urlencoded` field lookup.
    public static func formField(_ name: String, in body: [UInt8]) -> String? {
        let text = String(decoding: body, as: UTF8.self)
        for pair in text.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard kv.count == 2 else { continue }
            let key = String(kv[0]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding
            if key == name { return String(kv[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding }
        }
        return nil
    }
}
