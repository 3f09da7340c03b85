import Foundation
import GatewayAgentAPI
import GatewayAuth
@testable import GatewayControlPlane
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Testing

/// The development issuer: its documents, its users, and tokens that the gateway's own
/// validator (GatewayAuth, as mstunnel-auth runs it) accepts — or refuses.
@Suite struct DevIssuerTests {
    /// The keys as served, for the validator.
    struct ServedJWKS: JWKSSource {
        let data: Data
        var description: String { "served JWKS" }
        func fetchJWKS() async throws(KeySourceError) -> Data { data }
    }

    static func makeEnv() async throws -> (TestEnv, DevIssuer, String) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mstdi-\(UUID().uuidString)").path
        let issuer = try await DevIssuer.loadOrCreate(stateDirectory: dir, baseURL: "https://localhost:8443")
        return (try TestEnv(devIssuer: issuer), issuer, dir)
    }

    static func form(_ fields: [(String, String)]) -> String {
        fields.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")" }.joined(separator: "&")
    }

    static let formHeaders: HTTPFields = [.contentType: "application/x-www-form-urlencoded"]

    @Test func discoveryAndKeysAreServedForItsTenantOnly() async throws {
        let (env, issuer, dir) = try await Self.makeEnv()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await env.app().test(.router) { client in
            let (status, doc) = try await client.admin(.get, "/dev-issuer/\(issuer.tenantId)/v2.0/.well-known/openid-configuration", headers: [:])
            #expect(status == .ok)
            #expect(doc?["issuer"]?.string == "https://localhost:8443/dev-issuer/\(issuer.tenantId)/v2.0")
            #expect(doc?["token_endpoint"]?.string == "https://localhost:8443/dev-issuer/\(issuer.tenantId)/oauth2/v2.0/token")
            let (keysStatus, keys) = try await client.admin(.get, "/dev-issuer/\(issuer.tenantId)/discovery/v2.0/keys", headers: [:])
            #expect(keysStatus == .ok)
            #expect(keys?["keys"]?.array.first?["kty"]?.string == "EC")
            #expect(keys?["keys"]?.array.first?["d"] == nil, "no private part in the JWKS")
            let (other, _) = try await client.admin(.get, "/dev-issuer/\(UUID().uuidString.lowercased())/discovery/v2.0/keys", headers: [:])
            #expect(other == .notFound)
        }
    }

    @Test func usersNeedTheAdminAndAStrongPassword() async throws {
        let (env, _, dir) = try await Self.makeEnv()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await env.app().test(.router) { client in
            let body = #"{"userPrincipalName":"bob@corp.test","password":"correct horse battery"}"#
            let (anonymous, _) = try await client.admin(.post, "/beta/devIssuer/users", body, headers: [.contentType: "application/json"])
            #expect(anonymous == .unauthorized)
            let (weak, weakBody) = try await client.admin(.post, "/beta/devIssuer/users", #"{"userPrincipalName":"bob@corp.test","password":"short"}"#)
            #expect(weak == .badRequest)
            #expect(weakBody?.errorMessage.contains("12") == true)
            let (badName, _) = try await client.admin(.post, "/beta/devIssuer/users", #"{"userPrincipalName":"bob","password":"correct horse battery"}"#)
            #expect(badName == .badRequest)
            let (unknown, unknownBody) = try await client.admin(.post, "/beta/devIssuer/users", #"{"userPrincipalName":"bob@corp.test","password":"correct horse battery","admin":true}"#)
            #expect(unknown == .badRequest)
            #expect(unknownBody?.errorMessage.contains("admin") == true)
            let (created, user) = try await client.admin(.post, "/beta/devIssuer/users", body)
            #expect(created == .created)
            #expect(user?["password"] == nil && user?["passwordHash"] == nil, "no secret in the answer")
            let (_, list) = try await client.admin(.get, "/beta/devIssuer/users")
            #expect(list?["value"]?.array.count == 1)
            let id = try #require(user?["id"]?.string)
            let (deleted, _) = try await client.admin(.delete, "/beta/devIssuer/users/\(id)")
            #expect(deleted == .noContent)
            let (_, after) = try await client.admin(.get, "/beta/devIssuer/users")
            #expect(after?["value"]?.array.isEmpty == true)
        }
    }

    @Test func aTokenFromThePasswordGrantPassesTheGatewaysValidator() async throws {
        let (env, issuer, dir) = try await Self.makeEnv()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let clock = env.clock
        try await env.app().test(.router) { client in
            try await client.admin(.post, "/beta/devIssuer/users", #"{"userPrincipalName":"Carol@Corp.test","displayName":"Carol","password":"correct horse battery"}"#)
            let tokenURI = "/dev-issuer/\(issuer.tenantId)/oauth2/v2.0/token"
            let answer = try await client.execute(uri: tokenURI, method: .post, headers: Self.formHeaders,
                                                  body: ByteBuffer(string: Self.form([("grant_type", "password"), ("username", "carol@corp.test"),
                                                                                      ("password", "correct horse battery")]))) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.cacheControl] == "no-store")
                return try JSONDecoder().decode(JSONValue.self, from: Data(buffer: response.body))
            }
            #expect(answer["token_type"]?.string == "Bearer")
            let token = try #require(answer["access_token"]?.string)
            let (_, keys) = try await client.admin(.get, "/dev-issuer/\(issuer.tenantId)/discovery/v2.0/keys", headers: [:])
            let jwks = try JSONEncoder().encode(try #require(keys))
            let validator = TokenValidator(configuration: AuthConfiguration(issuer: issuer.issuer, allowedTenants: [issuer.tenantId]),
                                           source: ServedJWKS(data: jwks), now: { clock.now() }, logger: quietLogger)
            let result = await validator.validate(token)
            #expect(result.rejection == nil, "\(String(describing: result.rejection))")
            // Unwrapped first: optional chaining inside #expect was miscompiled under
            // AddressSanitizer (a SEGV releasing the Identity; swift 6.3).
            let identity = try #require(result.identity)
            #expect(identity.userName == "Carol@Corp.test")
            #expect(identity.tenantId == issuer.tenantId)
            // Another tenant's allow-list refuses it: the tid is the issuer's own.
            let strict = TokenValidator(configuration: AuthConfiguration(issuer: issuer.issuer, allowedTenants: [UUID().uuidString.lowercased()]),
                                        source: ServedJWKS(data: jwks), now: { clock.now() }, logger: quietLogger)
            #expect(await strict.validate(token).identity == nil)
            // An hour later it has expired.
            clock.advance(DevIssuer.tokenLifetime + 300)
            #expect(await validator.validate(token).identity == nil)
        }
    }

    @Test(arguments: [
        ("grant_type=password&username=dave%40corp.test&password=wrong-password-1", "application/x-www-form-urlencoded", "invalid_grant"),
        ("grant_type=password&username=nobody%40corp.test&password=correct+horse+battery", "application/x-www-form-urlencoded", "invalid_grant"),
        ("grant_type=client_credentials&client_id=x", "application/x-www-form-urlencoded", "unsupported_grant_type"),
        ("grant_type=password&username=dave%40corp.test", "application/x-www-form-urlencoded", "invalid_request"),
        (#"{"grant_type":"password"}"#, "application/json", "invalid_request"),
        ("grant_type=password&username=%ZZ", "application/x-www-form-urlencoded", "invalid_request"),
    ])
    func badTokenRequestsGetOAuthErrors(body: String, contentType: String, expected: String) async throws {
        let (env, issuer, dir) = try await Self.makeEnv()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await env.app().test(.router) { client in
            try await client.admin(.post, "/beta/devIssuer/users", #"{"userPrincipalName":"dave@corp.test","password":"correct horse battery"}"#)
            try await client.execute(uri: "/dev-issuer/\(issuer.tenantId)/oauth2/v2.0/token", method: .post,
                                     headers: [.contentType: contentType], body: ByteBuffer(string: body)) { response in
                #expect(response.status == .badRequest)
                let answer = try JSONDecoder().decode(JSONValue.self, from: Data(buffer: response.body))
                #expect(answer["error"]?.string == expected)
                #expect(answer["access_token"] == nil)
            }
        }
    }

    @Test func keysTenantAndUsersSurviveARestart() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mstdi-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = try await DevIssuer.loadOrCreate(stateDirectory: dir, baseURL: "https://gw.example.test:8443")
        _ = try await first.upsert(userPrincipalName: "erin@corp.test", displayName: nil, password: "correct horse battery", now: Date())
        let second = try await DevIssuer.loadOrCreate(stateDirectory: dir, baseURL: "https://gw.example.test:8443")
        #expect(second.tenantId == first.tenantId)
        #expect(second.jwks == first.jwks)
        let issued = try await second.token(username: "erin@corp.test", password: "correct horse battery", audience: nil, now: Date())
        #expect(issued.user.userPrincipalName == "erin@corp.test")
        let mode = try FileManager.default.attributesOfItem(atPath: dir + "/dev-issuer/signing-key.pem")[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let users = try String(contentsOfFile: dir + "/dev-issuer/users.json", encoding: .utf8)
        #expect(!users.contains("correct horse battery"))
    }

    @Test func refusedBesideAnExternalIssuer() async throws {
        var config = ServeConfiguration()
        config.stateDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("mstdi-\(UUID().uuidString)").path
        config.devIssuer = true
        config.adminAuthConfigPath = "/nonexistent/auth.json"
        await #expect(throws: PKIError.self) { _ = try await ControlPlaneServer.prepare(config, logger: quietLogger) }
        #expect(!FileManager.default.fileExists(atPath: config.stateDirectory), "nothing created")
    }

    @Test func withoutTheFlagThereIsNoIssuer() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let (status, _) = try await client.admin(.get, "/beta/devIssuer")
            #expect(status == .notFound)
        }
    }
}

@Suite struct ServeStartTests {
    @Test func aBusyPortIsOneClearSentenceAndCreatesNothing() async throws {
        // Hold a port, then ask the control plane to serve on it.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        #expect(bound == 0)
        #expect(listen(fd, 1) == 0)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        let port = Int(UInt16(bigEndian: addr.sin_port))

        var config = ServeConfiguration()
        config.stateDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("mstsv-\(UUID().uuidString)").path
        config.listenHost = "127.0.0.1"
        config.listenPort = port
        do {
            _ = try await ControlPlaneServer.prepare(config, logger: quietLogger)
            Issue.record("a busy port was accepted")
        } catch {
            #expect("\(error)".contains("in use"), "\(error)")
            #expect(!"\(error)".contains("bind(descriptor"))
        }
        #expect(!FileManager.default.fileExists(atPath: config.stateDirectory), "no state directory left behind")
    }

    @Test func theBareAddressLeadsToTheConsole() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            try await client.execute(uri: "/", method: .get) { response in
                #expect(response.status == .found)
                #expect(response.headers[.location] == "/console")
            }
        }
    }

    @Test(arguments: [
        ("/beta/deviceManagement/microsoftTunnelSites/s/microsoftTunnelServers/x/getHealthMetrics", true),
        ("/beta/deviceManagement/microsoftTunnelSites/s/microsoftTunnelServers/x/getHealthMetricTimeSeries", true),
        ("/beta/deviceManagement/microsoftTunnelSites/s/microsoftTunnelServers/x/createServerLogCollectionRequest", false),
        ("/beta/deviceManagement/microsoftTunnelConfigurations", false),
    ])
    func readActionsAreNotAuditedAsWrites(path: String, isRead: Bool) {
        #expect(AdminAuthMiddleware.isReadAction(path) == isRead)
    }
}

/// The control plane says in its log when a server's health changes.
@Suite struct HealthWatchTests {
    @Test func aServerGoingOfflineAndRecoveringIsEachOneChange() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let (_, siteId) = try await Fixtures.siteWithConfiguration(client)
            let e = try await env.enroll(client: client, siteId: siteId)
            _ = try await env.checkin(e, applied: 1)
            _ = try await env.controlPlane.receiveReports(server: e.server, batch: ReportBatch(items: [
                ReportItem(id: "h1", createdDateTime: GraphDate.string(env.clock.now()), health: Fixtures.healthReport()),
            ]))
            let watch = HealthWatch()
            let first = try await watch.pass(env.controlPlane)
            #expect(first.count == 1 && first[0].from == nil)
            #expect(try await watch.pass(env.controlPlane).isEmpty, "no change, no line")
            env.clock.advance(env.controlPlane.options.offlineAfter + 1)
            let offline = try await watch.pass(env.controlPlane)
            #expect(offline.count == 1 && offline[0].to == .offline && offline[0].from == first[0].to)
            _ = try await env.checkin(e, applied: 1)
            let back = try await watch.pass(env.controlPlane)
            #expect(back.count == 1 && back[0].from == .offline && back[0].to != .offline)
        }
    }
}
