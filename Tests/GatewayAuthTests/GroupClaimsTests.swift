import Foundation
import GatewayAuth
import GatewayWire
import Testing

/// The claims group policy matches on: `groups`, `roles`, Entra's overage signals and a
/// certificate's OUs reach the identity, bounded.
@Suite struct GroupClaimsTests {
    let clock = TestClock()

    func validate(_ extra: [String: Claim]) async throws -> TokenValidationResult {
        await makeValidator(clock: clock).validate(try await Mint.rs256(Mint.claims(now: clock.seconds, extra: extra)))
    }

    @Test func groupsAndRolesArePassedOn() async throws {
        let r = try await validate([
            "groups": .array([.string("0b1f0b1f-0000-4000-8000-000000000001"), .string("Engineering")]),
            "roles": .array([.string("Tunnel.Users"), .string("Tunnel.Admins")]),
        ])
        let identity = try #require(r.identity, "\(r.rejection?.reason ?? "")")
        #expect(identity.groups == ["0b1f0b1f-0000-4000-8000-000000000001", "Engineering"])
        #expect(identity.roles == ["Tunnel.Users", "Tunnel.Admins"])
        #expect(identity.groupsOverage == nil)
        #expect(identity.organizationalUnits == nil)
    }

    @Test func absentClaimsAreAbsentAndEmptyOnesEmpty() async throws {
        let none = try #require(try await validate([:]).identity)
        #expect(none.groups == nil && none.roles == nil && none.groupsOverage == nil)
        let empty = try #require(try await validate(["groups": .array([]), "roles": .array([])]).identity)
        #expect(empty.groups == [] && empty.roles == [])
    }

    @Test(arguments: ["groups", "roles"])
    func aClaimThatIsNotAnArrayOfStringsIsMalformed(_ name: String) async throws {
        let cases: [(Claim, String)] = [
            (.string("Tunnel.Users"), "claim '\(name)' must be an array of strings (found: string)"),
            (.int(7), "claim '\(name)' must be an array of strings (found: number)"),
            (.object(["a": .string("b")]), "claim '\(name)' must be an array of strings (found: object)"),
            (.array([.string("ok"), .int(2)]), "claim '\(name)' must be an array of strings (entry 1: number)"),
            (.array([.array([.string("nested")])]), "claim '\(name)' must be an array of strings (entry 0: array)"),
            (.array([.string("ok"), .bool(true)]), "claim '\(name)' must be an array of strings (entry 1: boolean)"),
        ]
        for (value, reason) in cases {
            let r = try await validate([name: value])
            #expect(r.identity == nil)
            #expect(r.rejection?.code == .malformed)
            #expect(r.rejection?.reason == reason)
        }
    }

    @Test(arguments: ["groups", "roles"])
    func theBoundsHoldExactly(_ name: String) async throws {
        let limit = TokenValidator.maxClaimValues
        let full = (0..<limit).map { Claim.string("g\($0)") }
        #expect(try await validate([name: .array(full)]).identity != nil)
        let over = try await validate([name: .array(full + [.string("one more")])])
        #expect(over.rejection?.code == .malformed)
        #expect(over.rejection?.reason == "claim '\(name)' has \(limit + 1) entries; at most \(limit) are accepted")

        let longest = String(repeating: "é", count: TokenValidator.maxClaimValueBytes / 2)  // 2 bytes each
        #expect(try await validate([name: .array([.string(longest)])]).identity != nil)
        let tooLong = try await validate([name: .array([.string("ok"), .string(longest + "x")])])
        #expect(tooLong.rejection?.code == .malformed)
        #expect(tooLong.rejection?.reason == "claim '\(name)': entry 1 is \(TokenValidator.maxClaimValueBytes + 1) bytes; at most \(TokenValidator.maxClaimValueBytes) are accepted")

        let control = try await validate([name: .array([.string("evil\nnext line")])])
        #expect(control.rejection?.code == .malformed)
        #expect(control.rejection?.reason == "claim '\(name)': entry 0 contains control characters")
    }

