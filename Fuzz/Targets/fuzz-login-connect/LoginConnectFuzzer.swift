import Foundation
import FuzzSupport
import GatewayCore
import GatewaySessionCore
import GatewayWire

/// The login phase and the CONNECT, as the gateway drives them (GatewayDataplane/
/// Gateway+HTTP.swift): LoginConversation (GatewaySessionCore) fed decrypted bytes, its
/// actions carried out by a stand-in gateway that answers every `validate` at once, and
/// for each CONNECT the tunnel parameters (X-CSTP-*/X-DTLS-* request headers read by
/// TunnelParameters in GatewayCore/ConnectResponse.swift) and the `200 CONNECTED` head.
///
/// Input: control byte 0 (how the stream is cut into TLS records), control byte 1 (which
/// settings; whether cookies name sessions; how auth answers), then the byte stream.
///
/// Invariants:
/// - a reply that closes the connection, a `validate`, a `startTunnel` and `flood` end their
///   batch of actions, and leave the conversation in the state they promise;
/// - nothing comes out of a conversation that is closing or in the tunnel;
/// - a `validate` carries a token of 1…16 KiB (trimmed), a `startTunnel` a CONNECT to
///   /CSCOSSLC/tunnel with the non-empty cookie it names;
/// - the CONNECT response head is ASCII header lines only (no client byte can end a line
///   or the head early) and the MTUs stay in range;
/// - every response the login phase serialises has a well-formed head.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let seed = input.byte()
    let control = input.byte()
    let stream = input.rest()
    if KnownIssue.xmlProcessingInstruction(stream) { return 0 }

    var gateway = StandInGateway(control: control)
    var login = LoginConversation()
    gateway.perform(login.received(stream) { _ in false }, &login)  // before the handshake: nothing
    invariant(login.state == .handshake, "bytes before the handshake moved the conversation")
    login.handshakeDone()
    invariant(login.state == .reading, "handshakeDone did not start reading")

    for piece in chunks(stream, seed: seed) {
        let before = login.state
        let actions = login.received(Array(piece)) { gateway.isSession($0) }
        if before == .closing || before == .tunnel {
            invariant(actions.isEmpty, "\(actions.count) actions from a conversation in \(before)")
        }
        gateway.perform(actions, &login)
    }
    return 0
}

private struct StandInGateway {
    let control: UInt8
    let settings: GatewaySettings
    var sessions: Set<String> = []
    var created = 0

    init(control: UInt8) {
        self.control = control
        settings = Self.settings(variant: Int(control & 3))
    }

    func isSession(_ cookie: String) -> Bool {
        control & 0x04 != 0 ? cookie.utf8.count % 2 == 0 : sessions.contains(cookie)
    }

