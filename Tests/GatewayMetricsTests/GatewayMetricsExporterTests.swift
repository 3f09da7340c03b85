import Foundation
import Glibc
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

    /// One HTTP/1.1 GET over a plain socket: status line and body (no client library, so the
    /// sanitizer runs see only the server's code).
    static func get(port: Int, path: String) throws -> (status: String, head: String, body: String) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(connected == 0, "connect: errno \(errno)")
        let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
        #expect(request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) } == request.count)
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            response += buffer[..<n]
        }
        let text = String(decoding: response, as: UTF8.self)
        let parts = text.components(separatedBy: "\r\n\r\n")
        let head = parts.first ?? ""
        // (Not `prefix { $0 != "\r" }`: "\r\n" is one Character.)
        return (head.components(separatedBy: "\r\n").first ?? "", head, parts.dropFirst().joined(separator: "\r\n\r\n"))
    }

    /// The listener as a service (how the control plane runs it; the agent's `start` wraps
    /// the same application), on an ephemeral port.
    @Test func servedOverHTTP() async throws {
        let e = GatewayMetricsExporter()
        e.update(status(rx: 84, tx: 0))
        let (ports, bound) = AsyncStream.makeStream(of: Int.self)
        let app = MetricsHTTPServer.application(host: "127.0.0.1", port: 0, logger: Logger(label: "test"), render: { e.exposition() }) {
            bound.yield($0)
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.run() }
            var next = ports.makeAsyncIterator()
            let port = try #require(await next.next())
            let ok = try Self.get(port: port, path: "/metrics")
            #expect(ok.status == "HTTP/1.1 200 OK")
            #expect(ok.head.lowercased().contains("content-type: text/plain; version=0.0.4"))
            #expect(ok.body.contains(#"mstunnel_tunnel_bytes_total{direction="from_clients",channel="dtls"} 42"#))
            #expect(try Self.get(port: port, path: "/").status == "HTTP/1.1 404 Not Found")
            // A second listener on the same port fails to run: the caller stops with the reason.
            let clash = MetricsHTTPServer.application(host: "127.0.0.1", port: port, logger: Logger(label: "test"), render: { [] })
            await #expect(throws: (any Error).self) { try await clash.run() }
            group.cancelAll()
        }
    }
}
