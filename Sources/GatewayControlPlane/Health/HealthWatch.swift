import Foundation
import Logging

/// Says in the control plane's log when a server's health changes (goes offline, becomes
/// unhealthy, recovers): health is evaluated at read time, so without this nothing would
/// be logged until an admin looked. One line per change, with the checks that are not
/// healthy; the first pass after a start logs every server's status once.
actor HealthWatch {
    private var last: [String: TunnelServerHealthStatus] = [:]

    /// One pass: evaluates every server, returns (and logs) the changes.
    @discardableResult
    func pass(_ controlPlane: ControlPlane) async throws -> [(serverId: String, from: TunnelServerHealthStatus?, to: TunnelServerHealthStatus)] {
        let thresholds = try await controlPlane.thresholdMap()
        let sites = Dictionary(try await controlPlane.store.listSites().map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        var changes: [(String, TunnelServerHealthStatus?, TunnelServerHealthStatus)] = []
        var seen = Set<String>()
        var byStatus: [TunnelServerHealthStatus: Int] = [:]
        for server in try await controlPlane.store.listServers(siteId: nil) {
            seen.insert(server.id)
            let evaluation = try await controlPlane.evaluate(server, site: sites[server.siteId], thresholds: thresholds)
            byStatus[evaluation.status, default: 0] += 1
            let before = last[server.id]
            guard before != evaluation.status else { continue }
            last[server.id] = evaluation.status
            changes.append((server.id, before, evaluation.status))
            let problems = evaluation.checks.filter { $0.status == .warning || $0.status == .unhealthy }
                .map { "\($0.id): \($0.message)" }.joined(separator: "; ")
            var metadata: Logger.Metadata = [
                "server.id": "\(server.id)", "name": "\(server.displayName)", "site.id": "\(server.siteId)",
                "from": "\(before?.rawValue ?? "none")", "to": "\(evaluation.status.rawValue)",
            ]
            if !problems.isEmpty { metadata["problems"] = "\(problems)" }
            switch evaluation.status {
            case .offline, .unhealthy, .upgradeFailed: controlPlane.logger.warning("server.health.changed", metadata: metadata)
            default: controlPlane.logger.info("server.health.changed", metadata: metadata)
            }
        }
        for gone in Set(last.keys).subtracting(seen) { last[gone] = nil }
        ControlPlaneMetrics.servers(byStatus)
        return changes
    }
}

extension ControlPlane {
    /// Runs `HealthWatch` every `interval` until cancelled (beside the retention task).
    public func runHealthWatch(interval: TimeInterval? = nil) async {
        let watch = HealthWatch()
        let every = interval ?? max(5, min(options.checkinInterval, 60))
        while !Task.isCancelled {
            do {
                try await watch.pass(self)
            } catch {
                logger.error("health.watch.failed", metadata: ["error": "\(error)"])
            }
            do { try await Task.sleep(for: .seconds(every)) } catch { return }
        }
    }
}
