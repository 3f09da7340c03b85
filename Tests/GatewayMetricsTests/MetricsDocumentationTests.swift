import Foundation
import GatewayMetrics
import GatewayWire
import Testing

/// docs/metrics.md, the exporter and the Grafana dashboard (deploy/grafana/mstunnel.json) name
/// the same metrics: a renamed metric cannot leave a dead panel or an undocumented series.
@Suite struct MetricsDocumentationTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func text(_ path: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
    }

    /// Metric families named in `text` (`mstunnel_…`), with a histogram's series suffixes taken off.
    static func families(in text: String) -> Set<String> {
        let regex = try! NSRegularExpression(pattern: "mstunnel_[a-z_]+")
        let ns = text as NSString
        return Set(regex.matches(in: text, range: NSRange(location: 0, length: ns.length)).map { m -> String in
            var name = ns.substring(with: m.range)
            for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) && name.contains("_seconds") {
                name = String(name.dropLast(suffix.count))
            }
            return name
        })
    }

    @Test func everyExportedMetricIsDocumented() throws {
        let documented = Self.families(in: try Self.text("docs/metrics.md"))
        let e = GatewayMetricsExporter()
        var s = ServerStatusResponse(version: "t", startedAt: 1, listenPort: 443, tunDevice: "t", activeSessions: 1, connectedSessions: 1,
                                     totalSessions: 1, authFailures: 0, poolSize: 1, poolInUse: 1, poolExhaustedCount: 0, rxBytes: 1, txBytes: 1,
                                     authAvailable: true)
        s.drops = PacketDrops(noSession: 0, queueFull: 0, spoofed: 0, unsupported: 0, unknownDatagram: 0)
        (s.dtlsSessions, s.dtlsDirectSessions, s.acksCoalesced, s.transitPackets, s.transitNanos) = (1, 1, 0, 1, 1)
        (s.malformed, s.connectionsRefused, s.bansSinceStart, s.policyDenials) = (MalformedInputCounts(), 0, 0, 0)
        (s.tls, s.dtls, s.logins, s.authLatency) = (ChannelTraffic(), ChannelTraffic(), LoginOutcomes(), LatencyHistogram())
        e.update(s)
        let exported = Self.families(in: String(decoding: e.exposition(), as: UTF8.self))
        #expect(exported.count >= 15)
        #expect(exported.subtracting(documented).isEmpty, "not in docs/metrics.md: \(exported.subtracting(documented).sorted())")
    }

    @Test func theDashboardUsesOnlyDocumentedMetrics() throws {
        let documented = Self.families(in: try Self.text("docs/metrics.md"))
        let data = try #require(try Self.text("deploy/grafana/mstunnel.json").data(using: .utf8))
        let dashboard = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let panels = try #require(dashboard["panels"] as? [[String: Any]])
        #expect(panels.count >= 10)
        var used = Set<String>()
        for panel in panels {
            let targets = try #require(panel["targets"] as? [[String: Any]], "panel \(panel["title"] ?? "?") has no targets")
            for t in targets { used.formUnion(Self.families(in: t["expr"] as? String ?? "")) }
        }
        #expect(used.count >= 15)
        #expect(used.subtracting(documented).isEmpty, "the dashboard uses undocumented metrics: \(used.subtracting(documented).sorted())")
    }
}
