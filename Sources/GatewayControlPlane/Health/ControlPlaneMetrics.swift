import CoreMetrics

/// The control plane's own metrics, through swift-metrics (docs/metrics.md). They go
/// wherever `MetricsSystem` was bootstrapped: `mstunnel-control --metrics-listen` bootstraps
/// swift-prometheus (`ControlPlaneMetrics.prometheusNames` names them); without it they cost
/// a no-op call.
public enum ControlPlaneMetrics {
    static func checkin() {
        Counter(label: "mstunnel_control_agent_checkins_total").increment()
    }

    /// One report batch stored: its items by kind, and how many were already stored (a retry).
    static func reports(health: Int, events: Int, duplicates: Int) {
        Counter(label: "mstunnel_control_reports_received_total", dimensions: [("kind", "health")]).increment(by: health)
        Counter(label: "mstunnel_control_reports_received_total", dimensions: [("kind", "event")]).increment(by: events)
        Counter(label: "mstunnel_control_reports_duplicate_total").increment(by: duplicates)
    }

    /// Servers by health status, after each `HealthWatch` pass.
    static func servers(_ byStatus: [TunnelServerHealthStatus: Int]) {
        for status in TunnelServerHealthStatus.allCases where status != .unknownFutureValue {
            Gauge(label: "mstunnel_control_servers", dimensions: [("status", status.rawValue)]).record(byStatus[status] ?? 0)
        }
    }

    /// Hummingbird's `MetricsMiddleware` names its metrics the OpenTelemetry way
    /// (`http.server.request.duration`, label `http.route`), which Prometheus does not allow:
    /// given as swift-prometheus's sanitizer, this renames them into the control plane's
    /// namespace and passes ours unchanged.
    public static func prometheusNames(_ name: String, _ labels: [(String, String)]) -> (String, [(String, String)]) {
        let renamed: String
        switch name {
        case "hb.requests": renamed = "mstunnel_control_http_requests_total"
        case "hb.request.errors": renamed = "mstunnel_control_http_request_errors_total"
        case "http.server.request.duration": renamed = "mstunnel_control_http_request_duration_seconds"
        case "http.server.active_requests": renamed = "mstunnel_control_http_active_requests"
        default: renamed = name.replacingDots()
        }
        let relabeled = labels.map { (key, value) -> (String, String) in
            switch key {
            case "http.route": return ("route", value)
            case "http.request.method": return ("method", value)
            case "http.response.status_code": return ("status", value)
            default: return (key.replacingDots(), value)
            }
        }
        return (renamed, relabeled)
    }
}

extension String {
    fileprivate func replacingDots() -> String { String(map { $0 == "." ? "_" : $0 }) }
}
