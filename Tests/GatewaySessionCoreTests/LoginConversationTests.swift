import GatewayCore
import GatewayWire
import Testing
@testable import GatewaySessionCore

/// The login phase as a conversation: bytes in, actions out, every state and the
/// malformed input each one can meet. No socket, no clock.
@Suite struct LoginConversationTests {
    static let initXML = "<?xml version=\"1.0\"?><config-auth client=\"vpn\" type=\"init\"><version who=\"vpn\">v9</version></config-auth>"
    static func replyXML(_ password: String) -> String {
        "<?xml version=\"1.0\"?><config-auth client=\"vpn\" type=\"auth-reply\"><auth><username>a</username><password>\(password)</password></auth></config-auth>"
    }
    static func post(_ body: String, headers: String = "") -> String {
        "POST / HTTP/1.1\r\nHost: gw\r\n\(oc)\(headers)Content-Type: application/xml\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
    }
    static func connect(cookie: String) -> String {
        "CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: gw\r\n\(oc)Cookie: webvpn=\(cookie)\r\nX-CSTP-Base-MTU: 1406\r\n\r\n"
    }
    static let alice = Identity(userId: "u-alice", userName: "alice@example.com", expiresAt: 4_000_000_000)
    static let noSessions: @Sendable (String) -> Bool = { _ in false }

    func ready() -> LoginConversation {
        var c = LoginConversation()
        c.handshakeDone()
        return c
    }

    @Test func nothingIsReadBeforeTheHandshakeEnds() {
        var c = LoginConversation()
        #expect(c.state == .handshake)
        #expect(c.received(Array(Self.post(Self.initXML).utf8), isSession: Self.noSessions) == [])
        c.handshakeDone()
        #expect(c.state == .reading)
    }

