import ArgumentParser
import Dispatch
import Foundation
import GatewayAuth
import GatewayIPC
import GatewayLogging
import GatewayWire
import Logging

/// The authentication plugin: validates access tokens for the gateway over a Unix socket.
@main
struct MstunnelAuth: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mstunnel-auth",
        abstract: "mstunnel authentication plugin: validates Entra ID / OIDC access tokens and client certificates for the gateway.",
        version: AuthVersion.string)

    @Option(name: .customLong("state-dir"), help: "State directory (default: $MSTUNNEL_DIR or /etc/mstunnel).")
    var stateDir: String?

    @Option(help: "auth.json path (default: <state-dir>/auth.json).")
    var config: String?

    @Option(help: "Unix socket to serve on.")
    var socket: String = "/run/mstunnel/auth.sock"

    @Option(name: .customLong("session-store"), help: "File of the sessions that outlive a gateway restart, in a directory of its own that only this process may use (default: mstunnel-auth/sessions.json beside the socket; 'none' keeps none).")
    var sessionStorePath: String?

    @Option(name: .customLong("ticket-keys"), help: "Ticket key file: the Site key that lets every server of a Site resume the others' sessions (docs/site.md). Default: ticket-keys.json beside the session store, made with a key of this server's own at first start.")
    var ticketKeysPath: String?

    @Option(name: .customLong("site-keys-uid"), help: "Peer uid (repeatable) that may hand over the Site's ticket keys: the agent's. It may do nothing else here but what --allow-uid peers may.")
    var siteKeysUID: [UInt32] = []

    @Option(name: .customLong("allow-uid"), help: "Also allow this peer uid (repeatable). Root and our own uid are always allowed.")
    var allowUID: [UInt32] = []

    @Option(name: .customLong("allow-gid"), help: "Also allow peers with this gid (repeatable).")
    var allowGID: [UInt32] = []

    @Flag(name: .customLong("check-config"), help: "Validate the configuration and exit (0 valid, 1 not).")
    var checkConfig = false

    @Flag(name: .customLong("health-check"), help: "Ping the running plugin on --socket and exit (0 it answered, 1 not): the container health check.")
    var healthCheck = false

    func run() async throws {
        let stateDirectory = stateDir ?? ProcessInfo.processInfo.environment["MSTUNNEL_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/etc/mstunnel"
        let configPath = config ?? URL(fileURLWithPath: stateDirectory).appendingPathComponent("auth.json").path

        if healthCheck {
            do {
                let connection = try WireConnection.connect(path: socket)
                connection.setReceiveTimeout(seconds: 5)
                guard case .ping(let pong) = try connection.call(.ping(PingRequest())) else {
                    print("unhealthy: \(socket) answered something other than a ping")
                    throw ExitCode(1)
                }
                print("healthy: \(pong.process) \(pong.version) answers on \(socket)")
                return
            } catch let exit as ExitCode {
                throw exit
            } catch {
                print("unhealthy: \(socket): \(error)")
                throw ExitCode(1)
            }
        }

        if checkConfig {
            // Plain text for a human at a terminal (mst-cli, setup script), not JSON logs.
            do {
                let loaded = try AuthConfiguration.load(path: configPath, stateDirectory: stateDirectory)
                var certificateSummary = ""
                if let certificates = loaded.clientCertificates {
                    let verifier = try ClientCertificateVerifier(configuration: certificates, logger: Logger(label: "check") { _ in SwiftLogNoOpLogHandler() })
                    if certificates.crlFile != nil, verifier.revokedCount == nil {
                        throw AuthConfigurationError("\(configPath): \(verifier.summary)")
                    }
                    certificateSummary = "; client certificates: \(verifier.summary)"
                }
                guard loaded.authenticationMode.usesTokens else {
                    print("\(configPath): OK (authenticationMode certificate\(certificateSummary))")
                    return
                }
                for (index, issuer) in loaded.issuers.enumerated() {
                    if case .file(let path) = issuer.keyLocation {
                        let data = try await FileJWKSSource(path: path).fetchJWKS()
                        guard JSONValue.parseObject(data).map({ if case .array = $0["keys"] { true } else { false } }) == true else {
                            let entry = loaded.issuers.count > 1 ? "issuers[\(index)]: " : ""
                            throw AuthConfigurationError("\(configPath): \(entry)jwksFile \(path) is not a JWKS (no 'keys' array)")
                        }
                    }
                }
                let issuers = loaded.issuers.map {
                    "issuer \($0.issuer), keys from \($0.keyLocation), audiences \($0.audiences.joined(separator: ", "))"
                }
                let shown = issuers.count == 1 ? issuers[0] : "\(issuers.count) issuers: " + issuers.joined(separator: "; ")
                print("\(configPath): OK (authenticationMode \(loaded.authenticationMode.rawValue), \(shown)\(certificateSummary))")
            } catch {
                FileHandle.standardError.write(Data("mstunnel-auth: \(error)\n".utf8))
                throw ExitCode(1)
            }
            return
        }

        GatewayLog.bootstrap()
        let logger = Logger(label: "mstunnel-auth")

        let configuration: AuthConfiguration
        do {
            configuration = try AuthConfiguration.load(path: configPath, stateDirectory: stateDirectory)
        } catch {
            logger.error("auth.config.invalid", metadata: ["error": "\(error)", "config": "\(configPath)"])
            throw ExitCode(1)
        }

        // The socket directory is the stack's private rendezvous: 0750 so only the
        // stack's user and group can even reach the 0660 socket inside.
        let socketDir = URL(fileURLWithPath: socket).deletingLastPathComponent().path
        if !FileManager.default.fileExists(atPath: socketDir) {
            do {
                try FileManager.default.createDirectory(atPath: socketDir, withIntermediateDirectories: true)
                guard chmod(socketDir, 0o750) == 0 else { throw IPCError("chmod \(socketDir)", errno: errno) }
            } catch {
                logger.error("auth.socket.failed", metadata: ["error": "cannot create \(socketDir): \(error)"])
                throw ExitCode(1)
            }
        }

        let validator = TokenValidator(configuration: configuration, logger: logger)
        // Client certificates: the CAs load now (a bad caFile stops the plugin); the CRL file
        // is loaded and logged (auth.crl.loaded / auth.crl.failed), then reloaded on change.
        var certificates: ClientCertificateVerifier?
        if configuration.authenticationMode.usesCertificates, let settings = configuration.clientCertificates {
            do {
                certificates = try ClientCertificateVerifier(configuration: settings, logger: logger)
            } catch {
                logger.error("auth.config.invalid", metadata: ["error": "\(error)", "config": "\(configPath)"])
                throw ExitCode(1)
            }
        }
        // In the run directory by default (kept across container restarts, cleared with the
        // host: a reboot outlasts any reconnect window anyway), in a subdirectory that is this
        // process's alone — the run directory itself is writable by the stack's group.
        var sessionStore: SessionStore?
        let storePath = sessionStorePath ?? URL(fileURLWithPath: socketDir).appendingPathComponent("mstunnel-auth/sessions.json").path
        if storePath != "none" {
            do {
                try SessionStore.prepareDirectory(of: storePath)
                var keyring: TicketKeyring?
                do { keyring = try loadTicketKeys(storePath: storePath, logger: logger) } catch {
                    // A Site key file that does not load stops the plugin: running on would
                    // quietly make every failover a new login for every user.
                    if ticketKeysPath != nil {
                        logger.error("auth.tickets.invalid", metadata: ["error": "\(error)"])
                        throw ExitCode(1)
                    }
                    logger.error("auth.tickets.unavailable", metadata: ["error": "\(error)", "effect": "the gateway gives out cookies of its own; sessions resume only on this server"])
                }
                sessionStore = SessionStore(path: storePath, keyring: keyring, logger: logger)
                sessionStore?.startWriting()
            } catch let exit as ExitCode {
                throw exit
            } catch {
                logger.error("auth.sessions.unavailable", metadata: ["error": "\(error)", "effect": "sessions will not outlive a gateway restart"])
            }
        }
        let server = AuthServer(
            socketPath: socket, socketMode: 0o660,
            peerPolicy: PeerPolicy(allowedUIDs: Set(allowUID).union(siteKeysUID), allowedGIDs: Set(allowGID)),
            handler: AuthRequestHandler(validator: validator, certificates: certificates, logger: logger),
            sessionStore: sessionStore, sessionStorePeers: Set(allowUID).union([0, getuid()]),
            ticketKeyPeers: Set(siteKeysUID).union([0, getuid()]), logger: logger)

        // Signals are turned into an async event before anything else can be interrupted.
        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        signal(SIGPIPE, SIG_IGN)
        let (stop, stopContinuation) = AsyncStream<Int32>.makeStream()
        let signalSources = [SIGTERM, SIGINT].map { sig -> any DispatchSourceSignal in
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { stopContinuation.yield(sig) }
            source.resume()
            return source
        }

        do {
            try server.start()
        } catch {
            logger.error("auth.socket.failed", metadata: ["error": "\(error)", "socket": "\(socket)"])
            throw ExitCode(1)
        }
        var started: Logger.Metadata = [
            "version": "\(AuthVersion.string)", "mode": "\(configuration.authenticationMode.rawValue)",
        ]
        if configuration.authenticationMode.usesTokens {
            // One value per issuer, separated by " | " (the single-issuer form has one).
            let issuers = configuration.issuers
            started["issuer"] = "\(issuers.map(\.issuer).joined(separator: " | "))"
            started["keys"] = "\(issuers.map { "\($0.keyLocation)" }.joined(separator: " | "))"
            started["audiences"] = "\(issuers.map { $0.audiences.joined(separator: ",") }.joined(separator: " | "))"
            started["tenants"] = "\(issuers.map { $0.allowedTenants.isEmpty ? "any" : $0.allowedTenants.joined(separator: ",") }.joined(separator: " | "))"
        }
        if let certificates { started["certificates"] = "\(certificates.summary)" }
        logger.info("auth.started", metadata: started)

        // Key prefetch runs beside the server: a slow or down issuer must not delay the
        // socket, and failures are retried on demand by the validator. A certificate-only
        // plugin has no issuer to ask.
        if configuration.authenticationMode.usesTokens {
            Task {
                if case .failure(let error) = await validator.prefetch() {
                    logger.warning("auth.jwks.prefetch_failed", metadata: ["error": "\(error)", "action": "retried on demand"])
                }
            }
        }

        for await sig in stop {
            logger.info("auth.stopping", metadata: ["signal": "\(sig == SIGTERM ? "SIGTERM" : "SIGINT")"])
            break
        }
        signalSources.forEach { $0.cancel() }
        server.stop()
        // What changed in the last second reaches the file before the process goes.
        sessionStore?.flush()
    }

    /// The ticket keys: the key file when given (it must exist and be valid: a server that
    /// cannot open its siblings' tickets would silently turn every failover into a new
    /// login); else this server's own key (made at first start) and the Site's keys an agent
    /// handed over earlier, kept beside the session store.
    func loadTicketKeys(storePath: String, logger: Logger) throws -> TicketKeyring {
        let dir = URL(fileURLWithPath: storePath).deletingLastPathComponent()
        let keyring: TicketKeyring
        if let path = ticketKeysPath {
            let (sealer, _) = try TicketKeyFile.load(path: path, create: false)
            var st = stat()
            if stat(path, &st) == 0, st.st_mode & 0o077 != 0 {
                logger.warning("auth.tickets.key_file_open", metadata: ["path": "\(path)", "mode": "\(String(st.st_mode & 0o777, radix: 8))",
                                                                       "why": "anyone who reads it can forge sessions; make it 0600"])
            }
            keyring = TicketKeyring(fixed: sealer, source: "file", logger: logger)
        } else {
            keyring = try TicketKeyring(localFile: dir.appendingPathComponent("ticket-keys.json").path,
                                        siteFile: dir.appendingPathComponent("site-keys.json").path, logger: logger)
        }
        let summary = keyring.summary
        logger.info("auth.tickets.keys", metadata: ["sealing": "\(summary.sealing)", "keys": "\(summary.keyIds.joined(separator: ","))",
                                                    "lifetime_s": "\(keyring.sealer.lifetime)",
                                                    "scope": "\(summary.source == "local" ? "this server" : "the Site")", "from": "\(summary.source)"])
        return keyring
    }
}
