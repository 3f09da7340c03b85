import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import GatewayMetrics
import GatewayWire
import Logging
import Testing

/// The exposition read back: what Prometheus would scrape after each reading.
@Suite struct GatewayMetricsExporterTests {
    func status(startedAt: Int64 = 1_800_000_000, rx: UInt64, tx: UInt64, sessions: Int = 2, created: Int = 5,
                replayed: UInt64 = 0) -> ServerStatusResponse {
        var s = ServerStatusResponse(version: "t", startedAt: startedAt, listenPort: 443, tunDevice: "tun0", activeSessions: sessions,
                                     connectedSessions: sessions - 1, totalSessions: created, authFailures: 1, poolSize: 254, poolInUse: sessions,
                                     poolExhaustedCount: 0, rxBytes: rx, txBytes: tx, authAvailable: true)
        s.drops = PacketDrops(noSession: 3, queueFull: 0, spoofed: 1, unsupported: 0, unknownDatagram: 2)
        s.dtlsSessions = 1
        var m = MalformedInputCounts()
        m.dtlsReplayed = replayed
        s.malformed = m
        s.connectionsRefused = 4
        var dtls = ChannelTraffic()
        dtls.bytesFromClients = rx / 2
        dtls.packetsFromClients = 10
        var tls = ChannelTraffic()
        tls.bytesFromClients = rx - rx / 2
        tls.bytesToClients = tx
        (s.tls, s.dtls) = (tls, dtls)
        var logins = LoginOutcomes()
        logins.authUnavailable = 2
        s.logins = logins
        var h = LatencyHistogram()
        for ms in [0.5, 3.0, 3.0, 40.0, 20_000.0] { h.record(nanos: UInt64(ms * 1e6)) }
        s.authLatency = h
        return s
    }

