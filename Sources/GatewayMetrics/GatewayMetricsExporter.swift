import GatewayWire
import Prometheus
import Synchronization

/// The gateway's counters as Prometheus metrics, for `mstunnel-agent --metrics-listen`.
///
/// The gateway keeps plain integers on its event loop (no lock and no allocation per
/// packet) and answers them over its control socket (`ServerStatusResponse`); the agent
/// reads them every few seconds and hands each reading to `update`. A Prometheus counter
/// must never go down, but the gateway's start at 0 again when it restarts: so each reading
/// adds to the registry's counters what grew since the previous one, and after a restart
/// (another `startedAt`) the whole new value is growth. Gauges are set as read.
///
/// Names and labels are listed in docs/metrics.md; `GatewayMetricsExporterTests` reads the
/// exposition back.
public final class GatewayMetricsExporter: Sendable {
    public let registry: PrometheusCollectorRegistry

    /// Counters by (name, labels), with the gateway's value at the previous reading.
    private struct Mirrored {
        let counter: Counter
        var last: UInt64
    }

    private struct State {
        var startedAt: Int64?
        var counters: [String: Mirrored] = [:]
        /// The auth latency histogram as exposed (counts per bucket, sum, count: all only
        /// growing), and the gateway's at the previous reading.
        var authLatency: LatencyHistogram?
        var lastAuthLatency: LatencyHistogram?
    }

