import GatewayCore
import GatewayWire
import Testing
@testable import GatewaySessionCore

/// Parses raw request bytes the way the gateway does, so each case is what a client sends.
func request(_ text: String) throws -> HTTPRequest {
    var parser = HTTPRequestParser()
    parser.append(Array(text.utf8))
    return try #require(try parser.next())
}

let oc = "User-Agent: Open AnyConnect VPN Agent v9.12\r\nX-Transcend-Version: 1\r\nX-Aggregate-Auth: 1\r\n"
let jwt = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"

@Suite struct LoginStepTests {
    @Test func bearerHeaderIsValidated() throws {
        let r = try request("POST / HTTP/1.1\r\nHost: gw\r\n\(oc)Authorization: Bearer \(jwt)\r\nContent-Length: 0\r\n\r\n")
        #expect(LoginFlow.step(for: r) == .validate(token: jwt, transport: .bearer))
    }

    @Test func bearerSchemeIsCaseInsensitiveAndTokenTrimmed() throws {
        let r = try request("POST / HTTP/1.1\r\n\(oc)Authorization: bEaReR   \(jwt)  \r\nContent-Length: 0\r\n\r\n")
        #expect(LoginFlow.step(for: r) == .validate(token: jwt, transport: .bearer))
    }

    @Test func httpAuthSupportWithoutCredentialsGetsTheBearerChallenge() throws {
        let r = try request("POST / HTTP/1.1\r\n\(oc)X-Support-HTTP-Auth: true\r\nContent-Length: 0\r\n\r\n")
        #expect(LoginFlow.step(for: r) == .reply(.bearerChallenge))
        let head = String(decoding: LoginReply.bearerChallenge.response().serialized(), as: UTF8.self)
        #expect(head.hasPrefix("HTTP/1.1 401 Unauthorized\r\n"))
        #expect(head.contains("WWW-Authenticate: Bearer\r\n") && head.contains("X-HTTP-Auth-Support: fallback\r\n"))
        #expect(!LoginReply.bearerChallenge.closes)
    }

    @Test func anotherAuthorizationSchemeFallsThroughToTheForm() throws {
        let r = try request("POST / HTTP/1.1\r\n\(oc)Authorization: Basic dXNlcjpwdw==\r\nContent-Length: 0\r\n\r\n")
        #expect(LoginFlow.step(for: r) == .reply(.tokenForm(error: nil)))
    }

    @Test func xmlAuthReplyPasswordIsTheToken() throws {
        let body = "<?xml version=\"1.0\"?><config-auth client=\"vpn\" type=\"auth-reply\"><auth><username>a</username><password>\(jwt)</password></auth></config-auth>"
        let r = try request("POST / HTTP/1.1\r\n\(oc)Content-Length: \(body.utf8.count)\r\n\r\n\(body)")
        #expect(LoginFlow.step(for: r) == .validate(token: jwt, transport: .password))
    }

    @Test func xmlInitIsAnsweredWithTheForm() throws {
        let body = "<?xml version=\"1.0\"?><config-auth client=\"vpn\" type=\"init\"><version who=\"vpn\">v9</version></config-auth>"
        let r = try request("POST / HTTP/1.1\r\n\(oc)Content-Length: \(body.utf8.count)\r\n\r\n\(body)")
        #expect(LoginFlow.step(for: r) == .reply(.tokenForm(error: nil)))
    }

    @Test func xmlLogoutIsAcknowledged() throws {
        let body = "<config-auth client=\"vpn\" type=\"logout\"></config-auth>"
        let r = try request("POST /logout HTTP/1.1\r\n\(oc)Content-Length: \(body.utf8.count)\r\n\r\n\(body)")
        #expect(LoginFlow.step(for: r) == .reply(.loggedOut))
    }

    @Test func emptyPasswordGetsTheFormWithAnError() throws {
        let body = "<config-auth client=\"vpn\" type=\"auth-reply\"><auth><password>  </password></auth></config-auth>"
        let r = try request("POST / HTTP/1.1\r\n\(oc)Content-Length: \(body.utf8.count)\r\n\r\n\(body)")
        #expect(LoginFlow.step(for: r) == .reply(.tokenForm(error: "An access token is required.")))
    }

