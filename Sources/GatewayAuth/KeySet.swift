import Foundation
import JWTKit

/// One usable public key from the issuer's JWKS.
///
/// Each key holds one jwt-kit collection per algorithm it may verify, each containing
/// only this key. Pinning the algorithm per key (from its JWK `alg`, or inferred from
/// `kty`/`crv` when absent, as Entra publishes them) means a token can never pick an
/// algorithm its key was not meant for: an RS256 header naming an EC key finds no
/// verifier; an HS256 header never reaches this far.
struct VerificationKey: Sendable {
    /// The JWK `kid`, or a synthetic `#n` for a key published without one.
    let kid: String
    /// "RSA" or "EC P-256" style description, for reasons and logs.
    let summary: String
    let verifiers: [SupportedAlgorithm: JWTKeyCollection]
}

/// The issuer's keys as loaded at one moment.
struct KeySet: Sendable {
    let keys: [VerificationKey]
    let byKid: [String: [VerificationKey]]
    let loadedAt: Date
    /// Why some JWKS entries were not used (wrong `use`, unsupported `kty`, too-small RSA…).
    let skipped: [String]

    /// A JWKS is a few keys; anything much larger is a misconfiguration or an attack on
    /// our CPU (each RSA key is parsed per algorithm).
    static let maxKeys = 64

    var kids: [String] { keys.map(\.kid) }

    static func build(from data: Data, algorithms: [SupportedAlgorithm], loadedAt: Date) async throws(KeySourceError) -> KeySet {
        guard let document = JSONValue.parseObject(data) else {
            throw KeySourceError("JWKS is not a JSON object")
        }
        guard case .array(let entries)? = document["keys"] else {
            throw KeySourceError("JWKS has no 'keys' array")
        }
        var keys: [VerificationKey] = []
        var skipped: [String] = []
        for (index, entry) in entries.enumerated() {
            if keys.count >= maxKeys {
                skipped.append("keys after the first \(maxKeys) ignored")
                break
            }
            guard case .object(let jwk) = entry else {
                skipped.append("entry \(index): not an object")
                continue
            }
            switch await makeKey(jwk, index: index, algorithms: algorithms) {
            case .success(let key): keys.append(key)
            case .failure(let why): skipped.append(why.message)
            }
        }
        var byKid: [String: [VerificationKey]] = [:]
        for key in keys { byKid[key.kid, default: []].append(key) }
        return KeySet(keys: keys, byKid: byKid, loadedAt: loadedAt, skipped: skipped)
    }

    private static func makeKey(_ jwk: [String: JSONValue], index: Int, algorithms: [SupportedAlgorithm]) async -> Result<VerificationKey, KeySourceError> {
        let named = jwk["kid"]?.stringValue
        let kid = named ?? "#\(index)"
        let label = named.map { "key '\($0)'" } ?? "key #\(index) (no kid)"
        guard let kty = jwk["kty"]?.stringValue else {
            return .failure(KeySourceError("\(label): no 'kty'"))
        }
        if let use = jwk["use"]?.stringValue, use != "sig" {
            return .failure(KeySourceError("\(label): 'use' is '\(use)', not 'sig'"))
        }
        if case .array(let ops)? = jwk["key_ops"], !ops.contains(.string("verify")) {
            return .failure(KeySourceError("\(label): 'key_ops' does not include 'verify'"))
        }
        let declared: SupportedAlgorithm?
        if let alg = jwk["alg"]?.stringValue {
            guard let a = SupportedAlgorithm(rawValue: alg), a.keyType == kty else {
                return .failure(KeySourceError("\(label): 'alg' '\(alg)' is not a supported signature algorithm for kty '\(kty)'"))
            }
            declared = a
        } else {
            declared = nil
        }

        let summary: String
        let makeJWK: (SupportedAlgorithm) -> JWK?
        switch kty {
        case "RSA":
            guard let n = jwk["n"]?.stringValue, let e = jwk["e"]?.stringValue else {
                return .failure(KeySourceError("\(label): RSA key without 'n'/'e'"))
            }
            summary = "RSA"
            makeJWK = { alg in
                JWK.rsa(JWK.Algorithm(rawValue: alg.rawValue), identifier: JWKIdentifier(string: kid), modulus: n, exponent: e)
            }
        case "EC":
            guard let crv = jwk["crv"]?.stringValue, let x = jwk["x"]?.stringValue, let y = jwk["y"]?.stringValue else {
                return .failure(KeySourceError("\(label): EC key without 'crv'/'x'/'y'"))
            }
            summary = "EC \(crv)"
            makeJWK = { alg in
                guard alg.curve == crv, let curve = ECDSACurve(rawValue: crv) else { return nil }
                return JWK.ecdsa(JWK.Algorithm(rawValue: alg.rawValue), identifier: JWKIdentifier(string: kid), x: x, y: y, curve: curve)
            }
        default:
            return .failure(KeySourceError("\(label): kty '\(kty)' is not used for token signatures"))
        }

        var verifiers: [SupportedAlgorithm: JWTKeyCollection] = [:]
        var lastError: String?
        for alg in algorithms where alg.keyType == kty && (declared == nil || declared == alg) {
            guard let key = makeJWK(alg) else { continue }
            let collection = JWTKeyCollection()
            do {
                try await collection.add(jwk: key)
                verifiers[alg] = collection
            } catch {
                lastError = "\(error)"
            }
        }
        if verifiers.isEmpty, let lastError {
            return .failure(KeySourceError("\(label): unusable \(summary) key: \(lastError)"))
        }
        return .success(VerificationKey(kid: kid, summary: summary, verifiers: verifiers))
    }
}

/// jwt-kit wants a payload type to decode after checking the signature; the claims are
/// checked by `TokenValidator` itself (with its own clock), so this one reads nothing.
struct SignatureOnlyPayload: JWTPayload {
    init() {}
    init(from decoder: any Decoder) throws {}
    func encode(to encoder: any Encoder) throws {}
    func verify(using algorithm: some JWTAlgorithm) async throws {}
}
