import Foundation
import GatewayAgentAPI
@testable import GatewayControlPlane
import Hummingbird
import HummingbirdTesting
import Testing

@Suite struct HealthEvaluatorTests {
    let start = Date(timeIntervalSince1970: 1_800_000_000)

    func inputs(report: HealthReport?, lastCheckin: TimeInterval? = 0, thresholds: [String: ThresholdOverride] = [:],
                applied: Int64 = 1, lastApply: ConfigurationApplyResult? = nil, probeURL: String? = nil) -> HealthInputs {
        var site = SiteRecord(id: "s", displayName: "S")
        site.configurationId = "c"
        site.configurationVersion = 1
        site.internalNetworkProbeUrl = probeURL
        let now = start.addingTimeInterval(1000)
        let server = ServerRecord(id: "v", siteId: "s", displayName: "gw", createdDateTime: start,
                                  lastCheckinDateTime: lastCheckin.map { now.addingTimeInterval(-$0) },
                                  agentVersion: ControlPlaneVersion.string, serverVersion: ControlPlaneVersion.string,
                                  appliedConfigurationVersion: applied, lastApply: lastApply)
        let cert = IssuedCertificate(serial: "01", serverId: "v", notBefore: start, notAfter: start.addingTimeInterval(30 * 86400))
        return HealthInputs(server: server, site: site, latest: report.map { HealthSample(serverId: "v", dateTime: now, report: $0) },
                            agentCertificate: cert, thresholds: thresholds, now: now, offlineAfter: 300, checkinInterval: 60,
                            agentCertificateLifetime: 30 * 86400, expectedVersion: ControlPlaneVersion.string)
    }

    func check(_ e: HealthEvaluation, _ id: String) -> HealthCheck? { e.checks.first { $0.id == id } }

    @Test func healthyWhenEverythingIsWithinThresholds() {
        let e = HealthEvaluator.evaluate(inputs(report: Fixtures.healthReport()))
        #expect(e.status == .healthy, "\(e.checks.filter { $0.status > .healthy })")
    }

    @Test func cpuThresholdsGiveWarningAndUnhealthy() {
        #expect(HealthEvaluator.evaluate(inputs(report: Fixtures.healthReport(cpu: 60))).status == .warning)
        let bad = HealthEvaluator.evaluate(inputs(report: Fixtures.healthReport(cpu: 80)))
        #expect(bad.status == .unhealthy)
        #expect(check(bad, "cpuUsage")?.message.contains("80.0") == true)
        // Custom thresholds move the boundaries.
        let custom = ["cpuUsage": ThresholdOverride(id: "cpuUsage", healthyThreshold: 85, unhealthyThreshold: 95)]
        #expect(HealthEvaluator.evaluate(inputs(report: Fixtures.healthReport(cpu: 80), thresholds: custom)).status == .healthy)
    }

    @Test func diskAndLatencyDirections() {
        #expect(HealthEvaluator.evaluate(inputs(report: Fixtures.healthReport(diskFree: 4_000_000_000))).status == .warning)
        #expect(HealthEvaluator.evaluate(inputs(report: Fixtures.healthReport(diskFree: 2_000_000_000))).status == .unhealthy)
        #expect(HealthEvaluator.evaluate(inputs(report: Fixtures.healthReport(latency: 25))).status == .unhealthy)
    }

    @Test func offlineAfterTheConfiguredSilence() {
        #expect(HealthEvaluator.evaluate(inputs(report: Fixtures.healthReport(), lastCheckin: 299)).status == .healthy)
        let offline = HealthEvaluator.evaluate(inputs(report: Fixtures.healthReport(), lastCheckin: 301))
        #expect(offline.status == .offline)
        #expect(check(offline, "lastCheckin")?.status == .unhealthy)
        #expect(HealthEvaluator.evaluate(inputs(report: nil, lastCheckin: nil)).status == .offline)
    }

    @Test func unknownWithoutReports() {
        #expect(HealthEvaluator.evaluate(inputs(report: nil)).status == .unknown)
    }

