import Foundation
import GatewayAuth
import GatewayWire
import Testing

/// Several issuers at once (`issuers` in auth.json): the token's `iss` picks one entry,
/// and only that entry's keys and rules judge it.
@Suite struct MultiIssuerTests {
    static let issuerA = TestKeys.issuer
    static let issuerB = "https://idp.partner.test/realms/corp"
    static let audienceB = "api://vpn-partner"
    /// Issuer B publishes its own RSA key under the same kid as A's ("rsa-1"), as two
    /// independent issuers easily do, plus one under a kid of its own.
    static func jwksB() -> Data {
        let keys = [TestKeys.rsaJWK(TestKeys.rsa2, kid: "rsa-1"), TestKeys.rsaJWK(TestKeys.rsa2, kid: "rsa-b")]
        return (try? JSONSerialization.data(withJSONObject: ["keys": keys])) ?? Data()
    }

    let clock = TestClock()
    let sourceA = MemoryJWKSSource()
    let sourceB = MemoryJWKSSource(MultiIssuerTests.jwksB())

    func validator(_ b: IssuerConfiguration? = nil) -> TokenValidator {
        let a = IssuerConfiguration(issuer: Self.issuerA, allowedTenants: [TestKeys.tenant])
        let second = b ?? IssuerConfiguration(issuer: Self.issuerB, audiences: [Self.audienceB], requiredClaims: ["roles": "vpn"])
        return TokenValidator(configuration: AuthConfiguration(issuers: [a, second]), sources: [sourceA, sourceB],
                              now: clock.function, logger: quietLogger)
    }

    /// A valid token of issuer B (its key, audience and required role).
    func tokenB(kid: String = "rsa-1", iss: String = MultiIssuerTests.issuerB, aud: String = MultiIssuerTests.audienceB) async throws -> String {
        try await Mint.rs256(Mint.claims(now: clock.seconds, oid: "partner-oid", iss: iss, aud: .string(aud), tid: nil,
                                         extra: ["upn": .string("pat@partner.test"), "roles": .array([.string("vpn")])]),
                             key: TestKeys.rsa2, kid: kid)
    }

