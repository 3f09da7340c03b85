import Foundation
import GatewayAgentAPI

/// One health check of a server, with a human message saying why it has its status.
public struct HealthCheck: Sendable, Equatable, Codable {
    public enum Status: String, Sendable, Codable, Comparable, CaseIterable {
        /// Not measured (no report, or the agent could not measure it). Ignored by the overall status.
        case unknown
        /// Shown, never changes the overall status (connections, throughput).
        case informational
        case healthy
        case warning
        case unhealthy

        var severity: Int {
            switch self {
            case .unknown, .informational: return 0
            case .healthy: return 1
            case .warning: return 2
            case .unhealthy: return 3
            }
        }

        public static func < (a: Status, b: Status) -> Bool { a.severity < b.severity }
    }

    public var id: String
    public var status: Status
    public var message: String
    public var value: String?

    public init(id: String, status: Status, message: String, value: String? = nil) {
        self.id = id
        self.status = status
        self.message = message
        self.value = value
    }
}

/// Graph's microsoftTunnelServerHealthStatus.
public enum TunnelServerHealthStatus: String, Sendable, Codable, CaseIterable {
    case unknown, healthy, unhealthy, warning, offline, upgradeInProgress, upgradeFailed, unknownFutureValue
}

/// Everything the evaluation reads; plain values so it is a pure function, tested in memory.
public struct HealthInputs: Sendable {
    public var server: ServerRecord
    public var site: SiteRecord?
    public var latest: HealthSample?
    public var agentCertificate: IssuedCertificate?
    public var thresholds: [String: ThresholdOverride]
    public var now: Date
    public var offlineAfter: TimeInterval
    public var checkinInterval: TimeInterval
    public var agentCertificateLifetime: TimeInterval
    /// The control plane's version: agents and gateways on another version get a warning.
    public var expectedVersion: String
    /// How often agents are told to send health reports; a report older than 3 of these
    /// while the server still checks in is a warning.
    public var reportInterval: TimeInterval

    public init(server: ServerRecord, site: SiteRecord?, latest: HealthSample?, agentCertificate: IssuedCertificate?,
                thresholds: [String: ThresholdOverride], now: Date, offlineAfter: TimeInterval, checkinInterval: TimeInterval,
                agentCertificateLifetime: TimeInterval, expectedVersion: String, reportInterval: TimeInterval = 60) {
        self.server = server
        self.site = site
        self.latest = latest
        self.agentCertificate = agentCertificate
        self.thresholds = thresholds
        self.now = now
        self.offlineAfter = offlineAfter
        self.checkinInterval = checkinInterval
        self.agentCertificateLifetime = agentCertificateLifetime
        self.expectedVersion = expectedVersion
        self.reportInterval = reportInterval
    }
}

public struct HealthEvaluation: Sendable, Equatable {
    public var status: TunnelServerHealthStatus
    public var checks: [HealthCheck]
}

