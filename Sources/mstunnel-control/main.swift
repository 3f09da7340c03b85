import ArgumentParser
import Foundation
import GatewayControlPlane
import GatewayLogging
import GatewayMetrics
import Hummingbird
import Logging
import Metrics
import Prometheus
import ServiceLifecycle

/// `mstunnel-control`: the self-hosted control plane (docs/control-plane.md).
@main
struct MstunnelControl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mstunnel-control",
        abstract: "Self-hosted control plane: Graph-shaped admin API, agent enrollment and check-in, health.",
        version: ControlPlaneVersion.string,
        subcommands: [Serve.self, AdminToken.self, OpenAPI.self],
        defaultSubcommand: Serve.self)
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve the admin and agent APIs over HTTPS.")

    @Option(help: "State directory (CA, TLS identity, admin token, database, uploaded logs).")
    var stateDir = "/var/lib/mstunnel-control"

    @Option(help: "Address and port to listen on, HOST:PORT.")
    var listen = "127.0.0.1:8443"

    @Option(name: .customLong("hostname"), help: "Name or IP address in the generated TLS certificate; repeatable (default: localhost and 127.0.0.1).")
    var hostnames: [String] = []

    @Option(help: "SQLite database file (default: <state-dir>/control.sqlite), or postgres://USER@HOST[:PORT]/DATABASE[?sslmode=…] for several instances sharing one store (docs/control-plane.md).")
    var database: String?

    @Option(help: "File holding the PostgreSQL password (keeps it out of the address, ps and compose files).")
    var databasePasswordFile: String?

    @Option(help: "Operator TLS certificate chain (PEM, leaf first) instead of one from the control plane's CA.")
    var tlsCert: String?

    @Option(help: "Private key (PEM) of --tls-cert.")
    var tlsKey: String?

    @Option(help: "auth.json of the issuer whose JWTs are accepted as admin credentials (optional).")
    var adminAuthConfig: String?

    @Option(help: "Value the admin JWT's 'roles' claim must contain.")
    var adminRole = "MSTunnel.Admin"

    @Option(help: "Seconds between agent check-ins.")
    var checkinInterval = 60

    @Option(help: "Seconds between agent health reports.")
    var reportInterval = 60

    @Option(help: "A server without a check-in for this many seconds is offline.")
    var offlineAfter = 300

    @Option(help: ArgumentHelp("The image tag the Sites' servers should run (default: none, no upgrades).",
                               discussion: "A server on another tag makes its Site upgradeAvailable; requestUpgrade, or the upgrade window with upgradeAutomatically, moves the servers to it one at a time (docs/site.md, \"Rolling upgrade\"). Give every instance the same value."))
    var gatewayRelease: String?

    @Option(help: "Lifetime of agent client certificates, seconds (default 30 days).")
    var agentCertLifetime = 30 * 24 * 3600

    @Option(help: "Days health reports, session events and report ids are kept (pruned every 10 minutes).")
    var retentionDays = 30

    @Option(name: .customLong("metrics-listen"),
            help: "Serve the control plane's metrics for Prometheus at http://HOST:PORT/metrics (plain HTTP: bind to loopback or a management address). Off by default.")
    var metricsListen: String?

    @Option(help: "Seconds a client has to complete the TLS handshake before its connection is closed.")
    var tlsHandshakeTimeout = 10

    @Option(help: "Seconds an HTTP connection may stay idle (no request in progress) before it is closed.")
    var idleTimeout = 60

    @Option(help: "Open connections allowed from one source (an IPv4 address or an IPv6 /64); more are closed at once.")
    var maxConnectionsPerSource = 64

    @Option(help: "Open connections allowed in all; more are closed at once.")
    var maxConnections = 4096

    @Option(help: "Failed admin authentications from one source within a minute before it is locked out (429).")
    var adminAuthMaxFailures = 10

    @Option(help: "Seconds of the first admin lockout; each further one doubles, up to 15 minutes.")
    var adminAuthLockout = 30

    @Flag(help: "Serve a development OpenID issuer with local users (standalone mode only; not with --admin-auth-config). See docs/identity.md.")
    var devIssuer = false

    func validate() throws {
        if devIssuer, adminAuthConfig != nil {
            throw ValidationError("--dev-issuer is for standalone mode: it is off when an external issuer is configured (--admin-auth-config)")
        }
        guard checkinInterval >= 1, reportInterval >= 1 else { throw ValidationError("intervals must be at least 1 second") }
        if let tag = gatewayRelease, !RollingUpgradePolicy.isValidRelease(tag) {
            throw ValidationError("--gateway-release '\(tag)' is not an image tag (letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')")
        }
        guard offlineAfter > checkinInterval else { throw ValidationError("--offline-after must be longer than --checkin-interval") }
        // Short lifetimes are for tests of expiry and renewal; nothing below a second.
        guard agentCertLifetime >= 1 else { throw ValidationError("--agent-cert-lifetime must be at least 1 second") }
        guard (1...36500).contains(retentionDays) else { throw ValidationError("--retention-days must be 1 to 36500") }
        guard (1...3600).contains(tlsHandshakeTimeout) else { throw ValidationError("--tls-handshake-timeout must be 1 to 3600 seconds") }
        guard (1...86400).contains(idleTimeout) else { throw ValidationError("--idle-timeout must be 1 to 86400 seconds") }
        guard maxConnectionsPerSource >= 1, maxConnections >= maxConnectionsPerSource else {
            throw ValidationError("--max-connections-per-source must be at least 1 and at most --max-connections")
        }
        guard adminAuthMaxFailures >= 1, (1...86400).contains(adminAuthLockout) else {
            throw ValidationError("--admin-auth-max-failures must be at least 1 and --admin-auth-lockout 1 to 86400 seconds")
        }
        _ = try Self.split(listen)
        if let m = metricsListen, MetricsHTTPServer.parse(listen: m) == nil {
            throw ValidationError("--metrics-listen \(m): expected HOST:PORT, e.g. 127.0.0.1:9465")
        }
    }

    static func split(_ text: String) throws -> (String, Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            throw ValidationError("--listen must be HOST:PORT, got '\(text)'")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, port)
    }

    func run() async throws {
        GatewayLog.bootstrap()
        let logger = Logger(label: "mstunnel-control")
        let (host, port) = try Self.split(listen)
        var config = ServeConfiguration()
        config.stateDirectory = stateDir
        config.listenHost = host
        config.listenPort = port
        if !hostnames.isEmpty { config.hostnames = hostnames }
        config.databasePath = database
        config.databasePasswordFile = databasePasswordFile
        config.tlsCertificatePath = tlsCert
        config.tlsKeyPath = tlsKey
        config.adminAuthConfigPath = adminAuthConfig
        config.adminRole = adminRole
        config.checkinInterval = TimeInterval(checkinInterval)
        config.reportInterval = TimeInterval(reportInterval)
        config.offlineAfter = TimeInterval(offlineAfter)
        config.agentCertificateLifetime = TimeInterval(agentCertLifetime)
        config.retentionDays = retentionDays
        config.gatewayRelease = gatewayRelease
        config.devIssuer = devIssuer
        config.tlsHandshakeTimeout = TimeInterval(tlsHandshakeTimeout)
        config.idleTimeout = TimeInterval(idleTimeout)
        config.maxConnectionsPerSource = maxConnectionsPerSource
        config.maxConnections = maxConnections
        config.adminAuthThrottle.maxFailures = adminAuthMaxFailures
        config.adminAuthThrottle.lockout = TimeInterval(adminAuthLockout)
        config.adminAuthThrottle.maxLockout = max(900, TimeInterval(adminAuthLockout))
        let prepared: ControlPlaneServer.Prepared
        do {
            prepared = try await ControlPlaneServer.prepare(config, logger: logger)
        } catch {
            logger.critical("control.start.failed", metadata: ["error": "\(error)"])
            throw ExitCode(1)
        }
        var started: Logger.Metadata = [
            "listen": "\(host):\(port)", "state_dir": "\(stateDir)", "admin_token.file": "\(prepared.adminTokenPath)",
            "ca.sha256": "\(prepared.controlPlane.ca.sha256Hex)", "version": "\(ControlPlaneVersion.string)",
            "console": "\(prepared.controlPlane.options.publicBaseURL)/console",
        ]
        if let issuer = prepared.controlPlane.devIssuer { started["devIssuer"] = "\(issuer.issuer)" }
        logger.info("control.starting", metadata: started)
        let app = try ControlPlaneServer.application(prepared, host: host, port: port, logger: logger)
        var metricsApp: (any ApplicationProtocol)?
        if let m = metricsListen, let (mHost, mPort) = MetricsHTTPServer.parse(listen: m) {
            // Before anything records a metric: swift-metrics takes one factory per process.
            var factory = PrometheusMetricsFactory(registry: PrometheusCollectorRegistry())
            factory.nameAndLabelSanitizer = ControlPlaneMetrics.prometheusNames
            MetricsSystem.bootstrap(factory)
            let registry = factory.registry
            metricsApp = MetricsHTTPServer.application(host: mHost, port: mPort, logger: logger, render: { registry.emitToBuffer() }) { bound in
                logger.info("control.metrics.listening", metadata: ["address": "\(mHost)", "port": "\(bound)"])
            }
        }
        // One service group stops both listeners gracefully on SIGTERM and SIGINT, and stops
        // everything if one fails (a metrics address that cannot be bound stops the control
        // plane with the reason); the retention and health-watch tasks are cancelled when it
        // returns.
        var services: [any Service] = [app]
        if let metricsApp { services.append(metricsApp) }
        let serviceGroup = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        let controlPlane = prepared.controlPlane
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await controlPlane.runRetention() }
            group.addTask { await controlPlane.runHealthWatch() }
            try await serviceGroup.run()
            group.cancelAll()
        }
        logger.info("control.stopped")
    }
}

struct AdminToken: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "admin-token",
        abstract: "Print the local admin token (created by the first 'serve'), for 'Authorization: Bearer'.")

    @Option(help: "State directory of the control plane.")
    var stateDir = "/var/lib/mstunnel-control"

    @Flag(help: "Print only the file's path, not the token.")
    var pathOnly = false

    func run() throws {
        let path = LocalAdminToken.path(stateDirectory: stateDir)
        if pathOnly {
            print(path)
            return
        }
        do {
            print(try LocalAdminToken.read(stateDirectory: stateDir))
        } catch {
            FileHandle.standardError.write(Data("mstunnel-control: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}

struct OpenAPI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "openapi",
        abstract: "Print the OpenAPI 3.1 description of the admin and agent APIs (as served at GET /openapi.json; docs/openapi.json).")

    func run() throws {
        FileHandle.standardOutput.write(ControlPlaneOpenAPI.json())
    }
}
