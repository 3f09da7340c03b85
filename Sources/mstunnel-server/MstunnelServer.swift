import ArgumentParser
import Foundation
import GatewayCore
import GatewayTLS
import GatewayDataplane
import GatewayHostNetwork
import GatewayIPC
import GatewayLogging
import GatewaySandbox
import GatewayWire
import Logging

/// The gateway dataplane process. Everything of substance lives in GatewayDataplane.
@main
struct MstunnelServer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mstunnel-server",
        abstract: "The mstunnel VPN gateway: TLS dataplane, one TUN, IP pool, split tunnel, PAT.",
        version: MstunnelServer.version)

    @Option(help: "State directory with admin-settings.json and the site certificate (env MSTUNNEL_DIR).")
    var stateDir: String = ProcessInfo.processInfo.environment["MSTUNNEL_DIR"] ?? "/etc/mstunnel"

    @Option(help: "Runtime directory for the sockets.")
    var runDir: String = "/run/mstunnel"

    @Option(help: "The auth plugin's socket (default <run-dir>/auth.sock).")
    var authSocket: String?

    @Option(help: "This server's control socket (default <run-dir>/server.sock).")
    var controlSocket: String?

    @Option(help: "Name of the TUN device.")
    var tunName: String = "mstun0"

    @Option(help: "A group id allowed on the control socket besides root and our own uid (repeatable).")
    var allowGid: [UInt32] = []

    @Flag(help: "Write every TCP ACK from clients to the TUN, even those a later ACK of the same flow in the same batch makes redundant (see docs/performance.md).")
    var noAckFilter = false

    @Flag(help: "Encrypt DTLS records to clients through OpenSSL's SSL_write instead of the gateway's own record sealer (same cipher, slower; see docs/performance.md).")
    var noDtlsDirectRecords = false

    @Flag(help: "Do not ask clients for a certificate in the TLS handshake (no certificate logins; see docs/auth.md).")
    var noClientCertificates = false

    @Option(help: "Microseconds to let packets gather after a busy loop turn, like a NIC's interrupt moderation (0 turns it off; see docs/performance.md).")
    var coalesceUs: UInt32 = 200

    @Option(help: ArgumentHelp(
        "Once the ports are bound and the TUN is open, become UID:GID (numbers), with no capability and a system-call allow-list (env MSTUNNEL_SERVER_RUN_AS; the image sets 994:990).",
        valueName: "uid:gid"))
    var runAs: String?

    @Flag(help: "Validate the state directory and exit.")
    var checkConfig = false

    @Flag(help: "Confine this process as --run-as would, try what the gateway must never do (start a program, open a netlink socket, write a file, …), print what happened and exit (0: confined as designed).")
    var checkSandbox = false

    @Flag(help: .private)
    var hostNetworkHelper = false

    @Flag(help: "If admin-settings.json is not there yet (the agent writes it after enrollment), wait for it instead of exiting.")
    var waitForSettings = false

    static let version = ProductVersion.string

    func run() throws {
        if hostNetworkHelper {
            // The privileged helper the gateway started (descriptor 3 is its socket).
            GatewayLog.bootstrap(process: "mstunnel-server.host")
            let logger = Logger(label: "mstunnel.server.host")
            do {
                try Sandbox.keepOnly(capabilities: [Sandbox.capNetAdmin])
            } catch {
                logger.critical("host.helper_start_failed", metadata: ["error": "\(error)"])
                throw ExitCode(1)
            }
            HostNetworkHelper.serve(tun: tunName, logger: logger)
            return
        }
        let account: Sandbox.Account?
        do {
            let text = runAs ?? ProcessInfo.processInfo.environment["MSTUNNEL_SERVER_RUN_AS"].flatMap { $0.isEmpty ? nil : $0 }
            account = try text.map { try Sandbox.Account(parsing: $0) }
        } catch {
            throw ValidationError("--run-as: \(error)")
        }
        if checkSandbox {
            guard let account else { throw ValidationError("--check-sandbox needs --run-as UID:GID (the account to confine to)") }
            let results = try SandboxProbe.run(as: account)
            for r in results { print("\(r.ok ? "ok  " : "FAIL") \(r.what): \(r.outcome) (expected \(r.expected))") }
            if results.contains(where: { !$0.ok }) { throw ExitCode(1) }
            return
        }
        Gateway.blockSignals()
        GatewayLog.bootstrap()
        let logger = Logger(label: "mstunnel.server")
        let state = StateDirectory(path: stateDir)
        if waitForSettings { Self.waitForFile(stateDir + "/admin-settings.json", logger: logger) }
        let settings: GatewaySettings
        let certificate: TLSServerContext.CertificateSource
        do {
            settings = try state.loadSettings()
            certificate = try state.certificateSource()
        } catch {
            logger.critical("config.invalid", metadata: ["error": "\(error)"])
            throw ExitCode(1)
        }
        if checkConfig {
            print("configuration OK: pool \(settings.pool), \(settings.routeIncludes.count) include / \(settings.routeExcludes.count) exclude routes, port \(settings.listenPort)")
            return
        }
        try? FileManager.default.createDirectory(atPath: runDir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o750])
        var options = GatewayOptions(
            settings: settings, certificate: certificate, authSocket: authSocket ?? runDir + "/auth.sock",
            controlSocket: controlSocket ?? runDir + "/server.sock", controlPolicy: PeerPolicy(allowedGIDs: Set(allowGid)),
            tunName: tunName, version: Self.version, reload: { try state.loadSettings() })
        options.reloadCertificate = { try state.certificateSource() }
        options.ackFilter = !noAckFilter
        options.dtlsDirectRecords = !noDtlsDirectRecords
        options.requestClientCertificates = !noClientCertificates
        guard coalesceUs <= 10_000 else {
            logger.critical("config.invalid", metadata: ["error": "--coalesce-us must be 0...10000 microseconds, not \(coalesceUs)"])
            throw ExitCode(2)
        }
        options.coalesceMicros = coalesceUs
        let gateway: Gateway
        do {
            // The helper is started before anything faces the network, while this process
            // still has the privileges it passes on.
            // This executable by its path (under valgrind, /proc/self/exe itself is the tool).
            let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? "/proc/self/exe"
            let host = try HostNetworkClient(executable: me, arguments: ["--host-network-helper", "--tun-name", tunName])
            gateway = try Gateway(options: options, host: host, logger: logger)
        } catch {
            logger.critical("gateway.start_failed", metadata: ["error": "\(error)"])
            throw ExitCode(1)
        }
        if let account {
            do {
                try Sandbox.confine(to: account)
            } catch {
                logger.critical("gateway.start_failed", metadata: ["error": "\(error)", "hint": "the container needs CAP_SETUID and CAP_SETGID to give up root"])
                throw ExitCode(1)
            }
            logger.info("gateway.confined", metadata: ["run_as": "\(account)", "security": "\(ProcessSecurity.current())"])
        } else {
            logger.warning("gateway.privileged", metadata: ["hint": "running as uid \(getuid()) with its capabilities for its whole life; pass --run-as UID:GID"])
        }
        gateway.run()
    }

    /// Polls once a second (a file appearing once at install time does not deserve inotify),
    /// saying what it waits for at the start and then every minute. The stop signals are
    /// blocked already (the gateway takes them through its loop), so they are collected here.
    static func waitForFile(_ path: String, logger: Logger) {
        var waited = 0
        var mask = sigset_t()
        sigemptyset(&mask)
        sigaddset(&mask, SIGTERM)
        sigaddset(&mask, SIGINT)
        while !FileManager.default.fileExists(atPath: path) {
            if waited % 60 == 0 {
                logger.notice("config.waiting", metadata: [
                    "file": "\(path)", "waited_s": "\(waited)",
                    "hint": "the agent writes it once enrolled; see `podman logs mstunnel-agent`",
                ])
            }
            var second = timespec(tv_sec: 1, tv_nsec: 0)
            let signal = sigtimedwait(&mask, nil, &second)
            if signal == SIGTERM || signal == SIGINT {
                logger.info("gateway.stopped", metadata: ["signal": "\(signal == SIGTERM ? "SIGTERM" : "SIGINT")", "while": "waiting for settings"])
                Foundation.exit(0)
            }
            waited += 1
        }
    }
}
