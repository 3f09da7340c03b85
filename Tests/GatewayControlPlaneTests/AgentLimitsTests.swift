import Foundation
import GatewayAuth
import GatewayAgentAPI
@testable import GatewayControlPlane
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

/// Every string and array the agent API stores is bounded (AgentAPILimits): over a limit is
/// a 400 in Graph's error shape naming the field and the limit, and nothing is stored. The
/// agent routes take at most 64 KiB of JSON (4 MiB for a report batch).
@Suite struct AgentLimitsTests {
    func event(reason: String? = nil, userName: String? = nil, now: String) -> ReportBatch {
        ReportBatch(items: [ReportItem(id: "e1", createdDateTime: now,
                                       event: AgentEvent(type: .loginRejected, dateTime: now, userName: userName, reason: reason))])
    }

    func refusal(_ body: () async throws -> Void) async -> GraphError? {
        do {
            try await body()
            return nil
        } catch let error as GraphError {
            return error
        } catch {
            return GraphError.internalError("unexpected \(error)")
        }
    }

    @Test func oversizedFieldsAreRefusedByName() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let (_, siteId) = try await Fixtures.siteWithConfiguration(client)
            let e = try await env.enroll(client: client, siteId: siteId)
            let now = GraphDate.string(env.clock.now())

            // An 8 MB reason.
            let reason = try #require(await refusal {
                _ = try await env.controlPlane.receiveReports(server: e.server, batch: event(reason: String(repeating: "r", count: 8 << 20), now: now))
            })
            #expect(reason.status == .badRequest)
            #expect(reason.code == "BadRequest")
            #expect(reason.message == "items[0].event.reason: 8388608 bytes, at most 1024 allowed")

            // A 1 MB user name.
            let user = try #require(await refusal {
                _ = try await env.controlPlane.receiveReports(server: e.server, batch: event(userName: String(repeating: "u", count: 1 << 20), now: now))
            })
            #expect(user.message == "items[0].event.userName: 1048576 bytes, at most 1024 allowed")

            // Too many entries in an array, and one entry too long.
            var health = Fixtures.healthReport()
            health.tlsCertificate?.dnsNames = (0...AgentAPILimits.dnsNames).map { "h\($0).example.test" }
            let names = try #require(await refusal {
                _ = try await env.controlPlane.receiveReports(server: e.server, batch: ReportBatch(items: [
                    ReportItem(id: "ok", createdDateTime: now, health: Fixtures.healthReport()),
                    ReportItem(id: "h1", createdDateTime: now, health: health),
                ]))
            })
            #expect(names.message == "items[1].health.tlsCertificate.dnsNames: 101 entries, at most 100 allowed")
            health = Fixtures.healthReport()
            health.tlsCertificate?.problems = ["ok", String(repeating: "p", count: 5000)]
            let problem = try #require(await refusal {
                _ = try await env.controlPlane.receiveReports(server: e.server, batch: ReportBatch(items: [ReportItem(id: "h2", createdDateTime: now, health: health)]))
            })
            #expect(problem.message == "items[0].health.tlsCertificate.problems[1]: 5000 bytes, at most 1024 allowed")

            // Nothing of a refused batch was stored, not even its good items.
            #expect(try await env.store.eventCount(serverId: e.server.id) == 0)
            #expect(try await env.store.healthSamples(serverId: e.server.id, from: nil, to: nil, limit: 10).isEmpty)

            // At the limits exactly, everything is stored.
            let atLimit = ReportBatch(items: [ReportItem(id: "e2", createdDateTime: now, event: AgentEvent(
                type: .sessionConnected, dateTime: now, userId: String(repeating: "i", count: AgentAPILimits.userId),
                userName: String(repeating: "é", count: AgentAPILimits.userName / 2), reason: String(repeating: "r", count: AgentAPILimits.reason)))])
            #expect(try await env.controlPlane.receiveReports(server: e.server, batch: atLimit).acknowledged == ["e2"])

            // A check-in whose apply message is too long.
            let server = try #require(try await env.store.server(id: e.server.id))
            let checkin = try #require(await refusal {
                _ = try await env.controlPlane.checkin(server: server, certificate: e.certificate, request: CheckinRequest(
                    agentVersion: "0.1.0", serverVersion: nil, appliedConfigurationVersion: 0,
                    lastApply: ConfigurationApplyResult(version: 1, success: false, message: String(repeating: "m", count: 10_000), dateTime: now)))
            })
            #expect(checkin.message == "lastApply.message: 10000 bytes, at most 4096 allowed")

            // Negative counts (the API describes them with a minimum of 0: schemathesis found
            // one accepted and clamped).
            var negative = CheckinRequest(agentVersion: "0.1.0", serverVersion: nil, appliedConfigurationVersion: 0, lastApply: nil)
            negative.sessionLimit = -1
            let counted = try #require(await refusal {
                _ = try await env.controlPlane.checkin(server: server, certificate: e.certificate, request: negative)
            })
            #expect(counted.message == "sessionLimit: -1 is negative")
        }
    }

    @Test func overTheWireTheAgentRoutesAnswer400And413() async throws {
        try await LiveServer.run { server in
            let admin = try server.client()
            let site = try await admin.execute(TestClient.Request(ControlPlane.sitesPath, method: .post, authority: "localhost",
                                                                  headers: server.adminHeaders, body: ByteBuffer(string: #"{"displayName":"Limits"}"#)))
            let siteId = try #require(try JSONDecoder().decode(JSONValue.self, from: Data(buffer: site.body ?? ByteBuffer()))["id"]?.string)
            let joined = try await admin.execute(TestClient.Request(ControlPlane.sitesPath + "/\(siteId)/createJoinToken", method: .post,
                                                                    authority: "localhost", headers: server.adminHeaders))
            let joinToken = try #require(try JSONDecoder().decode(JSONValue.self, from: Data(buffer: joined.body ?? ByteBuffer()))["joinToken"]?.string)
            let key = AgentKey()
            let enrollBody = try JSONEncoder().encode(EnrollmentRequest(joinToken: joinToken, csrPEM: try key.csrPEM(), hostname: "gw-limits", agentVersion: "0.1.0"))
            let enrolled = try await admin.execute(TestClient.Request(AgentAPI.basePath + "/enroll", method: .post, authority: "localhost",
                                                                      headers: [.contentType: "application/json"], body: ByteBuffer(bytes: enrollBody)))
            #expect(enrolled.status == .ok)
            let response = try JSONDecoder().decode(EnrollmentResponse.self, from: Data(buffer: enrolled.body ?? ByteBuffer()))
            try await admin.shutdown()

            let agent = try server.client(identity: (try firstCertificate(response.certificateChainPEM), key.key))
            func post(_ path: String, _ body: some Encodable) async throws -> (HTTPResponse.Status, JSONValue?) {
                let data = try JSONEncoder().encode(body)
                let r = try await agent.execute(TestClient.Request(AgentAPI.basePath + path, method: .post, authority: "localhost",
                                                                   headers: [.contentType: "application/json"], body: ByteBuffer(bytes: data)))
                return (r.status, try? JSONDecoder().decode(JSONValue.self, from: Data(buffer: r.body ?? ByteBuffer())))
            }
            let now = GraphDate.string(Date())

            // 1 MB user name: within the 4 MiB body cap, refused by its field limit.
            let (s1, e1) = try await post("/reports", event(userName: String(repeating: "u", count: 1 << 20), now: now))
            #expect(s1 == .badRequest)
            #expect(e1?.errorCode == "BadRequest")
            #expect(e1?.errorMessage == "items[0].event.userName: 1048576 bytes, at most 1024 allowed")

            // 8 MB reason: over the report body cap (4 MiB) before any decoding.
            let (s2, e2) = try await post("/reports", event(reason: String(repeating: "r", count: 8 << 20), now: now))
            #expect(s2 == .contentTooLarge)
            #expect(e2?.errorCode == "RequestEntityTooLarge")
            #expect(e2?.errorMessage.contains("\(AgentAPILimits.maxReportBatchBytes)") == true)

            // An array that is too long.
            var health = Fixtures.healthReport()
            health.tlsCertificate?.problems = (0..<1000).map { "problem \($0)" }
            let (s3, e3) = try await post("/reports", ReportBatch(items: [ReportItem(id: "h", createdDateTime: now, health: health)]))
            #expect(s3 == .badRequest)
            #expect(e3?.errorMessage == "items[0].health.tlsCertificate.problems: 1000 entries, at most 32 allowed")

            // Check-in bodies are small: 64 KiB at most.
            let big = CheckinRequest(agentVersion: String(repeating: "v", count: 100_000), serverVersion: nil,
                                     appliedConfigurationVersion: 0, lastApply: nil)
            let (s4, _) = try await post("/checkin", big)
            #expect(s4 == .contentTooLarge)

            // A normal report still goes through.
            let (s5, ack) = try await post("/reports", event(reason: "token expired", userName: "dana@corp.test", now: now))
            #expect(s5 == .ok)
            #expect(ack?["acknowledged"]?.array.first?.string == "e1")
            try await agent.shutdown()
        }
    }
}
