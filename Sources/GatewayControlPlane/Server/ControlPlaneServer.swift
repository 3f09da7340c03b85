import Crypto
import Foundation
import GatewayAuth
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOSSL

/// Everything `mstunnel-control serve` needs, from the command line.
public struct ServeConfiguration: Sendable {
    public var stateDirectory: String = "/var/lib/mstunnel-control"
    public var listenHost: String = "127.0.0.1"
    public var listenPort: Int = 8443
    /// SANs of the generated TLS certificate; the first one also names this instance in
    /// download URLs.
    public var hostnames: [String] = ["localhost", "127.0.0.1"]
    /// SQLite file (default `<state-dir>/control.sqlite`), or a `postgres://` address
    /// (`PostgresSettings`) for several instances sharing one store.
    public var databasePath: String?
    /// The PostgreSQL password, read from a file instead of the address.
    public var databasePasswordFile: String?
    public var tlsCertificatePath: String?
    public var tlsKeyPath: String?
    public var adminAuthConfigPath: String?
    public var adminRole: String = AdminAuthenticator.defaultRole
    public var checkinInterval: TimeInterval = 60
    public var reportInterval: TimeInterval = 60
    public var offlineAfter: TimeInterval = 300
    public var agentCertificateLifetime: TimeInterval = 30 * 24 * 3600
    /// Health reports, session events and report ids are kept this many days.
    public var retentionDays: Int = 30
    /// The image tag the Sites' servers should run (`--gateway-release`; docs/site.md,
    /// "Rolling upgrade"); nil: none, no Site upgrades.
    public var gatewayRelease: String?
    /// Serve the development issuer (standalone mode only; refused with `adminAuthConfigPath`).
    public var devIssuer = false
    /// TLS handshake deadline, idle HTTP connection deadline, and connection limits
    /// (see `ControlPlaneOptions`).
    public var tlsHandshakeTimeout: TimeInterval = 10
    public var idleTimeout: TimeInterval = 60
    public var maxConnectionsPerSource = 64
    public var maxConnections = 4096
    /// Failed admin authentications per source before a lockout (see `AdminAuthThrottle`).
    public var adminAuthThrottle = AdminAuthThrottle.Settings()

    public init() {}
}

/// Builds a control plane from a `ServeConfiguration` (state directory, CA, TLS, admin
/// token, database) and serves it over HTTPS until SIGTERM/SIGINT.
public enum ControlPlaneServer {
    public struct Prepared: Sendable {
        public let controlPlane: ControlPlane
        public let tlsConfiguration: TLSConfiguration
        public let adminTokenPath: String
    }

