import Foundation
import GatewayAgentAPI
import GatewayAuth
@testable import GatewayControlPlane
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

/// Regressions for what schemathesis found probing the control plane from its OpenAPI
/// description (IntegrationTests/netns/10_control_api_probe.sh, docs/reliability.md).
@Suite struct APIProbeFindingsTests {
    /// A method no route has an entry for (TRACE, QUERY, OPTIONS, HEAD…) on a path that
    /// exists was answered 404, as if the resource did not exist. Now 405 with `Allow`; an
    /// unknown path stays 404, and on /beta authentication still comes first.
    @Test(arguments: ["TRACE", "QUERY", "OPTIONS", "HEAD", "PROPFIND"])
    func unknownMethodOnAKnownPathIs405(method: String) async throws {
        let env = try TestEnv()
        let verb = try #require(HTTPRequest.Method(method))
        try await env.app().test(.router) { client in
            for (path, allow) in [("/agent/v1/checkin", "POST"), ("/healthz", "GET"), ("/agent/v1/logCollections/abc", "PUT"),
                                  (ControlPlane.sitesPath, "GET, POST"), (ControlPlane.sitesPath + "/x/", "GET, PATCH, DELETE")] {
                try await client.execute(uri: path, method: verb, headers: .admin) { response in
                    #expect(response.status == .methodNotAllowed, "\(method) \(path)")
                    #expect(response.headers[.allow] == allow, "\(method) \(path)")
                }
            }
            try await client.execute(uri: "/agent/v1/nothing-here", method: verb) { response in
                #expect(response.status == .notFound)
            }
            try await client.execute(uri: ControlPlane.sitesPath, method: verb) { response in
                #expect(response.status == .unauthorized)
            }
        }
    }

    /// `$expand=` (and `$select=`) with an empty name was accepted: `$expand=` expanded
    /// nothing, `$select=` answered an empty entity. Now a 400 naming the option.
    @Test func emptyExpandOrSelectNameIsRefused() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let (_, siteId) = try await Fixtures.siteWithConfiguration(client)
            for query in ["$expand=", "$expand=microsoftTunnelConfiguration,", "$select=", "$select=id,,displayName"] {
                let (status, body) = try await client.admin(.get, ControlPlane.sitesPath + "/\(siteId)?\(query)")
                #expect(status == .badRequest, "\(query)")
                #expect(body?.errorMessage.hasPrefix(query.hasPrefix("$expand") ? "$expand: empty" : "$select: empty") == true, "\(query): \(body?.errorMessage ?? "")")
            }
            let (status, body) = try await client.admin(.get, ControlPlane.sitesPath + "/\(siteId)?$select=id,%20displayName&$expand=microsoftTunnelConfiguration")
            #expect(status == .ok)
            #expect(body?["displayName"]?.string != nil)
        }
    }

    /// An event whose `dateTime` was three random characters was stored and answered by
    /// `sessionEvents` as its date-time. Report and event dates must be ISO 8601 date-times:
    /// otherwise a 400 naming the field, and nothing of the batch is stored.
    @Test func reportAndEventDatesMustBeDates() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let (_, siteId) = try await Fixtures.siteWithConfiguration(client)
            let e = try await env.enroll(client: client, siteId: siteId)
            let now = GraphDate.string(env.clock.now())
            func refusal(_ batch: ReportBatch) async -> GraphError? {
                do {
                    _ = try await env.controlPlane.receiveReports(server: e.server, batch: batch)
                    return nil
                } catch {
                    return error as? GraphError
                }
            }
            let good = ReportItem(id: "ok", createdDateTime: now, event: AgentEvent(type: .sessionConnected, dateTime: now, userName: "fay"))
            let badEvent = ReportItem(id: "bad", createdDateTime: now, event: AgentEvent(type: .sessionConnected, dateTime: "\u{91582}\u{8f}"))
            let event = try #require(await refusal(ReportBatch(items: [good, badEvent])))
            #expect(event.status == .badRequest)
            #expect(event.message == "items[1].event.dateTime: '\u{91582}\u{8f}' is not an ISO 8601 date-time")

            let badCreated = ReportItem(id: "bad2", createdDateTime: "yesterday", health: Fixtures.healthReport())
            let created = try #require(await refusal(ReportBatch(items: [badCreated])))
            #expect(created.message == "items[0].createdDateTime: 'yesterday' is not an ISO 8601 date-time")
            #expect(try await env.store.eventCount(serverId: e.server.id) == 0)

            // Offsets and fractions are dates too.
            let offset = ReportItem(id: "o", createdDateTime: "2027-01-15T08:00:00.1234567+01:00",
                                    event: AgentEvent(type: .loginRejected, dateTime: "2027-01-15T07:00:00Z"))
            #expect(await refusal(ReportBatch(items: [good, offset])) == nil)
            #expect(try await env.store.eventCount(serverId: e.server.id) == 2)
        }
    }

    /// A mistyped agent field was named `items.[0].id` (a dot before the index); now
    /// `items[0].id`, as the limit checks name fields.
    @Test func decodeErrorsNameTheFieldAsTheLimitChecksDo() {
        let data = Data(#"{"items":[{"id":5,"kind":"health","createdDateTime":"2027-01-15T07:00:00Z"}],"droppedSinceLastAck":0}"#.utf8)
        do {
            _ = try JSONDecoder().decode(ReportBatch.self, from: data)
            Issue.record("a numeric id decoded")
        } catch DecodingError.typeMismatch(_, let context) {
            #expect(ControlPlane.path(context.codingPath) == "items[0].id")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    /// Foundation's formatter takes 2027-02-30 as March 1 and 24:00 as the next day's
    /// midnight; dates like these were accepted where the description says date-time. Refused
    /// now by both parsers (the agent API's GraphDate and the admin API's), and by the admin API.
    @Test(arguments: ["2027-02-30T00:00:00Z", "2027-02-29T00:00:00Z", "2027-04-31T00:00:00Z", "2027-01-01T24:00:00Z",
                      "2027-01-01T00:60:00Z", "2027-13-01T00:00:00Z", "2027-00-10T00:00:00Z", "2027-01-00T00:00:00Z",
                      "2027-01-01T00:00:00+24:00", "2027-01-01T00:00:00-01:60"])
    func impossibleCalendarDatesAreRefused(text: String) async throws {
        #expect(GraphDate.parse(text) == nil)
        #expect(GraphDateParsing.parse(text) == nil)
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let (_, siteId) = try await Fixtures.siteWithConfiguration(client)
            let e = try await env.enroll(client: client, siteId: siteId)
            let (status, body) = try await client.admin(
                .post, ControlPlane.sitesPath + "/\(siteId)/microsoftTunnelServers/\(e.server.id)/createServerLogCollectionRequest",
                #"{"startDateTime":"\#(text)","endDateTime":"2027-03-05T00:00:00Z"}"#)
            #expect(status == .badRequest)
            #expect(body?.errorMessage.contains("'startDateTime' must be an ISO 8601 date-time") == true, "\(body?.errorMessage ?? "")")
        }
    }

    @Test(arguments: ["2028-02-29T23:59:59Z", "2000-02-29T00:00:00+23:59", "2027-12-31T00:00:00.123456789-12:00", "0001-01-01T00:00:00Z"])
    func realDatesStillParse(text: String) {
        #expect(GraphDate.parse(text) != nil)
        #expect(GraphDateParsing.parse(text) != nil)
    }
}