    /// Carries out `actions` (and the actions its answers produce), checking each batch.
    mutating func perform(_ actions: [LoginAction], _ login: inout LoginConversation, depth: Int = 0) {
        invariant(depth < 1000, "answers keep producing actions")
        checkBatch(actions, login)
        for action in actions {
            switch action {
            case .reply(let reply):
                checkResponse(reply.response().serialized(), reply)
            case .validate(let token, let transport):
                if transport == .bearer || transport == .password || transport == .cookie {
                    invariant(!token.isEmpty && token.utf8.count <= LoginFlow.maxTokenBytes, "validate with a token of \(token.utf8.count) bytes")
                }
                if transport == .bearer || transport == .password {
                    invariant(token == token.trimmingCharacters(in: .whitespacesAndNewlines), "validate with an untrimmed token")
                }
                let next = login.authAnswered(answer(for: token))
                perform(next, &login, depth: depth + 1)
            case .reject(_, let code, _):
                invariant(!code.isEmpty, "a rejection without a code")
            case .malformed, .tunnelFrameBeforeConnect:
                break
            case .flood:
                invariant(login.state == .closing, "flood without closing")
            case .createSession(let identity, _):
                invariant(login.state == .awaitingSession, "createSession in \(login.state)")
                created += 1
                let reply: LoginReply
                if control & 0x08 != 0, created % 3 == 0 {
                    reply = .unavailable("no free client address")
                } else {
                    let cookie = "cookie-\(created)-\(identity.userId.utf8.count)"
                    sessions.insert(cookie)
                    reply = .loginComplete(cookie: cookie, banner: settings.advanced.banner)
                }
                perform(login.sessionDecided(reply) { isSession($0) }, &login, depth: depth + 1)
            case .openTicket(let cookie):
                if case .awaitingTicket = login.state {} else { invariant(false, "openTicket in \(login.state)") }
                invariant(TicketFormat.looksLikeTicket(cookie) && !isSession(cookie), "openTicket for a cookie that is no ticket, or a session's")
                // Auth opens it (the session is taken back), refuses it, or cannot be asked.
                let next: [LoginAction]
                switch cookie.utf8.count % 3 {
                case 0:
                    sessions.insert(cookie)
                    next = login.ticketAnswered(.resumed)
                    invariant(login.state == .awaitingSession, "a resumed ticket left the state \(login.state)")
                case 1:
                    next = login.ticketAnswered(.refused(reason: "does not open"))
                    invariant(login.state == .closing, "a refused ticket does not close")
                default:
                    next = login.authUnavailable("auth away")
                    invariant(login.state == .closing, "an unanswered ticket does not close")
                }
                perform(next, &login, depth: depth + 1)
            case .startTunnel(let cookie, _, let request):
                invariant(login.state == .awaitingSession, "startTunnel in \(login.state)")
                invariant(!cookie.isEmpty && request.cookie("webvpn") == cookie, "startTunnel's cookie is not the request's")
                invariant(request.method == "CONNECT" && request.path == "/CSCOSSLC/tunnel", "startTunnel for \(request.method) \(request.path)")
                connect(request)
                if control & 0x10 != 0 {
                    perform(login.sessionDecided(.cookieNotAcceptable) { isSession($0) }, &login, depth: depth + 1)
                    invariant(login.state == .closing, "a refused CONNECT does not close")
                } else {
                    _ = login.tunnelStarted()
                    invariant(login.state == .tunnel, "tunnelStarted did not enter the tunnel")
                }
            }
        }
    }

    /// mstunnel-auth's answer, decided from the token alone.
    func answer(for token: String) -> ValidateTokenResponse {
        let h = token.utf8.reduce(UInt32(control)) { $0 &* 31 &+ UInt32($1) }
        switch h % 4 {
        case 0: return .rejected(.badSignature, "signature does not verify")
        case 1: return .rejected(.issuerUnavailable, "keys unavailable")
        default: return .accepted(Identity(userId: "user-\(h % 7)", userName: "u\(h % 7)@example.com", expiresAt: 2_000_000_000))
        }
    }

