import Foundation
import GatewayAgentAPI

/// The health metrics with thresholds (`microsoftTunnelHealthThreshold` ids) and the
/// values `getHealthMetrics` / `getHealthMetricTimeSeries` return, with their units.
///
/// Threshold defaults for CPU, memory, disk and latency are Microsoft's documented ones;
/// the others are ours (docs/control-plane.md).
public enum HealthMetric: String, CaseIterable, Sendable {
    /// Host CPU busy, percent.
    case cpuUsage
    /// Host memory in use, percent.
    case memoryUsage
    /// Free disk space on the state directory's file system, whole GB (10^9 bytes).
    case diskSpace
    /// Agent → control plane round trip, ms.
    case latency
    /// Client address pool in use, percent.
    case addressPoolUsage
    /// Days until the gateway's TLS certificate expires (negative once expired).
    case tlsCertificateExpiry

    public enum Direction: Sendable { case higherIsWorse, lowerIsWorse }

    public var direction: Direction {
        switch self {
        case .diskSpace, .tlsCertificateExpiry: return .lowerIsWorse
        default: return .higherIsWorse
        }
    }

    public var defaultHealthy: Int64 {
        switch self {
        case .cpuUsage, .memoryUsage: return 50
        case .diskSpace: return 5
        case .latency: return 10
        case .addressPoolUsage: return 80
        case .tlsCertificateExpiry: return 30
        }
    }

    public var defaultUnhealthy: Int64 {
        switch self {
        case .cpuUsage, .memoryUsage: return 75
        case .diskSpace: return 3
        case .latency: return 20
        case .addressPoolUsage: return 95
        case .tlsCertificateExpiry: return 7
        }
    }

    public var unit: String {
        switch self {
        case .cpuUsage, .memoryUsage, .addressPoolUsage: return "%"
        case .diskSpace: return "GB free"
        case .latency: return "ms"
        case .tlsCertificateExpiry: return "days left"
        }
    }

    /// healthy / warning / unhealthy for `value` under the given thresholds.
    public func status(of value: Double, healthy: Int64, unhealthy: Int64) -> HealthCheck.Status {
        switch direction {
        case .higherIsWorse:
            if value < Double(healthy) { return .healthy }
            if value > Double(unhealthy) { return .unhealthy }
            return .warning
        case .lowerIsWorse:
            if value > Double(healthy) { return .healthy }
            if value < Double(unhealthy) { return .unhealthy }
            return .warning
        }
    }

    /// Checks a threshold pair an admin wants to set.
    public func validate(healthy: Int64, unhealthy: Int64) -> String? {
        if healthy < 0 || unhealthy < 0 { return "thresholds of \(rawValue) cannot be negative" }
        switch direction {
        case .higherIsWorse where healthy > unhealthy:
            return "\(rawValue): healthyThreshold (\(healthy)) must not exceed unhealthyThreshold (\(unhealthy)); higher values are worse"
        case .lowerIsWorse where healthy < unhealthy:
            return "\(rawValue): healthyThreshold (\(healthy)) must not be below unhealthyThreshold (\(unhealthy)); lower values are worse"
        default:
            if self == .cpuUsage || self == .memoryUsage || self == .addressPoolUsage, healthy > 100 || unhealthy > 100 {
                return "\(rawValue) is a percentage: thresholds must be within 0...100"
            }
            return nil
        }
    }
}

/// Names `getHealthMetrics` and `getHealthMetricTimeSeries` accept, and how each is read
/// from a report. Values are whole numbers (Graph's keyLongValuePair / Int64).
enum MetricValues {
    static let names: [String] = [
        "cpuUsage", "memoryUsage", "diskSpace", "latency", "throughput", "currentConnections", "addressPoolUsage",
        "tlsCertificateExpiry", "internalNetworkProbe", "gatewayReachable", "appliedConfigurationVersion", "malformedInput",
    ]

    static let units: [String: String] = [
        "cpuUsage": "percent", "memoryUsage": "percent", "diskSpace": "GB free (10^9 bytes)", "latency": "milliseconds",
        "throughput": "bytes per second, both directions", "currentConnections": "sessions", "addressPoolUsage": "percent",
        "tlsCertificateExpiry": "days until expiry", "internalNetworkProbe": "1 reachable, 0 not",
        "gatewayReachable": "1 reachable, 0 not", "appliedConfigurationVersion": "version",
        "malformedInput": "malformed tunnel inputs dropped since the gateway started",
    ]

    /// The raw (fractional) value of a metric in one report, nil when not reported.
    static func raw(_ name: String, _ r: HealthReport, at date: Date) -> Double? {
        switch name {
        case "cpuUsage": return r.cpuUsagePercent
        case "memoryUsage": return r.memoryUsagePercent
        case "diskSpace": return r.diskFreeBytes.map { Double($0) / 1e9 }
        case "latency": return r.latencyMilliseconds
        case "throughput": return r.throughputBytesPerSecond.map(Double.init)
        case "currentConnections": return r.currentConnections.map(Double.init)
        case "addressPoolUsage":
            guard let size = r.gateway.poolSize, size > 0, let used = r.gateway.poolInUse else { return nil }
            return Double(used) * 100 / Double(size)
        case "tlsCertificateExpiry":
            guard let text = r.tlsCertificate?.notAfter, let notAfter = GraphDateParsing.parse(text) else { return nil }
            return notAfter.timeIntervalSince(date) / 86400
        case "internalNetworkProbe": return r.internalNetworkProbe.map { $0.reachable ? 1 : 0 }
        case "gatewayReachable": return r.gateway.reachable ? 1 : 0
        case "appliedConfigurationVersion": return Double(r.appliedConfigurationVersion)
        case "malformedInput": return r.gateway.refused.map { Double($0.malformedTotal) }
        default: return nil
        }
    }

    /// Whole-number form: rounded down for "space left" style metrics so 4.9 GB free is 4.
    static func long(_ name: String, _ r: HealthReport, at date: Date) -> Int64? {
        guard let v = raw(name, r, at: date), v.isFinite, abs(v) < 9e18 else { return nil }
        switch name {
        case "diskSpace", "tlsCertificateExpiry": return Int64(v.rounded(.down))
        default: return Int64(v.rounded())
        }
    }
}
