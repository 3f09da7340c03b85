import Foundation
import GatewayAgentAPI
@testable import GatewayControlPlane
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

/// The admin API cannot be reached without credentials however the path is spelled:
/// ambiguous paths are refused before routing, and the /beta route group authenticates on
/// its own even when the outer layers are left out.
@Suite struct PathSecurityTests {
    static let sites = ControlPlane.sitesPath
    static let ambiguous: [String] = [
        "//beta/deviceManagement/microsoftTunnelSites",
        "///beta/deviceManagement/microsoftTunnelSites",
        "/./beta/deviceManagement/microsoftTunnelSites",
        "/beta//deviceManagement/microsoftTunnelSites",
        "/beta/deviceManagement//microsoftTunnelSites",
        "/beta/./deviceManagement/microsoftTunnelSites",
        "/beta/deviceManagement/../deviceManagement/microsoftTunnelSites",
        "/x/../beta/deviceManagement/microsoftTunnelSites",
        "/%2e/beta/deviceManagement/microsoftTunnelSites",
        "/beta/%2E%2E/beta/deviceManagement/microsoftTunnelSites",
        "/beta%2FdeviceManagement/microsoftTunnelSites",
        "/beta/deviceManagement%2fmicrosoftTunnelSites",
        "/beta/deviceManagement%5CmicrosoftTunnelSites",
        "/beta/deviceManagement/microsoftTunnelSites%zz",
        "//agent/v1/ca",
        "//healthz",
    ]

