import ArgumentParser
import Foundation
import GatewayIPC
import GatewayWire

/// Operator CLI on the gateway host, after Microsoft's `mst-cli`: the containers
/// (`agent|server status|start|stop|restart|logs`), the running gateway over its control
/// socket (`server show …`), `uninstall` and `diagnose`. It finds the install through
/// `/opt/mstunnel/.env` (written by deploy/mstunnel-setup; `MSTUNNEL_INSTALL_DIR`).
@main
struct MstCLI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mst-cli",
        abstract: "Operate the mstunnel gateway on this host.",
        version: ProductVersion.string,
        subcommands: [Agent.self, Server.self, Auth.self, ImportCert.self, CheckCertificate.self, Uninstall.self, Diagnose.self])
}

/// A failure at run time (not a usage mistake): printed as `Error: …` with what to do, exit 1,
/// no usage text. Usage mistakes stay ArgumentParser's ValidationError (exit 64).
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

struct SocketOptions: ParsableArguments {
    @Option(help: "Runtime directory holding the sockets (default: MSTUNNEL_RUN_DIR, the install's, or /run/mstunnel).")
    var runDir: String = Install.load().runDirectory

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func call(_ socket: String, _ request: WireRequest) throws -> WireResponse {
        let path = runDir + "/" + socket
        let connection: WireConnection
        do {
            connection = try WireConnection.connect(path: path)
        } catch {
            throw CLIError("cannot reach \(path): \(error). Is the stack running? `podman ps` lists its containers; `mst-cli diagnose` says what is wrong.")
        }
        connection.setReceiveTimeout(seconds: 10)
        let response = try connection.call(request)
        if case .error(let e) = response { throw CLIError("\(socket) refused the request (\(e.code)): \(e.message)") }
        return response
    }

    func printJSON(_ value: some Encodable) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        print(String(decoding: try encoder.encode(value), as: UTF8.self))
    }
}