    @Test func passwordPathFromInitToCookie() {
        var c = ready()
        #expect(c.received(Array(Self.post(Self.initXML).utf8), isSession: Self.noSessions) == [.reply(.tokenForm(error: nil))])
        #expect(c.state == .reading)
        #expect(c.received(Array(Self.post(Self.replyXML(jwt)).utf8), isSession: Self.noSessions)
            == [.validate(token: jwt, transport: .password)])
        #expect(c.state == .awaitingAuth(transport: .password, connect: nil))
        #expect(c.authAnswered(.accepted(Self.alice)) == [.createSession(Self.alice, .password)])
        #expect(c.state == .awaitingSession)
        let done = LoginReply.loginComplete(cookie: "c00kie", banner: "hi")
        #expect(c.sessionDecided(done, isSession: Self.noSessions) == [.reply(done)])
        #expect(c.state == .reading)
        #expect(c.userAgent == "Open AnyConnect VPN Agent v9.12")
    }

    @Test func bearerPathAndTheChallengeBeforeIt() {
        var c = ready()
        let challenge = "POST / HTTP/1.1\r\n\(oc)X-Support-HTTP-Auth: true\r\nContent-Length: 0\r\n\r\n"
        #expect(c.received(Array(challenge.utf8), isSession: Self.noSessions) == [.reply(.bearerChallenge)])
        #expect(c.state == .reading)
        let bearer = "POST / HTTP/1.1\r\n\(oc)Authorization: Bearer \(jwt)\r\nContent-Length: 0\r\n\r\n"
        #expect(c.received(Array(bearer.utf8), isSession: Self.noSessions) == [.validate(token: jwt, transport: .bearer)])
        #expect(c.authAnswered(.accepted(Self.alice)) == [.createSession(Self.alice, .bearer)])
    }

    @Test func connectWithASessionCookieStartsTheTunnelAndKeepsWhatFollows() throws {
        var c = ready()
        // The client sends its first CSTP frame (a DPD request) right behind the CONNECT.
        let dpd: [UInt8] = [0x53, 0x54, 0x46, 0x01, 0x00, 0x00, 0x03, 0x00]
        let actions = c.received(Array(Self.connect(cookie: "c00kie").utf8) + dpd) { $0 == "c00kie" }
        guard case .startTunnel(let cookie, let identity, let request)? = actions.first, actions.count == 1 else {
            Issue.record("expected startTunnel, got \(actions)")
            return
        }
        #expect(cookie == "c00kie" && identity == nil)
        #expect(request.header("x-cstp-base-mtu") == "1406")
        #expect(c.state == .awaitingSession)
        let rest = c.tunnelStarted()
        #expect(rest == dpd)
        #expect(c.state == .tunnel)
        #expect(rest.withUnsafeBytes { TunnelFrame.step(type: $0[6], payload: UnsafeRawBufferPointer(rebasing: $0[8...])) } == .answerDPD)
        // Anything after that is the tunnel's, never the conversation's.
        #expect(c.received(Array(Self.post(Self.initXML).utf8), isSession: Self.noSessions) == [])
    }

    @Test func connectWithATokenAsCookieAsksAuthThenStartsTheTunnel() {
        var c = ready()
        #expect(c.received(Array(Self.connect(cookie: jwt).utf8), isSession: Self.noSessions) == [.validate(token: jwt, transport: .cookie)])
        guard case .awaitingAuth(.cookie, let request?) = c.state else {
            Issue.record("expected to wait for auth with the CONNECT, got \(c.state)")
            return
        }
        #expect(request.method == "CONNECT")
        let actions = c.authAnswered(.accepted(Self.alice))
        #expect(actions == [.startTunnel(cookie: jwt, identity: Self.alice, request: request)])
    }

    @Test func aTokenAsCookieThatAuthRefusesIsNotAcceptable() {
        var c = ready()
        _ = c.received(Array(Self.connect(cookie: jwt).utf8), isSession: Self.noSessions)
        #expect(c.authAnswered(.rejected(.expired, "token expired")) == [
            .reject(transport: .cookie, code: "expired", reason: "token expired"), .reply(.cookieNotAcceptable),
        ])
        #expect(c.state == .closing)
    }

    @Test func unknownCookieIsRefusedAndTheConnectionCloses() {
        var c = ready()
        #expect(c.received(Array(Self.connect(cookie: "stale").utf8), isSession: Self.noSessions) == [.reply(.cookieNotAcceptable)])
        #expect(c.state == .closing)
        #expect(c.received(Array(Self.post(Self.initXML).utf8), isSession: Self.noSessions) == [])
    }

    @Test func aRefusedTokenIsLoggedAndAnswered401() {
        var c = ready()
        _ = c.received(Array(Self.post(Self.replyXML(jwt)).utf8), isSession: Self.noSessions)
        #expect(c.authAnswered(.rejected(.badAudience, "aud is not this gateway")) == [
            .reject(transport: .password, code: "badAudience", reason: "aud is not this gateway"), .reply(.unauthorized),
        ])
        #expect(c.state == .closing)
    }

    @Test func issuerUnavailableAndAuthUnreachableAre503() {
        var c = ready()
        _ = c.received(Array(Self.post(Self.replyXML(jwt)).utf8), isSession: Self.noSessions)
        #expect(c.authAnswered(.rejected(.issuerUnavailable, "JWKS fetch failed")) == [
            .reject(transport: .password, code: "issuerUnavailable", reason: "JWKS fetch failed"), .reply(.unavailable("token issuer unavailable")),
        ])
        var d = ready()
        _ = d.received(Array(Self.post(Self.replyXML(jwt)).utf8), isSession: Self.noSessions)
        #expect(d.authUnavailable("authentication service unavailable") == [.reply(.unavailable("authentication service unavailable"))])
        #expect(d.state == .closing)
        // Late: the connection no longer waits, so nothing happens.
        #expect(d.authAnswered(.accepted(Self.alice)) == [])
        #expect(d.authUnavailable("again") == [])
    }

    @Test func answersThatComeWhenNothingWaitsAreIgnored() {
        var c = ready()
        #expect(c.authAnswered(.accepted(Self.alice)) == [])
        #expect(c.sessionDecided(.unauthorized, isSession: Self.noSessions) == [])
        #expect(c.tunnelStarted() == [])
        #expect(c.state == .reading)
    }

    @Test func aSessionRefusedByTheGatewayEndsTheConversation() {
        var c = ready()
        _ = c.received(Array(Self.post(Self.replyXML(jwt)).utf8), isSession: Self.noSessions)
        _ = c.authAnswered(.accepted(Self.alice))
        // Pipelined behind the login: never answered, because the refusal closes.
        _ = c.received(Array("GET / HTTP/1.1\r\nHost: gw\r\n\r\n".utf8), isSession: Self.noSessions)
        let refusal = LoginReply.unavailable("too many sessions for this user")
        #expect(c.sessionDecided(refusal, isSession: Self.noSessions) == [.reply(refusal)])
        #expect(c.state == .closing)
    }

    @Test func requestsPipelinedDuringAuthAreAnsweredInOrderAfterIt() {
        var c = ready()
        _ = c.received(Array(Self.post(Self.replyXML(jwt)).utf8), isSession: Self.noSessions)
        #expect(c.received(Array("GET / HTTP/1.1\r\nHost: gw\r\n\r\n".utf8), isSession: Self.noSessions) == [])
        _ = c.authAnswered(.accepted(Self.alice))
        let done = LoginReply.loginComplete(cookie: "k", banner: nil)
        #expect(c.sessionDecided(done, isSession: Self.noSessions) == [.reply(done), .reply(.livenessPage(headOnly: false))])
    }

    @Test func floodingWhileAuthIsAskedCloses() {
        var c = ready()
        _ = c.received(Array(Self.post(Self.replyXML(jwt)).utf8), isSession: Self.noSessions)
        let junk = [UInt8](repeating: 0x41, count: HTTPRequestParser.maxHeaderBytes + HTTPRequestParser.maxBodyBytes + 1)
        #expect(c.received(junk, isSession: Self.noSessions) == [.flood])
        #expect(c.state == .closing)
    }

    @Test func bytesSplitAnywhereGiveTheSameActions() {
        let wire = Array((Self.post(Self.initXML) + Self.post(Self.replyXML(jwt))).utf8)
        var whole = ready()
        let expected = whole.received(wire, isSession: Self.noSessions)
        #expect(expected == [.reply(.tokenForm(error: nil)), .validate(token: jwt, transport: .password)])
        for cut in stride(from: 1, to: wire.count, by: 37) {
            var c = ready()
            let got = c.received(Array(wire[..<cut]), isSession: Self.noSessions) + c.received(Array(wire[cut...]), isSession: Self.noSessions)
            #expect(got == expected, "cut at \(cut)")
        }
        var byteByByte = ready()
        var got: [LoginAction] = []
        for b in wire { got += byteByByte.received([b], isSession: Self.noSessions) }
        #expect(got == expected)
    }

    /// Malformed input at each step: what the client gets, and whether it stays open.
    @Test(arguments: [
        ("GARBAGE\r\n\r\n", true),
        ("GET / HTTP/1.1\r\nNo-Colon-Here\r\n\r\n", true),
        ("POST / HTTP/1.1\r\nContent-Length: -4\r\n\r\n", true),
        ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", true),
        ("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc", true),
        ("POST / HTTP/1.1\r\n\(oc)Content-Length: 30\r\n\r\n<config-auth type=\"auth-reply\">", true),
        ("DELETE / HTTP/1.1\r\n\r\n", true),
        ("CONNECT /elsewhere HTTP/1.1\r\n\r\n", true),
        ("CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\n\r\n", true),
        ("GET /nothing-here HTTP/1.1\r\n\r\n", true),
        ("GET / HTTP/1.1\r\n\r\n", false),
        ("POST / HTTP/1.1\r\n\(oc)Content-Length: 0\r\n\r\n", false),
    ])
    func malformedOrForeignRequests(text: String, closes: Bool) {
        var c = ready()
        let actions = c.received(Array(text.utf8), isSession: Self.noSessions)
        guard case .reply(let reply)? = actions.last else {
            Issue.record("expected a reply to \(text.debugDescription), got \(actions)")
            return
        }
        #expect(reply.closes == closes, "\(text.debugDescription) → \(reply)")
        #expect(c.state == (closes ? .closing : .reading))
        #expect(!actions.contains { if case .validate = $0 { return true } else { return false } })
    }

    @Test func anOversizedOrEmptyTokenIsNeverSentToAuth() {
        var c = ready()
        let huge = String(repeating: "a", count: LoginFlow.maxTokenBytes + 1)
        let bearer = "POST / HTTP/1.1\r\n\(oc)Authorization: Bearer \(huge)\r\nContent-Length: 0\r\n\r\n"
        #expect(c.received(Array(bearer.utf8), isSession: Self.noSessions) == [
            .reject(transport: .bearer, code: "malformed", reason: "token is empty or larger than 16 KiB"), .reply(.unauthorized),
        ])
        var d = ready()
        #expect(d.received(Array(Self.post(Self.replyXML("   ")).utf8), isSession: Self.noSessions)
            == [.reply(.tokenForm(error: "An access token is required."))])
        #expect(d.state == .reading)
    }

    @Test func logoutIsAnsweredAndTheConnectionStays() {
        var c = ready()
        let body = "<config-auth client=\"vpn\" type=\"logout\"></config-auth>"
        #expect(c.received(Array(Self.post(body).utf8), isSession: Self.noSessions) == [.reply(.loggedOut)])
        #expect(c.state == .reading)
    }
}
