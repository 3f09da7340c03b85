import Crypto
import Foundation
import GatewayAuth
import GatewayWire
import Testing

/// The committed test PKI (Tests/Fixtures/client-certs, written by make-pki.py).
enum PKI {
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/client-certs")

    static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    static func file(_ name: String) throws -> Data { try Data(contentsOf: directory.appendingPathComponent(name)) }

    /// The DER of every CERTIFICATE block of a PEM file, in order.
    static func der(_ name: String) throws -> [Data] {
        let text = String(decoding: try file(name), as: UTF8.self)
        var blocks: [Data] = []
        var current: String?
        for line in text.split(whereSeparator: \.isNewline) {
            if line == "-----BEGIN CERTIFICATE-----" {
                current = ""
            } else if line == "-----END CERTIFICATE-----" {
                if let b64 = current, let data = Data(base64Encoded: b64) { blocks.append(data) }
                current = nil
            } else if current != nil {
                current! += line
            }
        }
        return blocks
    }

    /// What `openconnect -c` sends for each user: alice with her intermediate, the others
    /// their leaf alone.
    static func chain(_ user: String) throws -> [Data] {
        try der(user == "alice" ? "alice-chain.pem" : "\(user).pem")
    }

    static func sha256(_ data: Data) -> String {
        SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    }

    /// alice's notAfter: 2099-12-31T23:59:59Z.
    static let notAfter2099: Int64 = 4_102_444_799
}

