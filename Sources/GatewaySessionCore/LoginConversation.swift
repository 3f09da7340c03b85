import GatewayCore
import GatewayWire

/// What the gateway must do for a connection in its login phase, in the order returned.
public enum LoginAction: Equatable, Sendable {
    /// Send this response. When `reply.closes`, the conversation is already `.closing`:
    /// close the connection once it is sent.
    case reply(LoginReply)
    /// Ask mstunnel-auth about `token`; hand its answer to `authAnswered`.
    case validate(token: String, transport: TokenTransport)
    /// A login refused (before asking, or by auth): log and count it. A reply follows.
    case reject(transport: TokenTransport, code: String, reason: String)
    /// A request that does not parse: log it. A `400` reply follows.
    case malformed(String)
    /// A CSTP frame before any CONNECT was accepted on this connection: malformed tunnel
    /// input (counted, logged at most once a minute per address). A `400` reply follows.
    case tunnelFrameBeforeConnect
    /// The client pipelined more than any login needs while auth was asked: close.
    case flood
    /// A login was accepted: create a session for `identity` with a fresh cookie, answer
    /// `.loginComplete` (or the refusal) through `sessionDecided`.
    case createSession(Identity, TokenTransport)
    /// A CONNECT to start the tunnel of the session under `cookie`; `identity` is set when
    /// the cookie was itself a token auth accepted (create the session if none has it).
    /// Then `tunnelStarted` (or `sessionDecided` with the refusal).
    case startTunnel(cookie: String, identity: Identity?, request: HTTPRequest)
    /// A CONNECT whose cookie is a ticket no session here has: ask mstunnel-auth to open
    /// it, take the session in it back, and answer with `ticketAnswered`.
    case openTicket(cookie: String)
}

/// One client connection from the end of its TLS handshake to the CONNECT that starts its
/// tunnel: requests parsed as they arrive (pipelined ones in order), the token paths,
/// the wait for mstunnel-auth, the final response before a close. Each state carries what
/// it needs; nothing here does I/O or reads a clock. The gateway feeds it decrypted bytes
/// and answers, and does what it returns (Gateway+HTTP); tests play whole logins with it
/// (LoginConversationTests, over TLS in memory).
public struct LoginConversation: Sendable {
    public enum State: Equatable, Sendable {
        /// The TLS handshake has not finished.
        case handshake
        /// Requests are read and answered in order.
        case reading
        /// A token is with mstunnel-auth. Requests that arrive meanwhile wait in the parser.
        case awaitingAuth(transport: TokenTransport, connect: HTTPRequest?)
        /// A CONNECT's ticket is with mstunnel-auth.
        case awaitingTicket(connect: HTTPRequest)
        /// The gateway is deciding on a session (`createSession` / `startTunnel`) and
        /// answers with `sessionDecided` or `tunnelStarted`.
        case awaitingSession
        /// The last response is queued; the connection closes once it is sent, and
        /// anything else the client sends is ignored.
        case closing
        /// The CONNECT was accepted; what follows is CSTP.
        case tunnel
    }

    public private(set) var state: State = .handshake
    private var parser = HTTPRequestParser()
    /// The last request's `User-Agent` (the session keeps it).
    public private(set) var userAgent: String?
    /// The client presented a certificate in the TLS handshake.
    public private(set) var hasClientCertificate = false
    /// A certificate-only login was tried on this connection (once is enough).
    private var certificateTried = false
    /// While a certificate-only login is with mstunnel-auth: what the request would have
    /// been answered without a certificate (the form or the Bearer challenge).
    private var certificateFallback: LoginReply?

    public init() {}

    /// `clientCertificate`: the client presented one. Its first request without a token is
    /// then offered to mstunnel-auth as a certificate login (`validate` with `.certificate`).
    public mutating func handshakeDone(clientCertificate: Bool = false) {
        guard state == .handshake else { return }
        state = .reading
        hasClientCertificate = clientCertificate
    }

    /// Decrypted bytes from the client. `isSession` says whether a `webvpn` cookie value
    /// belongs to a live session.
    public mutating func received(_ bytes: UnsafeRawBufferPointer, isSession: (String) -> Bool) -> [LoginAction] {
        switch state {
        case .closing, .tunnel, .handshake:
            // After a final response, or (never) in the tunnel: nothing to do.
            return []
        case .awaitingAuth, .awaitingTicket, .awaitingSession:
            parser.append(bytes)
            // Pipelining this much while a login is being checked is abuse.
            if parser.buffered > HTTPRequestParser.maxHeaderBytes + HTTPRequestParser.maxBodyBytes {
                state = .closing
                return [.flood]
            }
            return []
        case .reading:
            parser.append(bytes)
            return process(isSession: isSession)
        }
    }

    public mutating func received(_ bytes: [UInt8], isSession: (String) -> Bool) -> [LoginAction] {
        bytes.withUnsafeBytes { received($0, isSession: isSession) }
    }