    /// `name{labels} value` lines of the exposition, by series.
    func series(_ e: GatewayMetricsExporter) -> [String: Double] {
        var out: [String: Double] = [:]
        for line in String(decoding: e.exposition(), as: UTF8.self).split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let v = Double(line[line.index(after: space)...]) else { continue }
            out[String(line[..<space])] = v
        }
        return out
    }

    @Test func countersMirrorTheGatewayAndGaugesAreSet() {
        let e = GatewayMetricsExporter()
        e.update(status(rx: 1000, tx: 2000))
        var m = series(e)
        #expect(m["mstunnel_gateway_up"] == 1)
        #expect(m[#"mstunnel_sessions{state="active"}"#] == 2 && m[#"mstunnel_sessions{state="connected"}"#] == 1)
        #expect(m[#"mstunnel_tunnel_bytes_total{direction="from_clients",channel="dtls"}"#] == 500)
        #expect(m[#"mstunnel_tunnel_bytes_total{direction="from_clients",channel="tls"}"#] == 500)
        #expect(m[#"mstunnel_tunnel_bytes_total{direction="to_clients",channel="tls"}"#] == 2000)
        #expect(m[#"mstunnel_tunnel_packets_total{direction="from_clients",channel="dtls"}"#] == 10)
        #expect(m[#"mstunnel_logins_total{outcome="success"}"#] == 5 && m[#"mstunnel_logins_total{outcome="rejected"}"#] == 1)
        #expect(m[#"mstunnel_logins_total{outcome="auth_unavailable"}"#] == 2)
        // The histogram: cumulative buckets, +Inf = count, sum in seconds.
        #expect(m[#"mstunnel_auth_latency_seconds_bucket{le="0.001"}"#] == 1)
        #expect(m[#"mstunnel_auth_latency_seconds_bucket{le="0.005"}"#] == 3)
        #expect(m[#"mstunnel_auth_latency_seconds_bucket{le="10.0"}"#] == 4)
        #expect(m[#"mstunnel_auth_latency_seconds_bucket{le="+Inf"}"#] == 5 && m["mstunnel_auth_latency_seconds_count"] == 5)
        #expect(abs((m["mstunnel_auth_latency_seconds_sum"] ?? 0) - 20.0465) < 1e-9)
        #expect(m[#"mstunnel_packets_dropped_total{reason="spoofed"}"#] == 1)
        #expect(m[#"mstunnel_malformed_input_total{class="dtlsReplayed"}"#] == 0)
        #expect(m["mstunnel_connections_refused_total"] == 4)
        #expect(m["mstunnel_pool_addresses"] == 254 && m["mstunnel_pool_addresses_in_use"] == 2)

        e.update(status(rx: 1500, tx: 2100, sessions: 3, created: 6, replayed: 7))
        m = series(e)
        #expect(m[#"mstunnel_tunnel_bytes_total{direction="from_clients",channel="dtls"}"#] == 750)
        #expect(m[#"mstunnel_malformed_input_total{class="dtlsReplayed"}"#] == 7)
        #expect(m["mstunnel_auth_latency_seconds_count"] == 5, "the same gateway reading again: no growth")
        #expect(m[#"mstunnel_sessions{state="active"}"#] == 3)
        let text = String(decoding: e.exposition(), as: UTF8.self)
        #expect(text.contains("# TYPE mstunnel_tunnel_bytes_total counter"))
        #expect(text.contains("# HELP mstunnel_packets_dropped_total Tunnel packets and datagrams dropped, by reason"))
    }

    @Test func aGatewayRestartNeverTakesACounterBack() {
        let e = GatewayMetricsExporter()
        e.update(status(rx: 1000, tx: 0))
        e.gatewayUnreachable()
        #expect(series(e)["mstunnel_gateway_up"] == 0)
        #expect(series(e)[#"mstunnel_tunnel_bytes_total{direction="from_clients",channel="dtls"}"#] == 500, "kept while the gateway is away")
        // A new process (another start time) counts from 0 again: all of it is growth.
        e.update(status(startedAt: 1_800_000_100, rx: 300, tx: 0))
        let m = series(e)
        #expect(m[#"mstunnel_tunnel_bytes_total{direction="from_clients",channel="dtls"}"#] == 650)
        #expect(m["mstunnel_auth_latency_seconds_count"] == 10)
        #expect(m["mstunnel_gateway_up"] == 1 && m["mstunnel_gateway_start_time_seconds"] == 1_800_000_100)
    }

    @Test func listenAddressesAreParsed() {
        #expect(MetricsHTTPServer.parse(listen: "127.0.0.1:9464")! == ("127.0.0.1", 9464))
        #expect(MetricsHTTPServer.parse(listen: "[::1]:9464")! == ("::1", 9464))
        #expect(MetricsHTTPServer.parse(listen: "9464") == nil)
        #expect(MetricsHTTPServer.parse(listen: "host:0") == nil)
        #expect(MetricsHTTPServer.parse(listen: ":9464") == nil)
        #expect(MetricsHTTPServer.parse(listen: "host:99999") == nil)
    }

    @Test func servedOverHTTP() async throws {
        let e = GatewayMetricsExporter()
        e.update(status(rx: 84, tx: 0))
        let port = try MetricsHTTPServer.start(host: "127.0.0.1", port: 0, logger: Logger(label: "test")) { e.exposition() }
        let (data, response) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(port)/metrics")!)
        #expect((response as? HTTPURLResponse)?.statusCode == 200)
        #expect((response as? HTTPURLResponse)?.value(forHTTPHeaderField: "Content-Type")?.hasPrefix("text/plain; version=0.0.4") == true)
        #expect(String(decoding: data, as: UTF8.self).contains(#"mstunnel_tunnel_bytes_total{direction="from_clients",channel="dtls"} 42"#))
        let (_, other) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(port)/")!)
        #expect((other as? HTTPURLResponse)?.statusCode == 404)
        #expect(throws: MetricsHTTPServer.StartError.self) {
            try MetricsHTTPServer.start(host: "127.0.0.1", port: port, logger: Logger(label: "test")) { [] }
        }
    }
}
