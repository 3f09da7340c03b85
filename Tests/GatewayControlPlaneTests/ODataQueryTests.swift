import Foundation
import GatewayAgentAPI
import GatewayAuth
@testable import GatewayControlPlane
import Hummingbird
import HummingbirdTesting
import Testing

@Suite struct ODataQueryTests {
    let items: [[String: JSONValue]] = [
        ["id": .string("1"), "displayName": .string("Alpha"), "tunnelServerHealthStatus": .string("healthy"), "n": .int(5)],
        ["id": .string("2"), "displayName": .string("Beta"), "tunnelServerHealthStatus": .string("offline"), "n": .int(10)],
        ["id": .string("3"), "displayName": .string("alpha two"), "tunnelServerHealthStatus": .string("healthy"), "n": .int(15)],
    ]
    let schema = GraphSchema(entityType: "t", fields: [.ro("id", .string), .ro("displayName", .string), .ro("tunnelServerHealthStatus", .string), .ro("n", .int64)])

    func ids(_ filter: String) throws -> [String] {
        let q = try ODataQuery(parameters: [("$filter", filter)], schema: schema)
        return q.apply(to: items).compactMap { $0["id"]?.stringValue }
    }

    @Test func filters() throws {
        #expect(try ids("displayName eq 'alpha'") == ["1"])
        #expect(try ids("tunnelServerHealthStatus eq 'healthy' and n gt 5") == ["3"])
        #expect(try ids("id eq '1' or id eq '2'") == ["1", "2"])
        #expect(try ids("not (tunnelServerHealthStatus eq 'healthy')") == ["2"])
        #expect(try ids("startswith(displayName,'alp')") == ["1", "3"])
        #expect(try ids("n le 10") == ["1", "2"])
    }

    @Test func refusesUnsupported() {
        #expect(throws: GraphError.self) { try ids("bogus eq 'x'") }
        #expect(throws: GraphError.self) { try ids("displayName has 'x'") }
        #expect(throws: GraphError.self) { try ids("displayName eq 'unterminated") }
        #expect(throws: GraphError.self) { try ids(String(repeating: "(", count: 100) + "id eq '1'" + String(repeating: ")", count: 100)) }
        #expect(throws: GraphError.self) { try ODataQuery(parameters: [("$orderby", "id")], schema: schema) }
        #expect(throws: GraphError.self) { try ODataQuery(parameters: [("$select", "id,nope")], schema: schema) }
    }

    @Test func unquotedDateTimeLiteralsCompareAsInstants() throws {
        let dated = GraphSchema(entityType: "d", fields: [.ro("id", .string), .ro("name", .string), .ro("seen", .dateTime)])
        let rows: [[String: JSONValue]] = [
            ["id": .string("a"), "name": .string("x"), "seen": .string("2026-10-31T23:59:59Z")],
            ["id": .string("b"), "name": .string("x"), "seen": .string("2026-11-01T00:00:00.5000000Z")],
            ["id": .string("c"), "name": .string("x"), "seen": .string("2026-11-01T02:00:00+01:00")],
            ["id": .string("d"), "name": .string("x"), "seen": .null],
        ]
        func ids(_ filter: String) throws -> [String] {
            try ODataQuery(parameters: [("$filter", filter)], schema: dated).apply(to: rows).compactMap { $0["id"]?.stringValue }
        }
        #expect(try ids("seen gt 2026-11-01T00:00:00Z") == ["b", "c"])
        #expect(try ids("seen lt 2026-11-01T00:00:00Z") == ["a"])
        #expect(try ids("seen eq 2026-11-01T01:00:00Z") == ["c"], "an offset is the same instant")
        #expect(try ids("seen ge 2026-11-01T00:00:00.5Z and seen le 2026-11-01T01:00:00+00:00") == ["b", "c"])
        #expect(try ids("seen ne 2026-11-01T01:00:00Z") == ["a", "b", "d"])
        // Quoted date-times compare as instants on dateTime properties too.
        #expect(try ids("seen gt '2026-11-01T00:00:00.9Z'") == ["c"])
        #expect(throws: GraphError.self) { try ids("name eq 2026-11-01T00:00:00Z") }
        #expect(throws: GraphError.self) { try ids("seen gt 2026-13-45T99:00:00Z") }
        #expect(throws: GraphError.self) { try ids("seen gt 2026-11-01") }
    }

