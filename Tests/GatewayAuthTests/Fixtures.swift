import Crypto
import CryptoExtras
import Foundation
import GatewayAuth
import GatewayIPC
import JWTKit
import Logging

/// Keys shared by all tests: RSA generation is the slow part, so it happens once.
enum TestKeys {
    static let issuer = "https://login.example.test/tenant-1/v2.0"
    static let audience = AuthConfiguration.defaultAudience
    static let tenant = "11111111-2222-3333-4444-555555555555"

    static let rsa: _RSA.Signing.PrivateKey = generateRSA()
    static let rsa2: _RSA.Signing.PrivateKey = generateRSA()
    static let other: _RSA.Signing.PrivateKey = generateRSA()
    static let ec = P256.Signing.PrivateKey()

    private static func generateRSA() -> _RSA.Signing.PrivateKey {
        do {
            return try _RSA.Signing.PrivateKey(keySize: .bits2048)
        } catch {
            fatalError("RSA key generation failed in the test fixture: \(error)")
        }
    }

    static func rsaJWK(_ key: _RSA.Signing.PrivateKey, kid: String, alg: String? = "RS256") -> [String: String] {
        guard let p = try? key.publicKey.getKeyPrimitives() else { return [:] }
        var jwk = ["kty": "RSA", "use": "sig", "kid": kid, "n": b64url(p.modulus), "e": b64url(p.publicExponent)]
        if let alg { jwk["alg"] = alg }
        return jwk
    }

    static func ecJWK(kid: String, alg: String? = "ES256") -> [String: String] {
        let point = ec.publicKey.x963Representation
        var jwk = ["kty": "EC", "use": "sig", "kid": kid, "crv": "P-256",
                   "x": b64url(point.dropFirst().prefix(32)), "y": b64url(point.dropFirst(33))]
        if let alg { jwk["alg"] = alg }
        return jwk
    }

    /// The standard JWKS: rsa-1 and ec-1.
    static func jwks(withAlg: Bool = true, extra: [[String: String]] = []) -> Data {
        let keys = [rsaJWK(rsa, kid: "rsa-1", alg: withAlg ? "RS256" : nil), ecJWK(kid: "ec-1", alg: withAlg ? "ES256" : nil)] + extra
        return (try? JSONSerialization.data(withJSONObject: ["keys": keys], options: [.sortedKeys])) ?? Data()
    }
}

func b64url(_ bytes: some DataProtocol) -> String {
    Data(bytes).base64EncodedString()
        .replacingOccurrences(of: "+", with: "-")
        .replacingOccurrences(of: "/", with: "_")
        .replacingOccurrences(of: "=", with: "")
}

/// A clock the tests move by hand.
final class TestClock: @unchecked Sendable {
    // @unchecked: `current` is only read and written under `lock`.
    private let lock = GatewayIPC.Mutex()
    private var current: Date

    init(_ start: Date = Date(timeIntervalSince1970: 1_800_000_000)) { current = start }

    var now: Date { lock.withLock { current } }
    var seconds: Int64 { Int64(now.timeIntervalSince1970) }
    func advance(_ s: TimeInterval) { lock.withLock { current = current.addingTimeInterval(s) } }
    var function: @Sendable () -> Date { { [self] in now } }
}

/// An in-memory key source that counts fetches and can be switched to fail.
actor MemoryJWKSSource: JWKSSource {
    nonisolated let description = "memory"
    private(set) var fetches = 0
    var document: Data
    var failure: String?

    init(_ document: Data = TestKeys.jwks()) { self.document = document }

    func set(_ document: Data) { self.document = document }
    func fail(_ message: String?) { failure = message }

    func fetchJWKS() async throws(KeySourceError) -> Data {
        fetches += 1
        if let failure { throw KeySourceError(failure) }
        return document
    }
}

/// A JSON value for building claims.
enum Claim: Encodable, Sendable {
    case string(String), int(Int64), array([Claim]), bool(Bool), object([String: Claim])

    func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .string(let s): try c.encode(s)
        case .int(let i): try c.encode(i)
        case .array(let a): try c.encode(a)
        case .bool(let b): try c.encode(b)
        case .object(let o): try c.encode(o)
        }
    }
}

