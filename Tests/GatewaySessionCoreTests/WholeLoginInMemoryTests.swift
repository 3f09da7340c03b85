import Foundation
import GatewayCore
import GatewayTLS
import GatewayWire
import Testing
@testable import GatewaySessionCore

/// A whole login, played without a socket: a TLS client and the gateway's TLS server
/// context talk through memory (`InboundBuffer` / `OutboundBuffer`), the server side
/// feeds what it decrypts to a `LoginConversation` and does what it returns, as
/// Gateway+HTTP does, with a table of tokens standing in for mstunnel-auth's answers.
@Suite(.serialized) struct WholeLoginInMemoryTests {
    static let context: TLSServerContext = {
        let dir = NSTemporaryDirectory() + "mst-login-mem-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=gw "
                       + "-keyout \(dir)/k -out \(dir)/c 2>/dev/null"]
        try! p.run()
        p.waitUntilExit()
        return try! TLSServerContext(certificate: .pem(chain: dir + "/c", key: dir + "/k"))
    }()

    /// The gateway's side of one connection, reduced to what the login needs.
    final class Gateway {
        let pool = BufferPool(chunkSize: 256 * 1024)
        let clientIn = InboundBuffer(), serverIn = InboundBuffer()
        let client: TLSConnection
        let server: TLSConnection
        var login = LoginConversation()
        /// What mstunnel-auth would say about each token.
        var tokens: [String: ValidateTokenResponse] = [:]
        var pendingToken: String?
        /// Tickets mstunnel-auth would open (sealed by a sibling), and the one being opened.
        var tickets: [String: Identity] = [:]
        /// Tickets that open but whose session this gateway may not take now (a limit).
        var busyTickets: Set<String> = []
        var pendingTicket: String?
        /// Sessions by cookie.
        var sessions: [String: Identity] = [:]
        var closed = false
        var tunnelFrames: [UInt8] = []
        var log: [String] = []

        init() throws {
            client = try TLSClientContext().makeConnection(input: clientIn, output: OutboundBuffer(pool: pool))
            server = try WholeLoginInMemoryTests.context.makeConnection(input: serverIn, output: OutboundBuffer(pool: pool))
        }

        /// Moves bytes both ways until neither side has anything to say.
        func pump() {
            for _ in 0..<8 {
                if !client.isHandshakeDone { _ = client.handshake() }
                let up = client.output.take()
                serverIn.append(up)
                serve()
                let down = server.output.take()
                clientIn.append(down)
                if up.isEmpty, down.isEmpty { break }
            }
        }

        /// The server's read pass.
        func serve() {
            if closed { return }
            if login.state == .handshake {
                guard case .done = server.handshake() else { return }
                login.handshakeDone()
            }
            var buf = [UInt8](repeating: 0, count: 20_000)
            while !closed, case .done(let n) = buf.withUnsafeMutableBytes({ server.read($0.baseAddress!, $0.count) }) {
                if login.state == .tunnel {
                    tunnelFrames += buf[0..<n]
                } else {
                    perform(login.received(Array(buf[0..<n])) { sessions[$0] != nil })
                }
            }
            answerAuth()
        }

        /// mstunnel-auth answers on a later loop turn.
        func answerAuth() {
            if let ticket = pendingTicket {
                pendingTicket = nil
                if busyTickets.contains(ticket) {
                    perform(login.ticketAnswered(.unavailable(reason: "session limit reached on this server")))
                } else if let who = tickets[ticket] {
                    sessions[ticket] = who  // taken back, as Gateway+Tickets does
                    perform(login.ticketAnswered(.resumed))
                } else {
                    perform(login.ticketAnswered(.refused(reason: "does not open")))
                }
            }
            guard let token = pendingToken else { return }
            pendingToken = nil
            perform(login.authAnswered(tokens[token] ?? .rejected(.badSignature, "signature does not verify")))
        }

        func perform(_ actions: [LoginAction]) {
            for action in actions where !closed {
                switch action {
                case .reply(let reply):
                    send(reply.response().serialized())
                    if reply.closes {
                        server.shutdown()
                        closed = true
                    }
                case .validate(let token, let transport):
                    log.append("validate \(transport.rawValue)")
                    pendingToken = token
                case .reject(_, let code, _): log.append("rejected \(code)")
                case .malformed(let why): log.append("malformed \(why)")
                case .tunnelFrameBeforeConnect: log.append("tunnel frame before CONNECT")
                case .flood: closed = true
                case .createSession(let identity, _):
                    let cookie = "cookie-\(sessions.count + 1)"
                    sessions[cookie] = identity
                    perform(login.sessionDecided(.loginComplete(cookie: cookie, banner: "Welcome")) { sessions[$0] != nil })
                case .openTicket(let cookie):
                    log.append("open ticket")
                    pendingTicket = cookie
                case .startTunnel(let cookie, let identity, _):
                    if sessions[cookie] == nil, let identity { sessions[cookie] = identity }
                    guard let who = sessions[cookie] else {
                        perform(login.sessionDecided(.cookieNotAcceptable) { sessions[$0] != nil })
                        continue
                    }
                    log.append("tunnel for \(who.userName)")
                    let rest = login.tunnelStarted()
                    send(Array("HTTP/1.1 200 CONNECTED\r\nX-CSTP-Address: 100.64.0.2\r\n\r\n".utf8))
                    tunnelFrames += rest
                }
            }
        }

        func send(_ bytes: [UInt8]) {
            _ = bytes.withUnsafeBytes { server.write($0.baseAddress!, $0.count) }
        }

        /// The client's side: one request out, every byte the server answered back.
        func request(_ text: String, extra: [UInt8] = []) -> String {
            _ = (Array(text.utf8) + extra).withUnsafeBytes { client.write($0.baseAddress!, $0.count) }
            pump()
            var got: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 20_000)
            while case .done(let n) = buf.withUnsafeMutableBytes({ client.read($0.baseAddress!, $0.count) }) { got += buf[0..<n] }
            return String(decoding: got, as: UTF8.self)
        }

        var clientSawClose: Bool {
            var buf = [UInt8](repeating: 0, count: 64)
            return buf.withUnsafeMutableBytes { client.read($0.baseAddress!, $0.count) } == .closed
        }
    }

    static let ua = "User-Agent: Open AnyConnect VPN Agent v9.12\r\nX-Transcend-Version: 1\r\nX-Aggregate-Auth: 1\r\n"
    static func post(_ body: String) -> String {
        "POST / HTTP/1.1\r\nHost: gw\r\n\(ua)Content-Type: application/x-www-form-urlencoded\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
    }
    static let initXML = "<?xml version=\"1.0\"?><config-auth client=\"vpn\" type=\"init\"><version who=\"vpn\">v9.12</version></config-auth>"
    static func replyXML(_ password: String) -> String {
        "<?xml version=\"1.0\"?><config-auth client=\"vpn\" type=\"auth-reply\"><auth><username>alice</username><password>\(password)</password></auth></config-auth>"
    }
    static let alice = Identity(userId: "u-alice", userName: "alice@example.com", expiresAt: 4_000_000_000)

    @Test func passwordLoginThenConnectThenADPDInTheSameRecord() throws {
        let gw = try Gateway()
        gw.tokens[jwt] = .accepted(Self.alice)
        gw.pump()
        #expect(gw.client.isHandshakeDone && gw.login.state == .reading)

        let form = gw.request(Self.post(Self.initXML))
        #expect(form.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(form.contains("type=\"auth-request\"") && form.contains("<input type=\"password\" name=\"password\""))

        let complete = gw.request(Self.post(Self.replyXML(jwt)))
        #expect(gw.log == ["validate password"])
        #expect(complete.contains("Set-Cookie: webvpn=cookie-1; Secure; HttpOnly\r\n"))
        #expect(complete.contains("type=\"complete\""))

        let dpd: [UInt8] = [0x53, 0x54, 0x46, 0x01, 0x00, 0x00, 0x03, 0x00]
        let connected = gw.request("CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: gw\r\n\(Self.ua)Cookie: webvpn=cookie-1\r\n\r\n", extra: dpd)
        #expect(connected.hasPrefix("HTTP/1.1 200 CONNECTED\r\n"))
        #expect(gw.log.last == "tunnel for alice@example.com")
        #expect(gw.login.state == .tunnel)
        // The frame that rode in the CONNECT's record is the tunnel's first input.
        #expect(gw.tunnelFrames == dpd)
    }

    @Test func bearerChallengeThenBearer() throws {
        let gw = try Gateway()
        gw.tokens[jwt] = .accepted(Self.alice)
        gw.pump()
        let challenge = gw.request("POST / HTTP/1.1\r\nHost: gw\r\n\(Self.ua)X-Support-HTTP-Auth: true\r\nContent-Length: 0\r\n\r\n")
        #expect(challenge.hasPrefix("HTTP/1.1 401 Unauthorized\r\n") && challenge.contains("WWW-Authenticate: Bearer\r\n"))
        let complete = gw.request("POST / HTTP/1.1\r\nHost: gw\r\n\(Self.ua)Authorization: Bearer \(jwt)\r\nContent-Length: 0\r\n\r\n")
        #expect(complete.contains("Set-Cookie: webvpn=cookie-1"))
        #expect(gw.log == ["validate bearer"])
    }

    @Test func tokenAsCookieConnectsWithoutALogin() throws {
        let gw = try Gateway()
        gw.tokens[jwt] = .accepted(Self.alice)
        gw.pump()
        let connected = gw.request("CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: gw\r\n\(Self.ua)Cookie: webvpn=\(jwt)\r\n\r\n")
        #expect(connected.hasPrefix("HTTP/1.1 200 CONNECTED\r\n"))
        #expect(gw.log == ["validate cookie", "tunnel for alice@example.com"])
        #expect(gw.sessions[jwt] == Self.alice)
    }

    /// A CONNECT with a ticket this gateway has no session for (sealed on a sibling that is
    /// gone): auth opens it, the session is taken back, the tunnel starts — no login.
    @Test func aTicketFromASiblingResumesTheSession() throws {
        let gw = try Gateway()
        let ticket = "mst.1.site-1.c2VhbGVkLXNlc3Npb24"
        gw.tickets[ticket] = Self.alice
        gw.pump()
        let connected = gw.request("CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: gw\r\n\(Self.ua)Cookie: webvpn=\(ticket)\r\n\r\n")
        #expect(connected.hasPrefix("HTTP/1.1 200 CONNECTED\r\n"))
        #expect(gw.log == ["open ticket", "tunnel for alice@example.com"])
        #expect(gw.login.state == .tunnel)
    }

    /// A ticket that opens but whose session may not be taken here now (a session limit): 503,
    /// which the stock client retries (a 401 would make it give up).
    @Test func aTicketOverTheSessionLimitGets503() throws {
        let gw = try Gateway()
        let ticket = "mst.1.site-1.c2VhbGVkLXNlc3Npb24"
        gw.tickets[ticket] = Self.alice
        gw.busyTickets.insert(ticket)
        gw.pump()
        let answer = gw.request("CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: gw\r\n\(Self.ua)Cookie: webvpn=\(ticket)\r\n\r\n")
        #expect(answer.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"))
        #expect(gw.log == ["open ticket"])
        #expect(gw.closed)
    }

    @Test func aTicketThatDoesNotOpenGets401NotALoginForm() throws {
        let gw = try Gateway()
        gw.pump()
        let refused = gw.request("CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: gw\r\n\(Self.ua)Cookie: webvpn=mst.1.site-1.Zm9yZ2Vk\r\n\r\n")
        #expect(refused.hasPrefix("HTTP/1.1 401 Cookie is not acceptable\r\n"))
        #expect(gw.log == ["open ticket", "rejected ticketRefused"])
        #expect(gw.closed)
    }

    @Test func aForgedTokenGets401AndTheConnectionCloses() throws {
        let gw = try Gateway()
        gw.pump()
        let refused = gw.request(Self.post(Self.replyXML(jwt)))
        #expect(refused.hasPrefix("HTTP/1.1 401 Unauthorized\r\n") && refused.contains("Connection: close\r\n"))
        #expect(gw.log == ["validate password", "rejected badSignature"])
        #expect(gw.closed)
        #expect(gw.clientSawClose)
        #expect(gw.sessions.isEmpty)
    }

    @Test func garbageAfterTheHandshakeGets400AndCloses() throws {
        let gw = try Gateway()
        gw.pump()
        let answer = gw.request("\u{16}\u{03}\u{01} not http at all\r\n\r\n")
        #expect(answer.hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        #expect(gw.log.first?.hasPrefix("malformed") == true)
        #expect(gw.clientSawClose)
    }
}