/// Evaluates a server's health at read time (product.md §6): offline when the last
/// check-in is older than `offlineAfter`; otherwise the worst of the checks.
public enum HealthEvaluator {
    public static func evaluate(_ input: HealthInputs) -> HealthEvaluation {
        var checks: [HealthCheck] = []
        let server = input.server
        let now = input.now

        // Last check-in decides offline before anything else.
        var offline = false
        if let last = server.lastCheckinDateTime {
            let age = max(0, now.timeIntervalSince(last))
            if age > input.offlineAfter {
                offline = true
                checks.append(HealthCheck(id: "lastCheckin", status: .unhealthy,
                                          message: "last check-in \(Int(age)) s ago; offline after \(Int(input.offlineAfter)) s", value: "\(Int(age))"))
            } else {
                checks.append(HealthCheck(id: "lastCheckin", status: .healthy, message: "checked in \(Int(age)) s ago", value: "\(Int(age))"))
            }
        } else {
            let sinceEnrollment = now.timeIntervalSince(server.createdDateTime)
            offline = sinceEnrollment > input.offlineAfter
            checks.append(HealthCheck(id: "lastCheckin", status: offline ? .unhealthy : .unknown,
                                      message: "never checked in (enrolled \(Int(max(0, sinceEnrollment))) s ago)"))
        }

        let report = input.latest?.report
        // Metrics that depend on time (certificate expiry) are evaluated now, not at the
        // time the agent put on its report.
        let reportDate = now
        checks.append(reportAge(input, offline: offline))

        // Threshold metrics.
        for metric in HealthMetric.allCases {
            let name = metric.rawValue
            guard metric != .tlsCertificateExpiry else { continue }
            guard let report, let value = MetricValues.raw(name, report, at: reportDate) else {
                checks.append(HealthCheck(id: name, status: .unknown, message: "\(name) not reported"))
                continue
            }
            let t = input.thresholds[name]
            let healthy = t?.healthyThreshold ?? metric.defaultHealthy
            let unhealthy = t?.unhealthyThreshold ?? metric.defaultUnhealthy
            let status = metric.status(of: value, healthy: healthy, unhealthy: unhealthy)
            let shown = String(format: "%.1f", value)
            let rule = metric.direction == .higherIsWorse ? "healthy < \(healthy), unhealthy > \(unhealthy)" : "healthy > \(healthy), unhealthy < \(unhealthy)"
            checks.append(HealthCheck(id: name, status: status, message: "\(shown) \(metric.unit) (\(rule))", value: shown))
        }

        // Informational.
        if let c = report?.currentConnections {
            checks.append(HealthCheck(id: "currentConnections", status: .informational, message: "\(c) sessions connected", value: "\(c)"))
        }
        if let t = report?.throughputBytesPerSecond {
            checks.append(HealthCheck(id: "throughput", status: .informational, message: "\(t) bytes/s through the tunnel", value: "\(t)"))
        }

        checks.append(tlsCertificate(report, at: reportDate, thresholds: input.thresholds))
        checks.append(agentCertificate(input))
        checks.append(internalNetworkProbe(report, site: input.site))
        checks.append(configurationApplied(server, site: input.site))
        checks.append(gateway(report))
        checks.append(refusedInput(report))
        checks.append(versionCurrency(server, expected: input.expectedVersion))
        let upgrade = input.site?.upgrade.flatMap { $0.serverId == server.id ? $0 : nil }
        if let upgrade {
            let message = upgrade.phase == .inProgress
                ? "being upgraded to \(upgrade.target) (drain, hand-over, new containers, health check)"
                : "upgrade to \(upgrade.target) failed: \(upgrade.message ?? "no reason given")"
            checks.append(HealthCheck(id: "upgrade", status: .informational, message: message, value: server.imageTag))
        }

        let status: TunnelServerHealthStatus
        if let upgrade {
            // Graph's statuses for a server the Site's rolling upgrade is at, offline or not:
            // it is expected to go away for a moment.
            status = upgrade.phase == .inProgress ? .upgradeInProgress : .upgradeFailed
        } else if offline {
            status = .offline
        } else {
            let worst = checks.map(\.status).max() ?? .unknown
            switch worst {
            case .unhealthy: status = .unhealthy
            case .warning: status = .warning
            case .healthy: status = report == nil ? .unknown : .healthy
            case .unknown, .informational: status = .unknown
            }
        }
        return HealthEvaluation(status: status, checks: checks)
    }

    /// How old the latest health report is, by when it was received. Stale (older than
    /// 3 × the report interval) while the server still checks in → warning: the agent is
    /// alive but its health reports do not arrive, so the metrics shown are old.
    static func reportAge(_ input: HealthInputs, offline: Bool) -> HealthCheck {
        let id = "healthReport"
        guard let latest = input.latest else {
            return HealthCheck(id: id, status: .unknown, message: "no health report received yet")
        }
        let age = max(0, input.now.timeIntervalSince(latest.receivedDateTime))
        let value = "\(Int(age))"
        let limit = 3 * input.reportInterval
        if age > limit {
            if offline {
                return HealthCheck(id: id, status: .unknown, message: "last health report received \(Int(age)) s ago (server offline)", value: value)
            }
            return HealthCheck(id: id, status: .warning,
                               message: "last health report received \(Int(age)) s ago although the server checks in; reports are expected every \(Int(input.reportInterval)) s (stale after \(Int(limit)) s)",
                               value: value)
        }
        return HealthCheck(id: id, status: .healthy, message: "last health report received \(Int(age)) s ago", value: value)
    }