    @Test func eachIssuerAcceptsItsOwnTokens() async throws {
        let v = validator()
        let a = await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds)))
        #expect(a.identity?.userName == "alice@example.test", "\(a.rejection?.reason ?? "")")
        #expect(a.issuerIndex == 0)
        let b = await v.validate(try await tokenB())
        #expect(b.identity?.userName == "pat@partner.test", "\(b.rejection?.reason ?? "")")
        #expect(b.identity?.tenantId == nil)
        #expect(b.issuerIndex == 1)
        // Each issuer's keys were loaded once, from its own source.
        #expect(await sourceA.fetches == 1)
        #expect(await sourceB.fetches == 1)
    }

    @Test func aTokenIsJudgedByItsIssuersRulesOnly() async throws {
        let v = validator()
        // A's audience is not B's: a token of B for A's audience is refused, and the reverse.
        #expect(await v.validate(try await tokenB(aud: TestKeys.audience)).rejection?.code == .badAudience)
        let aForB = try await Mint.rs256(Mint.claims(now: clock.seconds, aud: .string(Self.audienceB)))
        #expect(await v.validate(aForB).rejection?.code == .badAudience)
        // B requires the role; A does not.
        let noRole = try await Mint.rs256(Mint.claims(now: clock.seconds, iss: Self.issuerB, aud: .string(Self.audienceB), tid: nil),
                                          key: TestKeys.rsa2)
        #expect(await v.validate(noRole).rejection?.code == .missingClaim)
        // A's tenant list applies to A's tokens only.
        let otherTenant = try await Mint.rs256(Mint.claims(now: clock.seconds, tid: "aaaaaaaa-0000-0000-0000-000000000000"))
        #expect(await v.validate(otherTenant).rejection?.code == .tenantNotAllowed)
    }

    @Test func anUnconfiguredIssuerIsRefusedWithoutAKeyFetch() async throws {
        let v = validator()
        for iss in ["https://evil.example/v2.0", Self.issuerA + "/", Self.issuerB.uppercased(), ""] {
            let r = await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds, iss: iss)))
            let rejection = try #require(r.rejection)
            #expect(rejection.code == .badIssuer)
            #expect(rejection.reason.contains("is not the configured issuer of any of the 2 entries"))
            #expect(rejection.reason.contains(Self.issuerA) && rejection.reason.contains(Self.issuerB))
            #expect(r.issuerIndex == nil)
        }
        let noIss = try Mint.handCrafted(header: ["alg": .string("RS256"), "kid": .string("rsa-1")],
                                         claims: ["sub": .string("x"), "exp": .int(clock.seconds + 60)]) { _ in [1, 2, 3] }
        #expect(await v.validate(noIss).rejection?.reason == "token has no string 'iss'")
        #expect(await sourceA.fetches == 0)
        #expect(await sourceB.fetches == 0)
    }

    @Test func issuerBsKeyCannotSpeakForIssuerA() async throws {
        let v = validator()
        // B's key under the kid both publish, claiming A: A's rsa-1 does not verify it.
        let sameKid = await v.validate(try await tokenB(iss: Self.issuerA, aud: TestKeys.audience))
        #expect(sameKid.rejection?.code == .badSignature)
        #expect(sameKid.issuerIndex == 0)
        // B's key under B's own kid, claiming A: A never published that kid.
        let ownKid = await v.validate(try await tokenB(kid: "rsa-b", iss: Self.issuerA, aud: TestKeys.audience))
        #expect(ownKid.rejection?.code == .unknownKey)
        // And the reverse: A's key claiming B.
        let aAsB = try await Mint.rs256(Mint.claims(now: clock.seconds, iss: Self.issuerB, aud: .string(Self.audienceB), tid: nil,
                                                    extra: ["roles": .array([.string("vpn")])]))
        #expect(await v.validate(aAsB).rejection?.code == .badSignature)
        // B's keys were only ever fetched for the token that named B.
        #expect(await sourceB.fetches == 1)
    }

    @Test func eachIssuerHasItsOwnCacheAndThrottle() async throws {
        let v = validator()
        await sourceA.fail("connection refused")
        #expect(await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds))).rejection?.code == .issuerUnavailable)
        // B is unaffected by A being down.
        #expect(await v.validate(try await tokenB()).identity != nil)
        // A flood of unknown kids for A reloads A at most once per window and never B.
        await sourceA.fail(nil)
        clock.advance(Double(TokenValidator.retryWithoutKeysSeconds))
        for i in 0..<5 {
            let r = await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds), kid: "nobody-\(i)"))
            #expect(r.rejection?.code == .unknownKey)
        }
        #expect(await sourceA.fetches == 2)  // the failure, then the load (the unknown kids wait for the window)
        clock.advance(61)
        #expect(await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds), kid: "nobody-else")).rejection?.code == .unknownKey)
        #expect(await sourceA.fetches == 3)  // one unknown-kid reload
        #expect(await sourceB.fetches == 1)
        #expect(await v.fetchCount == 4)
        #expect(await v.cachedKeyIDs == ["rsa-1", "ec-1", "rsa-1", "rsa-b"])
    }

    @Test func prefetchLoadsEveryIssuerAndNamesTheOneThatFailed() async throws {
        #expect(try await validator().prefetch().get() == 4)
        let failing = validator()
        await sourceB.fail("timeout")
        let error = try #require(await failing.prefetch().failure)
        #expect(error.message == "issuer \(Self.issuerB): timeout")
    }

    // MARK: - Entra's multi-tenant issuer template

    static let template = "https://login.microsoftonline.com/{tenantid}/v2.0"
    static let t1 = "aaaaaaaa-1111-4111-8111-111111111111"
    static let t2 = "bbbbbbbb-2222-4222-8222-222222222222"
    static func entra(_ tenant: String) -> String { "https://login.microsoftonline.com/\(tenant)/v2.0" }

    func templateValidator() -> TokenValidator {
        let entry = IssuerConfiguration(issuer: Self.template, jwksURL: "https://login.microsoftonline.com/common/discovery/v2.0/keys",
                                        allowedTenants: [Self.t1, Self.t2])
        return TokenValidator(configuration: AuthConfiguration(issuers: [entry]), sources: [sourceA], now: clock.function, logger: quietLogger)
    }

    @Test func theTemplateIsFilledWithTheTokensTenantThenTheTenantIsChecked() async throws {
        let v = templateValidator()
        for tenant in [Self.t1, Self.t2] {
            let r = await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds, iss: Self.entra(tenant), tid: tenant)))
            #expect(r.identity?.tenantId == tenant, "\(r.rejection?.reason ?? "")")
        }
        // Another Entra tenant's token, signed by the (shared) Entra key: the template
        // matches, allowedTenants refuses it.
        let t3 = "cccccccc-3333-4333-8333-333333333333"
        let other = await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds, iss: Self.entra(t3), tid: t3)))
        #expect(other.rejection?.code == .tenantNotAllowed)
    }

    @Test func theTemplateNeedsTheIssuerAndTheTenantToAgree() async throws {
        let v = templateValidator()
        let cases: [(String, String?)] = [
            (Self.entra(Self.t1), Self.t2),               // iss of one tenant, tid of another
            (Self.entra(Self.t1), nil),                   // no tid to fill the template with
            (Self.entra("x/../" + Self.t1), "x/../" + Self.t1),  // a tid that is not a tenant id
            (Self.template, "{tenantid}"),                // the template itself
            ("https://login.microsoftonline.com//v2.0", ""),
        ]
        for (iss, tid) in cases {
            let r = await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds, iss: iss, tid: tid)))
            #expect(r.rejection?.code == .badIssuer, "\(iss) tid \(tid ?? "none"): \(r.rejection?.reason ?? "accepted")")
            #expect(r.rejection?.reason.contains("filled with the token's 'tid'") == true)
        }
        #expect(await sourceA.fetches == 0)
    }

    @Test func anExactIssuerIsPreferredToATemplate() async throws {
        // A tenant outside the template's list gets an entry of its own, with its own keys.
        let t9 = "99999999-9999-4999-8999-999999999999"
        let template = IssuerConfiguration(issuer: Self.template, jwksFile: "/dev/null", allowedTenants: [Self.t1])
        let exact = IssuerConfiguration(issuer: Self.entra(t9), jwksFile: "/dev/null", allowedTenants: [t9])
        let v = TokenValidator(configuration: AuthConfiguration(issuers: [template, exact]), sources: [sourceA, sourceB],
                               now: clock.function, logger: quietLogger)
        #expect(v.issuerIndex(iss: Self.entra(t9), tid: t9) == 1)
        #expect(v.issuerIndex(iss: Self.entra(Self.t1), tid: Self.t1) == 0)
        #expect(v.issuerIndex(iss: Self.entra(Self.t1), tid: t9) == nil)
        let r = await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds, iss: Self.entra(t9), tid: t9), key: TestKeys.rsa2))
        #expect(r.identity?.tenantId == t9, "\(r.rejection?.reason ?? "")")
        #expect(await sourceA.fetches == 0)
    }
}

