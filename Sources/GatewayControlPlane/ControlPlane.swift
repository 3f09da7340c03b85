import Crypto
import Foundation
import GatewayAgentAPI
import GatewayCore
import Logging
import GatewaySystem

/// One control-plane instance: its storage, CA, admin authentication and settings. The
/// route files add the HTTP surface on top (Routes+*.swift); `ControlPlaneServer` serves it.
public final class ControlPlane: Sendable {
    public let store: any ControlStore
    public let ca: CertificateAuthority
    public let authenticator: AdminAuthenticator
    public let options: ControlPlaneOptions
    let logger: Logger
    let now: @Sendable () -> Date
    /// Key for signing log download URLs; kept in the store (`ControlPlaneServer`), so a
    /// link survives a restart and works on every instance.
    let downloadKey: SymmetricKey
    /// The development issuer, in standalone mode with `--dev-issuer` only.
    public let devIssuer: DevIssuer?
    /// Failed admin authentications per source address.
    let adminThrottle: AdminAuthThrottle

    public init(store: any ControlStore, ca: CertificateAuthority, authenticator: AdminAuthenticator, options: ControlPlaneOptions,
                logger: Logger, devIssuer: DevIssuer? = nil, downloadKey: SymmetricKey = SymmetricKey(size: .bits256),
                now: @escaping @Sendable () -> Date = { Date() }) {
        self.store = store
        self.ca = ca
        self.authenticator = authenticator
        self.options = options
        self.logger = logger
        self.now = now
        self.devIssuer = devIssuer
        self.downloadKey = downloadKey
        self.adminThrottle = AdminAuthThrottle(settings: options.adminAuthThrottle)
    }

    // MARK: - Health

    /// Evaluates one server now.
    func evaluate(_ server: ServerRecord, site: SiteRecord?, thresholds: [String: ThresholdOverride]) async throws -> HealthEvaluation {
        let latest = try await store.latestHealth(serverId: server.id)
        let cert = try await store.latestCertificate(serverId: server.id)
        return HealthEvaluator.evaluate(HealthInputs(
            server: server, site: site, latest: latest, agentCertificate: cert, thresholds: thresholds, now: now(),
            offlineAfter: options.offlineAfter, checkinInterval: options.checkinInterval,
            agentCertificateLifetime: options.agentCertificateLifetime, expectedVersion: options.version,
            reportInterval: options.reportInterval))
    }

    func thresholdMap() async throws -> [String: ThresholdOverride] {
        Dictionary(try await store.thresholdOverrides().map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
    }

    // MARK: - Retention

    /// One retention pass: health reports, events and report ids older than
    /// `options.retention`, and log collections past their expiry with their files.
    @discardableResult
    public func pruneOnce() async throws -> PruneOutcome {
        let now = self.now()
        let outcome = try await store.prune(olderThan: now.addingTimeInterval(-options.retention), expiredBefore: now)
        removeLogBlobs(outcome.blobPaths)
        if outcome.healthReports + outcome.events + outcome.reportIds + outcome.logCollections > 0 {
            logger.info("retention.pruned", metadata: [
                "health_reports": "\(outcome.healthReports)", "events": "\(outcome.events)", "report.ids": "\(outcome.reportIds)",
                "log_collections": "\(outcome.logCollections)",
            ])
        }
        return outcome
    }

    /// Runs `pruneOnce` now and every `options.retentionInterval` until the task is cancelled.
    public func runRetention() async {
        while !Task.isCancelled {
            do {
                try await pruneOnce()
            } catch {
                logger.error("retention.failed", metadata: ["error": "\(error)"])
            }
            do {
                try await Task.sleep(for: .seconds(options.retentionInterval))
            } catch {
                return
            }
        }
    }

    /// Removes uploaded log files; only files inside the logs directory are touched.
    func removeLogBlobs(_ paths: [String]) {
        let directory = URL(fileURLWithPath: options.logsDirectory).standardizedFileURL.path + "/"
        for path in paths {
            let full = URL(fileURLWithPath: path).standardizedFileURL.path
            guard full.hasPrefix(directory) else {
                logger.warning("logs.blob.outside_directory", metadata: ["path": "\(path)"])
                continue
            }
            if unlink(full) != 0, errno != ENOENT {
                logger.warning("logs.blob.remove_failed", metadata: ["path": "\(path)", "error": "\(SystemError.reason(errno))"])
            }
        }
    }

    // MARK: - Download URLs

    func downloadSignature(collectionId: String, expires: Int64) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Data("\(collectionId)|\(expires)".utf8), using: downloadKey)
        return Secrets.hex(Array(mac))
    }

    func downloadURL(collectionId: String) -> String {
        let expires = Int64(now().addingTimeInterval(options.downloadURLLifetime).timeIntervalSince1970)
        let sig = downloadSignature(collectionId: collectionId, expires: expires)
        return "\(options.publicBaseURL)/downloads/logCollections/\(collectionId)?expires=\(expires)&sig=\(sig)"
    }

    func checkDownload(collectionId: String, expires: String?, sig: String?) -> GraphError? {
        guard let expires, let seconds = Int64(expires), let sig else {
            return GraphError.forbidden("the download link is incomplete; ask createDownloadUrl for a new one")
        }
        let expected = downloadSignature(collectionId: collectionId, expires: seconds)
        guard ConstantTime.equal(Array(expected.utf8), Array(sig.lowercased().utf8)) else {
            return GraphError.forbidden("the download link's signature is not valid")
        }
        if Double(seconds) < now().timeIntervalSince1970 {
            return GraphError.forbidden("the download link expired; ask createDownloadUrl for a new one")
        }
        return nil
    }
}
