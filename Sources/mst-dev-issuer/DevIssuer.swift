import ArgumentParser
import Crypto
import CryptoExtras
import Foundation
import GatewayWire
import JWTKit
import GatewaySystem

/// A development token issuer: makes keys, a JWKS and signed (or deliberately broken)
/// access tokens for the integration tests and for trying the gateway without Entra ID.
/// Works entirely offline from files in one directory.
@main
struct DevIssuer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mst-dev-issuer",
        abstract: "Development/test token issuer for mstunnel-auth (never use in production).",
        version: ProductVersion.string,
        subcommands: [Init.self, Mint.self, Discovery.self])
}

struct DevIssuerError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

// MARK: - init

struct Init: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create signing keys (rsa-1, ec-1), a foreign key (other) and jwks.json in a directory.")

    @Option(help: "Directory for the keys (created if missing).")
    var dir: String

    @Option(help: "Issuer written into the sample auth.json.")
    var issuer: String = "https://mst-dev-issuer.invalid"

    @Flag(help: "Overwrite existing keys.")
    var force = false

    func run() async throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let jwksPath = path("jwks.json")
        if !force, FileManager.default.fileExists(atPath: jwksPath) {
            throw DevIssuerError("\(jwksPath) already exists (use --force to replace the keys)")
        }
        let rsa = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        let ec = P256.Signing.PrivateKey()
        let other = try _RSA.Signing.PrivateKey(keySize: .bits2048)

        try writeFile(path("rsa-1.pem"), rsa.pemRepresentation, mode: 0o600)
        try writeFile(path("ec-1.pem"), ec.pemRepresentation, mode: 0o600)
        try writeFile(path("other.pem"), other.pemRepresentation, mode: 0o600)
        try writeFile(path("rsa-1.pub.pem"), rsa.publicKey.pemRepresentation, mode: 0o644)
        try writeFile(path("ec-1.pub.pem"), ec.publicKey.pemRepresentation, mode: 0o644)

        let rsaPrimitives = try rsa.publicKey.getKeyPrimitives()
        let point = ec.publicKey.x963Representation  // 0x04 || X (32) || Y (32)
        var rsaJWK: [String: String] = [
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": "rsa-1",
            "n": b64url(rsaPrimitives.modulus), "e": b64url(rsaPrimitives.publicExponent),
        ]
        var ecJWK: [String: String] = [
            "kty": "EC", "use": "sig", "alg": "ES256", "kid": "ec-1", "crv": "P-256",
            "x": b64url(point.dropFirst().prefix(32)), "y": b64url(point.dropFirst(33)),
        ]
        try writeJSON(jwksPath, ["keys": [rsaJWK, ecJWK]], mode: 0o644)
        // The same keys without "alg", the way Entra ID publishes its keys.
        rsaJWK["alg"] = nil
        ecJWK["alg"] = nil
        try writeJSON(path("jwks-noalg.json"), ["keys": [rsaJWK, ecJWK]], mode: 0o644)
        try writeJSON(path("auth.json"), [
            "issuer": issuer,
            "jwksFile": URL(fileURLWithPath: jwksPath).standardizedFileURL.path,
        ], mode: 0o644)
        print("wrote \(path("jwks.json")), \(path("jwks-noalg.json")), rsa-1.pem, ec-1.pem, other.pem, auth.json in \(dir)")
    }

    func path(_ name: String) -> String { URL(fileURLWithPath: dir).appendingPathComponent(name).path }
}

// MARK: - mint

