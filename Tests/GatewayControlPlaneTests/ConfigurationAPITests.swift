import Foundation
import GatewayAuth
@testable import GatewayControlPlane
import Hummingbird
import HummingbirdTesting
import Testing

@Suite struct ConfigurationAPITests {
    let path = ControlPlane.configurationsPath

    @Test func crudRoundTrip() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let (created, body) = try await client.admin(.post, path, Fixtures.configuration)
            #expect(created == .created)
            let id = try #require(body?["id"]?.string)
            #expect(body?["network"]?.string == "100.64.0.0/16")
            #expect(body?["@odata.type"]?.string == "#microsoft.graph.microsoftTunnelConfiguration")
            #expect(body?["lastUpdateDateTime"]?.string != nil)
            #expect(body?["disableUdpConnections"] == .bool(false))

            let (listed, list) = try await client.admin(.get, path)
            #expect(listed == .ok)
            #expect(list?["value"]?.array.count == 1)
            #expect(list?["@odata.context"]?.string?.contains("microsoftTunnelConfigurations") == true)

            let (patched, after) = try await client.admin(.patch, "\(path)/\(id)", #"{"displayName":"Renamed","listenPort":8443}"#)
            #expect(patched == .ok)
            #expect(after?["displayName"]?.string == "Renamed")
            #expect(after?["listenPort"] == .int(8443))
            #expect(after?["network"]?.string == "100.64.0.0/16")

            let (got, one) = try await client.admin(.get, "\(path)/\(id)")
            #expect(got == .ok)
            #expect(one?["displayName"]?.string == "Renamed")

            let (deleted, _) = try await client.admin(.delete, "\(path)/\(id)")
            #expect(deleted == .noContent)
            let (gone, error) = try await client.admin(.get, "\(path)/\(id)")
            #expect(gone == .notFound)
            #expect(error?.errorCode == "ResourceNotFound")
        }
    }

    @Test func refuses501SplitRulesWithTheCount() async throws {
        let env = try TestEnv()
        let includes = (0..<300).map { "\"10.\($0 / 256).\($0 % 256).0/24\"" }.joined(separator: ",")
        let excludes = (0..<201).map { "\"10.200.\($0).0/24\"" }.joined(separator: ",")
        try await env.app().test(.router) { client in
            let body = "{\"displayName\":\"Big\",\"network\":\"100.64.0.0/16\",\"routeIncludes\":[\(includes)],\"routeExcludes\":[\(excludes)]}"
            let (status, error) = try await client.admin(.post, path, body)
            #expect(status == .badRequest)
            #expect(error?.errorCode == "ValidationError")
            #expect(error?.errorMessage.contains("501 rules, at most 500 allowed") == true)
            // 500 is fine.
            let ok = "{\"displayName\":\"Big\",\"network\":\"100.64.0.0/16\",\"routeIncludes\":[\(includes)],\"routeExcludes\":[\((0..<200).map { "\"10.200.\($0).0/24\"" }.joined(separator: ","))]}"
            let (status500, _) = try await client.admin(.post, path, ok)
            #expect(status500 == .created)
        }
    }

    @Test func validationNamesTheBadValue() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let (s1, e1) = try await client.admin(.post, path, #"{"displayName":"X","network":"100.64.0.0/16","routeIncludes":["10.0.0.0/33"]}"#)
            #expect(s1 == .badRequest)
            #expect(e1?.errorMessage.contains("routeIncludes[0]") == true)
            let (s2, e2) = try await client.admin(.post, path, #"{"displayName":"X","network":"100.64.0.0/16","listenPort":70000}"#)
            #expect(s2 == .badRequest)
            #expect(e2?.errorMessage.contains("listenPort") == true)
            let (s3, e3) = try await client.admin(.post, path, #"{"network":"100.64.0.0/16"}"#)
            #expect(s3 == .badRequest)
            #expect(e3?.errorMessage.contains("displayName") == true)
        }
    }

    @Test func unknownFieldsAndWrongTypesAreRefused() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let (s1, e1) = try await client.admin(.post, path, #"{"displayName":"X","network":"100.64.0.0/16","dnsServer":["1.1.1.1"]}"#)
            #expect(s1 == .badRequest)
            #expect(e1?.errorMessage.contains("'dnsServer'") == true)
            let (s2, e2) = try await client.admin(.post, path, #"{"displayName":"X","network":"100.64.0.0/16","listenPort":"443"}"#)
            #expect(s2 == .badRequest)
            #expect(e2?.errorMessage.contains("'listenPort' must be a 32-bit integer") == true)
            let (s3, _) = try await client.admin(.post, path, "not json")
            #expect(s3 == .badRequest)
            let (s4, e4) = try await client.admin(.post, path, Fixtures.configuration, headers: [.authorization: "Bearer \(TestEnv.adminToken)", .contentType: "text/plain"])
            #expect(s4 == .unsupportedMediaType)
            #expect(e4?.errorCode == "UnsupportedMediaType")
        }
    }

    @Test func wrongMethodIs405AndInUseIs409() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let (s1, e1) = try await client.admin(.put, path, "{}")
            #expect(s1 == .methodNotAllowed)
            #expect(e1?.errorCode == "MethodNotAllowed")
            let (cid, siteId) = try await Fixtures.siteWithConfiguration(client)
            let (s2, e2) = try await client.admin(.delete, "\(path)/\(cid)")
            #expect(s2 == .conflict)
            #expect(e2?.errorMessage.contains(siteId) == true)
            let (s3, _) = try await client.admin(.get, "/beta/deviceManagement/nothingHere")
            #expect(s3 == .notFound)
        }
    }
}

