import ArgumentParser
import Foundation
import GatewayCore
import GatewayTLS
import GatewayDataplane
import GatewayIPC
import GatewayLogging
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

    @Option(help: "Microseconds to let packets gather after a busy loop turn, like a NIC's interrupt moderation (0 turns it off; see docs/performance.md).")
    var coalesceUs: UInt32 = 200

    @Flag(help: "Validate the state directory and exit.")
    var checkConfig = false

    @Flag(help: "If admin-settings.json is not there yet (the agent writes it after enrollment), wait for it instead of exiting.")
    var waitForSettings = false

    static let version = "0.1.0"

    func run() throws {
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
        guard coalesceUs <= 10_000 else {
            logger.critical("config.invalid", metadata: ["error": "--coalesce-us must be 0...10000 microseconds, not \(coalesceUs)"])
            throw ExitCode(2)
        }
        options.coalesceMicros = coalesceUs
        let gateway: Gateway
        do {
            gateway = try Gateway(options: options, logger: logger)
        } catch {
            logger.critical("gateway.start_failed", metadata: ["error": "\(error)"])
            throw ExitCode(1)
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
                    "file": "\(path)", "waitedSeconds": "\(waited)",
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
