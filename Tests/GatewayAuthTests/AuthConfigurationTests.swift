import Foundation
import GatewayAuth
import Testing

@Suite struct AuthConfigurationTests {
    func parse(_ json: String, stateDirectory: String? = nil) throws(AuthConfigurationError) -> AuthConfiguration {
        try AuthConfiguration.parse(Data(json.utf8), stateDirectory: stateDirectory)
    }

    func error(_ json: String) -> String {
        do {
            _ = try parse(json)
            return "no error"
        } catch {
            return error.message
        }
    }

    @Test func defaults() throws {
        let c = try parse(#"{"issuer":"https://login.microsoftonline.com/tid/v2.0"}"#)
        #expect(c.audiences == ["3678c9e9-9681-447a-974d-d19f668fcd88"])
        #expect(c.allowedTenants.isEmpty)
        #expect(c.requiredClaims.isEmpty)
        #expect(c.clockSkewSeconds == 120)
        #expect(c.allowedAlgorithms == ["RS256", "ES256"])
        #expect(c.jwksMinRefreshSeconds == 60)
        #expect(c.jwksMaxAgeSeconds == 3600)
        #expect(c.caBundle == nil)
        #expect(c.keyLocation == .discovery("https://login.microsoftonline.com/tid/v2.0/.well-known/openid-configuration"))
    }

    @Test func fullFileAndRelativePaths() throws {
        let c = try parse(#"""
        {"issuer":"https://idp.example/realms/x","jwksFile":"keys/jwks.json","audiences":["a","b"],
         "allowedTenants":["t1"],"requiredClaims":{"roles":"Tunnel"},"clockSkewSeconds":600,
         "allowedAlgorithms":["RS256","RS384","RS512","ES256","ES384","PS256"],"caBundle":"private/ca.pem",
         "jwksMinRefreshSeconds":30,"jwksMaxAgeSeconds":86400}
        """#, stateDirectory: "/etc/mstunnel")
        #expect(c.keyLocation == .file("/etc/mstunnel/keys/jwks.json"))
        #expect(c.caBundle == "/etc/mstunnel/private/ca.pem")
        #expect(c.requiredClaims == ["roles": "Tunnel"])
        #expect(c.algorithms.count == 6)
    }

    @Test func explicitURLs() throws {
        #expect(try parse(#"{"issuer":"x","jwksURL":"https://idp/keys"}"#).keyLocation == .jwksURL("https://idp/keys"))
        #expect(try parse(#"{"issuer":"x","discoveryURL":"http://127.0.0.1:8080/d"}"#).keyLocation == .discovery("http://127.0.0.1:8080/d"))
    }

    @Test func missingIssuer() {
        #expect(error(#"{"audiences":["a"]}"#).contains("'issuer' is required"))
        #expect(error(#"{"issuer":""}"#).contains("'issuer' must not be empty"))
    }

    @Test func unknownKeysAreNamed() {
        let e = error(#"{"issuer":"https://i","audience":"x","clockskew":5}"#)
        #expect(e.contains("'audience'"))
        #expect(e.contains("'clockskew'"))
    }

    @Test(arguments: ["none", "HS256", "HS512", "EdDSA", "ES512", "rs256"])
    func badAlgorithmsAreRefusedAtLoad(_ alg: String) {
        let e = error(#"{"issuer":"https://i","allowedAlgorithms":["RS256","\#(alg)"]}"#)
        #expect(e.contains("'allowedAlgorithms'"))
        #expect(e.contains("'\(alg)'"))
    }

    @Test func otherValidationErrorsNameTheKey() {
        #expect(error(#"{"issuer":"https://i","clockSkewSeconds":601}"#).contains("'clockSkewSeconds'"))
        #expect(error(#"{"issuer":"https://i","clockSkewSeconds":-1}"#).contains("'clockSkewSeconds'"))
        #expect(error(#"{"issuer":"https://i","clockSkewSeconds":"60"}"#).contains("'clockSkewSeconds'"))
        #expect(error(#"{"issuer":"https://i","audiences":[]}"#).contains("'audiences'"))
        #expect(error(#"{"issuer":"https://i","allowedAlgorithms":[]}"#).contains("'allowedAlgorithms'"))
        #expect(error(#"{"issuer":"https://i","jwksURL":"ftp://x/keys"}"#).contains("'jwksURL'"))
        #expect(error(#"{"issuer":"https://i","jwksURL":"https://x/k","jwksFile":"/k"}"#).contains("only one of"))
        #expect(error(#"{"issuer":"not-a-url"}"#).contains("'issuer'"))
        #expect(error(#"{"issuer":"https://i","jwksMinRefreshSeconds":0}"#).contains("'jwksMinRefreshSeconds'"))
        #expect(error(#"{"issuer":"https://i","jwksMaxAgeSeconds":10}"#).contains("'jwksMaxAgeSeconds'"))
        #expect(error(#"{"issuer":"https://i","requiredClaims":{"roles":["a"]}}"#).contains("'requiredClaims.roles'"))
        #expect(error(#"["issuer"]"#).contains("JSON object"))
        #expect(error("{").contains("not valid JSON"))
    }

    @Test func loadNamesTheFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mst-auth-cfg-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("auth.json").path
        do {
            _ = try AuthConfiguration.load(path: path)
            Issue.record("a missing file must not load")
        } catch {
            #expect(error.message.contains(path))
        }
        try Data(#"{"issuer":"https://i","jwksFile":"jwks.json"}"#.utf8).write(to: URL(fileURLWithPath: path))
        let c = try AuthConfiguration.load(path: path, stateDirectory: dir.path)
        #expect(c.keyLocation == .file(dir.appendingPathComponent("jwks.json").path))
    }

    @Test func roundTripsThroughCodable() throws {
        let c = AuthConfiguration(issuer: "https://i", allowedTenants: ["t"], requiredClaims: ["k": "v"])
        let back = try AuthConfiguration.parse(try JSONEncoder().encode(c))
        #expect(back == c)
    }
}
