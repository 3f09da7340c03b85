import Foundation
import GatewayAuth
import GatewayIPC
import GatewayWire
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite struct AuthServerTests {
    /// A short socket path (sun_path holds 107 bytes) in a fresh private directory.
    static func socketDirectory() throws -> String {
        let dir = "/tmp/mst-auth-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        return dir
    }

    /// Reads validateToken answers until `count` have arrived.
    static func collect(_ count: Int, from c: WireConnection) throws -> [UInt64: ValidateTokenResponse] {
        var seen: [UInt64: ValidateTokenResponse] = [:]
        while seen.count < count, let envelope = try c.receive() {
            if case .response(.validateToken(let r)) = envelope.message { seen[envelope.id] = r }
        }
        return seen
    }

    /// Reads the next envelope; nil when the server closed the connection (EOF or reset).
    static func nextOrClosed(_ c: WireConnection) -> WireEnvelope? {
        do {
            return try c.receive()
        } catch {
            return nil
        }
    }

    @Test func servesValidatesAndSurvivesBadPeers() async throws {
        let dir = try Self.socketDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/auth.sock"
        let clock = TestClock()
        let logs = LogCapture()
        let validator = makeValidator(clock: clock, logger: logs.logger)
        let server = AuthServer(socketPath: path, peerPolicy: PeerPolicy(),
                                handler: AuthRequestHandler(validator: validator, logger: logs.logger), logger: logs.logger)
        try server.start()

        var st = stat()
        #expect(stat(path, &st) == 0)
        #expect(st.st_mode & 0o777 == 0o660)

        let good = try await Mint.rs256(Mint.claims(now: clock.seconds))
        let bad = try await Mint.rs256(Mint.claims(now: clock.seconds), key: TestKeys.other)

        let gateway = try WireConnection.connect(path: path)
        gateway.setReceiveTimeout(seconds: 30)  // a hang fails the test instead of blocking it

        let ping = try await offPool { try gateway.call(.ping(PingRequest()), id: 1) }
        #expect(ping == .ping(PingResponse(process: "mstunnel-auth", version: AuthVersion.string)))

        // Two validations in flight at once; answers correlate by id whatever their order.
        try gateway.send(WireEnvelope(id: 10, .request(.validateToken(ValidateTokenRequest(token: good, transport: .bearer, peerAddress: "192.0.2.7")))))
        try gateway.send(WireEnvelope(id: 11, .request(.validateToken(ValidateTokenRequest(token: bad, transport: .cookie)))))
        let answers = try await offPool { try Self.collect(2, from: gateway) }
        #expect(answers[10]?.identity?.userId == "user-oid-1")
        #expect(answers[10]?.identity?.deviceId == "device-42")
        #expect(answers[11]?.rejection?.code == .badSignature)

        let other = try await offPool { try gateway.call(.serverStatus(ServerStatusRequest()), id: 12) }
        guard case .error(let e) = other else {
            Issue.record("serverStatus must be answered with an error, got \(other)")
            return
        }
        #expect(e.code == WireErrorResponse.unknownRequest)

        // Garbage on a second connection: that connection is closed, the server lives on.
        let garbage = try WireConnection.connect(path: path)
        garbage.setReceiveTimeout(seconds: 30)
        try UnixSocket.writeAll(fd: garbage.fd, Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        #expect(try await offPool { Self.nextOrClosed(garbage) } == nil)

        // A frame from a future protocol version is refused and its connection closed.
        let future = try WireConnection.connect(path: path)
        future.setReceiveTimeout(seconds: 30)
        try UnixSocket.writeAll(fd: future.fd, [0x4D, 0x53, 0x54, 0x02, 0, 0, 0, 2] + Array("{}".utf8))
        #expect(try await offPool { Self.nextOrClosed(future) } == nil)

        // An oversize length and a malformed payload: the same.
        let huge = try WireConnection.connect(path: path)
        huge.setReceiveTimeout(seconds: 30)
        try UnixSocket.writeAll(fd: huge.fd, [0x4D, 0x53, 0x54, WireFrame.version, 0x7F, 0xFF, 0xFF, 0xFF])
        #expect(try await offPool { Self.nextOrClosed(huge) } == nil)

        let malformed = try WireConnection.connect(path: path)
        malformed.setReceiveTimeout(seconds: 30)
        let payload = Array(#"{"id":1,"kind":"request","type":"launchMissiles","body":{}}"#.utf8)
        try UnixSocket.writeAll(fd: malformed.fd, [0x4D, 0x53, 0x54, WireFrame.version, 0, 0, 0, UInt8(payload.count)] + payload)
        #expect(try await offPool { Self.nextOrClosed(malformed) } == nil)

        // The first connection still works, and so does a new one.
        #expect(try await offPool { try gateway.call(.ping(PingRequest()), id: 20) } == ping)
        let again = try WireConnection.connect(path: path)
        again.setReceiveTimeout(seconds: 30)
        #expect(try await offPool { try again.call(.ping(PingRequest()), id: 1) } == ping)

        server.stop()
        #expect(!FileManager.default.fileExists(atPath: path))

        let lines = logs.all
        #expect(lines.contains { $0.contains("auth.accepted") && $0.contains("user.id=user-oid-1") && $0.contains("kid=rsa-1") && $0.contains("transport=bearer") })
        #expect(lines.contains { $0.contains("auth.rejected") && $0.contains("reason.code=badSignature") && $0.contains("sub.hash=") })
        #expect(lines.contains { $0.contains("auth.ipc.bad_frame") && $0.contains("unsupportedVersion") })
        #expect(lines.contains { $0.contains("auth.ipc.bad_frame") && $0.contains("badMagic") })
        #expect(lines.contains { $0.contains("auth.ipc.bad_frame") && $0.contains("oversize") })
        #expect(lines.contains { $0.contains("auth.ipc.bad_frame") && $0.contains("launchMissiles") })
        // Never a token, a signature or even a payload segment in the log.
        for token in [good, bad] {
            for part in token.split(separator: ".") {
                #expect(!lines.contains { $0.contains(part) })
            }
        }
        #expect(!lines.contains { $0.contains("user-sub-1") })
    }

    @Test func manyConcurrentRequestsOnOneConnection() async throws {
        let dir = try Self.socketDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/auth.sock"
        let clock = TestClock()
        let validator = makeValidator(clock: clock)
        let server = AuthServer(socketPath: path, peerPolicy: PeerPolicy(),
                                handler: AuthRequestHandler(validator: validator, logger: quietLogger), logger: quietLogger)
        try server.start()
        defer { server.stop() }

        let good = try await Mint.es256(Mint.claims(now: clock.seconds))
        let expired = try await Mint.es256(Mint.claims(now: clock.seconds, exp: -3600))
        let c = try WireConnection.connect(path: path)
        c.setReceiveTimeout(seconds: 30)
        for id in 1...40 {
            let token = id.isMultiple(of: 2) ? good : expired
            try c.send(WireEnvelope(id: UInt64(id), .request(.validateToken(ValidateTokenRequest(token: token, transport: .password)))))
        }
        let seen = try await offPool { try Self.collect(40, from: c) }
        #expect(seen.count == 40)
        for (id, r) in seen {
            if id.isMultiple(of: 2) {
                #expect(r.identity != nil)
            } else {
                #expect(r.rejection?.code == .expired)
            }
        }
    }

    @Test func connectionsBeyondTheLimitAreRefused() async throws {
        let dir = try Self.socketDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/auth.sock"
        let logs = LogCapture()
        let server = AuthServer(socketPath: path, peerPolicy: PeerPolicy(),
                                handler: AuthRequestHandler(validator: makeValidator(), logger: quietLogger),
                                maxConnections: 1, logger: logs.logger)
        try server.start()
        defer { server.stop() }
        let first = try WireConnection.connect(path: path)
        first.setReceiveTimeout(seconds: 30)
        _ = try await offPool { try first.call(.ping(PingRequest()), id: 1) }
        let second = try WireConnection.connect(path: path)
        second.setReceiveTimeout(seconds: 30)
        #expect(try await offPool { Self.nextOrClosed(second) } == nil)
        #expect(logs.all.contains { $0.contains("auth.peer.refused") && $0.contains("too many connections") })
        #expect(try await offPool { try first.call(.ping(PingRequest()), id: 2) } == .ping(PingResponse(process: "mstunnel-auth", version: AuthVersion.string)))
    }

    @Test func stopClosesOpenConnections() async throws {
        let dir = try Self.socketDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/auth.sock"
        let server = AuthServer(socketPath: path, peerPolicy: PeerPolicy(),
                                handler: AuthRequestHandler(validator: makeValidator(), logger: quietLogger), logger: quietLogger)
        try server.start()
        let c = try WireConnection.connect(path: path)
        c.setReceiveTimeout(seconds: 30)
        _ = try await offPool { try c.call(.ping(PingRequest()), id: 1) }
        server.stop()
        #expect(try await offPool { Self.nextOrClosed(c) } == nil)
        #expect(server.connectionCount == 0)
    }
}
