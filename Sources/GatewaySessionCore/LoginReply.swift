import GatewayCore

/// Every answer the login phase gives, by meaning. The gateway serialises one with
/// `response()`; tests compare the meaning. Those that end the connection say so in
/// `closes`, so a caller cannot answer "401" and forget to close.
public enum LoginReply: Equatable, Sendable {
    /// `GET /` or `/healthz` from something that is not a VPN client (a load balancer's
    /// probe, a browser): a static page that says nothing about sessions.
    case livenessPage(headOnly: Bool)
    case notFound
    case methodNotAllowed
    case badRequest(String)
    /// 401 with `WWW-Authenticate: Bearer`: the client said it supports HTTP auth and sent
    /// none; a `--token-mode=oidc` client answers with its Bearer token.
    case bearerChallenge
    /// A config-auth `logout`.
    case loggedOut
    /// The XML form that asks for the access token as the password.
    case tokenForm(error: String?)
    /// Login accepted: the `webvpn` cookie and the banner.
    case loginComplete(cookie: String, banner: String?)
    case unauthorized
    /// 401 to a CONNECT whose cookie is no session's and no valid token.
    case cookieNotAcceptable
    /// 503 with the reason in `X-Reason`.
    case unavailable(String)
    /// 403 with the reason in `X-Reason`: the user is who they say, and group policy gives
    /// them no tunnel. Not a failed login (no ban score).
    case forbidden(String)

    public var closes: Bool {
        switch self {
        case .livenessPage, .bearerChallenge, .loggedOut, .tokenForm, .loginComplete: return false
        case .notFound, .methodNotAllowed, .badRequest, .unauthorized, .cookieNotAcceptable, .unavailable, .forbidden: return true
        }
    }

    static let formMessage = "Enter any user name, and your access token as the password."

    public func response() -> HTTPResponse {
        var r: HTTPResponse
        switch self {
        case .livenessPage(let headOnly):
            r = HTTPResponse(status: 200, reason: "OK", headers: [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")],
                             text: headOnly ? "" : "<!doctype html><title>mstunnel</title><p>mstunnel gateway is running.</p>\n")
        case .notFound: r = HTTPResponse(status: 404, reason: "Not Found")
        case .methodNotAllowed: r = HTTPResponse(status: 405, reason: "Method Not Allowed", headers: [("Allow", "GET, POST, CONNECT")])
        case .badRequest(let why): r = HTTPResponse(status: 400, reason: "Bad Request", text: "\(why)\n")
        case .bearerChallenge:
            r = HTTPResponse(status: 401, reason: "Unauthorized", headers: [("WWW-Authenticate", "Bearer"), ("X-HTTP-Auth-Support", "fallback")])
        case .loggedOut: r = HTTPResponse(status: 200, reason: "OK")
        case .tokenForm(let error):
            r = HTTPResponse(status: 200, reason: "OK", headers: [("Content-Type", "text/xml"), ("X-Transcend-Version", "1")],
                             text: LoginResponses.tokenForm(message: Self.formMessage, error: error))
        case .loginComplete(let cookie, let banner):
            r = HTTPResponse(status: 200, reason: "OK", headers: [
                ("Content-Type", "text/xml"), ("X-Transcend-Version", "1"), ("Set-Cookie", "webvpn=\(cookie); Secure; HttpOnly"),
            ], text: LoginResponses.complete(banner: banner))
        case .unauthorized: r = HTTPResponse(status: 401, reason: "Unauthorized")
        case .cookieNotAcceptable: r = HTTPResponse(status: 401, reason: "Cookie is not acceptable")
        case .unavailable(let why): r = HTTPResponse(status: 503, reason: "Service Unavailable", headers: [("X-Reason", why)])
        case .forbidden(let why): r = HTTPResponse(status: 403, reason: "Forbidden", headers: [("X-Reason", why)], text: "\(why)\n")
        }
        if closes { r.headers.append(("Connection", "close")) }
        return r
    }
}