    private let state = Mutex(State())
    private let up: Gauge
    private let startTime: Gauge
    private let sessionsActive: Gauge
    private let sessionsConnected: Gauge
    private let sessionsDTLS: Gauge
    private let sessionsDTLSDirect: Gauge
    private let poolSize: Gauge
    private let poolInUse: Gauge
    private let authAvailable: Gauge

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        up = registry.makeGauge(descriptor: Self.name("mstunnel_gateway_up", "1 if the gateway answered on its control socket at the last reading, else 0"))
        startTime = registry.makeGauge(descriptor: Self.name("mstunnel_gateway_start_time_seconds", "When the gateway process started, Unix time"))
        sessionsActive = registry.makeGauge(descriptor: Self.name("mstunnel_sessions", "Tunnel sessions: active (connected or within their reconnect window), connected"), labels: [("state", "active")])
        sessionsConnected = registry.makeGauge(descriptor: Self.name("mstunnel_sessions", "Tunnel sessions: active (connected or within their reconnect window), connected"), labels: [("state", "connected")])
        sessionsDTLS = registry.makeGauge(descriptor: Self.name("mstunnel_sessions_dtls", "Connected sessions whose packets travel over DTLS (sealing=direct: sealed by the gateway itself)"), labels: [("sealing", "any")])
        sessionsDTLSDirect = registry.makeGauge(descriptor: Self.name("mstunnel_sessions_dtls", "Connected sessions whose packets travel over DTLS (sealing=direct: sealed by the gateway itself)"), labels: [("sealing", "direct")])
        poolSize = registry.makeGauge(descriptor: Self.name("mstunnel_pool_addresses", "Addresses in the client pool"))
        poolInUse = registry.makeGauge(descriptor: Self.name("mstunnel_pool_addresses_in_use", "Pool addresses leased to sessions"))
        authAvailable = registry.makeGauge(descriptor: Self.name("mstunnel_auth_available", "1 if mstunnel-auth answers the gateway, else 0"))
    }

    /// A full metric name as it is exposed (the names are listed whole in docs/metrics.md, so
    /// they are written whole here too), with its help text.
    static func name(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    /// The help text of each counter family (one text per name, whatever its labels).
    static let help: [String: String] = [
        "mstunnel_logins_total": "Logins (and reconnects, for denied_by_policy) by outcome",
        "mstunnel_tunnel_bytes_total": "Tunnel payload bytes (direction=from_clients: into the network, to_clients: out of it)",
        "mstunnel_tunnel_packets_total": "Tunnel IP packets (direction=from_clients: into the network, to_clients: out of it)",
        "mstunnel_packets_dropped_total": "Tunnel packets and datagrams dropped, by reason",
        "mstunnel_acks_coalesced_total": "Pure TCP ACKs not forwarded because a later ACK of the same flow superseded them",
        "mstunnel_transit_packets_total": "Tunnel packets whose time inside the gateway was measured",
        "mstunnel_transit_nanoseconds_total": "Sum of the measured packets' time inside the gateway (an upper bound per loop turn)",
        "mstunnel_malformed_input_total": "Malformed tunnel input dropped, by class (docs/security.md)",
        "mstunnel_connections_refused_total": "Connections closed at accept (per-address or global login limits, bans)",
        "mstunnel_bans_total": "Addresses banned for repeated failed logins",
        "mstunnel_sessions_resumed_total": "Sessions taken back from resumption tickets this gateway process did not make (a sibling's, or before a restart)",
    ]

    /// One reading of the gateway's status.
    public func update(_ s: ServerStatusResponse) {
        up.set(1.0)
        startTime.set(Double(s.startedAt))
        sessionsActive.set(Double(s.activeSessions))
        sessionsConnected.set(Double(s.connectedSessions))
        if let d = s.dtlsSessions { sessionsDTLS.set(Double(d)) }
        if let d = s.dtlsDirectSessions { sessionsDTLSDirect.set(Double(d)) }
        poolSize.set(Double(s.poolSize))
        poolInUse.set(Double(s.poolInUse))
        authAvailable.set(s.authAvailable ? 1.0 : 0.0)

        func count(_ n: Int?) -> UInt64 { UInt64(max(0, n ?? 0)) }
        var readings: [(String, [(String, String)], UInt64)] = [
            ("mstunnel_logins_total", [("outcome", "success")], count(s.totalSessions)),
            ("mstunnel_logins_total", [("outcome", "rejected")], count(s.authFailures)),
            ("mstunnel_logins_total", [("outcome", "no_address")], count(s.poolExhaustedCount)),
            ("mstunnel_logins_total", [("outcome", "denied_by_policy")], count(s.policyDenials)),
        ]
        if let l = s.logins {
            readings.append(("mstunnel_logins_total", [("outcome", "session_limit")], l.sessionLimit))
            readings.append(("mstunnel_logins_total", [("outcome", "auth_unavailable")], l.authUnavailable))
        }
        if let tls = s.tls, let dtls = s.dtls {
            for (channel, t) in [("tls", tls), ("dtls", dtls)] {
                readings.append(("mstunnel_tunnel_bytes_total", [("direction", "from_clients"), ("channel", channel)], t.bytesFromClients))
                readings.append(("mstunnel_tunnel_bytes_total", [("direction", "to_clients"), ("channel", channel)], t.bytesToClients))
                readings.append(("mstunnel_tunnel_packets_total", [("direction", "from_clients"), ("channel", channel)], t.packetsFromClients))
                readings.append(("mstunnel_tunnel_packets_total", [("direction", "to_clients"), ("channel", channel)], t.packetsToClients))
            }
        } else {
            // A gateway before 0.1.8: totals only.
            readings.append(("mstunnel_tunnel_bytes_total", [("direction", "from_clients")], s.rxBytes))
            readings.append(("mstunnel_tunnel_bytes_total", [("direction", "to_clients")], s.txBytes))
        }
        if let d = s.drops {
            for (reason, n) in [("no_session", d.noSession), ("queue_full", d.queueFull), ("spoofed", d.spoofed),
                                ("unsupported", d.unsupported), ("unknown_datagram", d.unknownDatagram)] {
                readings.append(("mstunnel_packets_dropped_total", [("reason", reason)], n))
            }
        }
        if let a = s.acksCoalesced { readings.append(("mstunnel_acks_coalesced_total", [], a)) }
        if let p = s.transitPackets, let n = s.transitNanos {
            readings.append(("mstunnel_transit_packets_total", [], p))
            readings.append(("mstunnel_transit_nanoseconds_total", [], n))
        }
        if let m = s.malformed {
            for (name, n) in m.byClass { readings.append(("mstunnel_malformed_input_total", [("class", name)], n)) }
        }
        if let n = s.connectionsRefused { readings.append(("mstunnel_connections_refused_total", [], UInt64(max(0, n)))) }
        if let n = s.bansSinceStart { readings.append(("mstunnel_bans_total", [], UInt64(max(0, n)))) }
        if let n = s.sessionsResumed { readings.append(("mstunnel_sessions_resumed_total", [], n)) }

        state.withLock { st in
            let restarted = st.startedAt != nil && st.startedAt != s.startedAt
            st.startedAt = s.startedAt
            if let h = s.authLatency, h.counts.count == LatencyHistogram.bounds.count + 1 {
                var exposed = st.authLatency ?? LatencyHistogram()
                let last = restarted ? nil : st.lastAuthLatency
                for i in h.counts.indices {
                    let before = last?.counts[i] ?? 0
                    exposed.counts[i] &+= h.counts[i] >= before ? h.counts[i] - before : h.counts[i]
                }
                let (sumBefore, countBefore) = (last?.sumNanos ?? 0, last?.count ?? 0)
                exposed.sumNanos &+= h.sumNanos >= sumBefore ? h.sumNanos - sumBefore : h.sumNanos
                exposed.count &+= h.count >= countBefore ? h.count - countBefore : h.count
                st.authLatency = exposed
                st.lastAuthLatency = h
            }
            for (name, labels, value) in readings {
                let key = name + labels.map { "|\($0.0)=\($0.1)" }.joined()
                if var m = st.counters[key] {
                    // Growth since the previous reading; after a restart, or if a counter went
                    // down (it should not), everything read now is new.
                    let growth = restarted || value < m.last ? value : value - m.last
                    if growth > 0 { m.counter.increment(by: Int64(clamping: growth)) }
                    m.last = value
                    st.counters[key] = m
                } else {
                    let c = registry.makeCounter(descriptor: Self.name(name, Self.help[name] ?? name), labels: labels)
                    if value > 0 { c.increment(by: Int64(clamping: value)) }
                    st.counters[key] = Mirrored(counter: c, last: value)
                }
            }
        }
    }

    /// The gateway did not answer: `mstunnel_gateway_up` 0; the counters keep their values
    /// (the next answer, from the same process or a new one, carries on from there).
    public func gatewayUnreachable() {
        up.set(0.0)
        authAvailable.set(0.0)
    }

    /// The Prometheus text exposition (what `GET /metrics` answers).
    public func exposition() -> [UInt8] {
        var out = registry.emitToBuffer()
        if let h = state.withLock({ $0.authLatency }) { out += Self.histogram(h).utf8 }
        return out
    }

    /// The auth latency histogram in the text format. Written here, not through the
    /// registry: swift-prometheus records observations one by one, and this histogram is
    /// measured in the gateway (no lock, no allocation in its loop) and read as counts per
    /// bucket, which its histograms cannot be given.
    static func histogram(_ h: LatencyHistogram) -> String {
        let name = "mstunnel_auth_latency_seconds"
        var text = "# HELP \(name) How long mstunnel-auth took to answer the gateway (logins and re-checks)\n# TYPE \(name) histogram\n"
        var cumulative: UInt64 = 0
        for (i, bound) in LatencyHistogram.bounds.enumerated() {
            cumulative &+= h.counts[i]
            text += "\(name)_bucket{le=\"\(bound)\"} \(cumulative)\n"
        }
        cumulative &+= h.counts[LatencyHistogram.bounds.count]
        text += "\(name)_bucket{le=\"+Inf\"} \(cumulative)\n"
        text += "\(name)_sum \(Double(h.sumNanos) / 1e9)\n\(name)_count \(h.count)\n"
        return text
    }
}
