import ArgumentParser
import Foundation
import Glibc
import GatewaySystem

/// Where the load goes: `https://host[:port][/path]`. Only https (the protocol runs
/// over TLS); the path is where the first login request goes, as with openconnect.
public struct URLTarget: Sendable, Equatable {
    public var host: String
    public var port: UInt16
    public var path: String

    public init(host: String, port: UInt16, path: String) {
        self.host = host
        self.port = port
        self.path = path
    }

    public struct ParseError: Error, CustomStringConvertible, Equatable {
        public let description: String
        init(_ d: String) { description = d }
    }

    public static func parse(_ text: String) throws(ParseError) -> URLTarget {
        let lower = text.lowercased()
        guard lower.hasPrefix("https://") else { throw ParseError("the URL must start with https://") }
        var rest = Substring(text.dropFirst("https://".count))
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        let authority: Substring
        let path: String
        if let slash = rest.firstIndex(of: "/") {
            authority = rest[..<slash]
            path = String(rest[slash...])
        } else if let q = rest.firstIndex(of: "?") {
            authority = rest[..<q]
            path = "/" + rest[q...]
        } else {
            authority = rest
            path = "/"
        }
        guard !authority.contains("@") else { throw ParseError("user info in the URL is not supported") }
        let host: Substring
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw ParseError("unterminated IPv6 literal in the URL") }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw ParseError("unexpected text after the IPv6 literal") }
                portText = after.dropFirst()
            }
            guard SocketAddress(literal: String(host), port: 0)?.family == AF_INET6 else { throw ParseError("'\(host)' is not an IPv6 address") }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
        }
        guard !host.isEmpty else { throw ParseError("the URL has no host") }
        guard host.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "/") }) else {
            throw ParseError("the host in the URL has invalid characters")
        }
        var port: UInt16 = 443
        if let portText {
            guard let p = UInt16(portText), p > 0 else { throw ParseError("invalid port '\(portText)'") }
            port = p
        }
        guard path.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw ParseError("the path in the URL has spaces or control characters")
        }
        return URLTarget(host: String(host), port: port, path: path)
    }

    /// The `Host:` header value: `:port` only when not 443, IPv6 in brackets.
    public var hostHeader: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return port == 443 ? h : "\(h):\(port)"
    }

    /// What openconnect puts in `<group-access>`.
    public var groupAccess: String { "https://\(hostHeader)\(path)" }

    public var description: String { "https://\(hostHeader)\(path)" }
}

/// How each session logs in.
public enum LoginMode: Sendable, Equatable {
    /// `GET /` with `Authorization: Bearer`; tokens are used round-robin, session i gets
    /// `tokens[i % tokens.count]`.
    case bearer(tokens: [String])
    /// ocserv-style XML forms: username, then password.
    case password(user: String, password: String)

    public var name: String {
        switch self {
        case .bearer: return "bearer"
        case .password: return "password"
        }
    }
}

/// Everything one run needs, validated.
public struct LoadgenConfiguration: Sendable {
    public var target: URLTarget
    public var login: LoginMode
    public var sessions: Int
    public var concurrency: Int
    public var hold: Double
    public var rate: Double?
    public var timeout: Double
    /// Source addresses; session i uses `bindAddresses[i % count]` (empty: the kernel picks).
    public var bindAddresses: [String]
    public var gatewayPids: [Int32]
    public var json: Bool
    public var logoff: Bool
    public var pin: String?
    public var userAgent: String
    /// A tunnel the gateway closes during the hold (not with DISCONNECT) reconnects with its
    /// cookie, as the stock client does, until `resumeDeadline` seconds after it was lost.
    public var resume = false
    public var resumeDeadline: Double = 120

    public init(target: URLTarget, login: LoginMode, sessions: Int, concurrency: Int, hold: Double, rate: Double?,
                timeout: Double, bindAddresses: [String], gatewayPids: [Int32], json: Bool, logoff: Bool, pin: String?,
                userAgent: String) {
        self.target = target
        self.login = login
        self.sessions = sessions
        self.concurrency = concurrency
        self.hold = hold
        self.rate = rate
        self.timeout = timeout
        self.bindAddresses = bindAddresses
        self.gatewayPids = gatewayPids
        self.json = json
        self.logoff = logoff
        self.pin = pin
        self.userAgent = userAgent
    }
}

/// The command line. Validation is here (not in the executable) so it can be tested.
public struct LoadgenArguments: ParsableArguments {
    public init() {}

    @Option(help: "Gateway URL, https://HOST[:PORT]/[PATH].")
    public var url: String

    @Option(help: "Sessions to open.")
    public var sessions: Int = 1

    @Option(help: "Connects in flight at once (TCP connect to 200 CONNECTED).")
    public var concurrency: Int = 32

    @Option(help: "Seconds to hold the sessions once all are up (0: disconnect right away).")
    public var hold: Double = 0

    @Option(help: "Most new connects per second (default: no limit besides --concurrency).")
    public var rate: Double?

    @Option(help: "Per-connect timeout in seconds (TCP connect to 200 CONNECTED).")
    public var timeout: Double = 30

    @Option(help: "Source address of the connections; repeatable: sessions take them in turn (so a balancer that hashes by source spreads them).")
    public var bindAddress: [String] = []

    @Option(help: "A gateway process whose PSS (with all its descendants) is measured (repeatable).")
    public var gatewayPid: [Int32] = []

    @Option(help: "Bearer token for every session.")
    public var token: String?

    @Option(help: "File of bearer tokens, one a line, used round-robin across sessions.")
    public var tokenFile: String?

    @Option(help: "User name for the ocserv-style password login.")
    public var user: String?

    @Option(help: "Password for the password login.")
    public var password: String?