    public static func prepare(_ config: ServeConfiguration, logger: Logger) async throws -> Prepared {
        if config.devIssuer, config.adminAuthConfigPath != nil {
            throw PKIError("--dev-issuer is for standalone mode: it is off when an external issuer is configured (--admin-auth-config)")
        }
        // Before anything is created: a busy port must not leave a fresh state directory behind.
        try ListenCheck.check(host: config.listenHost, port: config.listenPort)
        // 0700, also when the directory already existed (it holds the CA key and the database).
        try StateFiles.ensureDirectory(config.stateDirectory)
        let store = try await openStore(config, logger: logger)
        let shared = store.database.kind == "postgres"
        let ca: CertificateAuthority
        if shared {
            // Every instance signs with one CA; the first to start stores it (an existing
            // state directory's CA, so agents enrolled with a single instance keep trusting it).
            let stateDirectory = config.stateDirectory
            let bundle = try await store.sharedSecret(name: "ca", create: {
                try (CertificateAuthority.loadIfPresent(directory: stateDirectory) ?? CertificateAuthority.create()).pemBundle
            }, now: Date())
            ca = try CertificateAuthority(pemBundle: bundle, source: "the CA in the database")
            // A CA of this state directory's own (key and certificate: it ran alone once) that is
            // not the shared one: agents enrolled with it would stop trusting this instance, so
            // say so rather than replace it quietly.
            if FileManager.default.fileExists(atPath: config.stateDirectory + "/ca.key"),
               let local = try? CertificateAuthority.loadIfPresent(directory: config.stateDirectory), local.sha256Hex != ca.sha256Hex {
                throw PKIError("""
                    \(config.stateDirectory) holds a CA of its own (sha256 \(local.sha256Hex)) that is not the one the other instances \
                    share in the database (sha256 \(ca.sha256Hex)); agents enrolled with it would stop trusting this instance. \
                    Move ca.key and ca.crt out of the state directory to join with the shared CA (and enroll those agents again)
                    """)
            }
            try StateFiles.write(Data(ca.certificatePEM.utf8), to: config.stateDirectory + "/ca.crt", mode: 0o644)
        } else {
            ca = try CertificateAuthority.loadOrCreate(directory: config.stateDirectory)
        }
        let tls: ControlPlaneTLS
        if let certPath = config.tlsCertificatePath {
            guard let keyPath = config.tlsKeyPath else { throw PKIError("--tls-cert needs --tls-key") }
            tls = try ControlPlaneTLS.load(certificatePath: certPath, keyPath: keyPath)
        } else {
            if config.tlsKeyPath != nil { throw PKIError("--tls-key needs --tls-cert") }
            tls = try ControlPlaneTLS.loadOrIssue(stateDirectory: config.stateDirectory, ca: ca, hostnames: config.hostnames)
        }
        let token: String
        if shared {
            let stateDirectory = config.stateDirectory
            let local = try? LocalAdminToken.read(stateDirectory: stateDirectory)
            token = try await store.sharedSecret(name: "admin-token", create: { local ?? LocalAdminToken.newToken() }, now: Date())
            if let local, local != token {
                logger.notice("admin.token.replaced", metadata: [
                    "file": "\(LocalAdminToken.path(stateDirectory: stateDirectory))",
                    "why": "the instances share the admin token kept in the database; this state directory's own one no longer works",
                ])
            }
            try LocalAdminToken.write(token, stateDirectory: config.stateDirectory)
        } else {
            token = try LocalAdminToken.loadOrCreate(stateDirectory: config.stateDirectory)
        }
        let downloadKey = try await store.sharedSecret(name: "download-link-key", create: {
            SymmetricKey(size: .bits256).withUnsafeBytes { Data($0).base64EncodedString() }
        }, now: Date())
        guard let downloadKeyBytes = Data(base64Encoded: downloadKey), downloadKeyBytes.count == 32 else {
            throw PKIError("the stored download-link key is not 32 bytes of base64")
        }
        var validator: TokenValidator?
        if let path = config.adminAuthConfigPath {
            let auth = try AuthConfiguration.load(path: path, stateDirectory: config.stateDirectory)
            let source: any JWKSSource
            switch auth.keyLocation {
            case .file(let file): source = FileJWKSSource(path: file)
            case .jwksURL(let url): source = URLJWKSSource(url: url, fetcher: HTTPFetcher(caBundle: auth.caBundle))
            case .discovery(let url): source = DiscoveryJWKSSource(discoveryURL: url, expectedIssuer: auth.issuer, fetcher: HTTPFetcher(caBundle: auth.caBundle), logger: logger)
            }
            let v = TokenValidator(configuration: auth, source: source, logger: logger)
            if case .failure(let error) = await v.prefetch() {
                logger.warning("admin.jwks.unavailable", metadata: ["error": "\(error.message)", "note": "admin JWTs fail until the keys load"])
            }
            validator = v
        }
        let host = config.hostnames.first ?? config.listenHost
        let shownHost = host.contains(":") ? "[\(host)]" : host
        var options = ControlPlaneOptions(stateDirectory: config.stateDirectory, publicBaseURL: "https://\(shownHost):\(config.listenPort)")
        options.checkinInterval = config.checkinInterval
        options.reportInterval = config.reportInterval
        options.offlineAfter = config.offlineAfter
        options.agentCertificateLifetime = config.agentCertificateLifetime
        options.retention = TimeInterval(config.retentionDays) * 24 * 3600
        options.gatewayRelease = config.gatewayRelease
        options.tlsHandshakeTimeout = config.tlsHandshakeTimeout
        options.idleTimeout = config.idleTimeout
        options.maxConnectionsPerSource = config.maxConnectionsPerSource
        options.maxConnections = config.maxConnections
        options.adminAuthThrottle = config.adminAuthThrottle
        try StateFiles.ensureDirectory(options.logsDirectory)
        let devIssuer = config.devIssuer
            ? try await DevIssuer.loadOrCreate(stateDirectory: config.stateDirectory, baseURL: options.publicBaseURL) : nil
        let controlPlane = ControlPlane(store: store, ca: ca,
                                        authenticator: AdminAuthenticator(localToken: token, validator: validator, requiredRole: config.adminRole),
                                        options: options, logger: logger, devIssuer: devIssuer,
                                        downloadKey: SymmetricKey(data: downloadKeyBytes))
        return Prepared(controlPlane: controlPlane, tlsConfiguration: try tls.serverConfiguration(clientCA: ca),
                        adminTokenPath: LocalAdminToken.path(stateDirectory: config.stateDirectory))
    }

