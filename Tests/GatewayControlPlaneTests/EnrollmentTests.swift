import Crypto
import Foundation
import GatewayAgentAPI
@testable import GatewayControlPlane
import Hummingbird
import HummingbirdTesting
import NIOCore
import SwiftASN1
import Testing
@_spi(FixedExpiryValidationTime) import X509

@Suite struct EnrollmentTests {
    func enrollBody(_ token: String, _ key: AgentKey, hostname: String = "gw1") throws -> String {
        let request = EnrollmentRequest(joinToken: token, csrPEM: try key.csrPEM(), hostname: hostname, agentVersion: ControlPlaneVersion.string)
        return String(decoding: try JSONEncoder().encode(request), as: UTF8.self)
    }

    @Test func enrollIssuesACertificateThatVerifiesAgainstTheCA() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let (_, siteId) = try await Fixtures.siteWithConfiguration(client)
            let token = try await Fixtures.joinToken(client, siteId: siteId)
            let parsed = try JoinToken(parsing: token)
            #expect(parsed.caSHA256 == env.controlPlane.ca.sha256Hex)

            let key = AgentKey()
            let (status, body) = try await client.admin(.post, AgentAPI.basePath + "/enroll", try enrollBody(token, key), headers: [.contentType: "application/json"])
            #expect(status == .ok)
            let response = try #require(try body?.decode(EnrollmentResponse.self))
            #expect(response.siteId == siteId)
            let chain = try PEMDocument.parseMultiple(pemString: response.certificateChainPEM).map { try Certificate(pemDocument: $0) }
            let leaf = try #require(chain.first)
            #expect(leaf.publicKey == Certificate.PublicKey(key.key.publicKey))
            #expect(env.controlPlane.ca.signed(leaf))
            #expect(leaf.subject.description.contains(response.serverId))
            let eku = try #require(try leaf.extensions.extendedKeyUsage)
            #expect(eku.contains(.clientAuth))

            // Chain verification with swift-certificates, at the control plane's time.
            let roots = CertificateStore([env.controlPlane.ca.certificate])
            let now = env.clock.now()
            var verifier = Verifier(rootCertificates: roots) { RFC5280Policy(fixedExpiryValidationTime: now) }
            let result = await verifier.validate(leaf: leaf, intermediates: CertificateStore())
            guard case .validCertificate = result else {
                Issue.record("agent certificate does not verify against the CA: \(result)")
                return
            }