    /// The gateway's CONNECT (Gateway.attach): the parameters from the request's headers
    /// and the response head.
    func connect(_ request: HTTPRequest) {
        let remaining = Int(control >> 5) * 600
        var params = TunnelParameters(settings: settings, address: IPv4Address(100, 64, 0, 9), sessionTimeoutRemaining: remaining, request: request)
        if !settings.disableUdpConnections, TunnelParameters.clientOffersPSK(request) {
            params.dtls = .init(port: settings.listenPort, appID: String(repeating: "ab", count: 32), dpd: settings.advanced.dpd,
                                keepalive: min(settings.advanced.keepalive, 20))
        }
        invariant((576...1500).contains(params.baseMTU), "base MTU \(params.baseMTU)")
        invariant(params.mtu >= 548 && params.mtu <= max(548, params.baseMTU - TunnelParameters.dtlsOverhead)
                  && params.mtu <= max(548, settings.advanced.mtu), "MTU \(params.mtu) for base \(params.baseMTU)")
        if let base = request.header("x-cstp-base-mtu").flatMap({ Int($0) }), (576...1500).contains(base) {
            invariant(params.baseMTU == base, "X-CSTP-Base-MTU \(base) became \(params.baseMTU)")
        }
        let head = Array(params.responseHead(serverName: "mstunnel fuzz").utf8)
        checkHead(head, status: "HTTP/1.1 200 CONNECTED")
        if let hostname = request.header("x-cstp-hostname"), !hostname.isEmpty,
           hostname.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }), hostname.trimmingSet(" ") == hostname {
            invariant(String(decoding: head, as: UTF8.self).contains("X-CSTP-Hostname: \(hostname)\r\n"), "printable hostname '\(hostname)' not echoed")
        }
    }

    func checkBatch(_ actions: [LoginAction], _ login: LoginConversation) {
        for (i, a) in actions.enumerated() {
            let last = i == actions.count - 1
            switch a {
            case .reply(let r) where r.closes:
                invariant(last, "actions after a reply that closes: \(actions)")
            case .validate, .startTunnel, .flood, .createSession, .openTicket:
                invariant(last, "actions after \(a): \(actions)")
            case .malformed:
                if !last, case .reply(.badRequest) = actions[i + 1] {} else { invariant(false, "malformed not followed by a 400: \(actions)") }
            default:
                break
            }
        }
        switch actions.last {
        case .reply(let r)? where r.closes: invariant(login.state == .closing, "a closing reply left the state \(login.state)")
        case .validate?: if case .awaitingAuth = login.state {} else { invariant(false, "validate left the state \(login.state)") }
        case .startTunnel?, .createSession?: invariant(login.state == .awaitingSession, "startTunnel/createSession left the state \(login.state)")
        default: break
        }
    }

    func checkResponse(_ bytes: [UInt8], _ reply: LoginReply) {
        guard let end = headEnd(bytes) else {
            invariant(false, "response to \(reply) has no end of head")
            return
        }
        checkHead(Array(bytes[..<(end + 4)]), status: "HTTP/1.1 ")
        let length = String(decoding: bytes[..<end], as: UTF8.self).components(separatedBy: "\r\n")
            .first { $0.hasPrefix("Content-Length: ") }.flatMap { Int($0.dropFirst(16)) }
        invariant(length == bytes.count - end - 4, "Content-Length \(String(describing: length)) for a body of \(bytes.count - end - 4)")
    }

    /// A head: the status line, `Name: value` lines of printable ASCII, one empty line at the end.
    func checkHead(_ head: [UInt8], status: String) {
        invariant(head.starts(with: Array(status.utf8)), "head does not start with \(status)")
        invariant(headEnd(head) == head.count - 4, "head has an empty line before its end: \(hex(head, limit: 400))")
        for b in head where !(b >= 0x20 && b < 0x7F) && b != 13 && b != 10 {
            invariant(false, "byte \(b) in a response head")
        }
        var lines = String(decoding: head.dropLast(4), as: UTF8.self).components(separatedBy: "\r\n")
        lines.removeFirst()
        for line in lines {
            invariant(!line.utf8.contains(13) && !line.utf8.contains(10), "bare CR or LF in '\(line)'")
            guard let colon = line.firstIndex(of: ":") else {
                invariant(false, "header line without a colon: '\(line)'")
                return
            }
            invariant(!line[..<colon].isEmpty && !line[..<colon].contains(" "), "bad header name in '\(line)'")
        }
    }

    func headEnd(_ b: [UInt8]) -> Int? {
        guard b.count >= 4 else { return nil }
        for i in 0...(b.count - 4) where b[i] == 13 && b[i + 1] == 10 && b[i + 2] == 13 && b[i + 3] == 10 { return i }
        return nil
    }

    static func settings(variant: Int) -> GatewaySettings {
        var a = AdminSettings()
        a.displayName = "fuzz"
        a.network = variant == 1 ? "172.16.0.0/30" : "100.64.0.0/16"
        a.dnsServers = ["10.0.0.53", "fd00::53"]
        a.defaultDomainSuffix = "corp.example"
        a.splitDNS = ["corp.example", "intra.example"]
        a.routeIncludes = variant == 2 ? [] : ["10.0.0.0/8", "192.168.10.0/24", "fd00::/8"]
        a.routeExcludes = ["10.99.0.0/16"]
        a.disableUdpConnections = variant == 3
        a.advancedSettings = [
            .init(name: "banner", value: variant == 0 ? "Welcome — 100% \u{7}bell\r\nX-Injected: yes" : "Hello"),
            .init(name: "mtu", value: variant == 1 ? "1200" : "1400"),
            .init(name: "session-timeout", value: "3600"),
        ]
        switch GatewaySettings.validate(a) {
        case .success(let s): return s
        case .failure(let e): fatalError("the fuzzer's own settings do not validate: \(e)")
        }
    }
}

extension String {
    func trimmingSet(_ set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s.removeFirst() }
        while let l = s.last, set.contains(l) { s.removeLast() }
        return String(s)
    }
}

/// The entry point a debug build links as `main` (see CFuzzDriver/include/fuzz_driver.h).
@_cdecl("fuzz_login_connect_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runLibFuzzer(argc, argv)
}
