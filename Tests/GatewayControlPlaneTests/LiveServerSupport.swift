import Crypto
import Foundation
import GatewayAuth
@testable import GatewayControlPlane
import Hummingbird
import HummingbirdTesting
import NIOCore
import NIOPosix
import NIOSSL
import SwiftASN1
import Testing
import X509

/// A real `mstunnel-control` listener (`ControlPlaneServer`, as `serve` runs it) on
/// 127.0.0.1 with an ephemeral port and a fresh state directory.
struct LiveServer {
    let port: Int
    let prepared: ControlPlaneServer.Prepared
    let adminToken: String
    var ca: CertificateAuthority { prepared.controlPlane.ca }

    final class PortBox: @unchecked Sendable {
        private let lock = NSLock()
        private var port: Int?
        func set(_ p: Int?) { lock.withLock { port = p } }
        func get() -> Int? { lock.withLock { port } }
    }

    /// Runs `body` against a started server; stops it afterwards.
    static func run(_ configure: (inout ServeConfiguration) -> Void = { _ in },
                    _ body: (LiveServer) async throws -> Void) async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mstc-live-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var config = ServeConfiguration()
        config.stateDirectory = dir
        config.listenPort = 0
        configure(&config)
        let prepared = try await ControlPlaneServer.prepare(config, logger: quietLogger)
        let token = try LocalAdminToken.read(stateDirectory: dir)
        let box = PortBox()
        let app = try ControlPlaneServer.application(prepared, host: "127.0.0.1", port: 0, logger: quietLogger) { channel in
            box.set(channel.localAddress?.port)
        }
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await app.run() }
            defer { tasks.cancelAll() }
            var port: Int?
            for _ in 0..<500 where port == nil {
                try await Task.sleep(for: .milliseconds(10))
                port = box.get()
            }
            try await body(LiveServer(port: try #require(port), prepared: prepared, adminToken: token))
        }
    }

    /// Hummingbird's test client over TLS (from 127.0.0.1), optionally with a client certificate.
    func client(identity: (Certificate, P256.Signing.PrivateKey)? = nil) throws -> TestClient {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates([try NIOSSLCertificate(bytes: ca.certificateDER, format: .der)])
        if let (cert, key) = identity {
            var s = DER.Serializer()
            try s.serialize(cert)
            tls.certificateChain = [.certificate(try NIOSSLCertificate(bytes: s.serializedBytes, format: .der))]
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(key.pemRepresentation.utf8), format: .pem))
        }
        let c = TestClient(host: "127.0.0.1", port: port, configuration: .init(tlsConfiguration: tls, serverName: "localhost"))
        c.connect()
        return c
    }

    var adminHeaders: HTTPFields { [.authorization: "Bearer \(adminToken)", .contentType: "application/json"] }
}

/// Everything a connection received, for clients that read raw bytes.
final class ByteCollector: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    private let lock = NSLock()
    private var received: [UInt8] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        let bytes = buffer.readBytes(length: buffer.readableBytes) ?? []
        lock.withLock { received += bytes }
    }

    var bytes: [UInt8] { lock.withLock { received } }
    var text: String { String(decoding: bytes, as: UTF8.self) }
}

/// A client connection from a chosen source address (any of 127.0.0.0/8 on Linux), so
/// tests can be two different clients: plain TCP that sends what the test says, or TLS
/// trusting the control plane's CA.
struct RawConnection {
    let channel: any Channel
    let collector: ByteCollector

    static func open(port: Int, from source: String, tlsTrusting ca: CertificateAuthority? = nil) async throws -> RawConnection {
        let collector = ByteCollector()
        var sslContext: NIOSSLContext?
        if let ca {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .certificates([try NIOSSLCertificate(bytes: ca.certificateDER, format: .der)])
            sslContext = try NIOSSLContext(configuration: tls)
        }
        let context = sslContext
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(to: try SocketAddress(ipAddress: source, port: 0))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let context {
                        try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: context, serverHostname: "localhost"))
                    }
                    try channel.pipeline.syncOperations.addHandler(collector)
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return RawConnection(channel: channel, collector: collector)
    }

    func send(_ bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(ByteBuffer(bytes: bytes)).get()
    }

    /// Seconds until the server closed the connection, nil when it is still open after `limit`.
    func secondsUntilClosed(limit: Duration) async throws -> Double? {
        let start = ContinuousClock.now
        while ContinuousClock.now - start < limit {
            if !channel.isActive { return Self.seconds(ContinuousClock.now - start) }
            try await Task.sleep(for: .milliseconds(20))
        }
        return channel.isActive ? nil : Self.seconds(ContinuousClock.now - start)
    }

    func close() async {
        try? await channel.close().get()
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}

struct RawResponse {
    var status: Int
    var headers: [String: String]
    var body: String
    var json: JSONValue? { try? JSONDecoder().decode(JSONValue.self, from: Data(body.utf8)) }
}

extension RawConnection {
    /// One HTTP/1.1 request; with `close`, reads until the server closes, else until the
    /// response's Content-Length is in.
    func request(_ method: String, _ path: String, headers: [(String, String)] = [], body: String = "",
                 close: Bool = true) async throws -> RawResponse {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: localhost\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if !body.isEmpty { head += "Content-Length: \(body.utf8.count)\r\n" }
        if close { head += "Connection: close\r\n" }
        try await send(Array((head + "\r\n" + body).utf8))
        for _ in 0..<500 {
            if let response = Self.parse(collector.text), close ? !channel.isActive : true { return response }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw PKIError("no complete response: \(collector.text.prefix(200))")
    }

    static func parse(_ text: String) -> RawResponse? {
        guard let split = text.range(of: "\r\n\r\n") else { return nil }
        let lines = text[..<split.lowerBound].components(separatedBy: "\r\n")
        guard let statusLine = lines.first, statusLine.hasPrefix("HTTP/1.1 "),
              let status = Int(statusLine.dropFirst(9).prefix(3)) else { return nil }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let body = String(text[split.upperBound...])
        if let length = headers["content-length"].flatMap(Int.init), body.utf8.count < length { return nil }
        return RawResponse(status: status, headers: headers, body: body)
    }
}