    @Test func urlencodedPasswordIsTheToken() throws {
        let body = "username=alice&password=\(jwt)"
        let r = try request("POST / HTTP/1.1\r\n\(oc)Content-Type: application/x-www-form-urlencoded\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
        #expect(LoginFlow.step(for: r) == .validate(token: jwt, transport: .password))
    }

    @Test func urlencodedWithoutPasswordIsAnEmptyPassword() throws {
        let body = "username=alice"
        let r = try request("POST / HTTP/1.1\r\n\(oc)Content-Length: \(body.utf8.count)\r\n\r\n\(body)")
        #expect(LoginFlow.step(for: r) == .reply(.tokenForm(error: "An access token is required.")))
    }

    @Test func percentEncodingIsDecoded() {
        #expect(LoginFlow.formField("password", in: Array("a=1&pass%77ord=x%2By+z".utf8)) == "x+y z")
        #expect(LoginFlow.formField("password", in: Array("password".utf8)) == nil)
        #expect(LoginFlow.formField("password", in: Array("password=%zz".utf8)) == nil)
    }

    @Test func oversizedTokenIsRefusedWithoutAsking() throws {
        let big = String(repeating: "a", count: LoginFlow.maxTokenBytes + 1)
        let r = try request("GET / HTTP/1.1\r\n\(oc)Authorization: Bearer \(big)\r\n\r\n")
        guard case .refuseToken(.bearer, let reason) = LoginFlow.step(for: r) else {
            Issue.record("expected refuseToken")
            return
        }
        #expect(reason.contains("16 KiB"))
    }

    @Test(arguments: [
        "<config-auth type=\"auth-reply\"><auth><password>x</password>",  // unclosed
        "<<<>>>",
        "<config-auth type=\"auth-reply\"><!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><auth><password>&e;</password></auth></config-auth>",
    ])
    func malformedXMLIsABadRequestThatCloses(_ body: String) throws {
        let r = try request("POST / HTTP/1.1\r\n\(oc)Content-Length: \(body.utf8.count)\r\n\r\n\(body)")
        let step = LoginFlow.step(for: r)
        if case .reply(.badRequest(let why)) = step {
            #expect(why.contains("config-auth"))
            #expect(LoginReply.badRequest(why).closes)
        } else {
            // The parser may read some of these as a message without a password: never a token.
            #expect(step == .reply(.tokenForm(error: nil)) || step == .reply(.tokenForm(error: "An access token is required.")))
        }
    }

    @Test func browserGetsTheLivenessPage() throws {
        let r = try request("GET / HTTP/1.1\r\nHost: gw\r\nUser-Agent: curl/8\r\n\r\n")
        #expect(LoginFlow.step(for: r) == .reply(.livenessPage(headOnly: false)))
        let h = try request("HEAD /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        #expect(LoginFlow.step(for: h) == .reply(.livenessPage(headOnly: true)))
        #expect(LoginReply.livenessPage(headOnly: true).response().body.isEmpty)
    }

    @Test func browserElsewhereIsNotFoundAndClosed() throws {
        let r = try request("GET /admin HTTP/1.1\r\nHost: gw\r\n\r\n")
        #expect(LoginFlow.step(for: r) == .reply(.notFound))
        #expect(LoginReply.notFound.closes)
    }

    @Test(arguments: ["PUT", "DELETE", "OPTIONS", "TRACE", "PATCH"])
    func otherMethodsAreRefused(_ method: String) throws {
        let r = try request("\(method) / HTTP/1.1\r\n\(oc)Content-Length: 0\r\n\r\n")
        #expect(LoginFlow.step(for: r) == .reply(.methodNotAllowed))
        #expect(String(decoding: LoginReply.methodNotAllowed.response().serialized(), as: UTF8.self).contains("Allow: GET, POST, CONNECT\r\n"))
    }

    @Test func vpnClientIsRecognisedByHeadersOrAgent() throws {
        #expect(LoginFlow.isVPNClient(try request("GET / HTTP/1.1\r\nX-Aggregate-Auth: 1\r\n\r\n")))
        #expect(LoginFlow.isVPNClient(try request("GET / HTTP/1.1\r\nUser-Agent: AnyConnect Windows 4.10\r\n\r\n")))
        #expect(!LoginFlow.isVPNClient(try request("GET / HTTP/1.1\r\nUser-Agent: Mozilla/5.0\r\n\r\n")))
    }
}

@Suite struct ConnectStepTests {
    @Test func connectWithCookie() throws {
        let r = try request("CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\n\(oc)Cookie: webvpn=abc123\r\n\r\n")
        #expect(LoginFlow.step(for: r) == .connect(cookie: "abc123"))
    }

    @Test func connectFindsTheCookieAmongOthers() throws {
        let r = try request("CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nCookie: a=1; webvpn=abc; b=2\r\n\r\n")
        #expect(LoginFlow.step(for: r) == .connect(cookie: "abc"))
    }

    @Test(arguments: ["", "Cookie: webvpn=\r\n", "Cookie: other=1\r\n", "Cookie: webvpn\r\n"])
    func connectWithoutAUsableCookieIsRefused(_ cookieHeader: String) throws {
        let r = try request("CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\n\(cookieHeader)\r\n")
        #expect(LoginFlow.step(for: r) == .reply(.cookieNotAcceptable))
    }

    @Test func connectElsewhereIsNotFound() throws {
        let r = try request("CONNECT /other HTTP/1.1\r\nCookie: webvpn=abc\r\n\r\n")
        #expect(LoginFlow.step(for: r) == .reply(.notFound))
    }

    @Test func knownCookieAttaches() {
        #expect(LoginFlow.connect(cookie: "abc", hasSession: true) == .attach)
    }

    @Test func unknownTokenShapedCookieIsValidatedAsAToken() {
        #expect(LoginFlow.connect(cookie: jwt, hasSession: false) == .validateCookie(token: jwt))
    }

    @Test(arguments: ["abc", "a.b", "a.b.c.d", String(repeating: "a.", count: 2) + String(repeating: "b", count: 17_000)])
    func unknownCookieOfAnotherShapeIsRefused(_ cookie: String) {
        #expect(LoginFlow.connect(cookie: cookie, hasSession: false) == .reply(.cookieNotAcceptable))
        #expect(LoginReply.cookieNotAcceptable.closes)
    }
}

@Suite struct AuthOutcomeTests {
    let alice = Identity(userId: "oid-1", userName: "alice@corp.test", tenantId: "t", deviceId: nil, expiresAt: 1)

    @Test func acceptedIdentity() {
        #expect(LoginFlow.outcome(.accepted(alice), forConnect: false) == .accept(alice))
        #expect(LoginFlow.outcome(.accepted(alice), forConnect: true) == .accept(alice))
    }

    @Test func rejectedLoginIs401WithTheReason() {
        #expect(LoginFlow.outcome(.rejected(.expired, "expired 600 s ago"), forConnect: false)
            == .refuse(.unauthorized, code: "expired", reason: "expired 600 s ago"))
    }

    @Test func rejectedCookieTokenIsCookieNotAcceptable() {
        #expect(LoginFlow.outcome(.rejected(.badSignature, "bad"), forConnect: true)
            == .refuse(.cookieNotAcceptable, code: "badSignature", reason: "bad"))
    }

