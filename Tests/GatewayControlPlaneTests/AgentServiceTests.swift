import Foundation
import GatewayAgentAPI
import GatewayCore
@testable import GatewayControlPlane
import Hummingbird
import HummingbirdTesting
import Testing
import X509

/// An enrolled server, through the service layer (what the mTLS routes call).
struct Enrolled {
    let server: ServerRecord
    let certificate: IssuedCertificate
    let leaf: Certificate
    let key: AgentKey
}

extension TestEnv {
    func enroll(client: some TestClientProtocol, siteId: String, hostname: String = "gw1") async throws -> Enrolled {
        let token = try await Fixtures.joinToken(client, siteId: siteId)
        let key = AgentKey()
        let response = try await controlPlane.enroll(EnrollmentRequest(joinToken: token, csrPEM: try key.csrPEM(), hostname: hostname, agentVersion: ControlPlaneVersion.string))
        let leaf = try firstCertificate(response.certificateChainPEM)
        let (server, cert) = try await controlPlane.authenticateAgent(certificate: leaf, request: nil)
        return Enrolled(server: server, certificate: cert, leaf: leaf, key: key)
    }

    func checkin(_ e: Enrolled, applied: Int64, lastApply: ConfigurationApplyResult? = nil) async throws -> CheckinResponse {
        let server = try #require(try await store.server(id: e.server.id))
        return try await controlPlane.checkin(server: server, certificate: e.certificate,
                                              request: CheckinRequest(agentVersion: ControlPlaneVersion.string, serverVersion: ControlPlaneVersion.string,
                                                                      appliedConfigurationVersion: applied, lastApply: lastApply))
    }
}

@Suite struct AgentServiceTests {
    @Test func reportsAreIdempotent() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let (_, siteId) = try await Fixtures.siteWithConfiguration(client)
            let e = try await env.enroll(client: client, siteId: siteId)
            let now = GraphDate.string(env.clock.now())
            let batch = ReportBatch(items: [
                ReportItem(id: "r1", createdDateTime: now, health: Fixtures.healthReport()),
                ReportItem(id: "r2", createdDateTime: now, event: AgentEvent(type: .sessionConnected, dateTime: now, userId: "u1")),
                ReportItem(id: "r3", createdDateTime: now, event: AgentEvent(type: .sessionDisconnected, dateTime: now, userId: "u1")),
            ])
            let first = try await env.controlPlane.receiveReports(server: e.server, batch: batch)
            #expect(first.acknowledged == ["r1", "r2", "r3"])
            #expect(first.duplicates == 0)
            let second = try await env.controlPlane.receiveReports(server: e.server, batch: batch)
            #expect(second.acknowledged == ["r1", "r2", "r3"])
            #expect(second.duplicates == 3)
            #expect(try await env.store.eventCount(serverId: e.server.id) == 2)
            #expect(try await env.store.healthSamples(serverId: e.server.id, from: nil, to: nil, limit: 100).count == 1)

            // The admin sees each event once, in order, filterable.
            let base = "/beta/deviceManagement/microsoftTunnelSites/\(siteId)/microsoftTunnelServers/\(e.server.id)/sessionEvents"
            let (status, all) = try await client.admin(.get, base)
            #expect(status == .ok)
            #expect(all?["value"]?.array.compactMap { $0["id"]?.string } == ["r2", "r3"])
            let (_, ended) = try await client.admin(.get, base + "?$filter=type%20eq%20'sessionDisconnected'&$select=type,userId")
            #expect(ended?["value"]?.array.count == 1)
            #expect(ended?["value"]?.array.first?["userId"]?.string == "u1")
            let (badStatus, bad) = try await client.admin(.get, base + "?startDateTime=yesterday")
            #expect(badStatus == .badRequest)
            #expect(bad?.errorMessage.contains("startDateTime") == true)