            // The server appears in the Site with its hostname.
            let (_, servers) = try await client.admin(.get, ControlPlane.sitesPath + "/\(siteId)/microsoftTunnelServers")
            let list = servers?["value"]?.array ?? []
            #expect(list.count == 1)
            #expect(list.first?["displayName"]?.string == "gw1")
            #expect(list.first?["id"]?.string == response.serverId)
        }
    }

    @Test func joinTokenIsOneTime() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let (_, siteId) = try await Fixtures.siteWithConfiguration(client)
            let token = try await Fixtures.joinToken(client, siteId: siteId)
            let (s1, _) = try await client.admin(.post, AgentAPI.basePath + "/enroll", try enrollBody(token, AgentKey()), headers: [.contentType: "application/json"])
            #expect(s1 == .ok)
            let (s2, e2) = try await client.admin(.post, AgentAPI.basePath + "/enroll", try enrollBody(token, AgentKey(), hostname: "gw2"), headers: [.contentType: "application/json"])
            #expect(s2 == .unauthorized)
            #expect(e2?.errorCode == "joinTokenUsed")
            #expect(try await env.store.listServers(siteId: siteId).count == 1)
        }
    }

    /// An orchestrator's identical gateway pods share one token (deploy/kubernetes): it
    /// enrolls up to maxUses servers, each with an identity of its own, then it is spent.
    @Test func aJoinTokenForSeveralServers() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let (_, siteId) = try await Fixtures.siteWithConfiguration(client)
            let path = ControlPlane.sitesPath + "/\(siteId)/createJoinToken"
            #expect(try await client.admin(.post, path, #"{"maxUses":0}"#).0 == .badRequest)
            #expect(try await client.admin(.post, path, #"{"maxUses":1001}"#).0 == .badRequest)
            let (status, body) = try await client.admin(.post, path, #"{"expirationMinutes":30,"maxUses":2}"#)
            #expect(status == .ok && body?["maxUses"] == .int(2))
            let token = try #require(body?["joinToken"]?.string)
            for host in ["gw1", "gw2"] {
                let (s, _) = try await client.admin(.post, AgentAPI.basePath + "/enroll", try enrollBody(token, AgentKey(), hostname: host), headers: [.contentType: "application/json"])
                #expect(s == .ok)
            }
            let (s3, e3) = try await client.admin(.post, AgentAPI.basePath + "/enroll", try enrollBody(token, AgentKey(), hostname: "gw3"), headers: [.contentType: "application/json"])
            #expect(s3 == .unauthorized && e3?.errorCode == "joinTokenUsed")
            let servers = try await env.store.listServers(siteId: siteId)
            #expect(servers.count == 2 && Set(servers.map(\.id)).count == 2)
        }
    }

    @Test func joinTokenExpires() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let (_, siteId) = try await Fixtures.siteWithConfiguration(client)
            let token = try await Fixtures.joinToken(client, siteId: siteId, minutes: 5)
            env.clock.advance(301)
            let (status, error) = try await client.admin(.post, AgentAPI.basePath + "/enroll", try enrollBody(token, AgentKey()), headers: [.contentType: "application/json"])
            #expect(status == .unauthorized)
            #expect(error?.errorCode == "joinTokenExpired")
        }
    }

    @Test func refusesForgedSecretsBadCSRsAndOtherCAs() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let (_, siteId) = try await Fixtures.siteWithConfiguration(client)
            let good = try JoinToken(parsing: try await Fixtures.joinToken(client, siteId: siteId))
            let forged = JoinToken(tokenId: good.tokenId, secret: "wrong-secret", caSHA256: good.caSHA256)
            let (s1, e1) = try await client.admin(.post, AgentAPI.basePath + "/enroll", try enrollBody(forged.description, AgentKey()), headers: [.contentType: "application/json"])
            #expect(s1 == .unauthorized)
            #expect(e1?.errorMessage.contains("secret") == true)

            let otherCA = JoinToken(tokenId: good.tokenId, secret: good.secret, caSHA256: String(repeating: "0", count: 64))
            let (s2, _) = try await client.admin(.post, AgentAPI.basePath + "/enroll", try enrollBody(otherCA.description, AgentKey()), headers: [.contentType: "application/json"])
            #expect(s2 == .unauthorized)

            let badCSR = EnrollmentRequest(joinToken: good.description, csrPEM: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----", hostname: "gw", agentVersion: "1")
            let (s3, e3) = try await client.admin(.post, AgentAPI.basePath + "/enroll", String(decoding: try JSONEncoder().encode(badCSR), as: UTF8.self), headers: [.contentType: "application/json"])
            #expect(s3 == .badRequest)
            #expect(e3?.errorCode == "invalidCSR")

            // The good token was not spent by the failures.
            let (s4, _) = try await client.admin(.post, AgentAPI.basePath + "/enroll", try enrollBody(good.description, AgentKey()), headers: [.contentType: "application/json"])
            #expect(s4 == .ok)
        }
    }

    /// The token is checked before the CSR is even looked at: a bad token with a bad CSR
    /// is a token error, never `invalidCSR` (which would mean signing work was attempted).
    @Test func tokenIsCheckedBeforeTheCSR() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let (_, siteId) = try await Fixtures.siteWithConfiguration(client)
            let good = try JoinToken(parsing: try await Fixtures.joinToken(client, siteId: siteId, minutes: 5))
            let badCSR = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----"
            func enroll(_ token: String) async throws -> (HTTPResponse.Status, String) {
                let body = EnrollmentRequest(joinToken: token, csrPEM: badCSR, hostname: "gw", agentVersion: "1")
                let (status, error) = try await client.admin(.post, AgentAPI.basePath + "/enroll", String(decoding: try JSONEncoder().encode(body), as: UTF8.self),
                                                             headers: [.contentType: "application/json"])
                return (status, error?.errorCode ?? "")
            }
            let forged = JoinToken(tokenId: good.tokenId, secret: "wrong-secret", caSHA256: good.caSHA256)
            #expect(try await enroll(forged.description) == (.unauthorized, "invalidJoinToken"))
            let unknown = JoinToken(tokenId: "no-such-token", secret: good.secret, caSHA256: good.caSHA256)
            #expect(try await enroll(unknown.description) == (.unauthorized, "invalidJoinToken"))
            // Valid token, bad CSR: now the CSR is the problem, and the token is not spent.
            #expect(try await enroll(good.description) == (.badRequest, "invalidCSR"))
            let (ok, _) = try await client.admin(.post, AgentAPI.basePath + "/enroll", try enrollBody(good.description, AgentKey()), headers: [.contentType: "application/json"])
            #expect(ok == .ok)
            #expect(try await enroll(good.description) == (.unauthorized, "joinTokenUsed"))

            let expiring = try await Fixtures.joinToken(client, siteId: siteId, minutes: 5)
            env.clock.advance(301)
            #expect(try await enroll(expiring) == (.unauthorized, "joinTokenExpired"))
            #expect(try await env.store.listServers(siteId: siteId).count == 1)
        }
    }

    @Test func agentEndpointsNeedAClientCertificate() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let (status, error) = try await client.admin(.post, AgentAPI.basePath + "/checkin", "{}", headers: [.contentType: "application/json"])
            #expect(status == .unauthorized)
            #expect(error?.errorMessage.contains("client certificate") == true)
            let (caStatus, _) = try await client.admin(.get, AgentAPI.basePath + "/ca", headers: [:])
            #expect(caStatus == .ok)
        }
    }
}