extension Result {
    var failure: Failure? {
        if case .failure(let f) = self { return f }
        return nil
    }
}

/// `issuers` in auth.json: parsing, the single-issuer form kept, and errors that name
/// the entry.
@Suite struct MultiIssuerConfigurationTests {
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

    @Test func theSingleIssuerFormIsOneEntry() throws {
        let c = try parse(#"{"issuer":"https://i","jwksFile":"jwks.json","audiences":["a"],"allowedTenants":["t"]}"#, stateDirectory: "/s")
        #expect(c.issuers == [IssuerConfiguration(issuer: "https://i", jwksFile: "/s/jwks.json", audiences: ["a"], allowedTenants: ["t"])])
        #expect(c.issuer == "https://i")
        #expect(c.keyLocation == .file("/s/jwks.json"))
    }

    @Test func severalIssuers() throws {
        let c = try parse(#"""
        {"issuers":[
          {"issuer":"https://login.microsoftonline.com/t1/v2.0","allowedTenants":["t1"],"requiredClaims":{"roles":"Tunnel"}},
          {"issuer":"https://idp.example/realms/x","jwksFile":"keys/x.json","audiences":["vpn"],"caBundle":"private/x.pem",
           "clockSkewSeconds":30,"allowedAlgorithms":["ES256"],"jwksMinRefreshSeconds":10,"jwksMaxAgeSeconds":600}
        ]}
        """#, stateDirectory: "/etc/mstunnel")
        #expect(c.issuers.count == 2)
        #expect(c.issuers[0].keyLocation == .discovery("https://login.microsoftonline.com/t1/v2.0/.well-known/openid-configuration"))
        #expect(c.issuers[0].audiences == [AuthConfiguration.defaultAudience])
        #expect(c.issuers[0].requiredClaims == ["roles": "Tunnel"])
        #expect(c.issuers[1].keyLocation == .file("/etc/mstunnel/keys/x.json"))
        #expect(c.issuers[1].caBundle == "/etc/mstunnel/private/x.pem")
        #expect(c.issuers[1].algorithms == [.es256])
        #expect(c.issuers[1].clockSkewSeconds == 30)
        #expect(c.issuers[1].jwksMaxAgeSeconds == 600)
        // Written back, it reads the same.
        let again = try AuthConfiguration.parse(try JSONEncoder().encode(c))
        #expect(again == c)
    }

    @Test func errorsNameTheEntry() {
        #expect(error(#"{"issuers":[{"issuer":"https://a"},{"audiences":["x"]}]}"#) == "auth.json: 'issuers[1].issuer' is required")
        #expect(error(#"{"issuers":[{"issuer":"https://a","audiences":"x"}]}"#).contains("'issuers[0].audiences' has the wrong type"))
        #expect(error(#"{"issuers":[{"issuer":"https://a"},{"issuer":"https://b","audience":"x"}]}"#)
                    .contains("unknown key 'issuers[1].audience'"))
        #expect(error(#"{"issuers":[{"issuer":"https://a"},{"issuer":"b"}]}"#)
                    .contains("'issuers[1].issuer' 'b' is not an http(s) URL"))
        #expect(error(#"{"issuers":[{"issuer":"https://a","jwksURL":"ftp://x"}]}"#)
                    .contains("'issuers[0].jwksURL' must be an http:// or https:// URL"))
        #expect(error(#"{"issuers":[{"issuer":"https://a","jwksFile":"f","jwksURL":"https://k"}]}"#)
                    .contains("issuers[0]: set only one of"))
        #expect(error(#"{"issuers":[{"issuer":"https://a","allowedAlgorithms":["HS256"]}]}"#)
                    .contains("'issuers[0].allowedAlgorithms' contains 'HS256'"))
        #expect(error(#"{"issuers":["https://a"]}"#).contains("'issuers[0]' must be an object"))
        #expect(error(#"{"issuers":[]}"#).contains("'issuers' must not be empty"))
    }

    @Test func duplicateIssuersAreRefused() {
        let e = error(#"{"issuers":[{"issuer":"https://a"},{"issuer":"https://b"},{"issuer":"https://a","audiences":["other"]}]}"#)
        #expect(e == "auth.json: 'issuers[2].issuer' 'https://a' is the same as 'issuers[0].issuer'; each issuer may be listed once")
    }

    @Test func topLevelIssuerKeysBesideTheListAreRefused() {
        let e = error(#"{"issuers":[{"issuer":"https://a"}],"audiences":["x"]}"#)
        #expect(e.contains("'audiences' is set at the top level beside 'issuers'"))
        #expect(error(#"{"issuers":[{"issuer":"https://a"}],"issuer":"https://b"}"#).contains("'issuer' is set at the top level beside 'issuers'"))
    }

    @Test func theModeAndCertificatesStayAtTheTop() throws {
        let ca = PKI.path("ca-bundle.pem")
        let c = try parse(#"{"authenticationMode":"certificate-or-token","clientCertificates":{"caFile":"\#(ca)"},"issuers":[{"issuer":"https://a"},{"issuer":"https://b"}]}"#)
        #expect(c.authenticationMode == .certificateOrToken)
        #expect(c.issuers.map(\.issuer) == ["https://a", "https://b"])
        #expect(error(#"{"issuers":[{"issuer":"https://a","authenticationMode":"token"}]}"#).contains("unknown key 'issuers[0].authenticationMode'"))
    }

    @Test func theTenantTemplateIsCheckedCarefully() {
        let keys = #""jwksURL":"https://login.microsoftonline.com/common/discovery/v2.0/keys""#
        #expect(error(#"{"issuer":"https://login.microsoftonline.com/{tenantid}/v2.0",\#(keys),"allowedTenants":["t1"]}"#) == "no error")
        #expect(error(#"{"issuer":"https://login.microsoftonline.com/{tenantid}/v2.0",\#(keys)}"#)
                    .contains("'allowedTenants' must list the tenants to accept"))
        #expect(error(#"{"issuers":[{"issuer":"https://login.microsoftonline.com/{tenantid}/v2.0","allowedTenants":["t1"]}]}"#)
                    .contains("'issuers[0].issuer' 'https://login.microsoftonline.com/{tenantid}/v2.0' is a template"))
        #expect(error(#"{"issuer":"https://x/{tenantid}/{tenantid}",\#(keys),"allowedTenants":["t1"]}"#)
                    .contains("the only placeholder allowed is one '{tenantid}'"))
        #expect(error(#"{"issuer":"https://x/{tid}/v2.0",\#(keys),"allowedTenants":["t1"]}"#)
                    .contains("the only placeholder allowed"))
        // An exact issuer the template would also produce for one of its tenants: which entry
        // judges the token would not be obvious, so the file is refused.
        let overlap = error(#"""
        {"issuers":[{"issuer":"https://login.microsoftonline.com/{tenantid}/v2.0",\#(keys),"allowedTenants":["t1","t2"]},
                    {"issuer":"https://login.microsoftonline.com/t2/v2.0"}]}
        """#)
        #expect(overlap.contains("'issuers[1].issuer' 'https://login.microsoftonline.com/t2/v2.0' is also what the template 'issuers[0].issuer' gives for tenant 't2'"))
        #expect(error(#"""
        {"issuers":[{"issuer":"https://login.microsoftonline.com/t3/v2.0"},
                    {"issuer":"https://login.microsoftonline.com/{tenantid}/v2.0",\#(keys),"allowedTenants":["t1","t2"]}]}
        """#) == "no error")
    }

    @Test func tooManyIssuers() {
        let entries = (0...AuthConfiguration.maxIssuers).map { #"{"issuer":"https://i\#($0)"}"# }.joined(separator: ",")
        #expect(error(#"{"issuers":[\#(entries)]}"#).contains("at most \(AuthConfiguration.maxIssuers)"))
    }
}