            let tooMany = ReportBatch(items: (0...ReportBatch.maxItems).map { ReportItem(id: "x\($0)", createdDateTime: now, health: Fixtures.healthReport()) })
            await #expect(throws: GraphError.self) { try await env.controlPlane.receiveReports(server: e.server, batch: tooMany) }
        }
    }

    @Test func configurationVersionBumpsOnChange() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let (cid, siteId) = try await Fixtures.siteWithConfiguration(client)
            let e = try await env.enroll(client: client, siteId: siteId)

            let first = try await env.checkin(e, applied: 0)
            #expect(first.configurationVersion == 1)
            #expect(first.configuration?.network == "100.64.0.0/16")
            #expect(first.checkinIntervalSeconds == 60)

            // Up to date: no configuration in the answer.
            let same = try await env.checkin(e, applied: 1)
            #expect(same.configurationVersion == 1)
            #expect(same.configuration == nil)

            // PATCH of the configuration bumps the Site's version.
            let (s1, _) = try await client.admin(.patch, ControlPlane.configurationsPath + "/\(cid)", #"{"dnsServers":["198.18.0.54"]}"#)
            #expect(s1 == .ok)
            let afterPatch = try await env.checkin(e, applied: 1)
            #expect(afterPatch.configurationVersion == 2)
            #expect(afterPatch.configuration?.dnsServers == ["198.18.0.54"])

            // Pointing the Site to another configuration bumps it again.
            let (_, other) = try await client.admin(.post, ControlPlane.configurationsPath, #"{"displayName":"Other","network":"100.65.0.0/16"}"#)
            let otherId = try #require(other?["id"]?.string)
            let (s2, _) = try await client.admin(.patch, ControlPlane.sitesPath + "/\(siteId)",
                                                 "{\"microsoftTunnelConfiguration@odata.bind\":\"https://graph.microsoft.com/beta/deviceManagement/microsoftTunnelConfigurations/\(otherId)\"}")
            #expect(s2 == .ok)
            let afterSwitch = try await env.checkin(e, applied: 2)
            #expect(afterSwitch.configurationVersion == 3)
            #expect(afterSwitch.configuration?.network == "100.65.0.0/16")

            // A PATCH that does not touch the configuration leaves the version alone.
            try await client.admin(.patch, ControlPlane.sitesPath + "/\(siteId)", #"{"description":"x"}"#)
            #expect(try await env.checkin(e, applied: 3).configurationVersion == 3)

            // $expand shows the navigation property.
            let (_, expanded) = try await client.admin(.get, ControlPlane.sitesPath + "/\(siteId)?$expand=microsoftTunnelConfiguration")
            #expect(expanded?["microsoftTunnelConfiguration"]?["id"]?.string == otherId)
        }
    }

    @Test func logCollectionFlow() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let (_, siteId) = try await Fixtures.siteWithConfiguration(client)
            let e = try await env.enroll(client: client, siteId: siteId)
            let serverPath = ControlPlane.sitesPath + "/\(siteId)/microsoftTunnelServers/\(e.server.id)"
            let (s1, created) = try await client.admin(.post, serverPath + "/createServerLogCollectionRequest",
                                                       #"{"startDateTime":"2027-01-15T07:00:00Z","endDateTime":"2027-01-15T08:00:00.1234567-01:00"}"#)
            #expect(s1 == .ok)
            let id = try #require(created?["id"]?.string)
            #expect(created?["status"]?.string == "pending")
            #expect(created?["serverId"]?.string == e.server.id)

            let checkin = try await env.checkin(e, applied: 1)
            #expect(checkin.actions.map(\.id) == [id])
            #expect(checkin.actions.first?.kind == .collectLogs)

            // Download before completion is refused.
            let (s2, _) = try await client.admin(.post, ControlPlane.logCollectionsPath + "/\(id)/createDownloadUrl")
            #expect(s2 == .conflict)

            try await env.controlPlane.storeLogUpload(server: e.server, collectionId: id, bytes: Data("line 1\nline 2\n".utf8))
            let (_, after) = try await client.admin(.get, ControlPlane.logCollectionsPath + "/\(id)")
            #expect(after?["status"]?.string == "completed")
            #expect(after?["sizeInBytes"] == .int(14))
            #expect(try await env.checkin(e, applied: 1).actions.isEmpty)

            let (s3, url) = try await client.admin(.post, ControlPlane.logCollectionsPath + "/\(id)/createDownloadUrl")
            #expect(s3 == .ok)
            let link = try #require(url?["value"]?.string)
            let relative = String(link.dropFirst("https://localhost:8443".count))
            let text = try await client.execute(uri: relative, method: .get) { String(buffer: $0.body) }
            #expect(text == "line 1\nline 2\n")
            let tampered = relative.replacingOccurrences(of: "sig=", with: "sig=00")
            let (s4, _) = try await client.admin(.get, tampered, headers: [:])
            #expect(s4 == .forbidden)
            env.clock.advance(env.controlPlane.options.downloadURLLifetime + 1)
            let (s5, e5) = try await client.admin(.get, relative, headers: [:])
            #expect(s5 == .forbidden)
            #expect(e5?.errorMessage.contains("expired") == true)

            // A second upload of a finished collection is refused.
            await #expect(throws: GraphError.self) {
                try await env.controlPlane.storeLogUpload(server: e.server, collectionId: id, bytes: Data("x".utf8))
            }
        }
    }

    @Test func deletedServerIsRefused() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let (_, siteId) = try await Fixtures.siteWithConfiguration(client)
            let e = try await env.enroll(client: client, siteId: siteId)
            let (status, _) = try await client.admin(.delete, ControlPlane.sitesPath + "/\(siteId)/microsoftTunnelServers/\(e.server.id)")
            #expect(status == .noContent)
            await #expect(throws: GraphError.self) { try await env.controlPlane.authenticateAgent(certificate: e.leaf, request: nil) }
            // And the site can now be deleted (no servers left) while the configuration cannot.
            let (s2, _) = try await client.admin(.delete, ControlPlane.sitesPath + "/\(siteId)")
            #expect(s2 == .noContent)
        }
    }

    @Test func expiredAgentCertificateIsRefusedAndRenewalIssuesANewOne() async throws {
        let env = try TestEnv(certLifetime: 60)
        try await env.app().test(.router) { client in
            let (_, siteId) = try await Fixtures.siteWithConfiguration(client)
            let e = try await env.enroll(client: client, siteId: siteId)
            let checkin = try await env.checkin(e, applied: 0)
            let renewAfter = try #require(checkin.renewAfter.flatMap(GraphDate.parse))
            #expect(abs(renewAfter.timeIntervalSince(env.clock.now()) - 40) < 1)

            env.clock.advance(45)
            let renewed = try await env.controlPlane.renew(server: e.server, request: RenewalRequest(csrPEM: try e.key.csrPEM()))
            let newLeaf = try firstCertificate(renewed.certificateChainPEM)
            #expect(renewed.serverId == e.server.id)
            env.clock.advance(30)
            await #expect(throws: GraphError.self) { try await env.controlPlane.authenticateAgent(certificate: e.leaf, request: nil) }
            let (server, _) = try await env.controlPlane.authenticateAgent(certificate: newLeaf, request: nil)
            #expect(server.id == e.server.id)
        }
    }
}
