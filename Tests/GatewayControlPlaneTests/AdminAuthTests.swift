import Crypto
import Foundation
import GatewayAuth
@testable import GatewayControlPlane
import Hummingbird
import HummingbirdTesting
import Logging
import Testing

/// A tiny ES256 issuer: a key, its JWKS file, and tokens signed with it.
struct TestIssuer {
    let key = P256.Signing.PrivateKey()
    let issuer = "https://issuer.test/tenant"
    let audience = "api://mstunnel-control"
    let jwksPath: String

    init(directory: String) throws {
        jwksPath = directory + "/jwks.json"
        let raw = Array(key.publicKey.x963Representation)
        let x = Secrets.base64url(Array(raw[1...32]))
        let y = Secrets.base64url(Array(raw[33...64]))
        let jwks = "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"\(x)\",\"y\":\"\(y)\",\"kid\":\"k1\",\"alg\":\"ES256\",\"use\":\"sig\"}]}"
        try Data(jwks.utf8).write(to: URL(fileURLWithPath: jwksPath))
    }

    func validator() -> TokenValidator {
        let config = AuthConfiguration(issuer: issuer, jwksFile: jwksPath, audiences: [audience], allowedAlgorithms: ["ES256"])
        return TokenValidator(configuration: config, source: FileJWKSSource(path: jwksPath), logger: quietLogger)
    }

    func token(roles: [String], expiresIn: TimeInterval = 3600) throws -> String {
        let now = Int(Date().timeIntervalSince1970)
        let header = #"{"alg":"ES256","kid":"k1","typ":"JWT"}"#
        let rolesJSON = roles.map { "\"\($0)\"" }.joined(separator: ",")
        let payload = "{\"iss\":\"\(issuer)\",\"aud\":\"\(audience)\",\"iat\":\(now),\"exp\":\(now + Int(expiresIn)),\"oid\":\"user-1\",\"upn\":\"admin@example.test\",\"roles\":[\(rolesJSON)]}"
        let input = Secrets.base64url(Array(header.utf8)) + "." + Secrets.base64url(Array(payload.utf8))
        let signature = try key.signature(for: Data(input.utf8)).rawRepresentation
        return input + "." + Secrets.base64url(Array(signature))
    }
}

@Suite struct AdminAuthTests {
    let path = ControlPlane.sitesPath

    @Test func noTokenAndWrongTokenAre401() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let (s1, e1) = try await client.admin(.get, path, headers: [:])
            #expect(s1 == .unauthorized)
            #expect(e1?.errorCode == "Unauthorized")
            let (s2, _) = try await client.admin(.get, path, headers: [.authorization: "Bearer not-the-token"])
            #expect(s2 == .unauthorized)
            let (s3, _) = try await client.admin(.get, path, headers: [.authorization: "Basic \(TestEnv.adminToken)"])
            #expect(s3 == .unauthorized)
            // Unknown /beta paths need credentials too (no probing without a token).
            let (s4, _) = try await client.admin(.get, "/beta/deviceManagement/whatever", headers: [:])
            #expect(s4 == .unauthorized)
            let (s5, _) = try await client.admin(.get, path)
            #expect(s5 == .ok)
        }
    }

    @Test func jwtNeedsTheAdminRole() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mstc-jwt-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let issuer = try TestIssuer(directory: dir)
        let env = try TestEnv(validator: issuer.validator())
        let withRole = try issuer.token(roles: ["MSTunnel.Admin"])
        let withoutRole = try issuer.token(roles: ["MSTunnel.Reader"])
        let expired = try issuer.token(roles: ["MSTunnel.Admin"], expiresIn: -3600)
        try await env.app().test(.router) { client in
            let (s1, _) = try await client.admin(.get, path, headers: [.authorization: "Bearer \(withRole)"])
            #expect(s1 == .ok)
            let (s2, e2) = try await client.admin(.get, path, headers: [.authorization: "Bearer \(withoutRole)"])
            #expect(s2 == .forbidden)
            #expect(e2?.errorMessage.contains("MSTunnel.Admin") == true)
            let (s3, e3) = try await client.admin(.get, path, headers: [.authorization: "Bearer \(expired)"])
            #expect(s3 == .unauthorized)
            #expect(e3?.errorMessage.contains("expired") == true)
        }
    }

    @Test func localTokenFileIsPrivateAndStable() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mstc-tok-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = try LocalAdminToken.loadOrCreate(stateDirectory: dir)
        let second = try LocalAdminToken.loadOrCreate(stateDirectory: dir)
        #expect(first == second)
        #expect(first.count >= 40)
        let attributes = try FileManager.default.attributesOfItem(atPath: LocalAdminToken.path(stateDirectory: dir))
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
    }
}
