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
    /// The entry of `AuthConfiguration.issuers` the token's `iss` chose (nil when none did
    /// or the token was refused before).
    public var issuerIndex: Int?

    public var identity: Identity? { response.identity }
    public var rejection: TokenRejection? { response.rejection }
}

/// Validates Entra ID / OIDC access tokens against `AuthConfiguration`.
///
/// Checks run in a fixed order and the first failure is the answer:
/// structure → algorithm (`none`, HMAC) → issuer (the payload's `iss` picks one entry of
/// `issuers`; none matches: refused before any key is fetched) → that issuer's algorithm
/// allow-list → key → signature → exp → nbf → iat → aud → tid → user id → required
/// claims → group-policy claims (`groups`, `roles`). Everything after the issuer is
/// checked with that issuer's keys and rules only. Every rejection is a value with a
/// stable code and a human reason that never contains the token.
///
/// Each issuer has its own key cache, shared by all concurrent validations, whose refresh
/// happens at most once per rate-limit window however many requests ask (`IssuerKeys`).
public actor TokenValidator {
    /// Larger than any real access token (Entra's stay well under 16 KiB, group overage
    /// keeps them from growing); bounds the work an attacker can ask for.
    public static let maxTokenBytes = 64 * 1024
    /// Reload window while no keys have ever loaded (`jwksMinRefreshSeconds` if smaller).
    public static let retryWithoutKeysSeconds = 10
    /// At most this many values in a `groups` or `roles` claim (or certificate OUs), and
    /// at most this many bytes per value. The values travel to the gateway in every
    /// identity, are kept with the session, matched against group policy and shown in its
    /// logs and `mst-cli server show user`: an issuer (or a token minted by a compromised
    /// one) must not be able to make that unbounded. Entra itself stops at 200 groups in a
    /// JWT (then it signals overage), and group ids and role values are far below 256 bytes.
    public static let maxClaimValues = 1000
    public static let maxClaimValueBytes = 256

    public nonisolated let configuration: AuthConfiguration
    /// One key cache per entry of `configuration.issuers`, in the same order.
    nonisolated let issuerKeys: [IssuerKeys]
    private nonisolated let now: @Sendable () -> Date

    /// Every issuer with the key source its configuration describes.
    public init(configuration: AuthConfiguration, now: @escaping @Sendable () -> Date = { Date() }, logger: Logger) {
        self.init(configuration: configuration, sources: configuration.issuers.map { $0.makeJWKSSource(logger: logger) },
                  now: now, logger: logger)
    }

    /// `source` serves the first issuer (the only one in the single-issuer form); any
    /// further issuer uses the key source its configuration describes.
    public init(configuration: AuthConfiguration, source: any JWKSSource,
                now: @escaping @Sendable () -> Date = { Date() }, logger: Logger) {
        let rest = configuration.issuers.dropFirst().map { $0.makeJWKSSource(logger: logger) }
        self.init(configuration: configuration, sources: [source] + rest, now: now, logger: logger)
    }

    /// One key source per entry of `configuration.issuers`, in order (extra sources are
    /// ignored; an issuer without one has no keys: `issuerUnavailable`).
    public init(configuration: AuthConfiguration, sources: [any JWKSSource],
                now: @escaping @Sendable () -> Date = { Date() }, logger: Logger) {
        self.configuration = configuration
        self.now = now
        issuerKeys = configuration.issuers.enumerated().map { index, issuer in
            IssuerKeys(configuration: issuer, source: index < sources.count ? sources[index] : MissingJWKSSource(),
                       now: now, logger: logger)
        }
    }

    /// The `kid`s currently cached, every issuer's in order (synthetic `#n` for keys
    /// published without one).
    public var cachedKeyIDs: [String] {
        get async {
            var all: [String] = []
            for keys in issuerKeys { all += await keys.cachedKeyIDs }
            return all
        }
    }

    /// How many times the key sources were asked (successful or not), all issuers.
    public var fetchCount: Int {
        get async {
            var total = 0
            for keys in issuerKeys { total += await keys.fetchCount }
            return total
        }
    }

    /// Loads every issuer's keys now (at start-up): the number of keys, or the failures
    /// (each naming its issuer). A failure is not fatal: the next validation that needs
    /// that issuer's keys retries once the rate-limit window has passed.
    @discardableResult
    public func prefetch() async -> Result<Int, KeySourceError> {
        var total = 0
        var failures: [String] = []
        for keys in issuerKeys {
            switch await keys.prefetch() {
            case .success(let n): total += n
            case .failure(let error):
                failures.append(issuerKeys.count == 1 ? error.message : "issuer \(keys.configuration.issuer): \(error.message)")
            }
        }
        return failures.isEmpty ? .success(total) : .failure(KeySourceError(failures.joined(separator: "; ")))
    }

    /// The entry of `issuers` a token's `iss` (with its `tid`, for a template) names: an
    /// exact issuer first, then a template filled with the tenant. Both come from the
    /// unverified payload; they only choose whose keys and rules judge the token.
    public nonisolated func issuerIndex(iss: String, tid: String?) -> Int? {
        let issuers = configuration.issuers
        if let exact = issuers.firstIndex(where: { !$0.isTemplate && $0.issuer == iss }) { return exact }
        return issuers.firstIndex { $0.isTemplate && $0.expectedIssuer(tenant: tid) == iss }
    }

    public nonisolated func validate(_ token: String) async -> TokenValidationResult {
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

        // 2. `none` and HMAC are refused whatever the issuer: they are attacks.
        let shownAlg = Self.clip(alg, 32)
        if alg.lowercased() == "none" {
            return reject(.algorithmNotAllowed, "unsigned token (alg 'none') is never accepted")
        }
        if alg.uppercased().hasPrefix("HS") {
            return reject(.algorithmNotAllowed, "HMAC algorithm '\(shownAlg)' is never accepted (a public key must not be used as a shared secret)")
        }

        // 3. The issuer: the token's `iss` names the entry whose keys and rules judge it.
        // A token from an issuer nobody configured costs no key fetch.
        guard let iss = payload["iss"]?.stringValue else {
            return reject(.badIssuer, "token has no string 'iss'")
        }
        let tid = payload["tid"]?.stringValue
        guard let index = issuerIndex(iss: iss, tid: tid) else {
            return reject(.badIssuer, unknownIssuerReason(iss: iss, tid: tid))
        }
        let issuer = configuration.issuers[index]
        let keys = issuerKeys[index]
        result.issuerIndex = index

        // 4. That issuer's algorithm allow-list.
        guard let algorithm = SupportedAlgorithm(rawValue: alg), issuer.algorithms.contains(algorithm) else {
            return reject(.algorithmNotAllowed, "alg '\(shownAlg)' is not allowed (allowedAlgorithms: \(issuer.allowedAlgorithms.joined(separator: ", ")))")
        }

        // 5. Key, from that issuer's keys only.
        let verifiers: [JWTKeyCollection]
        switch await keys.verifiers(kid: kid, algorithm: algorithm) {
        case .success(let found): verifiers = found
        case .failure(let rejection): return reject(rejection.code, rejection.reason)
        }

        // 6. Signature, by jwt-kit, with only the key(s) chosen above.
        var verified = false
        for verifier in verifiers where !verified {
            verified = (try? await verifier.verify(token, as: SignatureOnlyPayload.self)) != nil
        }
        if !verified {
            return reject(.badSignature, "signature does not verify with key '\(result.kid ?? "(only key)")'")
        }

        // 7. Claims, now that the issuer vouches for them, by that issuer's rules.
        switch Self.checkClaims(payload, issuer: issuer, now: Int64(now().timeIntervalSince1970.rounded(.down))) {
        case .success(let identity): result.response = .accepted(identity)
        case .failure(let rejection): result.response = .rejected(rejection.code, rejection.reason)
        }
        return result
    }

    /// Why no entry of `issuers` took the token, naming what is configured.
    nonisolated func unknownIssuerReason(iss: String, tid: String?) -> String {
        let issuers = configuration.issuers
        let shown = "issuer '\(Self.clip(iss, 256))'"
        let templateHint = issuers.contains(where: \.isTemplate)
            ? " (a '\(IssuerConfiguration.tenantPlaceholder)' issuer is filled with the token's 'tid', \(tid.map { "'\(Self.clip($0, 64))'" } ?? "which it lacks"))" : ""
        if issuers.count == 1 {
            return "\(shown) is not the configured issuer '\(issuers[0].issuer)'\(templateHint)"
        }
        let listed = issuers.prefix(4).map { "'\(Self.clip($0.issuer, 128))'" }.joined(separator: ", ") + (issuers.count > 4 ? ", …" : "")
        return "\(shown) is not the configured issuer of any of the \(issuers.count) entries in 'issuers' (\(listed))\(templateHint)"
    }

    /// Steps after the signature: times, audience, tenant, user, required claims, and the
    /// claims group policy uses. Pure: the payload and the chosen issuer's rules.
    static func checkClaims(_ payload: [String: JSONValue], issuer configuration: IssuerConfiguration, now nowSeconds: Int64) -> Result<Identity, Refusal> {
        func reject(_ code: TokenRejection.Code, _ reason: String) -> Result<Identity, Refusal> {
            .failure(Refusal(code: code, reason: reason))
        }
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
        let tid = payload["tid"]?.stringValue
        // The issuer was chosen by this `iss` before the signature; the signed payload must
        // still say exactly what this issuer (filled with the signed `tid`) says.
        guard let iss = payload["iss"]?.stringValue, let expected = configuration.expectedIssuer(tenant: tid), iss == expected else {
            return reject(.badIssuer, "issuer '\(Self.clip(payload["iss"]?.stringValue ?? "", 256))' is not the configured issuer '\(configuration.issuer)'")
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

        // What group policy matches on. A claim of the wrong shape is refused rather than
        // dropped: a policy that denies a group must not be sidestepped by a token whose
        // `groups` the plugin could not read.
        var lists: [String: [String]] = [:]
        for name in ["groups", "roles"] {
            guard let value = payload[name] else { continue }
            switch Self.boundedStrings(value, what: "claim '\(name)'") {
            case .success(let list): lists[name] = list
            case .failure(let why): return reject(.malformed, why.reason)
            }
        }

        let userName = Self.nonEmpty(payload["upn"]) ?? Self.nonEmpty(payload["preferred_username"]) ?? userId
        return .success(Identity(
            userId: userId, userName: userName, tenantId: tid,
            deviceId: Self.nonEmpty(payload["deviceid"]), expiresAt: exp,
            groups: lists["groups"], roles: lists["roles"], groupsOverage: Self.groupsOverage(payload) ? true : nil))
    }

    /// Entra leaves `groups` out of a token for a user in too many groups and says so with
    /// `_claim_names.groups` (the distributed-claims pointer, in JWTs) or `hasgroups: true`
    /// (implicit-flow tokens). Either means: the groups exist but are not here.
    static func groupsOverage(_ payload: [String: JSONValue]) -> Bool {
        if case .object(let names)? = payload["_claim_names"], names["groups"] != nil { return true }
        if case .bool(true)? = payload["hasgroups"] { return true }
        return false
    }

    /// `value` as a list of strings within `maxClaimValues` × `maxClaimValueBytes`, no
    /// control characters (they would reach the gateway's logs and a terminal). The reason
    /// names `what` and the first offending entry's position, never its contents.
    static func boundedStrings(_ value: JSONValue, what: String) -> Result<[String], Refusal> {
        func refuse(_ reason: String) -> Result<[String], Refusal> {
            .failure(Refusal(code: .malformed, reason: reason))
        }
        guard case .array(let items) = value else {
            return refuse("\(what) must be an array of strings (found: \(value.typeName))")
        }
        return boundedStrings(items.map { item -> String? in item.stringValue }, what: what,
                              types: items.map(\.typeName))
    }

    /// The same bounds for values that are already strings (certificate OUs).
    static func boundedStrings(_ values: [String], what: String) -> Result<[String], Refusal> {
        boundedStrings(values.map { Optional($0) }, what: what, types: [])
    }

    private static func boundedStrings(_ items: [String?], what: String, types: [String]) -> Result<[String], Refusal> {
        func refuse(_ reason: String) -> Result<[String], Refusal> {
            .failure(Refusal(code: .malformed, reason: reason))
        }
        if items.count > maxClaimValues {
            return refuse("\(what) has \(items.count) entries; at most \(maxClaimValues) are accepted")
        }
        var out: [String] = []
        out.reserveCapacity(items.count)
        for (i, item) in items.enumerated() {
            guard let s = item else {
                return refuse("\(what) must be an array of strings (entry \(i): \(i < types.count ? types[i] : "not a string"))")
            }
            if s.utf8.count > maxClaimValueBytes {
                return refuse("\(what): entry \(i) is \(s.utf8.count) bytes; at most \(maxClaimValueBytes) are accepted")
            }
            if s.unicodeScalars.contains(where: { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) }) {
                return refuse("\(what): entry \(i) contains control characters")
            }
            out.append(s)
        }
        return .success(out)
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
