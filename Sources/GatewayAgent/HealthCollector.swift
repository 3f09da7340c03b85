import Foundation
import GatewayAgentAPI
import GatewayCore
import GatewayWire

/// Builds one `HealthReport`. Keeps the previous CPU and traffic counters, because CPU use
/// and throughput are rates over the interval between two reports. Anything that cannot
/// be measured this round is nil, never a made-up zero.
public final class HealthCollector {
    let paths: AgentPaths
    let gateway: GatewayControl
    private var previousCPU: CPUTimes?
    private var previousTraffic: (startedAt: Int64, bytes: UInt64, at: Date)?
    private var previousTransit: (startedAt: Int64, packets: UInt64, nanos: UInt64)?
    /// Last note about the TLS certificate, to log it only when it changes.
    public private(set) var certificateNote: String?

    public init(paths: AgentPaths, gateway: GatewayControl) {
        self.paths = paths
        self.gateway = gateway
        // A first sample now, so the first report already has a CPU figure.
        previousCPU = ProcFile.read("/proc/stat").flatMap(CPUTimes.parse(procStat:))
    }

    /// `latency` is the gateway's own transit time (packets through the gateway, averaged
    /// since the previous report), as Microsoft's check means it — not the agent's round trip
    /// to the control plane, which says nothing about what users feel.
    public func collect(probeURL: String?, appliedVersion: Int64,
                        agentCertificateNotAfter: Date?, now: Date = Date()) -> HealthReport {
        var report = HealthReport(gateway: GatewayReport(reachable: false), appliedConfigurationVersion: appliedVersion)

        if let cpu = ProcFile.read("/proc/stat").flatMap(CPUTimes.parse(procStat:)) {
            if let previousCPU { report.cpuUsagePercent = CPUTimes.usagePercent(from: previousCPU, to: cpu) }
            previousCPU = cpu
        }
        report.memoryUsagePercent = ProcFile.read("/proc/meminfo").flatMap(MemoryInfo.usagePercent(procMeminfo:))
        report.diskFreeBytes = DiskSpace.freeBytes(path: paths.stateDirectory)
        report.agentCertificateNotAfter = agentCertificateNotAfter.map(GraphDate.string)

        let (certificate, note) = TLSCertificateInspector.report(paths: paths, now: now)
        report.tlsCertificate = certificate
        certificateNote = note

        if let probeURL, !probeURL.isEmpty {
            report.internalNetworkProbe = NetworkProbe.probe(url: probeURL)
        }

        switch gateway.serverStatus() {
        case .success(let s):
            report.gateway = GatewayReport(
                reachable: true, version: s.version, uptimeSeconds: max(0, Int64(now.timeIntervalSince1970) - s.startedAt),
                poolSize: Int64(s.poolSize), poolInUse: Int64(s.poolInUse), authReachable: s.authAvailable,
                refused: Self.refused(status: s))
            report.currentConnections = Int64(s.connectedSessions)
            report.throughputBytesPerSecond = throughput(status: s, now: now)
            report.latencyMilliseconds = transitMilliseconds(status: s)
        case .failure(let e):
            report.gateway = GatewayReport(reachable: false, error: "\(e)")
            previousTraffic = nil
            previousTransit = nil
        }
        return report
    }

    /// Average transit time since the previous report, ms; nil without a previous reading of
    /// the same gateway run, or when no packet went through in between.
    func transitMilliseconds(status: ServerStatusResponse) -> Double? {
        guard let packets = status.transitPackets, let nanos = status.transitNanos else { return nil }
        defer { previousTransit = (status.startedAt, packets, nanos) }
        guard let p = previousTransit, p.startedAt == status.startedAt else { return nil }
        return TransitTime.averageMilliseconds(fromPackets: p.packets, nanos: p.nanos, toPackets: packets, nanos: nanos)
    }

    /// Bytes per second (received + sent) since the previous report; nil on the first
    /// report, after a gateway restart (counters start over) or if counters went backwards.
    /// The gateway's refused-input counters as the control plane takes them; nil from a
    /// gateway too old to count malformed input (never a made-up zero).
    static func refused(status s: ServerStatusResponse) -> RefusedInputReport? {
        guard let m = s.malformed else { return nil }
        return RefusedInputReport(
            malformed: Dictionary(uniqueKeysWithValues: m.byClass.map { ($0.name, Int64(clamping: $0.count)) }),
            connectionsRefused: s.connectionsRefused.map(Int64.init), bans: s.bansSinceStart.map(Int64.init),
            policyDenials: s.policyDenials.map(Int64.init))
    }

    func throughput(status: ServerStatusResponse, now: Date) -> Int64? {
        let bytes = status.rxBytes &+ status.txBytes
        defer { previousTraffic = (status.startedAt, bytes, now) }
        return Self.rate(previous: previousTraffic, startedAt: status.startedAt, bytes: bytes, now: now)
    }

    static func rate(previous: (startedAt: Int64, bytes: UInt64, at: Date)?, startedAt: Int64, bytes: UInt64, now: Date) -> Int64? {
        guard let previous, previous.startedAt == startedAt, bytes >= previous.bytes else { return nil }
        let seconds = now.timeIntervalSince(previous.at)
        guard seconds >= 1 else { return nil }
        let rate = Double(bytes - previous.bytes) / seconds
        return rate >= Double(Int64.max) ? Int64.max : Int64(rate)
    }
}
