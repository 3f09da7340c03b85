import Crypto
import Foundation
import FuzzSupport
import GatewayAuth
import GatewayWire
import Logging

/// Token validation (GatewayAuth/TokenValidator.swift, an actor, driven to completion for
/// each input) with the JWKS and configuration of the committed bad-token corpus, JSON by
/// StrictJSON, keys by KeySet. Three modes, by the first byte:
/// - 0: the rest is a token as a client sends it;
/// - 1: [u16 n][n bytes of header JSON][payload JSON]: the fuzzer is the issuer, signs
///   header.payload with the issuer's ES256 key, and validates that, so every claim check
///   is reachable;
/// - 2: the rest is the issuer's JWKS document; a valid ES256 token is validated against it.
///
/// Invariants:
/// - a token accepted is one whose claims, read again with Foundation's JSON decoder into
///   JSONValue (a different parser), satisfy the configuration: alg allowed, kid known, no
///   crit/jku/x5u/jwk/x5c, typ JWT or at+jwt, signed by the key it names, exp after now,
///   nbf and iat not after now, iss and aud and tid the configured ones, required claim
///   present; and the identity it reports is the token's (oid or sub, exp);
/// - in mode 1 an accepted token says ES256 and names the ES256 key (or none);
/// - in mode 2 a token is accepted only if the document holds the signing key's x and y;
/// - a rejection's reason never contains the token's signature and stays short.
/// Before the first input: the shared validator loads its keys, the signing key is parsed
/// (what lives for the whole run is not allocated during an input, where libFuzzer looks
/// for leaks).
@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    let token = validES256Token
    let result = runBlocking { await sharedValidator.validate(token) }
    precondition(result.identity != nil, "the fuzzer's own valid token is refused: \(String(describing: result.rejection))")
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    switch input.byte() % 3 {
    case 0:
        let token = String(decoding: input.rest(), as: UTF8.self)
        check(token, runBlocking { await sharedValidator.validate(token) }, signedByFuzzer: false)
    case 1:
        let header = input.take(input.u16())
        let payload = input.rest()
        let token = sign(header: header, payload: payload)
        check(token, runBlocking { await sharedValidator.validate(token) }, signedByFuzzer: true)
    default:
        let document = input.rest()
        let validator = makeValidator(document)
        let result = runBlocking { await validator.validate(validES256Token) }
        if result.identity != nil {
            let text = String(decoding: document, as: UTF8.self)
            invariant(text.contains(publicX) && text.contains(publicY), "accepted with a JWKS that lacks the signing key: \(text.prefix(600))")
        }
    }
    return 0
}

// MARK: - The validator

/// The JWKS as bytes: a `Data` kept in a global hides its storage pointer from
/// LeakSanitizer (enum spare bits), which then reports it as leaked.
private struct MemorySource: JWKSSource {
    let bytes: [UInt8]
    var description: String { "memory" }
    func fetchJWKS() async throws(KeySourceError) -> Data { Data(bytes) }
}

private let configuration = AuthConfiguration(
    issuer: CorpusIssuer.issuer, audiences: [CorpusIssuer.audience], allowedTenants: [CorpusIssuer.tenant],
    requiredClaims: ["ver": "2.0"])

private func makeValidator(_ jwks: [UInt8]) -> TokenValidator {
    TokenValidator(configuration: configuration, source: MemorySource(bytes: jwks),
                   now: { Date(timeIntervalSince1970: TimeInterval(CorpusIssuer.now)) },
                   logger: Logger(label: "fuzz") { _ in SwiftLogNoOpLogHandler() })
}

private let sharedValidator = makeValidator(Array(CorpusIssuer.jwks.utf8))

// MARK: - Signing (mode 1)

private let signingKey = try! P256.Signing.PrivateKey(pemRepresentation: CorpusIssuer.ecPrivateKeyPEM)
private let publicX = base64url(signingKey.publicKey.x963Representation.dropFirst().prefix(32))
private let publicY = base64url(signingKey.publicKey.x963Representation.suffix(32))

private func sign(header: [UInt8], payload: [UInt8]) -> String {
    let input = base64url(header) + "." + base64url(payload)
    let signature = try! signingKey.signature(for: Data(input.utf8))
    return input + "." + base64url(signature.rawRepresentation)
}