    /// SQLite (the default, `<state-dir>/control.sqlite`) or PostgreSQL for a `postgres://`
    /// address. The development issuer keeps its key and users in one instance's state
    /// directory, so it is refused with PostgreSQL (several instances).
    static func openStore(_ config: ServeConfiguration, logger: Logger) async throws -> SQLControlStore {
        guard let address = config.databasePath, PostgresSettings.isPostgresURL(address) else {
            if config.databasePasswordFile != nil { throw PKIError("--database-password-file is for a postgres:// --database") }
            return try SQLControlStore.sqlite(path: config.databasePath ?? config.stateDirectory + "/control.sqlite")
        }
        if config.devIssuer {
            throw PKIError("--dev-issuer keeps its key and users in one instance's state directory: with a PostgreSQL --database (several instances) use an external issuer (--admin-auth-config)")
        }
        let settings = try PostgresSettings(url: address, passwordFile: config.databasePasswordFile)
        let database = try await PostgresDatabase.open(settings, logger: logger)
        logger.info("store.opened", metadata: ["database": "\(settings)"])
        return SQLControlStore(database: database)
    }

    /// The HTTPS application (not started). `onServerRunning` gets the bound channel
    /// (tests read the port from it).
    ///
    /// Each accepted connection goes through `GuardedChildChannel` (per-source and total
    /// connection limits, TLS handshake deadline) before TLS and HTTP/1 (idle deadline).
    public static func application(_ prepared: Prepared, host: String, port: Int, logger: Logger,
                                   onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }) throws -> some ApplicationProtocol {
        let options = prepared.controlPlane.options
        let tls = TLSChannelConfiguration(tlsConfiguration: prepared.tlsConfiguration,
                                          customVerificationCallback: ClientCertificateVerifier.callback(ca: prepared.controlPlane.ca))
        let limiter = ConnectionLimiter(perSource: options.maxConnectionsPerSource, total: options.maxConnections)
        let handshakeTimeout = Self.timeAmount(options.tlsHandshakeTimeout)
        let idleTimeout = Self.timeAmount(options.idleTimeout)
        let logGate = LogGate()
        let server = HTTPServerBuilder { responder in
            let http = HTTP1Channel(responder: responder, configuration: .init(idleTimeout: idleTimeout))
            return GuardedChildChannel(base: try TLSChannel(http, configuration: tls), limiter: limiter,
                                       handshakeTimeout: handshakeTimeout, logger: logger, logGate: logGate)
        }
        return Application(router: prepared.controlPlane.router(), server: server,
                           configuration: .init(address: .hostname(host, port: port), serverName: "mstunnel-control"),
                           onServerRunning: onServerRunning, logger: logger)
    }

    static func timeAmount(_ seconds: TimeInterval) -> TimeAmount {
        .milliseconds(Int64((max(0.001, seconds) * 1000).rounded()))
    }
}