struct Mint: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a compact JWT signed with one of the keys made by init (or a deliberately bad one).")

    @Option(help: "Directory made by init.")
    var dir: String

    @Option(help: "RS256, RS384, RS512, PS256, ES256, none (unsigned) or HS256 (HMAC keyed with the RSA public key PEM).")
    var alg: String = "RS256"

    @Option(help: "Signing key: rsa-1, ec-1 or other (an RSA key not in the JWKS). Default: ec-1 for ES256, else rsa-1.")
    var key: String?

    @Option(help: "Header kid. Default: the key's name (rsa-1 for --key other); an empty string omits it.")
    var kid: String?

    @Option(help: "iss claim.")
    var iss: String

    @Option(help: "aud claim; repeat for an array.")
    var aud: [String]

    @Option(help: "tid claim (empty string omits it).")
    var tid: String = ""

    @Option(help: "oid claim (empty string omits it).")
    var oid: String = ""

    @Option(help: "sub claim. Default: the oid; empty string omits it.")
    var sub: String?

    @Option(help: "upn claim.")
    var upn: String?

    @Option(help: "deviceid claim.")
    var deviceid: String?

    @Option(name: .customLong("exp-in"), parsing: .unconditional, help: "exp = now + SECONDS (negative allowed).")
    var expIn: Int = 3600

    @Option(name: .customLong("nbf-in"), parsing: .unconditional, help: "nbf = now + SECONDS.")
    var nbfIn: Int = 0

    @Option(name: .customLong("iat-in"), parsing: .unconditional, help: "iat = now + SECONDS.")
    var iatIn: Int = 0

    @Flag(name: .customLong("no-exp"), help: "Leave out exp.")
    var noExp = false

    @Option(help: "The time tokens are minted at, seconds since 1970 (default: now).")
    var now: Int64?

    @Option(help: "Extra string claim k=v (repeatable).")
    var claim: [String] = []

    @Option(name: .customLong("claim-json"), help: "Extra claim k=JSON, e.g. roles='[\"Tunnel.Users\"]' (repeatable).")
    var claimJSON: [String] = []

    func run() async throws {
        let base = now ?? Int64(Date().timeIntervalSince1970)
        var claims: [String: Claim] = [:]
        claims["iss"] = .string(iss)
        claims["aud"] = aud.count == 1 ? .string(aud[0]) : .array(aud.map(Claim.string))
        if !tid.isEmpty { claims["tid"] = .string(tid) }
        if !oid.isEmpty { claims["oid"] = .string(oid) }
        let subject = sub ?? oid
        if !subject.isEmpty { claims["sub"] = .string(subject) }
        if let upn { claims["upn"] = .string(upn) }
        if let deviceid { claims["deviceid"] = .string(deviceid) }
        if !noExp { claims["exp"] = .int(base + Int64(expIn)) }
        claims["nbf"] = .int(base + Int64(nbfIn))
        claims["iat"] = .int(base + Int64(iatIn))
        for item in claim {
            let (k, v) = try split(item, option: "--claim")
            claims[k] = .string(v)
        }
        for item in claimJSON {
            let (k, v) = try split(item, option: "--claim-json")
            guard let value = try? JSONDecoder().decode(Claim.self, from: Data(v.utf8)) else {
                throw DevIssuerError("--claim-json \(k): '\(v)' is not JSON")
            }
            claims[k] = value
        }
        let payload = Claims(values: claims)

        let keyName = key ?? (alg.hasPrefix("ES") ? "ec-1" : "rsa-1")
        guard ["rsa-1", "ec-1", "other"].contains(keyName) else {
            throw DevIssuerError("--key must be rsa-1, ec-1 or other")
        }
        let headerKid = kid ?? (keyName == "other" ? "rsa-1" : keyName)
        guard let pem = try? String(contentsOfFile: pemPath(keyName), encoding: .utf8) else {
            throw DevIssuerError("cannot read \(pemPath(keyName)) (run 'mst-dev-issuer init --dir \(dir)' first)")
        }

        let token: String
        switch alg {
        case "none":
            token = try handCrafted(header: header(alg: "none", kid: headerKid), payload: payload) { _ in [] }
        case "HS256":
            // The classic key-confusion attack: HMAC keyed with the verifier's public key.
            guard keyName != "ec-1" else { throw DevIssuerError("HS256 confusion uses an RSA public key; pick --key rsa-1 or other") }
            let publicPEM = try Insecure.RSA.PrivateKey(pem: pem).publicKey.pemRepresentation
            let secret = SymmetricKey(data: Data(publicPEM.utf8))
            token = try handCrafted(header: header(alg: "HS256", kid: headerKid), payload: payload) { input in
                Array(HMAC<SHA256>.authenticationCode(for: input, using: secret))
            }
        case "RS256", "RS384", "RS512", "PS256":
            guard keyName != "ec-1" else { throw DevIssuerError("\(alg) needs an RSA key; pick --key rsa-1 or other") }
            let rsa = try Insecure.RSA.PrivateKey(pem: pem)
            let digest: DigestAlgorithm = alg.hasSuffix("384") ? .sha384 : alg.hasSuffix("512") ? .sha512 : .sha256
            let keys = JWTKeyCollection()
            let kidValue = headerKid.isEmpty ? nil : JWKIdentifier(string: headerKid)
            if alg == "PS256" {
                await keys.add(pss: rsa, digestAlgorithm: digest, kid: kidValue)
            } else {
                await keys.add(rsa: rsa, digestAlgorithm: digest, kid: kidValue)
            }
            token = try await keys.sign(payload, kid: kidValue)
        case "ES256":
            guard keyName == "ec-1" else { throw DevIssuerError("ES256 needs the EC key; use --key ec-1") }
            let ec = try ES256PrivateKey(pem: pem)
            let keys = JWTKeyCollection()
            let kidValue = headerKid.isEmpty ? nil : JWKIdentifier(string: headerKid)
            await keys.add(ecdsa: ec, kid: kidValue)
            token = try await keys.sign(payload, kid: kidValue)
        default:
            throw DevIssuerError("--alg must be one of RS256, RS384, RS512, PS256, ES256, none, HS256")
        }
        print(token)
    }

    func pemPath(_ name: String) -> String { URL(fileURLWithPath: dir).appendingPathComponent("\(name).pem").path }

    func header(alg: String, kid: String) -> [String: Claim] {
        var h: [String: Claim] = ["alg": .string(alg), "typ": .string("JWT")]
        if !kid.isEmpty { h["kid"] = .string(kid) }
        return h
    }

    /// Builds `header.payload.signature` by hand, for the tokens no library will sign.
    func handCrafted(header: [String: Claim], payload: Claims, sign: ([UInt8]) -> [UInt8]) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let signingInput = b64url(try encoder.encode(header)) + "." + b64url(try encoder.encode(payload))
        return signingInput + "." + b64url(sign(Array(signingInput.utf8)))
    }

    func split(_ item: String, option: String) throws -> (String, String) {
        guard let eq = item.firstIndex(of: "="), eq != item.startIndex else {
            throw DevIssuerError("\(option) wants key=value, got '\(item)'")
        }
        return (String(item[..<eq]), String(item[item.index(after: eq)...]))
    }
}

