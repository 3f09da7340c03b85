import Foundation
import GatewayAuth
import Testing

/// Key loading through libcurl against a real HTTP server on 127.0.0.1.
@Suite struct DiscoveryTests {
    @Test func discoveryThenJWKSThroughLibcurl() async throws {
        let server = try LoopbackHTTPServer()
        defer { server.stop() }
        let issuer = server.base
        let discovery = try JSONSerialization.data(withJSONObject: ["issuer": issuer, "jwks_uri": "\(server.base)/keys"])
        server.route("/.well-known/openid-configuration", body: discovery)
        server.route("/keys", body: TestKeys.jwks(withAlg: false))

        let config = try AuthConfiguration.parse(Data(#"{"issuer":"\#(issuer)"}"#.utf8))
        #expect(config.keyLocation == .discovery("\(issuer)/.well-known/openid-configuration"))
        let clock = TestClock()
        let validator = TokenValidator(configuration: config, source: config.makeJWKSSource(logger: quietLogger),
                                       now: clock.function, logger: quietLogger)
        let token = try await Mint.rs256(Mint.claims(now: clock.seconds, iss: issuer))
        let result = await validator.validate(token)
        #expect(result.rejection == nil)
        #expect(result.identity?.userId == "user-oid-1")
        #expect(server.hitCount("/.well-known/openid-configuration") == 1)
        #expect(server.hitCount("/keys") == 1)

        // Cached: a second validation does not fetch again.
        #expect(await validator.validate(try await Mint.es256(Mint.claims(now: clock.seconds, iss: issuer))).rejection == nil)
        #expect(server.hitCount("/keys") == 1)
    }

    @Test func directJWKSURL() async throws {
        let server = try LoopbackHTTPServer()
        defer { server.stop() }
        server.route("/jwks", body: TestKeys.jwks())
        let source = URLJWKSSource(url: "\(server.base)/jwks")
        let data = try await source.fetchJWKS()
        #expect(data == TestKeys.jwks())
    }

    @Test func httpErrorsAndMissingJWKSURIAreIssuerUnavailable() async throws {
        let server = try LoopbackHTTPServer()
        defer { server.stop() }
        server.route("/d1", body: Data(#"{"issuer":"x"}"#.utf8))
        server.route("/d2", body: Data(#"{"issuer":"x","jwks_uri":"\#(server.base)/gone"}"#.utf8))

        let clock = TestClock()
        for path in ["/d1", "/d2", "/nothing-here"] {
            let config = AuthConfiguration(issuer: TestKeys.issuer, discoveryURL: "\(server.base)\(path)")
            let validator = TokenValidator(configuration: config, source: config.makeJWKSSource(logger: quietLogger),
                                           now: clock.function, logger: quietLogger)
            let r = await validator.validate(try await Mint.rs256(Mint.claims(now: clock.seconds)))
            #expect(r.rejection?.code == .issuerUnavailable, "\(path)")
        }
        do {
            _ = try await HTTPFetcher().get("\(server.base)/nothing-here")
            Issue.record("a 404 must fail")
        } catch {
            #expect(error.message.contains("HTTP 404"))
        }
    }

    @Test func oversizeBodyIsRefused() async throws {
        let server = try LoopbackHTTPServer()
        defer { server.stop() }
        server.route("/big", body: Data(repeating: 0x20, count: 4096))
        var fetcher = HTTPFetcher()
        fetcher.maxBytes = 1024
        do {
            _ = try await fetcher.get("\(server.base)/big")
            Issue.record("an oversize body must fail")
        } catch {
            #expect(error.message.contains("larger than"))
        }
    }

    @Test func connectionRefusedIsAnErrorNotACrash() async throws {
        // Bind and close to find a port nobody listens on.
        let server = try LoopbackHTTPServer()
        let base = server.base
        server.stop()
        do {
            _ = try await HTTPFetcher().get("\(base)/keys")
            Issue.record("a refused connection must fail")
        } catch {
            #expect(error.message.contains(base))
        }
    }
}
