import Foundation
import GatewayAuth
import GatewayWire
import Testing

@Suite struct TokenValidatorTests {
    let clock = TestClock()

    func code(_ r: TokenValidationResult) -> TokenRejection.Code? { r.rejection?.code }

    @Test func goodRS256TokenIsAccepted() async throws {
        let v = makeValidator(clock: clock)
        let token = try await Mint.rs256(Mint.claims(now: clock.seconds))
        let r = await v.validate(token)
        #expect(r.rejection == nil)
        #expect(r.identity == Identity(userId: "user-oid-1", userName: "alice@example.test", tenantId: TestKeys.tenant,
                                       deviceId: "device-42", expiresAt: clock.seconds + 3600))
        #expect(r.kid == "rsa-1")
        #expect(r.algorithm == "RS256")
    }

    @Test func goodES256TokenIsAccepted() async throws {
        let v = makeValidator(clock: clock)
        let r = await v.validate(try await Mint.es256(Mint.claims(now: clock.seconds)))
        #expect(r.rejection == nil)
        #expect(r.identity?.userId == "user-oid-1")
    }

    @Test func keysWithoutAlgAreInferredFromKtyAndCurve() async throws {
        let v = makeValidator(source: MemoryJWKSSource(TestKeys.jwks(withAlg: false)), clock: clock)
        #expect(await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds))).rejection == nil)
        #expect(await v.validate(try await Mint.es256(Mint.claims(now: clock.seconds))).rejection == nil)
    }

    @Test func algorithmOutsideTheKeysAlgIsRefused() async throws {
        // rsa-1 is published with alg RS256: a PS256 token under it must not verify,
        // even when PS256 itself is allowed.
        var config = AuthConfiguration(issuer: TestKeys.issuer)
        config.allowedAlgorithms = ["RS256", "PS256", "ES256"]
        let v = makeValidator(config, clock: clock)
        let r = await v.validate(try await Mint.ps256(Mint.claims(now: clock.seconds)))
        #expect(code(r) == .algorithmNotAllowed)

        // Without alg in the JWKS, the RSA key serves every allowed RSA algorithm.
        let inferred = makeValidator(config, source: MemoryJWKSSource(TestKeys.jwks(withAlg: false)), clock: clock)
        #expect(await inferred.validate(try await Mint.ps256(Mint.claims(now: clock.seconds))).rejection == nil)
    }

    @Test func expiredTokenIsRejectedBeyondSkewOnly() async throws {
        let v = makeValidator(clock: clock)
        let old = await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds, exp: -121)))
        #expect(code(old) == .expired)
        let withinSkew = await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds, exp: -60)))
        #expect(withinSkew.rejection == nil)
    }

    @Test func extremeTimestampsAreMalformedNotACrash() async throws {
        let v = makeValidator(clock: clock)
        var claims = Mint.claims(now: clock.seconds)
        claims["exp"] = .int(Int64.max)
        #expect(code(await v.validate(try await Mint.rs256(claims))) == .malformed)
        claims = Mint.claims(now: clock.seconds)
        claims["nbf"] = .int(Int64.min)
        #expect(code(await v.validate(try await Mint.rs256(claims))) == .malformed)
    }

    @Test func missingExpIsAMissingClaim() async throws {
        let v = makeValidator(clock: clock)
        let r = await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds, exp: nil)))
        #expect(code(r) == .missingClaim)
    }

    @Test func notBeforeInTheFutureIsRejected() async throws {
        let v = makeValidator(clock: clock)
        let r = await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds, extra: ["nbf": .int(clock.seconds + 600)])))
        #expect(code(r) == .notYetValid)
    }

    @Test func issuedInTheFutureIsRejected() async throws {
        let v = makeValidator(clock: clock)
        let r = await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds, extra: ["iat": .int(clock.seconds + 600)])))
        #expect(code(r) == .issuedInFuture)
    }

    @Test func wrongAudienceIsRejectedAndArraysAreSearched() async throws {
        let v = makeValidator(clock: clock)
        let wrong = await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds, aud: .string("api://something-else"))))
        #expect(code(wrong) == .badAudience)
        let array = await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds, aud: .array([.string("x"), .string(TestKeys.audience)]))))
        #expect(array.rejection == nil)
    }

    @Test func wrongIssuerIsRejected() async throws {
        let v = makeValidator(clock: clock)
        let r = await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds, iss: "https://evil.example/v2.0")))
        #expect(code(r) == .badIssuer)
    }

    @Test func tenantOutsideAllowListIsRejected() async throws {
        var config = AuthConfiguration(issuer: TestKeys.issuer)
        config.allowedTenants = ["aaaaaaaa-0000-0000-0000-000000000000"]
        let v = makeValidator(config, clock: clock)
        #expect(code(await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds)))) == .tenantNotAllowed)
        #expect(code(await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds, tid: nil)))) == .tenantNotAllowed)
        config.allowedTenants.append(TestKeys.tenant)
        let ok = makeValidator(config, clock: clock)
        #expect(await ok.validate(try await Mint.rs256(Mint.claims(now: clock.seconds))).rejection == nil)
    }

    @Test func unknownKidRefreshesOnceThenIsRateLimited() async throws {
        let source = MemoryJWKSSource()
        let v = makeValidator(source: source, clock: clock)
        #expect(await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds))).rejection == nil)
        #expect(await source.fetches == 1)

        // The issuer rotates in rsa-2; a token under it triggers one reload and passes.
        clock.advance(61)
        await source.set(TestKeys.jwks(extra: [TestKeys.rsaJWK(TestKeys.rsa2, kid: "rsa-2")]))
        let rotated = await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds), key: TestKeys.rsa2, kid: "rsa-2"))
        #expect(rotated.rejection == nil)
        #expect(await source.fetches == 2)

        // A kid nobody published: the window since the last reload is not over, no fetch.
        let unknown = await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds), kid: "rsa-x"))
        #expect(code(unknown) == .unknownKey)
        let again = await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds), kid: "rsa-y"))
        #expect(code(again) == .unknownKey)
        #expect(await source.fetches == 2)

        // After the window, one more reload is allowed; the kid is still unknown.
        clock.advance(61)
        #expect(code(await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds), kid: "rsa-x"))) == .unknownKey)
        #expect(await source.fetches == 3)
    }

    @Test func concurrentUnknownKidsShareOneReload() async throws {
        let source = MemoryJWKSSource()
        let v = makeValidator(source: source, clock: clock)
        _ = await v.prefetch()
        clock.advance(61)
        await source.set(TestKeys.jwks(extra: [TestKeys.rsaJWK(TestKeys.rsa2, kid: "rsa-2")]))
        let token = try await Mint.rs256(Mint.claims(now: clock.seconds), key: TestKeys.rsa2, kid: "rsa-2")
        let accepted = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<16 { group.addTask { await v.validate(token).identity != nil } }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(accepted == 16)
        #expect(await source.fetches == 2)
    }

    @Test func signedByAForeignKeyUnderAKnownKidIsABadSignature() async throws {
        let v = makeValidator(clock: clock)
        let r = await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds), key: TestKeys.other, kid: "rsa-1"))
        #expect(code(r) == .badSignature)
    }

    @Test func tamperedPayloadIsABadSignature() async throws {
        let v = makeValidator(clock: clock)
        let token = try await Mint.rs256(Mint.claims(now: clock.seconds))
        let parts = token.split(separator: ".").map(String.init)
        let forged = try await Mint.rs256(Mint.claims(now: clock.seconds, oid: "admin"))
        let spliced = parts[0] + "." + forged.split(separator: ".")[1] + "." + parts[2]
        #expect(code(await v.validate(spliced)) == .badSignature)
    }

    @Test func algNoneIsRefused() async throws {
        let v = makeValidator(clock: clock)
        let r = await v.validate(try Mint.none(Mint.claims(now: clock.seconds)))
        #expect(code(r) == .algorithmNotAllowed)
        #expect(r.rejection?.reason.contains("none") == true)
    }

    @Test func hmacKeyConfusionIsRefused() async throws {
        var config = AuthConfiguration(issuer: TestKeys.issuer)
        config.allowedAlgorithms = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384"]
        let v = makeValidator(config, clock: clock)
        let r = await v.validate(try Mint.hs256Confusion(Mint.claims(now: clock.seconds)))
        #expect(code(r) == .algorithmNotAllowed)
        #expect(r.identity == nil)
    }

    @Test func rs256HeaderNamingTheECKeyIsRefused() async throws {
        let v = makeValidator(clock: clock)
        let r = await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds), kid: "ec-1"))
        #expect(code(r) == .algorithmNotAllowed)
        #expect(r.identity == nil)
    }

    @Test func algorithmNotInTheAllowListIsRefused() async throws {
        let v = makeValidator(clock: clock)
        let r = await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds), digest: .sha512))
        #expect(code(r) == .algorithmNotAllowed)
    }

    @Test(arguments: [
        "", "a", "a.b", "a.b.c.d", "...", "!!!.###.$$$", "eyJhbGciOiJSUzI1NiJ9", "e30.e30.", "bm90IGpzb24.e30.",
        "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.", "eyJhbGciOiJSUzI1NiJ9.e30.@@", "eyJhbGciOjF9.e30.", "W10.e30.",
        "eyJhbGciOiJSUzI1NiIsImtpZCI6M30.e30.", "eyJhbGciOiJSUzI1NiJ9.eyJhbGciOiJSUzI1NiJ9.x", "é.é.é",
        "eyJhbGciOiJSUzI1NiJ9=.e30.", "eyJhbGciOiJSUzI1NiJ9.e30.YQ==", "eyJhbGciOiJSUzI1NiJ9.e30.a b",
    ])
    func garbageIsMalformed(_ token: String) async {
        let v = makeValidator(clock: clock)
        let r = await v.validate(token)
        #expect(code(r) == .malformed)
        #expect(r.identity == nil)
    }

    @Test func hugeAndControlCharacterGarbageIsMalformed() async {
        let v = makeValidator(clock: clock)
        for token in [String(repeating: "A", count: 100_000), String(repeating: "a.", count: 50_000),
                      "\u{0}\u{1}.\u{2}.\u{3}", String(repeating: "\u{FFFF}", count: 10)] {
            #expect(code(await v.validate(token)) == .malformed)
        }
    }

    @Test func hugeWellFormedTokenIsMalformedBySize() async throws {
        let v = makeValidator(clock: clock)
        let token = try await Mint.rs256(Mint.claims(now: clock.seconds, extra: ["pad": .string(String(repeating: "x", count: 70_000))]))
        #expect(code(await v.validate(token)) == .malformed)
    }

    @Test func missingOidFallsBackToSub() async throws {
        let v = makeValidator(clock: clock)
        let r = await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds, oid: nil, extra: ["upn": .string("")])))
        #expect(r.identity?.userId == "user-sub-1")
        #expect(r.identity?.userName == "user-sub-1")
        let preferred = await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds, extra: [
            "upn": .string(""), "preferred_username": .string("alice.p@example.test")])))
        #expect(preferred.identity?.userName == "alice.p@example.test")
    }

    @Test func missingOidAndSubIsAMissingClaim() async throws {
        let v = makeValidator(clock: clock)
        let r = await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds, oid: nil, sub: nil)))
        #expect(code(r) == .missingClaim)
    }

    @Test func requiredClaims() async throws {
        var config = AuthConfiguration(issuer: TestKeys.issuer)
        config.requiredClaims = ["roles": "Tunnel.Users", "ver": "2.0", "mfa": "true"]
        let v = makeValidator(config, clock: clock)
        let good: [String: Claim] = ["roles": .array([.string("Other"), .string("Tunnel.Users")]), "ver": .string("2.0"), "mfa": .bool(true)]
        #expect(await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds, extra: good)))
            .rejection == nil)

        var wrongRole = good
        wrongRole["roles"] = .array([.string("Other")])
        #expect(code(await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds, extra: wrongRole)))) == .claimMismatch)

        var wrongVer = good
        wrongVer["ver"] = .string("1.0")
        #expect(code(await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds, extra: wrongVer)))) == .claimMismatch)

        var missing = good
        missing["roles"] = nil
        #expect(code(await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds, extra: missing)))) == .missingClaim)
    }

    @Test func keyFetchFailureIsIssuerUnavailable() async throws {
        let source = MemoryJWKSSource()
        await source.fail("connection refused")
        let v = makeValidator(source: source, clock: clock)
        let r = await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds)))
        #expect(code(r) == .issuerUnavailable)
        #expect(r.rejection?.reason.contains("connection refused") == true)

        // Retried at most every retryWithoutKeysSeconds while no key was ever loaded.
        await source.fail(nil)
        #expect(code(await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds)))) == .issuerUnavailable)
        #expect(await source.fetches == 1)
        clock.advance(Double(TokenValidator.retryWithoutKeysSeconds))
        #expect(await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds))).rejection == nil)
        #expect(await source.fetches == 2)
    }

    @Test func staleKeysKeepWorkingWhenTheReloadFails() async throws {
        let source = MemoryJWKSSource()
        let v = makeValidator(source: source, clock: clock)
        #expect(await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds))).rejection == nil)
        await source.fail("503 from issuer")
        clock.advance(3601)
        #expect(await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds))).rejection == nil)
        #expect(await source.fetches == 2)
    }

    @Test func emptyOrBrokenJWKSIsIssuerUnavailable() async throws {
        for doc in ["{}", "{\"keys\":[]}", "not json", "{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\",\"kid\":\"rsa-1\"}]}"] {
            let v = makeValidator(source: MemoryJWKSSource(Data(doc.utf8)), clock: clock)
            #expect(code(await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds)))) == .issuerUnavailable, "\(doc)")
        }
    }

    @Test func rsaKeysUnder2048BitsAreNotUsed() async throws {
        // A 1024-bit modulus (any odd number with the top bit set will do for the size check).
        let n = b64url([0xC1] + [UInt8](repeating: 0x5A, count: 126) + [0x01])
        let jwks = Data(#"{"keys":[{"kty":"RSA","kid":"rsa-1","n":"\#(n)","e":"AQAB"}]}"#.utf8)
        let v = makeValidator(source: MemoryJWKSSource(jwks), clock: clock)
        let r = await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds)))
        #expect(code(r) == .issuerUnavailable)
        #expect(r.rejection?.reason.contains("no usable signing key") == true)
    }

    @Test func tokenWithoutKidUsesTheOnlyMatchingKey() async throws {
        let v = makeValidator(clock: clock)
        #expect(await v.validate(try await Mint.rs256(Mint.claims(now: clock.seconds), kid: nil)).rejection == nil)
    }

    @Test func rejectionReasonsNeverContainTheToken() async throws {
        let v = makeValidator(clock: clock)
        let now = clock.seconds
        let tokens = [
            try await Mint.rs256(Mint.claims(now: now, exp: -1000)),
            try await Mint.rs256(Mint.claims(now: now), key: TestKeys.other),
            try await Mint.rs256(Mint.claims(now: now, iss: "https://evil.example")),
            try Mint.hs256Confusion(Mint.claims(now: now)),
        ]
        for token in tokens {
            let r = await v.validate(token)
            let reason = try #require(r.rejection?.reason)
            for part in token.split(separator: ".") where part.count > 8 {
                #expect(!reason.contains(part))
            }
        }
    }

    @Test func prefetchLoadsKeys() async throws {
        let source = MemoryJWKSSource()
        let v = makeValidator(source: source, clock: clock)
        #expect(try await v.prefetch().get() == 2)
        #expect(await v.cachedKeyIDs == ["rsa-1", "ec-1"])
    }
}