    static func tlsCertificate(_ report: HealthReport?, at date: Date, thresholds: [String: ThresholdOverride]) -> HealthCheck {
        let id = "tlsCertificate"
        guard let cert = report?.tlsCertificate else {
            return HealthCheck(id: id, status: .unknown, message: "TLS certificate not reported")
        }
        if !cert.problems.isEmpty {
            return HealthCheck(id: id, status: .unhealthy, message: "TLS certificate problems: \(cert.problems.joined(separator: "; "))")
        }
        guard let text = cert.notAfter, let notAfter = GraphDateParsing.parse(text) else {
            return HealthCheck(id: id, status: .unknown, message: "TLS certificate expiry not reported")
        }
        let days = notAfter.timeIntervalSince(date) / 86400
        if days <= 0 {
            return HealthCheck(id: id, status: .unhealthy, message: "TLS certificate expired on \(text)", value: String(format: "%.1f", days))
        }
        let metric = HealthMetric.tlsCertificateExpiry
        let t = thresholds[metric.rawValue]
        let healthy = t?.healthyThreshold ?? metric.defaultHealthy
        let unhealthy = t?.unhealthyThreshold ?? metric.defaultUnhealthy
        let status = metric.status(of: days, healthy: healthy, unhealthy: unhealthy)
        return HealthCheck(id: id, status: status,
                           message: String(format: "TLS certificate valid, expires in %.1f days (healthy > %lld, unhealthy < %lld)", days, healthy, unhealthy),
                           value: String(format: "%.1f", days))
    }

    /// The agent should renew at 2/3 of its certificate's lifetime; a certificate past that
    /// point (plus two check-ins of grace) means renewal is failing.
    static func agentCertificate(_ input: HealthInputs) -> HealthCheck {
        let id = "agentCertificate"
        guard let cert = input.agentCertificate else {
            return HealthCheck(id: id, status: .unknown, message: "no agent certificate on record")
        }
        let left = cert.notAfter.timeIntervalSince(input.now)
        let value = String(format: "%.0f", left)
        if cert.revoked { return HealthCheck(id: id, status: .unhealthy, message: "agent certificate revoked", value: value) }
        if left <= 0 {
            return HealthCheck(id: id, status: .unhealthy, message: "agent certificate expired at \(GraphDate.string(cert.notAfter)); re-enroll the server", value: value)
        }
        let renewAfter = cert.notAfter.addingTimeInterval(-input.agentCertificateLifetime / 3)
        if input.now > renewAfter.addingTimeInterval(2 * input.checkinInterval) {
            return HealthCheck(id: id, status: .warning, message: "agent certificate not renewed on time; expires in \(Int(left)) s", value: value)
        }
        return HealthCheck(id: id, status: .healthy, message: "agent certificate valid until \(GraphDate.string(cert.notAfter))", value: value)
    }

    static func internalNetworkProbe(_ report: HealthReport?, site: SiteRecord?) -> HealthCheck {
        let id = "internalNetworkProbe"
        guard let url = site?.internalNetworkProbeUrl, !url.isEmpty else {
            return HealthCheck(id: id, status: .informational, message: "the Site has no internalNetworkProbeUrl")
        }
        guard let probe = report?.internalNetworkProbe else {
            return HealthCheck(id: id, status: .unknown, message: "probe of \(url) not reported yet")
        }
        if probe.reachable {
            let status = probe.statusCode.map { " (HTTP \($0))" } ?? ""
            return HealthCheck(id: id, status: .healthy, message: "\(probe.url) reachable\(status)", value: "1")
        }
        return HealthCheck(id: id, status: .unhealthy, message: "\(probe.url) unreachable: \(probe.error ?? "no answer")", value: "0")
    }