    @Test func ambiguousPathsAreRefusedWithOrWithoutCredentials() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            for path in Self.ambiguous {
                for headers: HTTPFields in [[.contentType: "application/json"], .admin] {
                    let (get, body) = try await client.admin(.get, path, headers: headers)
                    #expect(get == .badRequest, "GET \(path)")
                    #expect(body?.errorMessage.contains("request path refused") == true, "GET \(path)")
                    let (post, _) = try await client.admin(.post, path, #"{"displayName":"Sneaky"}"#, headers: headers)
                    #expect(post == .badRequest, "POST \(path)")
                }
            }
            // Nothing was created through any of them.
            let (_, list) = try await client.admin(.get, Self.sites)
            #expect(list?["value"]?.array.isEmpty == true)
        }
    }

    @Test func reviewerReproductionIsClosed() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let (_, siteId) = try await Fixtures.siteWithConfiguration(client)
            let (s1, _) = try await client.admin(.get, "/" + Self.sites, headers: [:])
            #expect(s1 == .badRequest)
            let (s2, _) = try await client.admin(.post, "/" + Self.sites, #"{"displayName":"X"}"#, headers: [.contentType: "application/json"])
            #expect(s2 == .badRequest)
            let (s3, body) = try await client.admin(.post, "/" + Self.sites + "/\(siteId)/createJoinToken", "{}", headers: [.contentType: "application/json"])
            #expect(s3 == .badRequest)
            #expect(body?["joinToken"] == nil)
            // An encoded first segment is still an admin path: credentials first.
            let (s4, _) = try await client.admin(.get, "/%62eta/deviceManagement/microsoftTunnelSites", headers: [:])
            #expect(s4 == .unauthorized)
            let (s5, _) = try await client.admin(.get, "/BETA/deviceManagement/microsoftTunnelSites", headers: [:])
            #expect(s5 == .unauthorized)
        }
    }

    /// With the outer path check and prefix authentication left out, the /beta group still
    /// authenticates every admin route, including `//beta/…` spellings the router accepts.
    @Test func betaGroupAuthenticatesOnItsOwn() async throws {
        let env = try TestEnv()
        let router = env.controlPlane.router(refuseAmbiguousPaths: false, authenticateBetaPrefix: false)
        try await Application(router: router).test(.router) { client in
            let (_, siteId) = try await Fixtures.siteWithConfiguration(client)
            #expect(!siteId.isEmpty)
            let unauthenticated: [(HTTPRequest.Method, String)] = [
                (.get, Self.sites), (.get, "//beta/deviceManagement/microsoftTunnelSites"),
                (.get, "/beta//deviceManagement/microsoftTunnelSites"),
                (.post, "//beta/deviceManagement/microsoftTunnelSites"),
                (.post, "//beta/deviceManagement/microsoftTunnelSites/\(siteId)/createJoinToken"),
                (.put, "//beta/deviceManagement/microsoftTunnelSites"),  // a 405 route: still authenticated first
                (.get, "//beta/deviceManagement/microsoftTunnelConfigurations"),
                (.get, "//beta/deviceManagement/microsoftTunnelHealthThresholds"),
                (.get, "//beta/deviceManagement/microsoftTunnelServerLogCollectionResponses"),
                (.get, "//beta/deviceManagement/microsoftTunnelSites/\(siteId)/microsoftTunnelServers"),
            ]
            for (method, path) in unauthenticated {
                let (status, _) = try await client.admin(method, path, "{}", headers: [.contentType: "application/json"])
                #expect(status == .unauthorized, "\(method) \(path)")
            }
            let (ok, _) = try await client.admin(.get, "//beta/deviceManagement/microsoftTunnelSites")
            #expect(ok == .ok)
        }
    }

    @Test func otherSurfacesKeepTheirOwnAuth() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let (h1, health) = try await client.admin(.get, "/healthz", headers: [:])
            #expect(h1 == .ok)
            #expect(health?["status"]?.string == "ok")
            let (h2, _) = try await client.admin(.get, "/healthz/", headers: [:])
            #expect(h2 == .ok)
            let (ca, _) = try await client.admin(.get, AgentAPI.basePath + "/ca", headers: [:])
            #expect(ca == .ok)
            let (checkin, e) = try await client.admin(.post, AgentAPI.basePath + "/checkin", "{}", headers: [.contentType: "application/json"])
            #expect(checkin == .unauthorized)
            #expect(e?.errorMessage.contains("client certificate") == true)
            let (download, _) = try await client.admin(.get, ControlPlane.downloadsPath + "/x?expires=1&sig=00", headers: [:])
            #expect(download == .forbidden)
        }
    }

    /// Through the real HTTP/1 parser on a loopback socket, as curl --path-as-is sends it.
    @Test func doubleSlashOverTheWire() async throws {
        let env = try TestEnv()
        try await env.app().test(.live) { client in
            let status = try await client.execute(uri: "//beta/deviceManagement/microsoftTunnelSites", method: .get) { $0.status }
            #expect(status == .badRequest)
            let created = try await client.execute(uri: "//beta/deviceManagement/microsoftTunnelSites", method: .post,
                                                   headers: [.contentType: "application/json"], body: ByteBuffer(string: #"{"displayName":"X"}"#)) { $0.status }
            #expect(created == .badRequest)
            let normal = try await client.execute(uri: Self.sites, method: .get) { $0.status }
            #expect(normal == .unauthorized)
        }
        #expect(try await env.store.listSites().isEmpty)
    }

    @Test func canonicalPathRules() {
        #expect(CanonicalPathMiddleware.problem("/") == nil)
        #expect(CanonicalPathMiddleware.problem("/beta/deviceManagement/microsoftTunnelSites") == nil)
        #expect(CanonicalPathMiddleware.problem("/beta/deviceManagement/microsoftTunnelSites/") == nil)
        #expect(CanonicalPathMiddleware.problem("/beta/x%20y") == nil)
        #expect(CanonicalPathMiddleware.problem("/beta/deviceManagement/microsoftTunnelSites//") != nil)
        #expect(CanonicalPathMiddleware.problem("/beta/%00") != nil)
        #expect(CanonicalPathMiddleware.problem("*") != nil)
        for path in Self.ambiguous { #expect(CanonicalPathMiddleware.problem(path) != nil, "\(path)") }
    }
}