    @Test func queryStringIsFormDecoded() throws {
        let q = try HTTP.query("%24filter=displayName+eq+'a+b'&x=1%2B1&flag&y=%27%20%27")
        #expect(q.map(\.0) == ["$filter", "x", "flag", "y"])
        #expect(q[0].1 == "displayName eq 'a b'")
        #expect(q[1].1 == "1+1")
        #expect(q[2].1 == "")
        #expect(q[3].1 == "' '")
        #expect(throws: GraphError.self) { try HTTP.query("$filter=%zz") }
        #expect(try HTTP.query(nil).isEmpty)
    }

    @Test func plusIsASpaceAndDatesWorkOverHTTP() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            for name in ["North Gate", "South"] {
                try await client.admin(.post, ControlPlane.sitesPath, "{\"displayName\":\"\(name)\"}")
            }
            let (s1, body) = try await client.admin(.get, ControlPlane.sitesPath + "?$filter=displayName+eq+'North+Gate'")
            #expect(s1 == .ok)
            #expect(body?["value"]?.array.compactMap { $0["displayName"]?.string } == ["North Gate"])
            let (s2, _) = try await client.admin(.get, ControlPlane.sitesPath + "?$filter=displayName%20eq%20%zz")
            #expect(s2 == .badRequest)

            let (_, siteId) = try await Fixtures.siteWithConfiguration(client)
            let e = try await env.enroll(client: client, siteId: siteId)
            _ = try await env.checkin(e, applied: 1)
            let servers = ControlPlane.sitesPath + "/\(siteId)/microsoftTunnelServers"
            let checkin = GraphDate.string(env.clock.now())
            let (s3, after) = try await client.admin(.get, servers + "?$filter=lastCheckinDateTime+gt+2027-01-01T00:00:00Z")
            #expect(s3 == .ok, "\(after?.errorMessage ?? "")")
            #expect(after?["value"]?.array.count == 1, "checked in at \(checkin)")
            let (_, before) = try await client.admin(.get, servers + "?$filter=lastCheckinDateTime+lt+2027-01-01T00:00:00Z")
            #expect(before?["value"]?.array.count == 0)
            let (_, offset) = try await client.admin(.get, servers + "?$filter=lastCheckinDateTime+le+2099-01-01T00:00:00%2B05:00")
            #expect(offset?["value"]?.array.count == 1)
        }
    }

    @Test func selectProjects() throws {
        let q = try ODataQuery(parameters: [("$select", "id,displayName"), ("$top", "2")], schema: schema)
        let out = q.apply(to: items)
        #expect(out.count == 2)
        #expect(Set(out[0].keys) == ["id", "displayName"])
    }

    @Test func selectAndFilterOverHTTP() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            for name in ["North", "South"] {
                try await client.admin(.post, ControlPlane.sitesPath, "{\"displayName\":\"\(name)\"}")
            }
            let (s1, body) = try await client.admin(.get, ControlPlane.sitesPath + "?$filter=displayName%20eq%20'South'&$select=displayName")
            #expect(s1 == .ok)
            let value = body?["value"]?.array ?? []
            #expect(value.count == 1)
            #expect(value.first?["displayName"]?.string == "South")
            #expect(value.first?["publicAddress"] == nil)
            let (s2, e2) = try await client.admin(.get, ControlPlane.sitesPath + "?$filter=colour%20eq%20'red'")
            #expect(s2 == .badRequest)
            #expect(e2?.errorMessage.contains("colour") == true)
        }
    }
}
