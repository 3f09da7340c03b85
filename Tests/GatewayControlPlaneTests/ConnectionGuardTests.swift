import Foundation
@testable import GatewayControlPlane
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

/// The HTTPS listener does not let clients hold sockets: a TLS handshake must finish within
/// its deadline, an idle HTTP connection is closed, and one source may hold only so many
/// connections at a time. Real sockets against the real listener.
@Suite struct ConnectionGuardTests {
    /// The start of a ClientHello: a handshake record announcing 512 bytes, of which only
    /// the first few ever come.
    static let halfClientHello: [UInt8] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03]
        + (0..<20).map { _ in UInt8.random(in: 0...255) }

    @Test func silentAndHalfHandshakesAreClosedAtTheDeadlineAndOneSourceIsCapped() async throws {
        let perSource = 4
        // The deadline is long enough that "closed at once" (the cap) and "closed at the
        // deadline" stay apart on a loaded machine: only bounds far from either are asserted.
        let deadline = 6.0
        try await LiveServer.run({ config in
            config.tlsHandshakeTimeout = deadline
            config.maxConnectionsPerSource = perSource
        }) { server in
            let started = ContinuousClock.now
            // From 127.0.0.2: three connections that never send a byte and one that sends half
            // a ClientHello fill its quota.
            var held: [RawConnection] = []
            for _ in 0..<(perSource - 1) {
                held.append(try await RawConnection.open(port: server.port, from: "127.0.0.2"))
            }
            let half = try await RawConnection.open(port: server.port, from: "127.0.0.2")
            try await half.send(Self.halfClientHello)
            held.append(half)

            // One more from the same source is closed at once (long before the deadline).
            let extra = try await RawConnection.open(port: server.port, from: "127.0.0.2")
            let refusedAfter = try await extra.secondsUntilClosed(limit: .seconds(deadline / 2))
            _ = try #require(refusedAfter, "the connection over the per-source limit stays open")

            // Meanwhile the admin API works for another client (127.0.0.1).
            let admin = try server.client()
            let response = try await admin.execute(TestClient.Request(ControlPlane.sitesPath, method: .get, authority: "localhost",
                                                                      headers: server.adminHeaders))
            #expect(response.status == .ok)
            try await admin.shutdown()
            // ... and the held ones are still open, not yet at their deadline.
            if RawConnection.seconds(ContinuousClock.now - started) < deadline / 2 {
                #expect(held.allSatisfy { $0.channel.isActive })
            }

            // At the deadline the server closes every one of them (not before it).
            for connection in held {
                let closed = try await connection.secondsUntilClosed(limit: .seconds(deadline * 5))
                #expect(closed != nil, "a connection without a finished handshake stays open")
            }
            let elapsed = RawConnection.seconds(ContinuousClock.now - started)
            #expect(elapsed >= deadline - 0.2, "closed before the handshake deadline: \(elapsed) s")

            // Their slots are free again: a new connection from 127.0.0.2 is admitted (open
            // for a while, until its own deadline).
            var admitted: RawConnection?
            for _ in 0..<50 {
                let probe = try await RawConnection.open(port: server.port, from: "127.0.0.2")
                if try await probe.secondsUntilClosed(limit: .milliseconds(500)) == nil {
                    admitted = probe
                    break
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(admitted != nil, "the source's slots were not given back")
            await admitted?.close()
        }
    }

    @Test func anIdleHTTPConnectionIsClosed() async throws {
        try await LiveServer.run({ config in
            config.tlsHandshakeTimeout = 1
            config.idleTimeout = 3
        }) { server in
            // TLS done and one request answered on a kept-alive connection; then nothing.
            let connection = try await RawConnection.open(port: server.port, from: "127.0.0.3", tlsTrusting: server.ca)
            let response = try await connection.request("GET", "/healthz", close: false)
            #expect(response.status == 200)
            let afterResponse = ContinuousClock.now
            // Past the handshake deadline (1 s) it is still open: that deadline ended with the handshake.
            try await Task.sleep(for: .milliseconds(1800))
            #expect(connection.channel.isActive)
            let closed = try await connection.secondsUntilClosed(limit: .seconds(10))
            #expect(closed != nil, "an idle connection stays open")
            let idle = RawConnection.seconds(ContinuousClock.now - afterResponse)
            #expect(idle >= 2.5, "closed after \(idle) s, before the idle timeout")
            #expect(idle < 10)
        }
    }

    @Test func limiterCountsPerSourceAndInAll() {
        let limiter = ConnectionLimiter(perSource: 2, total: 3)
        #expect(limiter.admit("a") == .admitted)
        #expect(limiter.admit("a") == .admitted)
        #expect(limiter.admit("a") == .perSourceLimit)
        #expect(limiter.admit("b") == .admitted)
        #expect(limiter.admit("c") == .totalLimit)
        limiter.release("a")
        #expect(limiter.open("a") == 1)
        #expect(limiter.admit("c") == .admitted)
        for key in ["a", "b", "c"] { limiter.release(key) }
        #expect(limiter.openTotal == 0)
        #expect(limiter.open("a") == 0)
        // A release without an admission changes nothing.
        limiter.release("zzz")
        #expect(limiter.openTotal == 0)
    }

    @Test func sourcesAreAddressesAndIPv6Slash64s() throws {
        #expect(SourceAddress.key(try SocketAddress(ipAddress: "192.0.2.7", port: 1234)) == "192.0.2.7")
        #expect(SourceAddress.key(try SocketAddress(ipAddress: "::ffff:192.0.2.7", port: 1234)) == "192.0.2.7")
        let a = SourceAddress.key(try SocketAddress(ipAddress: "2001:db8:1:2::1", port: 1))
        let b = SourceAddress.key(try SocketAddress(ipAddress: "2001:db8:1:2:ffff::9", port: 2))
        let c = SourceAddress.key(try SocketAddress(ipAddress: "2001:db8:1:3::1", port: 1))
        #expect(a == "2001:db8:1:2::/64")
        #expect(a == b)
        #expect(a != c)
        #expect(SourceAddress.key(nil) == "unknown")
    }
}