    @Test func probeConfigurationGatewayAndTLS() {
        let probe = ProbeReport(url: "http://intranet.example.test/", reachable: false, error: "connection refused")
        let e1 = HealthEvaluator.evaluate(inputs(report: Fixtures.healthReport(probe: probe), probeURL: "http://intranet.example.test/"))
        #expect(e1.status == .unhealthy)
        #expect(check(e1, "internalNetworkProbe")?.message.contains("connection refused") == true)

        let failed = ConfigurationApplyResult(version: 1, success: false, message: "network overlaps a route", dateTime: "2027-01-01T00:00:00Z")
        let e2 = HealthEvaluator.evaluate(inputs(report: Fixtures.healthReport(applied: 0), applied: 0, lastApply: failed))
        #expect(check(e2, "serverConfiguration")?.status == .unhealthy)
        #expect(check(e2, "serverConfiguration")?.message.contains("overlaps") == true)
        #expect(check(HealthEvaluator.evaluate(inputs(report: Fixtures.healthReport(), applied: 0)), "serverConfiguration")?.status == .warning)

        #expect(HealthEvaluator.evaluate(inputs(report: Fixtures.healthReport(gatewayReachable: false))).status == .unhealthy)
        let expiring = HealthEvaluator.evaluate(inputs(report: Fixtures.healthReport(tlsNotAfter: "2027-01-20T00:00:00Z")))
        #expect(check(expiring, "tlsCertificate")?.status != .healthy)
    }

    @Test func refusedInputIsShownButNeverChangesTheStatus() {
        var report = Fixtures.healthReport()
        #expect(check(HealthEvaluator.evaluate(inputs(report: report)), "refusedInput")?.status == .unknown)
        report.gateway.uptimeSeconds = 600
        report.gateway.refused = RefusedInputReport(malformed: ["dtlsReplayed": 20, "dtlsBadRecord": 15, "tlsHandshake": 0],
                                                    connectionsRefused: 12, bans: 1, policyDenials: 0)
        let e = HealthEvaluator.evaluate(inputs(report: report))
        #expect(e.status == .healthy)
        let c = check(e, "refusedInput")
        #expect(c?.status == .informational && c?.value == "35")
        #expect(c?.message == "35 malformed inputs (dtlsReplayed 20, dtlsBadRecord 15); 12 connections refused at accept; 1 addresses banned in 600 s since the gateway started")
        #expect(MetricValues.long("malformedInput", report, at: start) == 35)
        report.gateway.refused = RefusedInputReport()
        #expect(check(HealthEvaluator.evaluate(inputs(report: report)), "refusedInput")?.message == "nothing refused in 600 s since the gateway started")
        report.gateway.refused = nil
        #expect(MetricValues.long("malformedInput", report, at: start) == nil)
    }

    func inputs(received: TimeInterval, dated: TimeInterval? = nil, report: HealthReport = Fixtures.healthReport(),
                lastCheckin: TimeInterval? = 0) -> HealthInputs {
        var i = inputs(report: report, lastCheckin: lastCheckin)
        i.latest = HealthSample(serverId: "v", dateTime: i.now.addingTimeInterval(-(dated ?? received)),
                                receivedDateTime: i.now.addingTimeInterval(-received), report: report)
        i.reportInterval = 60
        return i
    }

    @Test func staleHealthReportWhileCheckingInIsAWarning() {
        let fresh = HealthEvaluator.evaluate(inputs(received: 100))
        #expect(check(fresh, "healthReport")?.status == .healthy)
        #expect(fresh.status == .healthy)
        let stale = HealthEvaluator.evaluate(inputs(received: 200))
        #expect(stale.status == .warning)
        #expect(check(stale, "healthReport")?.status == .warning)
        #expect(check(stale, "healthReport")?.message.contains("200 s ago") == true)
        // The receive time counts, not the agent's date on the report.
        #expect(check(HealthEvaluator.evaluate(inputs(received: 10, dated: 5000)), "healthReport")?.status == .healthy)
        // Offline: the check-in says it all; the report age does not add a warning.
        let offline = HealthEvaluator.evaluate(inputs(received: 1000, lastCheckin: 400))
        #expect(offline.status == .offline)
        #expect(check(offline, "healthReport")?.status == .unknown)
    }

    @Test func certificateExpiryIsEvaluatedNowNotAtReportTime() {
        // The report is 20 days old (stale too); its TLS certificate expired yesterday.
        let now = start.addingTimeInterval(1000)
        let notAfter = GraphDate.string(now.addingTimeInterval(-86400))
        let e = HealthEvaluator.evaluate(inputs(received: 20 * 86400, report: Fixtures.healthReport(tlsNotAfter: notAfter)))
        #expect(check(e, "tlsCertificate")?.status == .unhealthy)
        #expect(check(e, "tlsCertificate")?.message.contains("expired") == true)
    }

    @Test func thresholdValidation() {
        #expect(HealthMetric.cpuUsage.validate(healthy: 80, unhealthy: 70) != nil)
        #expect(HealthMetric.diskSpace.validate(healthy: 2, unhealthy: 3) != nil)
        #expect(HealthMetric.cpuUsage.validate(healthy: 60, unhealthy: 90) == nil)
    }
}