/// A scratch directory, removed by the caller.
func scratchDirectory() throws -> String {
    let dir = NSTemporaryDirectory() + "mst-cert-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

/// Replaces `path` the way an operator's tooling would: write beside it, rename over it.
func replaceFile(_ path: String, with data: Data) throws {
    let temporary = path + ".new"
    try data.write(to: URL(fileURLWithPath: temporary))
    #expect(rename(temporary, path) == 0)
}

@Suite struct ClientCertificateTests {
    static let users = ["alice", "bob", "carol", "dave", "erin", "frank"]

    func verifier(crl: String? = "crl.pem", userFrom: CertificateUserMapping = .cn, clock: TestClock = TestClock(),
                  logs: LogCapture = LogCapture()) throws -> ClientCertificateVerifier {
        try ClientCertificateVerifier(
            configuration: ClientCertificateConfiguration(caFile: PKI.path("ca-bundle.pem"), crlFile: crl.map(PKI.path), userFrom: userFrom),
            now: clock.function, logger: logs.logger)
    }

    func handler(_ mode: AuthenticationMode, userFrom: CertificateUserMapping = .upn, clock: TestClock = TestClock(),
                 logs: LogCapture = LogCapture()) throws -> AuthRequestHandler {
        let settings = ClientCertificateConfiguration(caFile: PKI.path("ca-bundle.pem"), crlFile: PKI.path("crl.pem"), userFrom: userFrom)
        let config = AuthConfiguration(issuer: TestKeys.issuer, authenticationMode: mode, clientCertificates: settings)
        let validator = makeValidator(config, clock: clock, logger: logs.logger)
        let certificates = mode.usesCertificates
            ? try ClientCertificateVerifier(configuration: settings, now: clock.function, logger: logs.logger) : nil
        return AuthRequestHandler(validator: validator, certificates: certificates, logger: logs.logger)
    }

    /// A valid token for alice@corp.test (or `upn`).
    func token(_ clock: TestClock, upn: String = "alice@corp.test", exp: Int64 = 3600) async throws -> String {
        try await Mint.rs256(Mint.claims(now: clock.seconds, exp: exp, extra: ["upn": .string(upn)]))
    }

    // MARK: - Each user, verifier alone

    /// The answer each fixture user gets when a certificate decides (CRL crl.pem, userFrom upn).
    static func expectedCode(_ user: String) -> TokenRejection.Code? {
        switch user {
        case "alice": return nil
        case "bob": return .certificateRevoked
        case "carol", "dave", "erin": return .certificateUntrusted
        case "frank": return .certificateNoUser
        default: return .malformed
        }
    }

    @Test(arguments: users)
    func eachUserThroughTheVerifier(_ user: String) throws {
        let result = try verifier(userFrom: .upn).verify(PKI.chain(user))
        #expect(result.rejection?.code == Self.expectedCode(user), "\(user): \(result.rejection?.reason ?? "accepted")")
        let leaf = try #require(PKI.chain(user).first)
        #expect(result.sha256 == PKI.sha256(leaf))
        let certificate = try #require(result.certificate)
        #expect(certificate.sha256 == PKI.sha256(leaf))
        if let rejection = result.rejection {
            // An operator can act on every reason: it names the certificate, its issuer and serial.
            #expect(rejection.reason.contains(certificate.serialNumber))
            #expect(rejection.reason.contains(certificate.issuerCommonName ?? "?"))
            if let cn = certificate.commonNames.last { #expect(rejection.reason.contains("CN=\(cn)")) }
            #expect(!rejection.reason.contains("PRIVATE KEY"))
        }
    }

    @Test func aliceIdentity() throws {
        let chain = try PKI.chain("alice")
        let result = try verifier(userFrom: .upn).verify(chain)
        let identity = try #require(result.identity)
        #expect(identity == Identity(userId: "alice@corp.test", userName: "alice@corp.test", tenantId: nil, deviceId: nil,
                                     expiresAt: PKI.notAfter2099, certificateSHA256: PKI.sha256(chain[0]),
                                     organizationalUnits: ["Engineering"]))
        #expect(result.user == "alice@corp.test")
        #expect(result.organizationalUnits == ["Engineering"])
        let certificate = try #require(result.certificate)
        #expect(certificate.subject == "CN=alice, OU=Engineering, O=mstunnel tests, UID=alice01")
        #expect(certificate.issuer == "CN=mstunnel Test Intermediate CA, O=mstunnel tests")
        #expect(certificate.serialNumber == "0A11CE")
        #expect(certificate.notAfter == PKI.notAfter2099)
    }

    @Test func reasonsSayWhatIsWrong() throws {
        let v = try verifier()
        let bob = try #require(v.verify(PKI.chain("bob")).rejection)
        #expect(bob.reason.contains("CN=bob (serial 0B0B, issuer CN=mstunnel Test Root CA) is revoked"))

        let carol = try #require(v.verify(PKI.chain("carol")).rejection)
        #expect(carol.reason.contains("unable to get local issuer certificate"))
        #expect(carol.reason.contains("at depth 0"))
        #expect(carol.reason.contains("CN=mstunnel Untrusted CA"))

        let dave = try #require(v.verify(PKI.chain("dave")).rejection)
        #expect(dave.reason.contains("certificate has expired"))
        #expect(dave.reason.contains("2020-01-01"))

        let erin = try #require(v.verify(PKI.chain("erin")).rejection)
        #expect(erin.reason.contains("unsuitable certificate purpose"))
        #expect(erin.reason.contains("clientAuth"))

        let frank = try #require(v.verify(PKI.chain("frank")).rejection)
        #expect(frank.reason.contains("'OU=Sales, O=mstunnel tests' (serial 0F2A4C"))
        #expect(frank.reason.contains("no subject commonName"))
    }

    /// alice's leaf without the intermediate cannot be chained to the root.
    @Test func missingIntermediateIsUntrusted() throws {
        let leafOnly = try PKI.der("alice.pem")
        let result = try verifier().verify(leafOnly)
        #expect(result.rejection?.code == .certificateUntrusted)
        #expect(result.rejection?.reason.contains("CN=mstunnel Test Intermediate CA") == true)
    }

    /// The intermediate in the CA file instead of the chain: path validation still works.
    @Test func intermediateFromTheChainOrTheCAFile() throws {
        let dir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let bundle = dir + "/bundle.pem"
        try (PKI.file("ca.pem") + PKI.file("intermediate.pem")).write(to: URL(fileURLWithPath: bundle))
        let v = try ClientCertificateVerifier(configuration: ClientCertificateConfiguration(caFile: bundle, crlFile: PKI.path("crl.pem")),
                                              now: TestClock().function, logger: quietLogger)
        #expect(v.trustedCACount == 2)
        #expect(v.verify(try PKI.der("alice.pem")).user == "alice")
    }

    // MARK: - Mapping

    @Test(arguments: [
        ("alice", CertificateUserMapping.cn, "alice"),
        ("alice", .upn, "alice@corp.test"),
        ("alice", .email, "alice@corp.test"),
        ("alice", .uid, "alice01"),
        ("bob", .cn, "bob"),
        ("bob", .email, "bob@corp.test"),  // no SAN: the subject's emailAddress
    ])
    func mapping(_ user: String, _ mapping: CertificateUserMapping, _ expected: String) throws {
        // Without a CRL so that bob (revoked in crl.pem) gets as far as the mapping.
        let result = try verifier(crl: nil, userFrom: mapping).verify(PKI.chain(user))
        #expect(result.user == expected)
        #expect(result.identity?.userId == expected)
        #expect(result.identity?.userName == expected)
    }

    @Test(arguments: [
        ("bob", CertificateUserMapping.upn, "subjectAltName UPN"),
        ("bob", .uid, "userId"),
        ("frank", .cn, "commonName"),
        ("frank", .email, "emailAddress"),
    ])
    func mappingFindsNoUser(_ user: String, _ mapping: CertificateUserMapping, _ what: String) throws {
        let result = try verifier(crl: nil, userFrom: mapping).verify(PKI.chain(user))
        let rejection = try #require(result.rejection)
        #expect(rejection.code == .certificateNoUser)
        #expect(rejection.reason.contains(what))
        #expect(rejection.reason.contains("userFrom is \(mapping.rawValue)"))
    }

    @Test func organizationalUnitsAreCollected() throws {
        let v = try verifier(crl: nil)
        #expect(v.verify(try PKI.chain("alice")).organizationalUnits == ["Engineering"])
        #expect(v.verify(try PKI.chain("bob")).organizationalUnits == ["Sales"])
        #expect(v.verify(try PKI.chain("frank")).organizationalUnits == ["Sales"])  // refused, but read
    }

    // MARK: - CRL

    @Test func crlReloadRevokesWithoutRestart() throws {
        let dir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let crl = dir + "/crl.pem"
        try PKI.file("crl.pem").write(to: URL(fileURLWithPath: crl))
        let clock = TestClock()
        let logs = LogCapture()
        let v = try ClientCertificateVerifier(configuration: ClientCertificateConfiguration(caFile: PKI.path("ca-bundle.pem"), crlFile: crl),
                                              now: clock.function, logger: logs.logger)
        #expect(v.revokedCount == 1)
        #expect(v.verify(try PKI.chain("alice")).user == "alice")

        try replaceFile(crl, with: PKI.file("crl-alice-revoked.pem"))
        // Looked at no more than once a second: within the second the old list still holds.
        clock.advance(0.5)
        #expect(v.verify(try PKI.chain("alice")).user == "alice")
        clock.advance(0.6)
        let after = v.verify(try PKI.chain("alice"))
        #expect(after.rejection?.code == .certificateRevoked)
        #expect(v.revokedCount == 2)
        #expect(v.verify(try PKI.chain("bob")).rejection?.code == .certificateRevoked)

        let loaded = logs.all.filter { $0.contains("auth.crl.loaded") }
        #expect(loaded.count == 2)
        #expect(loaded.first?.contains("revoked=1") == true)
        #expect(loaded.last?.contains("revoked=2") == true)
        #expect(loaded.last?.contains("next_update=2099-12-01T00:00:00Z") == true)
        #expect(loaded.last?.contains("reason=file changed") == true)
    }

    @Test func unparsableReplacementKeepsThePreviousCRLs() throws {
        let dir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let crl = dir + "/crl.pem"
        try PKI.file("crl.pem").write(to: URL(fileURLWithPath: crl))
        let clock = TestClock()
        let logs = LogCapture()
        let v = try ClientCertificateVerifier(configuration: ClientCertificateConfiguration(caFile: PKI.path("ca-bundle.pem"), crlFile: crl),
                                              now: clock.function, logger: logs.logger)
        try replaceFile(crl, with: Data("-----BEGIN X509 CRL-----\nnot base64 at all\n-----END X509 CRL-----\n".utf8))
        clock.advance(2)
        #expect(v.verify(try PKI.chain("alice")).user == "alice")
        #expect(v.verify(try PKI.chain("bob")).rejection?.code == .certificateRevoked)
        let failed = logs.all.filter { $0.contains("auth.crl.failed") }
        #expect(failed.count == 1)  // once per version of the file, not once a second
        #expect(failed.first?.contains("keeping the CRLs loaded") == true)

        // Truncated (a copy caught half-way): the same.
        let good = try PKI.file("crl-alice-revoked.pem")
        try replaceFile(crl, with: good.prefix(200))
        clock.advance(2)
        #expect(v.verify(try PKI.chain("alice")).user == "alice")

        // Then the good file arrives.
        try replaceFile(crl, with: good)
        clock.advance(2)
        #expect(v.verify(try PKI.chain("alice")).rejection?.code == .certificateRevoked)
    }

    @Test func noCRLEverLoadedFailsClosed() throws {
        let dir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let crl = dir + "/crl.pem"  // missing at start
        let clock = TestClock()
        let logs = LogCapture()
        let v = try ClientCertificateVerifier(configuration: ClientCertificateConfiguration(caFile: PKI.path("ca-bundle.pem"), crlFile: crl),
                                              now: clock.function, logger: logs.logger)
        let refused = v.verify(try PKI.chain("alice"))
        #expect(refused.rejection?.code == .issuerUnavailable)
        #expect(refused.rejection?.reason.contains("CRL unavailable") == true)
        #expect(refused.operatorProblem)
        #expect(logs.all.contains { $0.contains("auth.crl.failed") && $0.contains("every client certificate is refused") })

        try Data("garbage".utf8).write(to: URL(fileURLWithPath: crl))
        clock.advance(2)
        #expect(v.verify(try PKI.chain("alice")).rejection?.reason.contains("CRL unavailable") == true)

        try replaceFile(crl, with: PKI.file("crl.pem"))
        clock.advance(2)
        #expect(v.verify(try PKI.chain("alice")).user == "alice")
    }

    @Test func expiredCRLFailsClosed() throws {
        let logs = LogCapture()
        let v = try verifier(crl: "crl-expired.pem", logs: logs)
        for user in ["alice", "bob"] {
            let result = v.verify(try PKI.chain(user))
            let rejection = try #require(result.rejection)
            #expect(rejection.code == .issuerUnavailable)
            #expect(rejection.reason.contains("CRL has expired"))
            #expect(rejection.reason.contains("put a current CRL in crlFile"))
            #expect(rejection.reason.contains("expired at 2020-01-01T00:00:00Z"))
            #expect(result.operatorProblem)
        }
        #expect(logs.all.contains { $0.hasPrefix("warning auth.crl.loaded") && $0.contains("past nextUpdate") })
    }

    @Test func derCRLFile() throws {
        let v = try verifier(crl: "crl.der")
        #expect(v.revokedCount == 1)
        #expect(v.verify(try PKI.chain("alice")).user == "alice")
        #expect(v.verify(try PKI.chain("bob")).rejection?.code == .certificateRevoked)
    }

    /// A CRL file without the intermediate's CRL: alice's chain cannot be fully checked.
    @Test func missingCRLForAnIssuerFailsClosed() throws {
        let dir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let text = String(decoding: try PKI.file("crl.pem"), as: UTF8.self)
        let firstCRL = try #require(text.components(separatedBy: "-----END X509 CRL-----").first) + "-----END X509 CRL-----\n"
        try Data(firstCRL.utf8).write(to: URL(fileURLWithPath: dir + "/root-only.pem"))
        let v = try ClientCertificateVerifier(configuration: ClientCertificateConfiguration(caFile: PKI.path("ca-bundle.pem"), crlFile: dir + "/root-only.pem"),
                                              now: TestClock().function, logger: quietLogger)
        let rejection = try #require(v.verify(try PKI.chain("alice")).rejection)
        // The operator's CRL file lacks a CA's CRL: not the client's fault (503, no ban score).
        #expect(rejection.code == .issuerUnavailable)
        #expect(rejection.reason.contains("crlFile has no CRL from CN=mstunnel Test Intermediate CA"))
        #expect(v.verify(try PKI.chain("bob")).rejection?.code == .certificateRevoked)  // the root's CRL is there
    }

    // MARK: - Hostile input

    @Test func garbageChainsAreUntrustedNeverACrash() throws {
        let v = try verifier()
        let alice = try PKI.chain("alice")
        var chains: [[Data]] = [
            [Data("garbage".utf8)],
            [Data()],
            [Data(repeating: 0x30, count: 1)],
            [Data([0x30, 0x82, 0xFF, 0xFF])],
            [alice[0] + Data([0x00])],  // trailing bytes
            [alice[0].prefix(alice[0].count - 1)],
            [alice[0], Data("garbage".utf8)],
            Array(repeating: alice[1], count: 9),
            [Data(repeating: 0x41, count: ClientCertificateVerifier.maxCertificateBytes + 1)],
        ]
        // Every single-byte corruption of a stretch of alice's certificate, and of her
        // intermediate: none may pass, none may crash.
        for i in stride(from: 0, to: alice[0].count, by: 3) {
            var broken = alice[0]
            broken[broken.startIndex + i] ^= 0x5A
            chains.append([broken, alice[1]])
        }
        for i in stride(from: 0, to: alice[1].count, by: 7) {
            var broken = alice[1]
            broken[broken.startIndex + i] ^= 0x01
            chains.append([alice[0], broken])
        }
        for chain in chains {
            let result = v.verify(chain)
            #expect(result.rejection?.code == .certificateUntrusted, "\(result.rejection?.reason ?? "accepted")")
        }
    }

    // MARK: - Modes

    @Test(arguments: users)
    func tokenModeIgnoresTheChain(_ user: String) async throws {
        let clock = TestClock()
        let h = try handler(.token, clock: clock)
        let t = try await token(clock)
        let withToken = await h.decide(ValidateTokenRequest(token: t, transport: .bearer, clientCertificateChain: try PKI.chain(user)))
        #expect(withToken.identity?.userId == "user-oid-1")
        #expect(withToken.identity?.certificateSHA256 == nil)
        #expect(withToken.certificate == nil)

        let certificateOnly = await h.decide(ValidateTokenRequest(token: "", transport: .certificate, clientCertificateChain: try PKI.chain(user)))
        #expect(certificateOnly.rejection == TokenRejection(code: .certificateNotAccepted, reason: "client certificates are not accepted: authenticationMode is token"))
    }

    @Test(arguments: users)
    func certificateModeIgnoresTheToken(_ user: String) async throws {
        let clock = TestClock()
        let h = try handler(.certificate, clock: clock)
        let chain = try PKI.chain(user)
        let t = try await token(clock, upn: "someone-else@corp.test")
        for request in [ValidateTokenRequest(token: t, transport: .bearer, clientCertificateChain: chain),
                        ValidateTokenRequest(token: "", transport: .certificate, clientCertificateChain: chain),
                        ValidateTokenRequest(token: "not.a.token", transport: .password, clientCertificateChain: chain)] {
            let decision = await h.decide(request)
            #expect(decision.rejection?.code == Self.expectedCode(user), "\(user): \(decision.rejection?.reason ?? "accepted")")
            #expect(decision.token == nil)
            if user == "alice" {
                #expect(decision.identity?.userName == "alice@corp.test")
                #expect(decision.identity?.certificateSHA256 == PKI.sha256(chain[0]))
            }
        }
        let none = await h.decide(ValidateTokenRequest(token: t, transport: .bearer))
        #expect(none.rejection?.code == .certificateRequired)
        let emptyChain = await h.decide(ValidateTokenRequest(token: t, transport: .bearer, clientCertificateChain: []))
        #expect(emptyChain.rejection?.code == .certificateRequired)
    }

    @Test(arguments: users)
    func certificateOrTokenLetsAPresentedChainDecide(_ user: String) async throws {
        let clock = TestClock()
        let h = try handler(.certificateOrToken, clock: clock)
        let chain = try PKI.chain(user)
        let t = try await token(clock)
        // A good token does not rescue a bad certificate.
        let both = await h.decide(ValidateTokenRequest(token: t, transport: .bearer, clientCertificateChain: chain))
        #expect(both.rejection?.code == Self.expectedCode(user), "\(user): \(both.rejection?.reason ?? "accepted")")
        #expect(both.method == "certificate")
        let certificateOnly = await h.decide(ValidateTokenRequest(token: "", transport: .certificate, clientCertificateChain: chain))
        #expect(certificateOnly.rejection?.code == Self.expectedCode(user))
    }

    @Test func certificateOrTokenWithoutAChain() async throws {
        let clock = TestClock()
        let h = try handler(.certificateOrToken, clock: clock)
        let good = await h.decide(ValidateTokenRequest(token: try await token(clock), transport: .password))
        #expect(good.identity?.userId == "user-oid-1")
        #expect(good.identity?.certificateSHA256 == nil)
        #expect(good.method == "token")
        let expired = await h.decide(ValidateTokenRequest(token: try await token(clock, exp: -3600), transport: .bearer))
        #expect(expired.rejection?.code == .expired)
        let nothing = await h.decide(ValidateTokenRequest(token: "", transport: .certificate))
        #expect(nothing.rejection?.code == .certificateRequired)
    }

    @Test(arguments: users)
    func certificateAndTokenNeedsBoth(_ user: String) async throws {
        let clock = TestClock()
        let h = try handler(.certificateAndToken, clock: clock)
        let chain = try PKI.chain(user)
        let t = try await token(clock)
        let both = await h.decide(ValidateTokenRequest(token: t, transport: .bearer, clientCertificateChain: chain))
        #expect(both.rejection?.code == Self.expectedCode(user), "\(user): \(both.rejection?.reason ?? "accepted")")
        if user == "alice" {
            // The token's identity, bound to the certificate.
            let identity = try #require(both.identity)
            #expect(identity.userId == "user-oid-1")
            #expect(identity.userName == "alice@corp.test")
            #expect(identity.tenantId == TestKeys.tenant)
            #expect(identity.deviceId == "device-42")
            #expect(identity.expiresAt == clock.seconds + 3600)
            #expect(identity.certificateSHA256 == PKI.sha256(chain[0]))
            #expect(both.certificate?.organizationalUnits == ["Engineering"])
        }
        // No token: the certificate alone is not enough (a bad certificate is still named first).
        let certificateOnly = await h.decide(ValidateTokenRequest(token: "", transport: .certificate, clientCertificateChain: chain))
        #expect(certificateOnly.rejection?.code == (user == "alice" ? .malformed : Self.expectedCode(user)))
        // No certificate: the token alone is not enough.
        let tokenOnly = await h.decide(ValidateTokenRequest(token: t, transport: .bearer))
        #expect(tokenOnly.rejection?.code == .certificateRequired)
    }

    @Test func certificateAndTokenRefusesABadTokenOrAnotherUser() async throws {
        let clock = TestClock()
        let h = try handler(.certificateAndToken, clock: clock)
        let chain = try PKI.chain("alice")
        let expired = await h.decide(ValidateTokenRequest(token: try await token(clock, exp: -3600), transport: .bearer, clientCertificateChain: chain))
        #expect(expired.rejection?.code == .expired)
        #expect(expired.certificate?.user == "alice@corp.test")

        let bob = await h.decide(ValidateTokenRequest(token: try await token(clock, upn: "bob@corp.test"), transport: .bearer, clientCertificateChain: chain))
        let mismatch = try #require(bob.rejection)
        #expect(mismatch.code == .certificateUserMismatch)
        #expect(mismatch.reason.contains("'alice@corp.test'"))
        #expect(mismatch.reason.contains("'bob@corp.test'"))

        // The comparison ignores case.
        let upper = await h.decide(ValidateTokenRequest(token: try await token(clock, upn: "Alice@CORP.test"), transport: .bearer, clientCertificateChain: chain))
        #expect(upper.identity?.userName == "Alice@CORP.test")

        // userFrom cn maps alice to "alice", which is not the token's UPN.
        let cn = try handler(.certificateAndToken, userFrom: .cn, clock: clock)
        let byCN = await cn.decide(ValidateTokenRequest(token: try await token(clock), transport: .bearer, clientCertificateChain: chain))
        #expect(byCN.rejection?.code == .certificateUserMismatch)
    }

    // MARK: - Logging

    @Test func decisionsAreLoggedWithTheCertificateNeverTheToken() async throws {
        let clock = TestClock()
        let logs = LogCapture()
        let h = try handler(.certificateAndToken, clock: clock, logs: logs)
        let t = try await token(clock)
        let alice = try PKI.chain("alice")
        _ = await h.validate(ValidateTokenRequest(token: t, transport: .bearer, peerAddress: "192.0.2.9", clientCertificateChain: alice), id: 1)
        _ = await h.validate(ValidateTokenRequest(token: t, transport: .bearer, clientCertificateChain: try PKI.chain("bob")), id: 2)

        let lines = logs.all
        let accepted = try #require(lines.first { $0.contains("auth.accepted") })
        #expect(accepted.contains("cert.subject=CN=alice, OU=Engineering, O=mstunnel tests, UID=alice01"))
        #expect(accepted.contains("cert.issuer=CN=mstunnel Test Intermediate CA, O=mstunnel tests"))
        #expect(accepted.contains("cert.serial=0A11CE"))
        #expect(accepted.contains("cert.sha256=\(PKI.sha256(alice[0]).prefix(16)) "))
        #expect(accepted.contains("cert.ou=Engineering"))
        #expect(accepted.contains("method=certificate+token"))
        #expect(accepted.contains("kid=rsa-1"))
        #expect(accepted.contains("peer=192.0.2.9"))
        let rejected = try #require(lines.first { $0.contains("auth.rejected") })
        #expect(rejected.hasPrefix("notice"))
        #expect(rejected.contains("reason.code=certificateRevoked"))
        #expect(rejected.contains("cert.serial=0B0B"))
        for line in lines {
            #expect(!line.contains(t))
            #expect(!line.contains(String(t.split(separator: ".")[2])))
        }

        // Token-only decisions carry no certificate fields.
        let tokenLogs = LogCapture()
        let plain = try handler(.token, clock: clock, logs: tokenLogs)
        _ = await plain.validate(ValidateTokenRequest(token: t, transport: .bearer, clientCertificateChain: alice), id: 3)
        #expect(tokenLogs.all.contains { $0.contains("auth.accepted") && !$0.contains("cert.") && $0.contains("method=token") })
    }

    @Test func aMissingCRLIsLoggedAsAWarning() async throws {
        let dir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let logs = LogCapture()
        let settings = ClientCertificateConfiguration(caFile: PKI.path("ca-bundle.pem"), crlFile: dir + "/missing.pem")
        let clock = TestClock()
        let h = AuthRequestHandler(
            validator: makeValidator(AuthConfiguration(issuer: "", authenticationMode: .certificate, clientCertificates: settings), clock: clock),
            certificates: try ClientCertificateVerifier(configuration: settings, now: clock.function, logger: logs.logger), logger: logs.logger)
        _ = await h.validate(ValidateTokenRequest(token: "", transport: .certificate, clientCertificateChain: try PKI.chain("alice")), id: 1)
        #expect(logs.all.contains { $0.hasPrefix("warning auth.rejected") && $0.contains("CRL unavailable") })
    }
}