// MARK: - discovery

struct Discovery: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write an OpenID discovery document (D/openid-configuration and D/.well-known/openid-configuration).")

    @Option(help: "Output directory.")
    var dir: String

    @Option(help: "The issuer the document announces.")
    var issuer: String

    @Option(name: .customLong("jwks-uri"), help: "Where the JWKS is served.")
    var jwksURI: String

    func run() async throws {
        let document: [String: Any] = [
            "issuer": issuer,
            "jwks_uri": jwksURI,
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            "response_types_supported": ["code"],
            "subject_types_supported": ["pairwise"],
        ]
        let root = URL(fileURLWithPath: dir)
        let wellKnown = root.appendingPathComponent(".well-known")
        try FileManager.default.createDirectory(at: wellKnown, withIntermediateDirectories: true)
        try writeJSON(root.appendingPathComponent("openid-configuration").path, document, mode: 0o644)
        try writeJSON(wellKnown.appendingPathComponent("openid-configuration").path, document, mode: 0o644)
        print("wrote \(root.appendingPathComponent("openid-configuration").path)")
    }
}

// MARK: - helpers

/// A JSON claim value, so `--claim-json` can carry arrays, numbers and booleans.
enum Claim: Codable {
    case string(String), int(Int64), double(Double), bool(Bool), array([Claim]), object([String: Claim]), null

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int64.self) { self = .int(i) }
        else if let d = try? c.decode(Double.self) { self = .double(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([Claim].self) { self = .array(a) }
        else { self = .object(try c.decode([String: Claim].self)) }
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .string(let s): try c.encode(s)
        case .int(let i): try c.encode(i)
        case .double(let d): try c.encode(d)
        case .bool(let b): try c.encode(b)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        case .null: try c.encodeNil()
        }
    }
}

/// Arbitrary claims as a jwt-kit payload. The issuer does not verify its own tokens.
struct Claims: JWTPayload {
    var values: [String: Claim]
    init(values: [String: Claim]) { self.values = values }
    init(from decoder: any Decoder) throws { values = try [String: Claim](from: decoder) }
    func encode(to encoder: any Encoder) throws { try values.encode(to: encoder) }
    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

func b64url(_ bytes: some DataProtocol) -> String {
    Data(bytes).base64EncodedString()
        .replacingOccurrences(of: "+", with: "-")
        .replacingOccurrences(of: "/", with: "_")
        .replacingOccurrences(of: "=", with: "")
}

/// Creates or replaces a file with `mode` from the start (private keys never exist with
/// wider permissions, whatever the umask).
func writeFile(_ path: String, _ text: String, mode: mode_t) throws {
    unlink(path)
    let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
    guard fd >= 0 else { throw DevIssuerError("cannot create \(path): \(SystemError.reason(errno))") }
    defer { close(fd) }
    _ = fchmod(fd, mode)
    let bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            throw DevIssuerError("cannot write \(path): \(SystemError.reason(errno))")
        }
        offset += n
    }
}

func writeJSON(_ path: String, _ object: Any, mode: mode_t) throws {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    try writeFile(path, String(decoding: data, as: UTF8.self) + "\n", mode: mode)
}