@Suite struct HealthAPITests {
    @Test func thresholdsMetricsAndStatusOverHTTP() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let path = ControlPlane.thresholdsPath
            let (_, list) = try await client.admin(.get, path)
            let cpu = list?["value"]?.array.first { $0["id"]?.string == "cpuUsage" }
            #expect(cpu?["healthyThreshold"] == .int(50))
            #expect(cpu?["defaultUnhealthyThreshold"] == .int(75))
            let (s1, patched) = try await client.admin(.patch, path + "/cpuUsage", #"{"healthyThreshold":70,"unhealthyThreshold":90}"#)
            #expect(s1 == .ok)
            #expect(patched?["healthyThreshold"] == .int(70))
            #expect(patched?["defaultHealthyThreshold"] == .int(50))
            let (s2, _) = try await client.admin(.patch, path + "/cpuUsage", #"{"healthyThreshold":95}"#)
            #expect(s2 == .badRequest)
            let (s3, _) = try await client.admin(.get, path + "/noSuchMetric")
            #expect(s3 == .notFound)

            let (_, siteId) = try await Fixtures.siteWithConfiguration(client)
            let e = try await env.enroll(client: client, siteId: siteId)
            _ = try await env.checkin(e, applied: 1)
            let now = GraphDate.string(env.clock.now())
            _ = try await env.controlPlane.receiveReports(server: e.server, batch: ReportBatch(items: [
                ReportItem(id: "h1", createdDateTime: now, health: Fixtures.healthReport(cpu: 80)),
            ]))
            let serverPath = ControlPlane.sitesPath + "/\(siteId)/microsoftTunnelServers/\(e.server.id)"
            // 80 % is a warning under the custom thresholds (70/90).
            let (_, server) = try await client.admin(.get, serverPath)
            #expect(server?["tunnelServerHealthStatus"]?.string == "warning")
            let (_, filtered) = try await client.admin(.get, ControlPlane.sitesPath + "/\(siteId)/microsoftTunnelServers?$filter=tunnelServerHealthStatus%20eq%20'warning'")
            #expect(filtered?["value"]?.array.count == 1)

            let (s4, metrics) = try await client.admin(.post, serverPath + "/getHealthMetrics", #"{"metricNames":["cpuUsage","diskSpace"]}"#)
            #expect(s4 == .ok)
            let values = metrics?["value"]?.array ?? []
            #expect(values.first { $0["name"]?.string == "cpuUsage" }?["value"] == .int(80))
            #expect(values.first { $0["name"]?.string == "diskSpace" }?["value"] == .int(50))

            let (s5, series) = try await client.admin(.post, serverPath + "/getHealthMetricTimeSeries", #"{"metricName":"cpuUsage"}"#)
            #expect(s5 == .ok)
            #expect(series?["value"]?.array.count == 1)
            #expect(series?["value"]?.array.first?["value"] == .int(80))
            let (s6, _) = try await client.admin(.post, serverPath + "/getHealthMetricTimeSeries", #"{"metricName":"nonsense"}"#)
            #expect(s6 == .badRequest)

            let (_, checks) = try await client.admin(.get, serverPath + "/healthChecks")
            #expect(checks?["tunnelServerHealthStatus"]?.string == "warning")
            #expect(checks?["value"]?.array.first { $0["id"]?.string == "cpuUsage" }?["status"]?.string == "warning")

            env.clock.advance(301)
            let (_, later) = try await client.admin(.get, serverPath + "?$select=tunnelServerHealthStatus")
            #expect(later?["tunnelServerHealthStatus"]?.string == "offline")
        }
    }
}

/// Hummingbird's metric names made Prometheus names (`mstunnel-control --metrics-listen`).
@Suite struct ControlPlaneMetricsNameTests {
    @Test func hummingbirdsNamesAndLabelsAreRenamed() {
        let (name, labels) = ControlPlaneMetrics.prometheusNames("http.server.request.duration",
                                                                 [("http.route", "/agent/v1/checkin"), ("http.request.method", "POST"), ("http.response.status_code", "200")])
        #expect(name == "mstunnel_control_http_request_duration_seconds")
        #expect(labels.map(\.0) == ["route", "method", "status"] && labels.map(\.1) == ["/agent/v1/checkin", "POST", "200"])
        #expect(ControlPlaneMetrics.prometheusNames("hb.requests", []).0 == "mstunnel_control_http_requests_total")
        let other = ControlPlaneMetrics.prometheusNames("some.other.metric", [("a.b", "c")])
        #expect(other.0 == "some_other_metric" && other.1.map(\.0) == ["a_b"] && other.1.map(\.1) == ["c"])
        #expect(ControlPlaneMetrics.prometheusNames("mstunnel_control_servers", [("status", "healthy")]).0 == "mstunnel_control_servers")
    }
}