    @Test func entraGroupOverageIsSignalled() async throws {
        // JWT access tokens: the distributed-claims pointer instead of the groups.
        let distributed = try await validate([
            "_claim_names": .object(["groups": .string("src1")]),
            "_claim_sources": .object(["src1": .object(["endpoint": .string("https://graph.microsoft.com/v1.0/users/x/getMemberObjects")])]),
        ])
        #expect(distributed.identity?.groupsOverage == true)
        #expect(distributed.identity?.groups == nil)
        // Implicit-flow tokens: hasgroups.
        #expect(try await validate(["hasgroups": .bool(true)]).identity?.groupsOverage == true)
        // Not overage: hasgroups false, or _claim_names for something else.
        #expect(try await validate(["hasgroups": .bool(false)]).identity?.groupsOverage == nil)
        #expect(try await validate(["_claim_names": .object(["other": .string("src1")])]).identity?.groupsOverage == nil)
        #expect(try await validate(["hasgroups": .string("true")]).identity?.groupsOverage == nil)
    }

    @Test func theAcceptedLineCountsGroupsNeverListsThem() async throws {
        let logs = LogCapture()
        let handler = AuthRequestHandler(validator: makeValidator(clock: clock), logger: logs.logger)
        let token = try await Mint.rs256(Mint.claims(now: clock.seconds, extra: [
            "groups": .array([.string("secret-group-id-1"), .string("secret-group-id-2")]),
            "roles": .array([.string("Tunnel.Users")]), "hasgroups": .bool(true),
        ]))
        _ = await handler.validate(ValidateTokenRequest(token: token, transport: .bearer), id: 1)
        let line = try #require(logs.all.first { $0.contains("auth.accepted") })
        #expect(line.contains("groups.count=2"))
        #expect(line.contains("roles.count=1"))
        #expect(line.contains("groups.overage=true"))
        #expect(line.contains("iss=\(TestKeys.issuer)"))
        #expect(!line.contains("secret-group-id"))
    }

    // MARK: - Certificates

    func handler(_ mode: AuthenticationMode) throws -> AuthRequestHandler {
        let settings = ClientCertificateConfiguration(caFile: PKI.path("ca-bundle.pem"), crlFile: PKI.path("crl.pem"), userFrom: .upn)
        let config = AuthConfiguration(issuer: TestKeys.issuer, authenticationMode: mode, clientCertificates: settings)
        return AuthRequestHandler(validator: makeValidator(config, clock: clock),
                                  certificates: try ClientCertificateVerifier(configuration: settings, now: clock.function, logger: quietLogger),
                                  logger: quietLogger)
    }

    func token(groups: [String]) async throws -> String {
        try await Mint.rs256(Mint.claims(now: clock.seconds, extra: [
            "upn": .string("alice@corp.test"), "groups": .array(groups.map(Claim.string)), "roles": .array([.string("Tunnel.Users")]),
        ]))
    }

    @Test func aCertificateLoginCarriesTheSubjectsOUs() async throws {
        let chain = try PKI.chain("alice")
        for mode in [AuthenticationMode.certificate, .certificateOrToken] {
            let decision = try await handler(mode).decide(ValidateTokenRequest(token: "", transport: .certificate, clientCertificateChain: chain))
            let identity = try #require(decision.identity, "\(mode): \(decision.rejection?.reason ?? "")")
            #expect(identity.organizationalUnits == ["Engineering"])
            #expect(identity.groups == nil && identity.roles == nil)
        }
        // A token login in certificate-or-token mode has no OUs.
        let byToken = try await handler(.certificateOrToken).decide(ValidateTokenRequest(token: try await token(groups: ["g1"]), transport: .bearer))
        #expect(byToken.identity?.groups == ["g1"])
        #expect(byToken.identity?.organizationalUnits == nil)
    }

    @Test func certificatePlusTokenCombinesBoth() async throws {
        let decision = try await handler(.certificateAndToken).decide(ValidateTokenRequest(
            token: try await token(groups: ["g1", "g2"]), transport: .bearer, clientCertificateChain: try PKI.chain("alice")))
        let identity = try #require(decision.identity, "\(decision.rejection?.reason ?? "")")
        #expect(identity.groups == ["g1", "g2"])
        #expect(identity.roles == ["Tunnel.Users"])
        #expect(identity.organizationalUnits == ["Engineering"])
        #expect(identity.certificateSHA256 != nil)
    }

    @Test func aCertificateWithoutOUsHasNone() async throws {
        // carol has no OU, but is untrusted; with her own CA trusted she is accepted.
        let settings = ClientCertificateConfiguration(caFile: PKI.path("untrusted-ca.pem"), userFrom: .cn)
        let verifier = try ClientCertificateVerifier(configuration: settings, now: clock.function, logger: quietLogger)
        let result = verifier.verify(try PKI.chain("carol"))
        #expect(result.identity?.userName == "carol", "\(result.rejection?.reason ?? "")")
        #expect(result.identity?.organizationalUnits == nil)
    }
}
