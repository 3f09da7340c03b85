import GatewayCore
import GatewayWire
import Testing
@testable import GatewaySessionCore

/// Logins from a client that presented a certificate in its TLS handshake
/// (`openconnect -c cert.pem -k key.pem`): the first request without a token is offered to
/// mstunnel-auth as a certificate login; what auth decides is carried out. No socket.
@Suite struct CertificateLoginTests {
    typealias T = LoginConversationTests
    static let carol = Identity(userId: "carol", userName: "carol", expiresAt: 4_000_000_000, certificateSHA256: String(repeating: "ab", count: 32))

    func withCertificate() -> LoginConversation {
        var c = LoginConversation()
        c.handshakeDone(clientCertificate: true)
        return c
    }

    @Test func theInitRequestIsACertificateLoginAndCompletesAtOnce() {
        var c = withCertificate()
        #expect(c.hasClientCertificate)
        #expect(c.received(Array(T.post(T.initXML).utf8), isSession: T.noSessions) == [.validate(token: "", transport: .certificate)])
        #expect(c.state == .awaitingAuth(transport: .certificate, connect: nil))
        #expect(c.authAnswered(.accepted(Self.carol)) == [.createSession(Self.carol, .certificate)])
        let done = LoginReply.loginComplete(cookie: "c00kie", banner: nil)
        #expect(c.sessionDecided(done, isSession: T.noSessions) == [.reply(done)])
    }

    /// Token mode (certificateNotAccepted), or certificate+token before the token came: the
    /// client gets what it would have got without a certificate and goes on to its token.
    @Test(arguments: [TokenRejection.Code.certificateNotAccepted, .malformed, .certificateRequired])
    func aCertificateThatIsNotEnoughFallsBackToTheForm(code: TokenRejection.Code) {
        var c = withCertificate()
        _ = c.received(Array(T.post(T.initXML).utf8), isSession: T.noSessions)
        #expect(c.authAnswered(.rejected(code, "not enough")) == [.reply(.tokenForm(error: nil))])
        #expect(c.state == .reading)
        // Tried once: the token that follows is validated (with the certificate alongside).
        #expect(c.received(Array(T.post(T.replyXML(jwt)).utf8), isSession: T.noSessions) == [.validate(token: jwt, transport: .password)])
        #expect(c.authAnswered(.accepted(T.alice)) == [.createSession(T.alice, .password)])
    }

    @Test func theBearerChallengeIsTheFallbackWhenTheClientOffersHTTPAuth() {
        var c = withCertificate()
        let challenge = "POST / HTTP/1.1\r\n\(oc)X-Support-HTTP-Auth: true\r\nContent-Length: 0\r\n\r\n"
        #expect(c.received(Array(challenge.utf8), isSession: T.noSessions) == [.validate(token: "", transport: .certificate)])
        #expect(c.authAnswered(.rejected(.certificateNotAccepted, "token mode")) == [.reply(.bearerChallenge)])
    }

    /// An untrusted, revoked or unmapped certificate is a failed login: logged, 401, closed.
    @Test(arguments: [TokenRejection.Code.certificateUntrusted, .certificateRevoked, .certificateNoUser, .certificateUserMismatch])
    func aBadCertificateIsAFailedLogin(code: TokenRejection.Code) {
        var c = withCertificate()
        _ = c.received(Array(T.post(T.initXML).utf8), isSession: T.noSessions)
        #expect(c.authAnswered(.rejected(code, "bad")) == [
            .reject(transport: .certificate, code: code.rawValue, reason: "bad"), .reply(.unauthorized)])
        #expect(c.state == .closing)
    }

    /// A token sent straight away needs no certificate-only attempt; nor does a CONNECT.
    @Test func aTokenOrACookieGoesStraightToItsOwnPath() {
        var c = withCertificate()
        let bearer = "POST / HTTP/1.1\r\n\(oc)Authorization: Bearer \(jwt)\r\nContent-Length: 0\r\n\r\n"
        #expect(c.received(Array(bearer.utf8), isSession: T.noSessions) == [.validate(token: jwt, transport: .bearer)])
        var second = withCertificate()
        let actions = second.received(Array(T.connect(cookie: "c00kie").utf8)) { $0 == "c00kie" }
        guard case .startTunnel? = actions.first else {
            Issue.record("expected startTunnel, got \(actions)")
            return
        }
    }

    @Test func withoutACertificateNothingChanges() {
        var c = LoginConversation()
        c.handshakeDone(clientCertificate: false)
        #expect(c.received(Array(T.post(T.initXML).utf8), isSession: T.noSessions) == [.reply(.tokenForm(error: nil))])
    }

    /// Auth unreachable during a certificate login: a 503, as for a token.
    @Test func authUnreachableDuringACertificateLogin() {
        var c = withCertificate()
        _ = c.received(Array(T.post(T.initXML).utf8), isSession: T.noSessions)
        #expect(c.authUnavailable("authentication service unavailable") == [.reply(.unavailable("authentication service unavailable"))])
    }
}