@Suite struct ClientCertificateConfigurationTests {
    func parse(_ json: String, stateDirectory: String? = nil) throws(AuthConfigurationError) -> AuthConfiguration {
        try AuthConfiguration.parse(Data(json.utf8), stateDirectory: stateDirectory)
    }

    func error(_ json: String, stateDirectory: String? = nil) -> String {
        do {
            _ = try parse(json, stateDirectory: stateDirectory)
            return "no error"
        } catch {
            return error.message
        }
    }

    var ca: String { PKI.path("ca-bundle.pem") }

    @Test func defaultsToTokens() throws {
        let c = try parse(#"{"issuer":"https://i"}"#)
        #expect(c.authenticationMode == .token)
        #expect(c.clientCertificates == nil)
    }

    @Test func fullCertificateSection() throws {
        let c = try parse(#"""
        {"authenticationMode":"certificate+token","issuer":"https://i",
         "clientCertificates":{"caFile":"ca-bundle.pem","crlFile":"crl.der","userFrom":"upn"}}
        """#, stateDirectory: PKI.directory.path)
        #expect(c.authenticationMode == .certificateAndToken)
        #expect(c.clientCertificates == ClientCertificateConfiguration(caFile: PKI.path("ca-bundle.pem"), crlFile: PKI.path("crl.der"), userFrom: .upn))
    }

    @Test func everyModeParses() throws {
        for mode in AuthenticationMode.allCases {
            let c = try parse(#"{"authenticationMode":"\#(mode.rawValue)","issuer":"https://i","clientCertificates":{"caFile":"\#(ca)"}}"#)
            #expect(c.authenticationMode == mode)
            #expect(c.clientCertificates?.userFrom == .cn)
        }
    }

    @Test func certificateModeNeedsNoIssuer() throws {
        let c = try parse(#"{"authenticationMode":"certificate","clientCertificates":{"caFile":"\#(ca)"}}"#)
        #expect(c.issuer == "")
        #expect(error(#"{"authenticationMode":"certificate-or-token","clientCertificates":{"caFile":"\#(ca)"}}"#).contains("'issuer' is required"))
        #expect(error(#"{"authenticationMode":"certificate+token","clientCertificates":{"caFile":"\#(ca)"}}"#).contains("'issuer' is required"))
        #expect(error(#"{"clientCertificates":{"caFile":"\#(ca)"}}"#).contains("'issuer' is required"))
    }

    @Test(arguments: ["certificate", "certificate-or-token", "certificate+token"])
    func aCertificateModeNeedsTheCAFile(_ mode: String) {
        let e = error(#"{"authenticationMode":"\#(mode)","issuer":"https://i"}"#)
        #expect(e.contains("'clientCertificates.caFile' is required"))
        #expect(e.contains("'\(mode)'"))
        #expect(error(#"{"authenticationMode":"\#(mode)","issuer":"https://i","clientCertificates":{"userFrom":"cn"}}"#)
                    .contains("'clientCertificates.caFile' is required"))
    }

    @Test func badValuesNameTheKey() {
        let mode = error(#"{"authenticationMode":"certificates","issuer":"https://i"}"#)
        #expect(mode.contains("'authenticationMode'"))
        #expect(mode.contains("'certificate-or-token'"))
        #expect(mode.contains("'certificates'"))
        let mapping = error(#"{"issuer":"https://i","clientCertificates":{"caFile":"\#(ca)","userFrom":"sn"}}"#)
        #expect(mapping.contains("'clientCertificates.userFrom'"))
        #expect(mapping.contains("'uid'"))
        #expect(error(#"{"issuer":"https://i","clientCertificates":{"caFile":"\#(ca)","crl":"x"}}"#).contains("'clientCertificates.crl'"))
        #expect(error(#"{"issuer":"https://i","clientCertificates":"\#(ca)"}"#).contains("'clientCertificates' has the wrong type (expected an object)"))
        #expect(error(#"{"issuer":"https://i","clientCertificates":{"caFile":7}}"#).contains("'clientCertificates.caFile' has the wrong type"))
        #expect(error(#"{"issuer":"https://i","clientCertificates":{"caFile":""}}"#).contains("'clientCertificates.caFile' must not be empty"))
        #expect(error(#"{"issuer":"https://i","authenticationMode":7}"#).contains("'authenticationMode' has the wrong type"))
    }

    @Test func filesAreCheckedAtLoad() {
        let missing = error(#"{"authenticationMode":"certificate","clientCertificates":{"caFile":"/nonexistent/ca.pem"}}"#)
        #expect(missing.contains("'clientCertificates.caFile' /nonexistent/ca.pem: no such file"))
        let notPEM = error(#"{"authenticationMode":"certificate","clientCertificates":{"caFile":"\#(PKI.path("crl.der"))"}}"#)
        #expect(notPEM.contains("'clientCertificates.caFile'"))
        #expect(notPEM.contains("no PEM certificate"))
        let key = error(#"{"authenticationMode":"certificate","clientCertificates":{"caFile":"\#(PKI.path("alice.key"))"}}"#)
        #expect(key.contains("no PEM certificate"))
        let crlIsCert = error(#"{"authenticationMode":"certificate","clientCertificates":{"caFile":"\#(ca)","crlFile":"\#(ca)"}}"#)
        #expect(crlIsCert.contains("'clientCertificates.crlFile'"))
        #expect(crlIsCert.contains("no PEM CRL"))
        let crlMissing = error(#"{"authenticationMode":"certificate","clientCertificates":{"caFile":"\#(ca)","crlFile":"/nonexistent/crl"}}"#)
        #expect(crlMissing.contains("'clientCertificates.crlFile' /nonexistent/crl: no such file"))
        let garbage = error(#"{"authenticationMode":"certificate","clientCertificates":{"caFile":"\#(ca)","crlFile":"\#(PKI.path("make-pki.py"))"}}"#)
        #expect(garbage.contains("'clientCertificates.crlFile'"))
        #expect(garbage.contains("neither PEM nor DER"))
        // Relative paths are resolved against the state directory, and checked there.
        #expect(error(#"{"authenticationMode":"certificate","clientCertificates":{"caFile":"ca-bundle.pem"}}"#, stateDirectory: "/nonexistent")
                    .contains("/nonexistent/ca-bundle.pem"))
    }

    @Test func loadReportsTheFile() throws {
        let dir = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/auth.json"
        try Data(#"{"authenticationMode":"certificate","clientCertificates":{"caFile":"ca.pem"}}"#.utf8).write(to: URL(fileURLWithPath: path))
        do {
            _ = try AuthConfiguration.load(path: path, stateDirectory: dir)
            Issue.record("a missing caFile must fail the load")
        } catch {
            #expect(error.message.hasPrefix("\(path): 'clientCertificates.caFile' \(dir)/ca.pem: no such file"))
        }
        try PKI.file("ca.pem").write(to: URL(fileURLWithPath: dir + "/ca.pem"))
        let c = try AuthConfiguration.load(path: path, stateDirectory: dir)
        #expect(c.clientCertificates?.caFile == dir + "/ca.pem")
    }

    @Test func aCAFileWithoutCertificatesStopsTheVerifier() {
        #expect(throws: AuthConfigurationError.self) {
            _ = try ClientCertificateVerifier(configuration: ClientCertificateConfiguration(caFile: PKI.path("crl.pem")), logger: quietLogger)
        }
    }
}
