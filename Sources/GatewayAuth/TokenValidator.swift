import Crypto
import Foundation
import GatewayWire
import JWTKit
import Logging

/// The outcome of one validation: the wire answer plus what may be logged about the
/// token. Never the token itself and never its signature.
public struct TokenValidationResult: Sendable, Equatable {
    public var response: ValidateTokenResponse
    /// Header `kid` (attacker-controlled until the signature checked out; truncated).
    public var kid: String?
    /// Header `alg`.
    public var algorithm: String?
    /// Payload `iss` (truncated).
    public var issuer: String?
    /// First 16 hex digits of SHA-256(`sub`): correlates a user's failures without
    /// putting an identifier from an unverified token in the log.
    public var subjectHash: String?

    public var identity: Identity? { response.identity }
    public var rejection: TokenRejection? { response.rejection }
}

/// Validates Entra ID / OIDC access tokens against `AuthConfiguration`.
///
/// Checks run in a fixed order and the first failure is the answer:
/// structure → algorithm → key → signature → exp → nbf → iat → iss → aud → tid →
/// user id → required claims. Every rejection is a value with a stable code and a
/// human reason that never contains the token.
///
/// An actor because the key cache is shared by all concurrent validations and its
/// refresh must happen at most once per rate-limit window however many requests ask.
public actor TokenValidator {
    /// Larger than any real access token (Entra's stay well under 16 KiB, group overage
    /// keeps them from growing); bounds the work an attacker can ask for.
    public static let maxTokenBytes = 64 * 1024
    /// Reload window while no keys have ever loaded (`jwksMinRefreshSeconds` if smaller).
    public static let retryWithoutKeysSeconds = 10

    public nonisolated let configuration: AuthConfiguration
    public nonisolated let source: any JWKSSource
    private let now: @Sendable () -> Date
    private let logger: Logger

    private var keySet: KeySet?
    private var lastAttempt: Date?
    private var lastError: String?
    private var inflight: Task<RefreshOutcome, Never>?
    /// How many times the key source was asked (successful or not). For tests and status.
    public private(set) var fetchCount = 0

    enum RefreshOutcome: Sendable {
        case loaded
        case failed(String)
        case rateLimited(retryInSeconds: Int)
    }

    public init(configuration: AuthConfiguration, source: any JWKSSource,
                now: @escaping @Sendable () -> Date = { Date() }, logger: Logger) {
        self.configuration = configuration
        self.source = source
        self.now = now
        self.logger = logger
    }

    /// The `kid`s currently cached (synthetic `#n` for keys published without one).
    public var cachedKeyIDs: [String] { keySet?.kids ?? [] }

    /// Loads the keys now (at start-up). A failure is returned, not fatal: the next
    /// validation retries once the rate-limit window has passed.
    @discardableResult
    public func prefetch() async -> Result<Int, KeySourceError> {
        switch await refresh(reason: "startup") {
        case .loaded: return .success(keySet?.keys.count ?? 0)
        case .failed(let message): return .failure(KeySourceError(message))
        case .rateLimited:
            if let keySet { return .success(keySet.keys.count) }
            return .failure(KeySourceError(lastError ?? "keys not loaded"))
        }
    }

    public func validate(_ token: String) async -> TokenValidationResult {
        var result = TokenValidationResult(response: .rejected(.malformed, ""))
        func reject(_ code: TokenRejection.Code, _ reason: String) -> TokenValidationResult {
            var r = result
            r.response = .rejected(code, reason)
            return r
        }

        // 1. Structure: three base64url parts, JSON objects for header and payload.
        let size = token.utf8.count
        if size == 0 { return reject(.malformed, "empty token") }
        if size > Self.maxTokenBytes {
            return reject(.malformed, "token is \(size) bytes, the limit is \(Self.maxTokenBytes)")
        }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else {
            return reject(.malformed, "a JWT has 3 dot-separated parts, this one has \(parts.count)")
        }
        guard !parts[0].isEmpty, !parts[1].isEmpty else {
            return reject(.malformed, "empty JWT header or payload")
        }
        guard let headerBytes = Base64URL.decode(parts[0]) else {
            return reject(.malformed, "JWT header is not base64url")
        }
        let header: [String: JSONValue]
        do { header = try StrictJSON.parseObject(headerBytes) } catch {
            return reject(.malformed, "JWT header \(error.description)")
        }
        guard let payloadBytes = Base64URL.decode(parts[1]) else {
            return reject(.malformed, "JWT payload is not base64url")
        }
        let payload: [String: JSONValue]
        do { payload = try StrictJSON.parseObject(payloadBytes) } catch {
            return reject(.malformed, "JWT payload \(error.description)")
        }
        guard Base64URL.decode(parts[2]) != nil else {
            return reject(.malformed, "JWT signature is not base64url")
        }
        guard case .string(let alg)? = header["alg"] else {
            return reject(.malformed, "JWT header has no string 'alg'")
        }
        result.algorithm = Self.clip(alg, 32)
        var kid: String?
        if let k = header["kid"] {
            guard case .string(let s) = k else { return reject(.malformed, "JWT header 'kid' is not a string") }
            kid = s
            result.kid = Self.clip(s, 128)
        }
        result.issuer = payload["iss"]?.stringValue.map { Self.clip($0, 256) }
        result.subjectHash = payload["sub"]?.stringValue.map(Self.hashPrefix)
        if header["crit"] != nil {
            return reject(.malformed, "JWT header has 'crit' extensions; none are supported")
        }
        // The key comes from the configured issuer only. A header naming where to fetch a key
        // (jku, x5u) or carrying one (jwk, x5c) is an attempt to choose the key: refuse it
        // rather than ignore it, so the log says what was tried.
        for name in ["jku", "x5u", "jwk", "x5c"] where header[name] != nil {
            return reject(.malformed, "JWT header carries '\(name)'; keys come only from the issuer's JWKS")
        }
        // RFC 8725 §3.11: a token of another kind (an encrypted JWT, a DPoP proof, a logout
        // token…) must not pass as an access token. Entra sends "JWT"; RFC 9068 "at+jwt".
        if let typValue = header["typ"] {
            let typ = typValue.stringValue?.lowercased()
            guard let typ, ["jwt", "at+jwt", "application/at+jwt"].contains(typ) else {
                return reject(.malformed, "JWT header 'typ' is \(typValue.stringValue.map { "'\(Self.clip($0, 32))'" } ?? "not a string"), not an access token ('JWT' or 'at+jwt')")
            }
        }

        // 2. Algorithm allow-list. `none` and HMAC get their own words: they are attacks.
        let shownAlg = Self.clip(alg, 32)
        if alg.lowercased() == "none" {
            return reject(.algorithmNotAllowed, "unsigned token (alg 'none') is never accepted")
        }
        if alg.uppercased().hasPrefix("HS") {
            return reject(.algorithmNotAllowed, "HMAC algorithm '\(shownAlg)' is never accepted (a public key must not be used as a shared secret)")
        }
        guard let algorithm = SupportedAlgorithm(rawValue: alg), configuration.algorithms.contains(algorithm) else {
            return reject(.algorithmNotAllowed, "alg '\(shownAlg)' is not allowed (allowedAlgorithms: \(configuration.allowedAlgorithms.joined(separator: ", ")))")
        }

        // 3. Key: load if never loaded or too old (stale keys keep working if that fails).
        if keySet == nil {
            _ = await refresh(reason: "no keys loaded")
        } else if let loaded = keySet?.loadedAt, now().timeIntervalSince(loaded) >= Double(configuration.jwksMaxAgeSeconds) {
            _ = await refresh(reason: "keys older than jwksMaxAgeSeconds")
        }
        guard let keys = keySet else {
            return reject(.issuerUnavailable, "the issuer's signing keys are not available (\(lastError ?? "not loaded yet"))")
        }
        let verifiers: [JWTKeyCollection]
        if let kid {
            let shownKid = Self.clip(kid, 128)
            var entries = keys.byKid[kid]
            if entries == nil {
                switch await refresh(reason: "unknown kid") {
                case .failed(let message):
                    return reject(.issuerUnavailable, "kid '\(shownKid)' is not among the cached keys and reloading them failed: \(message)")
                case .rateLimited(let retry):
                    return reject(.unknownKey, "kid '\(shownKid)' is not among the issuer's keys (reload rate-limited, next in \(retry)s)")
                case .loaded:
                    entries = keySet?.byKid[kid]
                }
            }
            guard let entries else {
                return reject(.unknownKey, "kid '\(shownKid)' is not among the issuer's keys")
            }
            // Normally one key per kid; RFC 7517 allows several of different types.
            verifiers = entries.compactMap { $0.verifiers[algorithm] }
            if verifiers.isEmpty {
                let kinds = entries.map(\.summary).joined(separator: ", ")
                return reject(.algorithmNotAllowed, "key '\(shownKid)' (\(kinds)) cannot verify alg '\(algorithm.rawValue)'")
            }
        } else {
            // Without a kid the token is acceptable only if exactly one key could have signed it.
            let candidates = keys.keys.compactMap { $0.verifiers[algorithm] }
            guard candidates.count == 1 else {
                return reject(.unknownKey, "token has no 'kid' and \(candidates.count) of the issuer's keys could verify alg '\(algorithm.rawValue)'")
            }
            verifiers = candidates
        }

        // 4. Signature, by jwt-kit, with only the key(s) chosen above.
        var verified = false
        for verifier in verifiers where !verified {
            verified = (try? await verifier.verify(token, as: SignatureOnlyPayload.self)) != nil
        }
        if !verified {
            return reject(.badSignature, "signature does not verify with key '\(result.kid ?? "(only key)")'")
        }

        // 5. Claims, now that the issuer vouches for them.
        let nowSeconds = Int64(now().timeIntervalSince1970.rounded(.down))
        let skew = Int64(configuration.clockSkewSeconds)
        guard let expValue = payload["exp"] else {
            return reject(.missingClaim, "token has no 'exp'")
        }
        guard let exp = expValue.numericDate else {
            return reject(.malformed, "'exp' is a \(expValue.typeName), not a number")
        }
        if nowSeconds >= exp + skew {
            return reject(.expired, "token expired at \(Self.time(exp)) (now \(Self.time(nowSeconds)), skew \(skew)s)")
        }
        if let nbfValue = payload["nbf"] {
            guard let nbf = nbfValue.numericDate else { return reject(.malformed, "'nbf' is a \(nbfValue.typeName), not a number") }
            if nowSeconds + skew < nbf {
                return reject(.notYetValid, "token not valid before \(Self.time(nbf)) (now \(Self.time(nowSeconds)), skew \(skew)s)")
            }
        }
        if let iatValue = payload["iat"] {
            guard let iat = iatValue.numericDate else { return reject(.malformed, "'iat' is a \(iatValue.typeName), not a number") }
            if iat > nowSeconds + skew {
                return reject(.issuedInFuture, "token issued in the future at \(Self.time(iat)) (now \(Self.time(nowSeconds)), skew \(skew)s)")
            }
        }
        guard let iss = payload["iss"]?.stringValue else {
            return reject(.badIssuer, "token has no string 'iss'")
        }
        guard iss == configuration.issuer else {
            return reject(.badIssuer, "issuer '\(Self.clip(iss, 256))' is not the configured issuer '\(configuration.issuer)'")
        }
        let audiences: [String]
        switch payload["aud"] {
        case .string(let a)?: audiences = [a]
        case .array(let list)?: audiences = list.compactMap(\.stringValue)
        default: audiences = []
        }
        guard audiences.contains(where: configuration.audiences.contains) else {
            let shown = audiences.isEmpty ? "none" : audiences.prefix(5).map { "'\(Self.clip($0, 128))'" }.joined(separator: ", ")
            return reject(.badAudience, "audience \(shown) is not one of the configured audiences")
        }
        let tid = payload["tid"]?.stringValue
        if !configuration.allowedTenants.isEmpty {
            guard let tid else { return reject(.tenantNotAllowed, "token has no 'tid' and allowedTenants is set") }
            guard configuration.allowedTenants.contains(tid) else {
                return reject(.tenantNotAllowed, "tenant '\(Self.clip(tid, 128))' is not in allowedTenants")
            }
        }
        guard let userId = Self.nonEmpty(payload["oid"]) ?? Self.nonEmpty(payload["sub"]) else {
            return reject(.missingClaim, "token has neither 'oid' nor 'sub'")
        }
        for (name, required) in configuration.requiredClaims.sorted(by: { $0.key < $1.key }) {
            guard let value = payload[name], value != .null else {
                return reject(.missingClaim, "required claim '\(name)' is missing")
            }
            let matches: Bool
            if case .array(let list) = value {
                matches = list.contains { $0.scalarText == required }
            } else {
                matches = value.scalarText == required
            }
            if !matches {
                let verb = if case .array = value { "does not contain" } else { "is not" }
                return reject(.claimMismatch, "claim '\(name)' \(verb) '\(required)'")
            }
        }

        let userName = Self.nonEmpty(payload["upn"]) ?? Self.nonEmpty(payload["preferred_username"]) ?? userId
        result.response = .accepted(Identity(
            userId: userId, userName: userName, tenantId: tid,
            deviceId: Self.nonEmpty(payload["deviceid"]), expiresAt: exp))
        return result
    }

    // MARK: - Key cache

    /// Reloads the keys unless a load happened less than `jwksMinRefreshSeconds` ago.
    /// Concurrent callers share one load.
    private func refresh(reason: String) async -> RefreshOutcome {
        if let inflight { return await inflight.value }
        let start = now()
        if let last = lastAttempt {
            let elapsed = start.timeIntervalSince(last)
            // With no keys at all every token fails, so retry sooner (an issuer or network
            // that was not up yet when the plugin started); still bounded for the issuer.
            let window = keySet == nil ? min(configuration.jwksMinRefreshSeconds, Self.retryWithoutKeysSeconds) : configuration.jwksMinRefreshSeconds
            let minimum = Double(window)
            if elapsed < minimum {
                return .rateLimited(retryInSeconds: max(1, Int((minimum - elapsed).rounded(.up))))
            }
        }
        lastAttempt = start
        let task = Task { await self.load(reason: reason) }
        inflight = task
        let outcome = await task.value
        inflight = nil
        return outcome
    }

    /// One fetch and parse. Keys are swapped in only when the new set has a usable key,
    /// so a broken or empty document never wipes working keys.
    private func load(reason: String) async -> RefreshOutcome {
        fetchCount += 1
        do throws(KeySourceError) {
            let data = try await source.fetchJWKS()
            let set = try await KeySet.build(from: data, algorithms: configuration.algorithms, loadedAt: now())
            guard !set.keys.isEmpty else {
                let why = set.skipped.isEmpty ? "the JWKS is empty" : set.skipped.joined(separator: "; ")
                throw KeySourceError("no usable signing key in the JWKS from \(source.description) (\(why))")
            }
            keySet = set
            lastError = nil
            logger.info("auth.jwks.loaded", metadata: [
                "source": "\(source.description)", "reason": "\(reason)",
                "keys": "\(set.keys.count)", "kids": "\(set.kids.joined(separator: ","))",
            ])
            if !set.skipped.isEmpty {
                logger.notice("auth.jwks.skipped", metadata: [
                    "source": "\(source.description)", "skipped": "\(set.skipped.joined(separator: "; "))",
                ])
            }
            return .loaded
        } catch {
            lastError = error.message
            logger.warning("auth.jwks.failed", metadata: [
                "source": "\(source.description)", "reason": "\(reason)", "error": "\(error.message)",
                "cached_keys": "\(keySet?.keys.count ?? 0)",
            ])
            return .failed(error.message)
        }
    }

    // MARK: - Helpers

    static func hashPrefix(_ s: String) -> String {
        SHA256.hash(data: Data(s.utf8)).prefix(8).map { String(format: "%02x", $0) }.joined()
    }

    static func clip(_ s: String, _ limit: Int) -> String {
        s.count <= limit ? s : String(s.prefix(limit)) + "…"
    }

    static func nonEmpty(_ v: JSONValue?) -> String? {
        guard let s = v?.stringValue, !s.isEmpty else { return nil }
        return s
    }

    static func time(_ seconds: Int64) -> String {
        Date(timeIntervalSince1970: TimeInterval(seconds)).ISO8601Format()
    }
}
