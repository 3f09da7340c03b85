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