@Suite struct ConfigurationGroupPolicyAPITests {
    let path = ControlPlane.configurationsPath

    @Test func groupPoliciesRoundTripAndAreValidatedLikeTheFile() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let body = #"""
            {"displayName":"Policies","network":"100.64.0.0/16","routeIncludes":["10.0.0.0/8"],
             "groupPolicies":[{"displayName":"Contractors","groups":["g-con"],"deny":true},
                              {"displayName":"Engineering","roles":["Eng"],"routeIncludes":["10.20.0.0/16"],"dnsServers":["10.20.0.53"]}]}
            """#
            let (created, made) = try await client.admin(.post, path, body)
            #expect(created == .created)
            let policies = made?["groupPolicies"]?.array ?? []
            #expect(policies.count == 2)
            #expect(policies.last?["routeIncludes"]?.array.first?.string == "10.20.0.0/16")
            let id = try #require(made?["id"]?.string)

            // PATCH replaces the list; a misspelt key inside a policy is refused by name,
            // not dropped (it would silently give the server-wide routes).
            let (typo, error) = try await client.admin(.patch, "\(path)/\(id)", #"{"groupPolicies":[{"displayName":"A","groups":["g"],"routeInclude":["10.1.0.0/16"]}]}"#)
            #expect(typo == .badRequest)
            #expect(error?.errorMessage.contains("groupPolicies[0]: unknown key(s) routeInclude") == true)

            // The same checks as the gateway's file loader, with the same words.
            let (bad, why) = try await client.admin(.patch, "\(path)/\(id)", #"{"groupPolicies":[{"displayName":"A","everyone":true},{"displayName":"B","groups":["g"]}]}"#)
            #expect(bad == .badRequest)
            #expect(why?.errorMessage.contains("groupPolicies[1] ('B'): can never match") == true)
            let (notArray, why2) = try await client.admin(.patch, "\(path)/\(id)", #"{"groupPolicies":["x"]}"#)
            #expect(notArray == .badRequest)
            #expect(why2?.errorMessage.contains("'groupPolicies' must be an array of objects") == true)

            let (got, one) = try await client.admin(.get, "\(path)/\(id)")
            #expect(got == .ok)
            #expect(one?["groupPolicies"]?.array.count == 2)
        }
    }
}