struct Claims: JWTPayload {
    var values: [String: Claim]
    init(_ values: [String: Claim]) { self.values = values }
    init(from decoder: any Decoder) throws { values = [:] }
    func encode(to encoder: any Encoder) throws { try values.encode(to: encoder) }
    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// Builds tokens the way an issuer would, plus the broken ones an attacker would.
enum Mint {
    static func claims(now: Int64, exp: Int64? = 3600, oid: String? = "user-oid-1", sub: String? = "user-sub-1",
                       iss: String = TestKeys.issuer, aud: Claim = .string(TestKeys.audience),
                       tid: String? = TestKeys.tenant, extra: [String: Claim] = [:]) -> [String: Claim] {
        var c: [String: Claim] = ["iss": .string(iss), "aud": aud, "iat": .int(now), "nbf": .int(now),
                                  "upn": .string("alice@example.test"), "deviceid": .string("device-42")]
        if let exp { c["exp"] = .int(now + exp) }
        if let oid { c["oid"] = .string(oid) }
        if let sub { c["sub"] = .string(sub) }
        if let tid { c["tid"] = .string(tid) }
        for (k, v) in extra { c[k] = v }
        return c
    }

    static func rs256(_ claims: [String: Claim], key: _RSA.Signing.PrivateKey = TestKeys.rsa, kid: String? = "rsa-1",
                      digest: DigestAlgorithm = .sha256) async throws -> String {
        let keys = JWTKeyCollection()
        let id = kid.map { JWKIdentifier(string: $0) }
        await keys.add(rsa: try Insecure.RSA.PrivateKey(backing: key), digestAlgorithm: digest, kid: id)
        return try await keys.sign(Claims(claims), kid: id)
    }

    static func ps256(_ claims: [String: Claim], kid: String = "rsa-1") async throws -> String {
        let keys = JWTKeyCollection()
        await keys.add(pss: try Insecure.RSA.PrivateKey(backing: TestKeys.rsa), digestAlgorithm: .sha256, kid: JWKIdentifier(string: kid))
        return try await keys.sign(Claims(claims), kid: JWKIdentifier(string: kid))
    }

    static func es256(_ claims: [String: Claim], kid: String = "ec-1") async throws -> String {
        let keys = JWTKeyCollection()
        await keys.add(ecdsa: try ES256PrivateKey(backing: TestKeys.ec), kid: JWKIdentifier(string: kid))
        return try await keys.sign(Claims(claims), kid: JWKIdentifier(string: kid))
    }

    static func handCrafted(header: [String: Claim], claims: [String: Claim], sign: ([UInt8]) -> [UInt8]) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let input = b64url(try encoder.encode(header)) + "." + b64url(try encoder.encode(claims))
        return input + "." + b64url(sign(Array(input.utf8)))
    }

    static func none(_ claims: [String: Claim]) throws -> String {
        try handCrafted(header: ["alg": .string("none"), "typ": .string("JWT"), "kid": .string("rsa-1")], claims: claims) { _ in [] }
    }

    /// HS256 keyed with the RSA public key PEM: the key-confusion attack.
    static func hs256Confusion(_ claims: [String: Claim]) throws -> String {
        let secret = SymmetricKey(data: Data(TestKeys.rsa.publicKey.pemRepresentation.utf8))
        return try handCrafted(header: ["alg": .string("HS256"), "typ": .string("JWT"), "kid": .string("rsa-1")], claims: claims) {
            Array(HMAC<SHA256>.authenticationCode(for: $0, using: secret))
        }
    }
}

/// Collects log lines so tests can check what is (and is not) logged.
final class LogCapture: @unchecked Sendable {
    // @unchecked: `lines` is only touched under `lock`.
    private let lock = GatewayIPC.Mutex()
    private var lines: [String] = []

    func append(_ line: String) { lock.withLock { lines.append(line) } }
    var all: [String] { lock.withLock { lines } }

    var logger: Logger {
        Logger(label: "test") { _ in CapturingHandler(capture: self) }
    }

    struct CapturingHandler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let meta = (event.metadata ?? [:]).merging(metadata) { a, _ in a }
            capture.append("\(event.level) \(event.message) " + meta.keys.sorted().map { "\($0)=\(meta[$0]?.description ?? "")" }.joined(separator: " "))
        }
    }
}

let quietLogger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

func makeValidator(_ config: AuthConfiguration = AuthConfiguration(issuer: TestKeys.issuer),
                   source: any JWKSSource = MemoryJWKSSource(), clock: TestClock = TestClock(),
                   logger: Logger = quietLogger) -> TokenValidator {
    TokenValidator(configuration: config, source: source, now: clock.function, logger: logger)
}

/// Runs blocking socket work on its own thread. The tests' async functions share the
/// small cooperative pool with the server's validation Tasks; a blocking recv() there
/// would starve the very Tasks it waits for.
func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}