private let validES256Token = sign(
    header: Array(#"{"alg":"ES256","typ":"JWT","kid":"ec-1"}"#.utf8),
    payload: Array(("{\"aud\":\"\(CorpusIssuer.audience)\",\"iss\":\"\(CorpusIssuer.issuer)\",\"tid\":\"\(CorpusIssuer.tenant)\","
        + "\"iat\":1767225600,\"exp\":4102444800,\"oid\":\"0c0ffee0-0000-4000-8000-000000000001\",\"ver\":\"2.0\"}").utf8))

func base64url(_ bytes: some Sequence<UInt8>) -> String {
    Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        .replacingOccurrences(of: "=", with: "")
}

/// Lenient base64url (what the validator accepted already decoded).
func base64urlDecode(_ s: Substring) -> Data? {
    var t = s.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
    while t.utf8.count % 4 != 0 { t += "=" }
    return Data(base64Encoded: t)
}

// MARK: - The checks

private func check(_ token: String, _ result: TokenValidationResult, signedByFuzzer: Bool) {
    if let rejection = result.rejection {
        invariant(result.identity == nil, "a rejection with an identity")
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        if parts.count == 3, parts[2].utf8.count > 16 {
            invariant(!rejection.reason.contains(parts[2]), "the reason '\(rejection.reason.prefix(200))' contains the signature")
        }
        invariant(rejection.reason.utf8.count < 2048, "a reason of \(rejection.reason.utf8.count) bytes")
        return
    }
    guard let identity = result.identity else {
        invariant(false, "neither identity nor rejection")
        return
    }
    let parts = token.split(separator: ".", omittingEmptySubsequences: false)
    invariant(parts.count == 3, "accepted a token of \(parts.count) parts")
    guard let h = base64urlDecode(parts[0]), let p = base64urlDecode(parts[1]),
          let header = try? JSONDecoder().decode([String: JSONValue].self, from: h),
          let claims = try? JSONDecoder().decode([String: JSONValue].self, from: p) else {
        invariant(false, "accepted a token whose header or payload Foundation cannot read: \(token.prefix(300))")
        return
    }
    let why = "accepted \(String(decoding: h, as: UTF8.self)) . \(String(decoding: p, as: UTF8.self))"

    // Header.
    guard case .string(let alg)? = header["alg"] else { return invariant(false, "no alg: \(why)") }
    invariant(["RS256", "ES256"].contains(alg), "alg \(alg): \(why)")
    if let kid = header["kid"] {
        invariant([.string("rsa-1"), .string("rsa-2"), .string("ec-1")].contains(kid), "kid \(kid): \(why)")
    }
    for name in ["crit", "jku", "x5u", "jwk", "x5c"] { invariant(header[name] == nil, "header \(name): \(why)") }
    if let typ = header["typ"] {
        invariant(["jwt", "at+jwt", "application/at+jwt"].contains(typ.stringValue?.lowercased() ?? "-"), "typ \(typ): \(why)")
    }
    if signedByFuzzer {
        invariant(alg == "ES256" && (header["kid"] == nil || header["kid"] == .string("ec-1")),
                  "a token the fuzzer signed with ec-1 was accepted as \(alg)/\(String(describing: header["kid"])): \(why)")
    }

    // Claims.
    let now = CorpusIssuer.now
    let skew = Int64(configuration.clockSkewSeconds)
    guard let exp = seconds(claims["exp"]) else { return invariant(false, "exp: \(why)") }
    invariant(now < exp + skew, "expired: \(why)")
    if let nbf = claims["nbf"] { invariant(seconds(nbf).map { now + skew >= $0 } == true, "nbf: \(why)") }
    if let iat = claims["iat"] { invariant(seconds(iat).map { $0 <= now + skew } == true, "iat: \(why)") }
    invariant(bytes(claims["iss"]) == Array(CorpusIssuer.issuer.utf8), "iss: \(why)")
    let audiences: [JSONValue]
    switch claims["aud"] {
    case .array(let list)?: audiences = list
    case let one?: audiences = [one]
    case nil: audiences = []
    }
    invariant(audiences.contains { bytes($0) == Array(CorpusIssuer.audience.utf8) }, "aud: \(why)")
    invariant(bytes(claims["tid"]) == Array(CorpusIssuer.tenant.utf8), "tid: \(why)")
    let ver = claims["ver"]
    invariant(ver == .string("2.0") || (ver.map { if case .array(let l) = $0 { l.contains(.string("2.0")) } else { false } } ?? false), "ver: \(why)")

    // Identity.
    let userId = nonEmpty(claims["oid"]) ?? nonEmpty(claims["sub"])
    invariant(userId != nil && identity.userId == userId, "identity \(identity.userId): \(why)")
    invariant(identity.expiresAt == exp, "identity expires \(identity.expiresAt), exp \(exp): \(why)")
    invariant(identity.tenantId == CorpusIssuer.tenant, "identity tenant: \(why)")
}

private func seconds(_ v: JSONValue?) -> Int64? {
    switch v {
    case .int(let i)?: return i > -1_000_000_000_000_000 && i < 1_000_000_000_000_000 ? i : nil
    case .double(let d)?: return d.isFinite && abs(d) < 1e15 ? Int64(d.rounded(.down)) : nil
    default: return nil
    }
}

private func bytes(_ v: JSONValue?) -> [UInt8]? {
    if case .string(let s)? = v { return Array(s.utf8) }
    return nil
}

private func nonEmpty(_ v: JSONValue?) -> String? {
    if case .string(let s)? = v, !s.isEmpty { return s }
    return nil
}

/// The entry point a debug build links as `main` (see CFuzzDriver/include/fuzz_driver.h).
@_cdecl("fuzz_jwt_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runLibFuzzer(argc, argv)
}