    /// mstunnel-auth answered the pending `validate` (or the gateway gives up on it with
    /// a `.rejected(.issuerUnavailable, …)` of its own).
    /// `isSession` (as for `received`) matters only when a refused certificate login falls
    /// back and requests the client pipelined meanwhile are read.
    public mutating func authAnswered(_ response: ValidateTokenResponse,
                                      isSession: (String) -> Bool = { _ in false }) -> [LoginAction] {
        guard case .awaitingAuth(let transport, let connect) = state else { return [] }
        if transport == .certificate, let fallback = certificateFallback {
            certificateFallback = nil
            // A certificate that is not good enough alone (token mode, or certificate+token
            // without the token yet) gets the answer it would have had without one, so the
            // client goes on to the token. A certificate that is bad is a failed login.
            if let rejection = response.rejection, !LoginFlow.isCertificateFailure(rejection.code) {
                state = .reading
                return [answer(fallback)] + (state == .reading ? process(isSession: isSession) : [])
            }
        }
        switch LoginFlow.outcome(response, forConnect: connect != nil) {
        case .refuse(let reply, let code, let reason):
            return [.reject(transport: transport, code: code, reason: reason), answer(reply)]
        case .accept(let identity):
            state = .awaitingSession
            if let connect, let cookie = connect.cookie("webvpn") {
                return [.startTunnel(cookie: cookie, identity: identity, request: connect)]
            }
            return [.createSession(identity, transport)]
        }
    }

    /// No answer will come: mstunnel-auth is unreachable, went away, or did not answer in
    /// time. The client gets a 503 with `reason` (for a ticket too: the stock client tries
    /// again after a 503, and gives up after a 401).
    public mutating func authUnavailable(_ reason: String) -> [LoginAction] {
        switch state {
        case .awaitingAuth, .awaitingTicket: return [answer(.unavailable(reason))]
        default: return []
        }
    }

    public enum TicketOutcome: Equatable, Sendable {
        /// The session in the ticket is now the gateway's, under the cookie.
        case resumed
        /// The ticket does not open, or its session cannot be taken back here.
        case refused(reason: String)
        /// Not now, here (a limit reached, a drain): 503, so the client tries again and the
        /// balancer may send it to a sibling.
        case unavailable(reason: String)
    }

    /// mstunnel-auth's answer to `openTicket`, after the gateway took the session back (or not).
    public mutating func ticketAnswered(_ outcome: TicketOutcome) -> [LoginAction] {
        guard case .awaitingTicket(let connect) = state, let cookie = connect.cookie("webvpn") else { return [] }
        switch outcome {
        case .resumed:
            state = .awaitingSession
            return [.startTunnel(cookie: cookie, identity: nil, request: connect)]
        case .refused(let reason):
            state = .reading
            return [.reject(transport: .cookie, code: "ticketRefused", reason: reason), answer(.cookieNotAcceptable)]
        case .unavailable(let reason):
            return [answer(.unavailable(reason))]
        }
    }

    /// The gateway's decision on a session: `reply` is `.loginComplete` after a session
    /// was created, or the refusal (limits, no address, an expired session). Returns the
    /// reply to send, then the actions of requests the client pipelined meanwhile.
    public mutating func sessionDecided(_ reply: LoginReply, isSession: (String) -> Bool) -> [LoginAction] {
        guard state == .awaitingSession else { return [] }
        state = .reading
        let first = answer(reply)
        return [first] + (state == .reading ? process(isSession: isSession) : [])
    }

    /// The tunnel started: returns the bytes that followed the CONNECT (CSTP frames the
    /// client sent without waiting), which the gateway handles as tunnel input.
    public mutating func tunnelStarted() -> [UInt8] {
        guard state == .awaitingSession else { return [] }
        state = .tunnel
        return parser.takeRemainder()
    }

    /// Every request now in the parser, until one needs the gateway or ends the conversation.
    private mutating func process(isSession: (String) -> Bool) -> [LoginAction] {
        var actions: [LoginAction] = []
        while state == .reading {
            let request: HTTPRequest
            do {
                guard let r = try parser.next() else { break }
                request = r
            } catch {
                parser.reset()
                actions.append(error == .tunnelFrame ? .tunnelFrameBeforeConnect : .malformed("\(error)"))
                actions.append(answer(.badRequest("bad request: \(error)")))
                break
            }
            userAgent = request.header("user-agent") ?? userAgent
            switch LoginFlow.step(for: request) {
            case .reply(let reply):
                if hasClientCertificate, !certificateTried, LoginFlow.asksForCredentials(reply) {
                    // The first request without a token, from a client with a certificate:
                    // the certificate may be the whole login (ocserv answers `complete` here).
                    certificateTried = true
                    certificateFallback = reply
                    state = .awaitingAuth(transport: .certificate, connect: nil)
                    actions.append(.validate(token: "", transport: .certificate))
                } else {
                    actions.append(answer(reply))
                }
            case .validate(let token, let transport):
                state = .awaitingAuth(transport: transport, connect: nil)
                actions.append(.validate(token: token, transport: transport))
            case .refuseToken(let transport, let reason):
                actions.append(.reject(transport: transport, code: "malformed", reason: reason))
                actions.append(answer(.unauthorized))
            case .connect(let cookie):
                switch LoginFlow.connect(cookie: cookie, hasSession: isSession(cookie)) {
                case .attach:
                    state = .awaitingSession
                    actions.append(.startTunnel(cookie: cookie, identity: nil, request: request))
                case .validateCookie(let token):
                    state = .awaitingAuth(transport: .cookie, connect: request)
                    actions.append(.validate(token: token, transport: .cookie))
                case .openTicket(let ticket):
                    state = .awaitingTicket(connect: request)
                    actions.append(.openTicket(cookie: ticket))
                case .reply(let reply):
                    actions.append(answer(reply))
                }
            }
        }
        return actions
    }

    /// A reply, and `.closing` when it ends the connection.
    private mutating func answer(_ reply: LoginReply) -> LoginAction {
        if reply.closes { state = .closing }
        return .reply(reply)
    }
}
