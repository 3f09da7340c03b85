import Crypto
import Foundation
import GatewayAuth
import GatewayAgentAPI
@testable import GatewayControlPlane
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import NIOSSL
import SwiftASN1
import Testing
import X509

/// The real listener: HTTPS on 127.0.0.1 with an ephemeral port, optional client
/// certificates, the agent API authenticated by the certificate the handshake verified.
@Suite struct MutualTLSTests {
    final class PortBox: @unchecked Sendable {
        let lock = NSLock()
        var port: Int?
        func set(_ p: Int?) { lock.withLock { port = p } }
        func get() -> Int? { lock.withLock { port } }
    }

    func der(_ cert: Certificate) throws -> [UInt8] {
        var s = DER.Serializer()
        try s.serialize(cert)
        return s.serializedBytes
    }

    func client(port: Int, ca: CertificateAuthority, identity: (Certificate, P256.Signing.PrivateKey)?) throws -> TestClient {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates([try NIOSSLCertificate(bytes: ca.certificateDER, format: .der)])
        if let (cert, key) = identity {
            tls.certificateChain = [.certificate(try NIOSSLCertificate(bytes: try der(cert), format: .der))]
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(key.pemRepresentation.utf8), format: .pem))
        }
        let c = TestClient(host: "127.0.0.1", port: port, configuration: .init(tlsConfiguration: tls, serverName: "localhost"))
        c.connect()
        return c
    }

    func post(_ c: TestClient, _ path: String, _ body: String, headers: HTTPFields = [.contentType: "application/json"]) async throws -> TestClient.Response {
        try await c.execute(TestClient.Request(path, method: .post, authority: "localhost", headers: headers, body: ByteBuffer(string: body)))
    }

    @Test func enrollmentThenCheckinOverMutualTLS() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mstc-tls-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var config = ServeConfiguration()
        config.stateDirectory = dir
        config.listenPort = 0
        let logger = quietLogger
        let prepared = try await ControlPlaneServer.prepare(config, logger: logger)
        let token = try LocalAdminToken.read(stateDirectory: dir)
        let ca = prepared.controlPlane.ca
        let box = PortBox()
        let app = try ControlPlaneServer.application(prepared, host: "127.0.0.1", port: 0, logger: logger) { channel in
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
            let p = try #require(port)

            // Admin over TLS without a client certificate: create a site and a join token.
            let admin = try client(port: p, ca: ca, identity: nil)
            let auth: HTTPFields = [.authorization: "Bearer \(token)", .contentType: "application/json"]
            let site = try await post(admin, ControlPlane.sitesPath, #"{"displayName":"TLS site"}"#, headers: auth)
            #expect(site.status == .created)
            let siteId = try #require(try JSONDecoder().decode(JSONValue.self, from: Data(buffer: site.body ?? ByteBuffer()))["id"]?.string)
            let joined = try await post(admin, ControlPlane.sitesPath + "/\(siteId)/createJoinToken", "", headers: auth)
            let joinToken = try #require(try JSONDecoder().decode(JSONValue.self, from: Data(buffer: joined.body ?? ByteBuffer()))["joinToken"]?.string)

            // Enrollment needs no client certificate.
            let key = AgentKey()
            let request = EnrollmentRequest(joinToken: joinToken, csrPEM: try key.csrPEM(), hostname: "gw-tls", agentVersion: "0.1.0")
            let enrolled = try await post(admin, AgentAPI.basePath + "/enroll", String(decoding: try JSONEncoder().encode(request), as: UTF8.self))
            #expect(enrolled.status == .ok)
            let response = try JSONDecoder().decode(EnrollmentResponse.self, from: Data(buffer: enrolled.body ?? ByteBuffer()))
            let leaf = try firstCertificate(response.certificateChainPEM)

            // Check-in without the certificate: 401. With it: 200.
            let checkin = String(decoding: try JSONEncoder().encode(CheckinRequest(agentVersion: "0.1.0", serverVersion: nil, appliedConfigurationVersion: 0, lastApply: nil)), as: UTF8.self)
            let anonymous = try await post(admin, AgentAPI.basePath + "/checkin", checkin)
            #expect(anonymous.status == .unauthorized)
            try await admin.shutdown()

            let agent = try client(port: p, ca: ca, identity: (leaf, key.key))
            let ok = try await post(agent, AgentAPI.basePath + "/checkin", checkin)
            #expect(ok.status == .ok)
            let answer = try JSONDecoder().decode(CheckinResponse.self, from: Data(buffer: ok.body ?? ByteBuffer()))
            #expect(answer.serverId == response.serverId)
            #expect(answer.renewAfter != nil)
            try await agent.shutdown()

            // After the admin deletes the server, the same certificate is refused.
            let admin2 = try client(port: p, ca: ca, identity: nil)
            let deleted = try await admin2.execute(TestClient.Request(ControlPlane.sitesPath + "/\(siteId)/microsoftTunnelServers/\(response.serverId)",
                                                                      method: .delete, authority: "localhost", headers: auth))
            #expect(deleted.status == .noContent)
            try await admin2.shutdown()
            let agent2 = try client(port: p, ca: ca, identity: (leaf, key.key))
            let refused = try await post(agent2, AgentAPI.basePath + "/checkin", checkin)
            #expect(refused.status == .unauthorized)
            #expect(String(buffer: refused.body ?? ByteBuffer()).contains("deleted"))
            try await agent2.shutdown()
        }
    }
}