    @Option(help: "Expected server key, pin-sha256:BASE64 (as openconnect --servercert). Default: not checked.")
    public var pin: String?

    @Option(help: "User-Agent header.")
    public var userAgent: String = "Open AnyConnect VPN Agent v9.01-3"

    @Flag(help: "Report as JSON.")
    public var json = false

    @Flag(help: "At the end send CSTP DISCONNECT (0xb0, logoff) on every tunnel before closing.")
    public var logoff = false

    @Flag(help: "During the hold, a tunnel the gateway closes without a DISCONNECT (its server died or drained) reconnects with its cookie, as the stock client does; the report says how long each took, whether the address stayed, and whether a login was asked for.")
    public var resume = false

    @Option(help: "With --resume: seconds after losing its tunnel a session stops trying.")
    public var resumeDeadline: Double = 120

    public mutating func validate() throws {
        var problems: [String] = []
        do { _ = try URLTarget.parse(url) } catch { problems.append("--url: \(error)") }
        if sessions < 1 || sessions > 1_000_000 { problems.append("--sessions must be 1 to 1000000") }
        if concurrency < 1 || concurrency > 1_000_000 { problems.append("--concurrency must be 1 to 1000000") }
        if !hold.isFinite || hold < 0 || hold > 366 * 86400 { problems.append("--hold must be 0 to 31622400 seconds") }
        if let rate, !rate.isFinite || rate <= 0 || rate > 10_000_000 { problems.append("--rate must be a positive number of connects per second") }
        if !timeout.isFinite || timeout <= 0 || timeout > 86400 { problems.append("--timeout must be more than 0 and at most 86400 seconds") }
        for b in bindAddress where SocketAddress(literal: b, port: 0) == nil { problems.append("--bind-address '\(b)' is not an IP address") }
        if Set(bindAddress.compactMap { SocketAddress(literal: $0, port: 0)?.family }).count > 1 {
            problems.append("--bind-address: all IPv4 or all IPv6")
        }
        if !resumeDeadline.isFinite || resumeDeadline <= 0 || resumeDeadline > 86400 { problems.append("--resume-deadline must be more than 0 and at most 86400 seconds") }
        if let bad = gatewayPid.first(where: { $0 <= 0 }) { problems.append("--gateway-pid \(bad) is not a process id") }
        if let pin, !Self.isValidPin(pin) { problems.append("--pin must be pin-sha256: followed by the base64 of 32 bytes") }
        if !Self.isHeaderSafe(userAgent) || userAgent.isEmpty { problems.append("--user-agent must be printable text") }
        let modes = [token != nil, tokenFile != nil, user != nil || password != nil].filter { $0 }.count
        if modes == 0 {
            problems.append("give a login: --token, --token-file, or --user with --password")
        } else if modes > 1 {
            problems.append("--token, --token-file and --user/--password exclude each other")
        }
        if (user != nil) != (password != nil) { problems.append("--user and --password go together") }
        if let token, !TokenList.isUsable(token) { problems.append("--token is empty or has spaces or control characters") }
        if let user, user.isEmpty || user.unicodeScalars.contains(where: { $0.value < 0x20 }) { problems.append("--user must be non-empty printable text") }
        if let password, password.unicodeScalars.contains(where: { $0.value < 0x20 && $0 != "\t" }) { problems.append("--password has control characters") }
        if !problems.isEmpty { throw ValidationError(problems.joined(separator: "\n")) }
    }

    /// The validated configuration; reads `--token-file`.
    public func configuration() throws -> LoadgenConfiguration {
        // validate() has run (ArgumentParser calls it on parse), so the URL parses.
        let target = try URLTarget.parse(url)
        let login: LoginMode
        if let token {
            login = .bearer(tokens: [token])
        } else if let tokenFile {
            guard let data = FileManager.default.contents(atPath: tokenFile) else {
                throw ValidationError("--token-file: cannot read \(tokenFile)")
            }
            login = .bearer(tokens: try TokenList.parse(String(decoding: data, as: UTF8.self), source: tokenFile))
        } else if let user, let password {
            login = .password(user: user, password: password)
        } else {
            throw ValidationError("give a login: --token, --token-file, or --user with --password")
        }
        var c = LoadgenConfiguration(target: target, login: login, sessions: sessions, concurrency: concurrency, hold: hold,
                                     rate: rate, timeout: timeout, bindAddresses: bindAddress, gatewayPids: gatewayPid,
                                     json: json, logoff: logoff, pin: pin, userAgent: userAgent)
        c.resume = resume
        c.resumeDeadline = resumeDeadline
        return c
    }

    static func isValidPin(_ pin: String) -> Bool {
        guard pin.hasPrefix("pin-sha256:") else { return false }
        guard let d = Data(base64Encoded: String(pin.dropFirst("pin-sha256:".count))) else { return false }
        return d.count == 32
    }

    static func isHeaderSafe(_ s: String) -> Bool {
        s.unicodeScalars.allSatisfy { ($0.value >= 0x20 && $0.value < 0x7F) || $0 == "\t" }
    }
}

/// Bearer tokens from a file: one a line, surrounding whitespace and blank lines ignored.
public enum TokenList {
    public static func parse(_ text: String, source: String) throws -> [String] {
        var tokens: [String] = []
        for (i, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let t = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if t.isEmpty { continue }
            guard isUsable(t) else { throw ValidationError("\(source) line \(i + 1): a token must not contain spaces or control characters") }
            tokens.append(t)
        }
        guard !tokens.isEmpty else { throw ValidationError("\(source) has no tokens") }
        return tokens
    }

    /// A token goes into a header line: it must be visible ASCII without spaces.
    static func isUsable(_ t: String) -> Bool {
        !t.isEmpty && t.utf8.count <= 16 * 1024 && t.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }
    }
}
