import ArgumentParser
import Foundation
import GatewayAgent
import GatewayAgentAPI
import GatewayLogging
import GatewayMetrics
import GatewayWire
import Logging

/// The management agent: enrolls this gateway into a Site, then keeps it in line with the
/// control plane (configuration, health, events, logs). See docs/agent.md.
@main
struct MstunnelAgent: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mstunnel-agent",
        abstract: "mstunnel management agent: enrollment, configuration, health and log upload.",
        version: AgentVersion.string,
        subcommands: [Enroll.self, Run.self, Status.self, Leave.self])
}

struct StateDirOption: ParsableArguments {
    @Option(name: .customLong("state-dir"), help: "State directory (default: $MSTUNNEL_DIR or /etc/mstunnel).")
    var stateDir: String?

    var paths: AgentPaths { AgentPaths.resolve(stateDir) }
}

struct Enroll: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Join this gateway to a Site with a one-time join token.")

    @Option(name: .customLong("control-url"), help: "The control plane, https://HOST:PORT.")
    var controlURL: String

    @Option(name: .customLong("join-token"), help: "The Site's join token (prefer --join-token-file or $MSTUNNEL_JOIN_TOKEN: arguments are visible in ps).")
    var joinToken: String?

    @Option(name: .customLong("join-token-file"), help: "File holding the join token.")
    var joinTokenFile: String?

    @Flag(help: "Enroll again even if this host is already enrolled (replaces its identity).")
    var force = false

    @Flag(name: .customLong("if-needed"),
          help: "Do nothing (exit 0) when this host is already enrolled: for an init container that runs at every pod start (deploy/kubernetes).")
    var ifNeeded = false

    @OptionGroup var state: StateDirOption

    func run() throws {
        GatewayLog.bootstrap()
        let logger = Logger(label: "mstunnel-agent")
        do {
            if ifNeeded, !force, let existing = try? AgentInfo.load(state.paths) {
                print("already enrolled: server \(existing.serverId) in site \(existing.siteId) (\(existing.controlPlaneUrl))")
                return
            }
            let token = try resolveToken()
            let info = try Enrollment(controlURL: controlURL, joinToken: token, paths: state.paths, force: force, logger: logger).run()
            print("enrolled: server \(info.serverId) in site \(info.siteId) (\(info.controlPlaneUrl))")
        } catch {
            FileHandle.standardError.write(Data("mstunnel-agent enroll: \(error.message)\n".utf8))
            throw ExitCode(1)
        }
    }

    /// Exactly one source; the token itself never reaches a log line.
    func resolveToken() throws(AgentError) -> String {
        let env = ProcessInfo.processInfo.environment["MSTUNNEL_JOIN_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        if joinToken != nil && joinTokenFile != nil {
            throw AgentError("give the join token once: --join-token or --join-token-file")
        }
        if let joinToken { return joinToken }
        if let joinTokenFile {
            guard let data = FileManager.default.contents(atPath: joinTokenFile) else {
                throw AgentError("cannot read the join token file \(joinTokenFile)")
            }
            return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        if let env { return env }
        throw AgentError("no join token: use --join-token-file FILE, --join-token TOKEN or MSTUNNEL_JOIN_TOKEN")
    }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the agent loop (check-in, configuration, health, events, logs).")

    @OptionGroup var state: StateDirOption

    @Option(name: .customLong("run-dir"), help: "Runtime directory with the gateway's control socket server.sock.")
    var runDir = "/run/mstunnel"

    @Option(name: .customLong("log-dir"), help: "Directory of the stack's log files, for log collection.")
    var logDir = "/var/log/mstunnel"

    @Option(name: .customLong("outbox-max"), help: "Most reports kept while the control plane is unreachable; the oldest are dropped (and counted) beyond.")
    var outboxMax = 100_000

    @Option(name: .customLong("gateway-gid"),
            help: "Also trust a control-socket listener whose primary gid is GID (repeatable); root and the agent's own uid are always trusted.")
    var gatewayGID: [UInt32] = []

    @Option(name: .customLong("auth-socket"), help: "mstunnel-auth's socket, to hand it the Site's ticket keys (default: auth.sock in the run directory).")
    var authSocket: String?

    @Option(name: .customLong("auth-uid"),
            help: "Uid trusted to listen on the auth socket (repeatable; default 991, the auth container's). Root and the agent's own uid are always trusted; a group never is.")
    var authUID: [UInt32] = []

    @Option(name: .customLong("metrics-listen"),
            help: "Serve the gateway's counters for Prometheus at http://HOST:PORT/metrics (plain HTTP: bind to loopback or a management address). Default: $MSTUNNEL_METRICS_LISTEN; off when neither is set.")
    var metricsListen: String?

    /// The option, else the environment (compose.yaml passes it so), empty meaning off.
    var metricsAddress: String? {
        metricsListen ?? ProcessInfo.processInfo.environment["MSTUNNEL_METRICS_LISTEN"].flatMap { $0.isEmpty ? nil : $0 }
    }

    func validate() throws {
        guard outboxMax >= 100 else { throw ValidationError("--outbox-max must be at least 100") }
        if let m = metricsAddress, MetricsHTTPServer.parse(listen: m) == nil {
            throw ValidationError("--metrics-listen (or MSTUNNEL_METRICS_LISTEN) \(m): expected HOST:PORT, e.g. 127.0.0.1:9464 or [::1]:9464")
        }
    }

    func run() throws {
        GatewayLog.bootstrap()
        let logger = Logger(label: "mstunnel-agent")
        let stop = StopSignal()
        stop.install()
        var observer: (@Sendable (ServerStatusResponse?) -> Void)?
        if let m = metricsAddress, let (host, port) = MetricsHTTPServer.parse(listen: m) {
            let exporter = GatewayMetricsExporter()
            do {
                let bound = try MetricsHTTPServer.start(host: host, port: port, logger: logger) { exporter.exposition() }
                logger.info("agent.metrics.listening", metadata: ["address": "\(host)", "port": "\(bound)"])
            } catch {
                logger.critical("agent.cannot_start", metadata: ["error": "\(error)"])
                throw ExitCode(1)
            }
            observer = { status in
                if let status { exporter.update(status) } else { exporter.gatewayUnreachable() }
            }
        }
        var runOptions = RunOptions(paths: state.paths, runDirectory: runDir, logDirectory: logDir, outboxMax: outboxMax,
                                    gatewayGIDs: Set(gatewayGID), gatewayStatusObserver: observer)
        runOptions.authSocket = authSocket
        if !authUID.isEmpty { runOptions.authUIDs = Set(authUID) }
        let runner = AgentRunner(options: runOptions, logger: logger, stop: stop)
        do {
            try runner.run()
        } catch {
            logger.critical("agent.cannot_start", metadata: ["error": "\(error.message)"])
            throw ExitCode(1)
        }
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show enrollment, configuration and outbox state.")

    @OptionGroup var state: StateDirOption

    @Flag(help: "JSON output.")
    var json = false

    @Option(name: .customLong("healthy-within"),
            help: "Health check: exit 1 unless the last successful check-in is at most SECONDS old (the container health check uses 300).")
    var healthyWithin: Int?

    func run() throws {
        let status = AgentStatus.gather(paths: state.paths)
        if let healthyWithin {
            // One line for `podman healthcheck run` / `podman inspect`, then the verdict.
            guard status.enrolled else { print("unhealthy: not enrolled"); throw ExitCode(1) }
            guard let last = status.lastSuccessfulCheckinDateTime, let at = GraphDate.parse(last) else {
                print("unhealthy: no successful check-in yet (last result: \(status.lastCheckinResult ?? "none"))")
                throw ExitCode(1)
            }
            let age = Int(Date().timeIntervalSince(at))
            guard age <= healthyWithin else {
                print("unhealthy: last successful check-in \(age) s ago (limit \(healthyWithin) s); last result: \(status.lastCheckinResult ?? "none")")
                throw ExitCode(1)
            }
            print("healthy: last successful check-in \(age) s ago")
            return
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            let data = (try? encoder.encode(status)) ?? Data("{}".utf8)
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(status.text)
        }
        if !status.enrolled { throw ExitCode(3) }
    }
}

struct Leave: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove this server from its Site in the control plane (mst-cli uninstall calls this); the agent's certificate is refused afterwards.")

    @OptionGroup var state: StateDirOption

    func run() throws {
        GatewayLog.bootstrap()
        let logger = Logger(label: "mstunnel-agent")
        let paths = state.paths
        do {
            guard let info = try AgentInfo.load(paths) else {
                print("not enrolled: nothing to leave")
                return
            }
            let client = ControlPlaneClient(baseURL: info.controlPlaneUrl, trust: .caFile(paths.controlCA),
                                            clientCertificateFile: paths.agentCertificate, clientKeyFile: paths.agentKey, logger: logger)
            try client.leave()
            print("server \(info.serverId) left Site \(info.siteId) (\(info.controlPlaneUrl))")
        } catch let error as ControlPlaneError {
            FileHandle.standardError.write(Data("mstunnel-agent leave: \(error)\n".utf8))
            throw ExitCode(1)
        } catch let error as AgentError {
            FileHandle.standardError.write(Data("mstunnel-agent leave: \(error.message)\n".utf8))
            throw ExitCode(1)
        }
    }
}
