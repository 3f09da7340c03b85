import Foundation
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