struct Server: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The gateway server (mstunnel-server).",
        subcommands: [Status.self, Start.self, Stop.self, Restart.self, Logs.self, Show.self, Drain.self, Undrain.self])

    struct Drain: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Drain this server: its liveness page answers 503 (the balancer leaves it out), it takes no new session, and its sessions are handed to its siblings (docs/site.md).",
            discussion: "Each client's tunnel is closed without a DISCONNECT after --hand-over-after seconds; the client reconnects through the balancer and resumes on a sibling with its cookie, keeping its address. The delay lets the balancer's probe leave this server out first. With --wait, sessions are not handed over: the server waits for them to end.")
        @OptionGroup var options: SocketOptions
        @Option(help: "Seconds before the sessions are handed over (0: at once).")
        var handOverAfter = 10
        @Flag(help: "Do not hand sessions over; wait for them to end.")
        var wait = false

        func run() throws {
            guard case .drain(let r) = try options.call("server.sock", .drain(DrainRequest(drain: true, handOverAfterSeconds: wait ? nil : max(0, handOverAfter)))) else {
                throw CLIError("unexpected answer to drain")
            }
            if options.json { return try options.printJSON(r) }
            Server.printDrain(r)
        }
    }

    struct Undrain: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "End a drain: the server takes clients again (sessions handed over stay where they went).")
        @OptionGroup var options: SocketOptions

        func run() throws {
            guard case .drain(let r) = try options.call("server.sock", .drain(DrainRequest(drain: false))) else { throw CLIError("unexpected answer to drain") }
            if options.json { return try options.printJSON(r) }
            Server.printDrain(r)
        }
    }

    static func printDrain(_ r: DrainResponse) {
        guard let d = r.drain else { return print("not draining; \(r.sessions) sessions") }
        let now = Int64(Date().timeIntervalSince1970)
        let handOver = d.handOverAt.map { $0 > now ? "sessions handed over in \($0 - now) s" : "\(d.handedOver) sessions handed over" } ?? "waiting for sessions to end"
        print("draining since \(now - d.since) s; \(handOver); \(r.sessions) sessions here")
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The server's container and whether its control socket answers.")
        @OptionGroup var options: SocketOptions

        struct Report: Encodable {
            var container: Install.ContainerState?
            var answering: Bool
            var process: String?
            var version: String?
            var error: String?
        }

        func run() throws {
            var report = Report(container: Install.load().container("mstunnel-server"), answering: false)
            do {
                guard case .ping(let p) = try options.call("server.sock", .ping(PingRequest())) else { throw CLIError("unexpected answer") }
                report.answering = true
                report.process = p.process
                report.version = p.version
            } catch {
                report.error = "\(error)"
            }
            if options.json { try options.printJSON(report) } else {
                print("container:  " + (report.container.map { "\($0.name) \($0.state)\($0.health.map { ", " + $0 } ?? "")" } ?? "none (not installed here, or another engine)"))
                print("gateway:    " + (report.answering ? "\(report.process ?? "") \(report.version ?? ""): answering" : "NOT ANSWERING: \(report.error ?? "")"))
            }
            if !report.answering { throw ExitCode(1) }
        }
    }

    typealias Start = ContainerVerb<ServerContainer, StartVerb>
    typealias Stop = ContainerVerb<ServerContainer, StopVerb>
    typealias Restart = ContainerVerb<ServerContainer, RestartVerb>
    typealias Logs = LogsVerb<ServerContainer>

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show server state.", subcommands: [ShowStatus.self, ShowSessions.self, ShowUsers.self, ShowUser.self])
    }

    struct ShowStatus: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "status", abstract: "Counters and pool use.")
        @OptionGroup var options: SocketOptions

        func run() throws {
            guard case .serverStatus(let s) = try options.call("server.sock", .serverStatus(ServerStatusRequest())) else { throw ExitCode(1) }
            if options.json { return try options.printJSON(s) }
            let up = Int64(Date().timeIntervalSince1970) - s.startedAt
            print("""
            version:            \(s.version)
            up:                 \(up) s
            listen port:        \(s.listenPort)
            tun device:         \(s.tunDevice)
            auth service:       \(s.authAvailable ? "connected" : "NOT CONNECTED")
            sessions:           \(s.activeSessions) active, \(s.connectedSessions) connected, \(s.totalSessions) since start
            auth failures:      \(s.authFailures)
            address pool:       \(s.poolInUse) of \(s.poolSize) in use, exhausted \(s.poolExhaustedCount) times
            traffic:            \(s.rxBytes) bytes from clients, \(s.txBytes) bytes to clients
            """)
            if let q = s.poolQuarantined {
                print("quarantined:        \(q) addresses (sessions restored after a restart that may live on at a sibling)")
            }
            if let d = s.dtlsSessions {
                print("over DTLS:          \(d) sessions" + (s.dtlsDirectSessions.map { " (\($0) with records sealed directly)" } ?? ""))
            }
            if let c = s.confinement { print("confinement:        \(c.summary)") }
            if let r = s.connectionsRefused {
                print("refused at accept:  \(r) connections (per-address login limit or ban), \(s.bansSinceStart ?? 0) addresses banned since start")
            }
            if let p = s.policyDenials { print("policy denials:     \(p) logins or reconnects refused by a group policy") }
            if let r = s.sessionsResumed { print("sessions resumed:   \(r) from tickets made on another server (or before a restart)") }
            if let d = s.drain { print("DRAINING:           since \(Int64(Date().timeIntervalSince1970) - d.since) s, \(d.handedOver) sessions handed over") }
            if let a = s.acksCoalesced { print("ACKs coalesced:     \(a) (superseded by a later ACK in the same batch, not forwarded)") }
            if let d = s.drops {
                print("dropped packets:    \(d.noSession) no session, \(d.queueFull) queue full, \(d.spoofed) spoofed source, "
                      + "\(d.unsupported) unsupported, \(d.unknownDatagram) stray datagrams")
            }
            if let m = s.malformed {
                print("malformed input:    \(m.total) dropped (a TLS connection closed, or a datagram or packet dropped; logged once a minute per address)")
                print("  TLS:              \(m.tlsHandshake) failed handshakes, \(m.tlsRecord) bad records")
                print("  CSTP:             \(m.cstpBadHeader) bad headers, \(m.cstpOversize) oversize, \(m.cstpUnknownType) unknown types, "
                      + "\(m.cstpBeforeConnect) before CONNECT")
                print("  DTLS:             \(m.dtlsNotDTLS) not DTLS, \(m.dtlsBeforeHandshake) records before a handshake, "
                      + "\(m.dtlsNoSession) for no session, \(m.dtlsBadRecord) bad records, \(m.dtlsReplayed) replayed, "
                      + "\(m.dtlsHandshake) failed handshakes")
                print("  inner packets:    \(m.ipMalformed) not IP")
            }
        }
    }

    struct ShowSessions: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "sessions", abstract: "Every session.")
        @OptionGroup var options: SocketOptions
        func run() throws { try Server.listSessions(options, user: nil) }
    }

    struct ShowUsers: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "users", abstract: "Users with sessions, with counts.")
        @OptionGroup var options: SocketOptions

        func run() throws {
            guard case .listSessions(let l) = try options.call("server.sock", .listSessions(ListSessionsRequest())) else { throw ExitCode(1) }
            var counts: [String: (name: String, n: Int)] = [:]
            for s in l.sessions { counts[s.userId, default: (s.userName, 0)].n += 1 }
            if options.json {
                return try options.printJSON(counts.map { ["userId": $0.key, "userName": $0.value.name, "sessions": "\($0.value.n)"] })
            }
            print("USER ID                               USER NAME                       SESSIONS")
            for (id, v) in counts.sorted(by: { $0.value.name < $1.value.name }) {
                print(id.padding(toLength: 38, withPad: " ", startingAt: 0) + v.name.padding(toLength: 32, withPad: " ", startingAt: 0) + "\(v.n)")
            }
        }
    }

    struct ShowUser: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "user", abstract: "One user's sessions.")
        @OptionGroup var options: SocketOptions
        @Argument(help: "User id (oid) or user name (UPN).") var user: String
        func run() throws {
            try Server.listSessions(options, user: user)
            guard !options.json else { return }
            guard case .listSessions(let l) = try options.call("server.sock", .listSessions(ListSessionsRequest(user: user))) else { throw ExitCode(1) }
            for s in l.sessions { Server.printPolicy(s) }
        }
    }

    /// What group policy saw and gave: the identity's groups, roles and OUs, the policy
    /// that matched (or the server-wide settings) and the routes and DNS it gave.
    static func printPolicy(_ s: SessionInfo) {
        func list(_ items: [String]?) -> String { (items ?? []).isEmpty ? "-" : items!.joined(separator: ", ") }
        print("")
        print("session \(s.id):")
        print("  IPv6 address:       \(s.address6 ?? "-")")
        print("  groups:             \(list(s.groups))\(s.groupsOverage == true ? " (the issuer left them out: too many groups)" : "")")
        print("  roles:              \(list(s.roles))")
        print("  certificate OUs:    \(list(s.organizationalUnits))")
        guard let p = s.policy else { return print("  group policy:       (not reported by this server)") }
        print("  group policy:       \(p.policyName.map { "'\($0)'" } ?? "none matched: server-wide settings")")
        print("  routes included:    \(p.routeIncludes.isEmpty ? "all traffic" : p.routeIncludes.joined(separator: ", "))")
        print("  routes excluded:    \(list(p.routeExcludes))")
        print("  DNS servers:        \(list(p.dnsServers))")
        print("  split DNS:          \(list(p.splitDNS))")
        print("  default domain:     \(p.defaultDomainSuffix ?? "-")")
    }

    static func listSessions(_ options: SocketOptions, user: String?) throws {
        guard case .listSessions(let l) = try options.call("server.sock", .listSessions(ListSessionsRequest(user: user))) else { throw ExitCode(1) }
        if options.json { return try options.printJSON(l.sessions) }
        print("SESSION   USER                            ADDRESS          STATE      FROM                   RX/TX BYTES")
        for s in l.sessions {
            print(s.id.padding(toLength: 10, withPad: " ", startingAt: 0)
                + s.userName.padding(toLength: 32, withPad: " ", startingAt: 0)
                + s.address.padding(toLength: 17, withPad: " ", startingAt: 0)
                + (s.connected ? "connected" : "detached").padding(toLength: 11, withPad: " ", startingAt: 0)
                + (s.remoteAddress ?? "-").padding(toLength: 23, withPad: " ", startingAt: 0)
                + "\(s.rxBytes)/\(s.txBytes)")
        }
    }
}

struct Auth: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The auth plugin (mstunnel-auth).",
                                                    subcommands: [Status.self, Start.self, Stop.self, Restart.self, Logs.self])
    typealias Start = ContainerVerb<AuthContainer, StartVerb>
    typealias Stop = ContainerVerb<AuthContainer, StopVerb>
    typealias Restart = ContainerVerb<AuthContainer, RestartVerb>
    typealias Logs = LogsVerb<AuthContainer>

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Is the auth plugin answering?")
        @OptionGroup var options: SocketOptions

        func run() throws {
            guard case .ping(let p) = try options.call("auth.sock", .ping(PingRequest())) else { throw ExitCode(1) }
            if options.json { try options.printJSON(p) } else { print("\(p.process) \(p.version): running") }
        }
    }
}