    @Test func issuerUnavailableIs503NotACredentialsFailure() {
        #expect(LoginFlow.outcome(.rejected(.issuerUnavailable, "JWKS fetch failed"), forConnect: false)
            == .refuse(.unavailable("token issuer unavailable"), code: "issuerUnavailable", reason: "JWKS fetch failed"))
    }

    @Test func answerWithNeitherIdentityNorRejectionIsRefused() {
        #expect(LoginFlow.outcome(ValidateTokenResponse(identity: nil, rejection: nil), forConnect: false)
            == .refuse(.unauthorized, code: "malformed", reason: "no identity"))
    }

    @Test func loginCompleteCarriesTheCookieAndBanner() {
        let wire = String(decoding: LoginReply.loginComplete(cookie: "c00k1e", banner: "Hello").response().serialized(), as: UTF8.self)
        #expect(wire.contains("Set-Cookie: webvpn=c00k1e; Secure; HttpOnly\r\n"))
        #expect(wire.contains("Hello"))
        #expect(!wire.contains("Connection: close"))
    }

    @Test func everyClosingReplySaysConnectionClose() {
        let all: [LoginReply] = [.livenessPage(headOnly: false), .notFound, .methodNotAllowed, .badRequest("x"), .bearerChallenge, .loggedOut,
                                 .tokenForm(error: nil), .loginComplete(cookie: "c", banner: nil), .unauthorized, .cookieNotAcceptable, .unavailable("x")]
        for reply in all {
            let wire = String(decoding: reply.response().serialized(), as: UTF8.self)
            #expect(wire.contains("Connection: close\r\n") == reply.closes, "\(reply)")
            #expect(wire.contains("Content-Length: "), "\(reply)")
        }
    }
}