    static func configurationApplied(_ server: ServerRecord, site: SiteRecord?) -> HealthCheck {
        let id = "serverConfiguration"
        guard let site, site.effectiveConfigurationVersion > 0 else {
            return HealthCheck(id: id, status: .informational, message: "the Site has no Server configuration")
        }
        let wanted = site.effectiveConfigurationVersion
        if let apply = server.lastApply, !apply.success, apply.version == wanted {
            return HealthCheck(id: id, status: .unhealthy,
                               message: "applying configuration version \(wanted) failed: \(apply.message ?? "no reason given")", value: "\(server.appliedConfigurationVersion)")
        }
        if server.appliedConfigurationVersion == wanted {
            return HealthCheck(id: id, status: .healthy, message: "configuration version \(wanted) applied", value: "\(wanted)")
        }
        return HealthCheck(id: id, status: .warning,
                           message: "configuration version \(server.appliedConfigurationVersion) applied, \(wanted) pending", value: "\(server.appliedConfigurationVersion)")
    }

    static func gateway(_ report: HealthReport?) -> HealthCheck {
        let id = "gateway"
        guard let g = report?.gateway else {
            return HealthCheck(id: id, status: .unknown, message: "gateway state not reported")
        }
        if !g.reachable {
            return HealthCheck(id: id, status: .unhealthy, message: "gateway not reachable: \(g.error ?? "no answer on its control socket")", value: "0")
        }
        if g.authReachable == false {
            return HealthCheck(id: id, status: .unhealthy, message: "gateway up but the auth plugin does not answer it", value: "1")
        }
        return HealthCheck(id: id, status: .healthy, message: "gateway running\(g.version.map { " (\($0))" } ?? "")", value: "1")
    }

    /// What the gateway refused since it started (malformed tunnel input by class, connections
    /// refused at accept, bans, policy denials): informational, it never changes the status —
    /// a gateway that drops an attacker's input is doing its job — but it says one is there.
    static func refusedInput(_ report: HealthReport?) -> HealthCheck {
        let id = "refusedInput"
        guard let g = report?.gateway, g.reachable, let r = g.refused else {
            return HealthCheck(id: id, status: .unknown, message: "refused input not reported")
        }
        var parts: [String] = []
        let classes = r.malformed.filter { $0.value > 0 }.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
        if !classes.isEmpty {
            parts.append("\(r.malformedTotal) malformed inputs (" + classes.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + ")")
        }
        if let n = r.connectionsRefused, n > 0 { parts.append("\(n) connections refused at accept") }
        if let n = r.bans, n > 0 { parts.append("\(n) addresses banned") }
        if let n = r.policyDenials, n > 0 { parts.append("\(n) logins refused by group policy") }
        let since = g.uptimeSeconds.map { " in \($0) s since the gateway started" } ?? " since the gateway started"
        let message = parts.isEmpty ? "nothing refused" + since : parts.joined(separator: "; ") + since
        return HealthCheck(id: id, status: .informational, message: message, value: "\(r.malformedTotal)")
    }

    static func versionCurrency(_ server: ServerRecord, expected: String) -> HealthCheck {
        let id = "versionCurrency"
        var stale: [String] = []
        if let a = server.agentVersion, a != expected { stale.append("agent \(a)") }
        if let s = server.serverVersion, s != expected { stale.append("gateway \(s)") }
        if server.agentVersion == nil && server.serverVersion == nil {
            return HealthCheck(id: id, status: .unknown, message: "versions not reported yet")
        }
        if stale.isEmpty {
            return HealthCheck(id: id, status: .healthy, message: "agent and gateway on \(expected)")
        }
        return HealthCheck(id: id, status: .warning, message: "\(stale.joined(separator: ", ")) differ from the control plane's \(expected)")
    }
}
