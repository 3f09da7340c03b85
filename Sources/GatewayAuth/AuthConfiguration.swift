import Foundation
import GatewaySystem
import GatewayWire

/// Why `auth.json` was refused. The message always names the offending key so an
/// operator can fix the file from the one log line.
public struct AuthConfigurationError: Error, CustomStringConvertible, Equatable, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The JWS algorithms this build can verify. Everything else (notably `none` and the
/// HMAC family, which would let a public key act as a shared secret) is refused when the
/// configuration is loaded, so no later code path can be talked into it.
public enum SupportedAlgorithm: String, Sendable, CaseIterable, Codable {
    case rs256 = "RS256", rs384 = "RS384", rs512 = "RS512"
    case ps256 = "PS256"
    case es256 = "ES256", es384 = "ES384"

    /// The JWK `kty` a key must have to verify this algorithm.
    var keyType: String {
        switch self {
        case .rs256, .rs384, .rs512, .ps256: return "RSA"
        case .es256, .es384: return "EC"
        }
    }

    /// For EC algorithms, the JWK `crv` the key must be on.
    var curve: String? {
        switch self {
        case .es256: return "P-256"
        case .es384: return "P-384"
        default: return nil
        }
    }
}

/// How a client proves who it is (`authenticationMode` in `auth.json`).
public enum AuthenticationMode: String, Codable, Sendable, CaseIterable {
    /// An access token only (the default). A client certificate is ignored; a login that
    /// offers only a certificate is refused (`certificateNotAccepted`).
    case token
    /// A client certificate only; any token is ignored.
    case certificate
    /// A certificate if the client presents one (and then only the certificate decides),
    /// otherwise a token.
    case certificateOrToken = "certificate-or-token"
    /// Both, and they must name the same user.
    case certificateAndToken = "certificate+token"

    /// Whether tokens can be part of a decision (every mode but `certificate`).
    public var usesTokens: Bool { self != .certificate }
    /// Whether client certificates can be part of a decision (every mode but `token`).
    public var usesCertificates: Bool { self != .token }
}

/// Which part of a client certificate names the user (`clientCertificates.userFrom`).
public enum CertificateUserMapping: String, Codable, Sendable, CaseIterable {
    /// The subject's commonName.
    case cn
    /// The subjectAltName otherName User Principal Name (1.3.6.1.4.1.311.20.2.3).
    case upn
    /// The subjectAltName rfc822Name, else the subject's emailAddress.
    case email
    /// The subject's userId (0.9.2342.19200300.100.1.1).
    case uid
}

/// `clientCertificates` in `auth.json`: which CAs a client certificate must chain to,
/// which revocation lists apply, and how the user is named.
public struct ClientCertificateConfiguration: Codable, Sendable, Equatable {
    /// PEM bundle of the trusted CAs (the roots; intermediates may come from the client).
    public var caFile: String
    /// CRLs (PEM or DER, one or more). When set, every certificate of a chain needs a
    /// current CRL from its issuer. Reloaded when the file changes.
    public var crlFile: String?
    public var userFrom: CertificateUserMapping

    public init(caFile: String, crlFile: String? = nil, userFrom: CertificateUserMapping = .cn) {
        self.caFile = caFile
        self.crlFile = crlFile
        self.userFrom = userFrom
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case caFile, crlFile, userFrom
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        caFile = try c.decode(String.self, forKey: .caFile)
        crlFile = try c.decodeIfPresent(String.self, forKey: .crlFile)
        let mapping = try c.decodeIfPresent(String.self, forKey: .userFrom) ?? CertificateUserMapping.cn.rawValue
        guard let userFrom = CertificateUserMapping(rawValue: mapping) else {
            throw DecodingError.dataCorruptedError(forKey: .userFrom, in: c, debugDescription:
                "must be one of \(CertificateUserMapping.allCases.map { "'\($0.rawValue)'" }.joined(separator: ", ")), got '\(mapping)'")
        }
        self.userFrom = userFrom
    }
}

/// One issuer (tenant) the plugin accepts tokens from: an entry of `issuers` in
/// `auth.json`, or the top level itself in the single-issuer form. Each entry has its own
/// key source, key cache and fetch throttle, and its own rules; a token is checked with
/// the entry its `iss` names and with nothing else.
public struct IssuerConfiguration: Codable, Sendable, Equatable {
    /// The placeholder of Entra's multi-tenant issuer template
    /// (`https://login.microsoftonline.com/{tenantid}/v2.0`).
    public static let tenantPlaceholder = "{tenantid}"

    /// Exact value the `iss` claim must have, or a template with one `{tenantid}` that the
    /// token's `tid` fills (then `allowedTenants` is required).
    public var issuer: String
    /// OpenID discovery document; defaults to `<issuer>/.well-known/openid-configuration`
    /// when neither `jwksFile` nor `jwksURL` is set.
    public var discoveryURL: String?
    /// The JWKS itself, skipping discovery.
    public var jwksURL: String?
    /// A local JWKS file (absolute, or relative to the state directory).
    public var jwksFile: String?
    /// Accepted `aud` values; a token must name at least one.
    public var audiences: [String]
    /// Accepted `tid` values; empty accepts any tenant.
    public var allowedTenants: [String]
    /// Claim → required value. Array claims (`roles`, `groups`) must contain the value.
    public var requiredClaims: [String: String]
    public var clockSkewSeconds: Int
    public var allowedAlgorithms: [String]
    /// Extra CA bundle (PEM) trusted for the discovery and JWKS fetches.
    public var caBundle: String?
    /// Minimum seconds between two key fetches (protects the issuer from unknown-`kid` floods).
    public var jwksMinRefreshSeconds: Int
    /// Keys older than this are refetched on the next validation.
    public var jwksMaxAgeSeconds: Int

    public init(issuer: String, discoveryURL: String? = nil, jwksURL: String? = nil, jwksFile: String? = nil,
                audiences: [String] = [AuthConfiguration.defaultAudience], allowedTenants: [String] = [],
                requiredClaims: [String: String] = [:], clockSkewSeconds: Int = 120,
                allowedAlgorithms: [String] = ["RS256", "ES256"], caBundle: String? = nil,
                jwksMinRefreshSeconds: Int = 60, jwksMaxAgeSeconds: Int = 3600) {
        self.issuer = issuer
        self.discoveryURL = discoveryURL
        self.jwksURL = jwksURL
        self.jwksFile = jwksFile
        self.audiences = audiences
        self.allowedTenants = allowedTenants
        self.requiredClaims = requiredClaims
        self.clockSkewSeconds = clockSkewSeconds
        self.allowedAlgorithms = allowedAlgorithms
        self.caBundle = caBundle
        self.jwksMinRefreshSeconds = jwksMinRefreshSeconds
        self.jwksMaxAgeSeconds = jwksMaxAgeSeconds
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case issuer, discoveryURL, jwksURL, jwksFile, audiences, allowedTenants, requiredClaims
        case clockSkewSeconds, allowedAlgorithms, caBundle, jwksMinRefreshSeconds, jwksMaxAgeSeconds
    }

    /// Decodes with defaults for every optional key (`issuer` is required).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        issuer = try c.decode(String.self, forKey: .issuer)
        discoveryURL = try c.decodeIfPresent(String.self, forKey: .discoveryURL)
        jwksURL = try c.decodeIfPresent(String.self, forKey: .jwksURL)
        jwksFile = try c.decodeIfPresent(String.self, forKey: .jwksFile)
        audiences = try c.decodeIfPresent([String].self, forKey: .audiences) ?? [AuthConfiguration.defaultAudience]
        allowedTenants = try c.decodeIfPresent([String].self, forKey: .allowedTenants) ?? []
        requiredClaims = try c.decodeIfPresent([String: String].self, forKey: .requiredClaims) ?? [:]
        clockSkewSeconds = try c.decodeIfPresent(Int.self, forKey: .clockSkewSeconds) ?? 120
        allowedAlgorithms = try c.decodeIfPresent([String].self, forKey: .allowedAlgorithms) ?? ["RS256", "ES256"]
        caBundle = try c.decodeIfPresent(String.self, forKey: .caBundle)
        jwksMinRefreshSeconds = try c.decodeIfPresent(Int.self, forKey: .jwksMinRefreshSeconds) ?? 60
        jwksMaxAgeSeconds = try c.decodeIfPresent(Int.self, forKey: .jwksMaxAgeSeconds) ?? 3600
    }

    /// Whether `issuer` is a multi-tenant template (`{tenantid}` in it).
    public var isTemplate: Bool { issuer.contains(Self.tenantPlaceholder) }

    /// The `iss` this entry expects from a token whose (unverified) `tid` is `tenant`: the
    /// issuer itself, or the template filled with the tenant. nil when the template cannot
    /// be filled: no `tid`, or one that is not a plain tenant id (letters, digits, `-`, `.`,
    /// `_`; at most 128), so a `tid` can never smuggle a path into the issuer.
    public func expectedIssuer(tenant: String?) -> String? {
        guard isTemplate else { return issuer }
        guard let tenant, (1...128).contains(tenant.utf8.count),
              tenant.utf8.allSatisfy({ $0 == 0x2D || $0 == 0x2E || $0 == 0x5F || (0x30...0x39).contains($0)
                                       || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) }) else { return nil }
        return issuer.replacingOccurrences(of: Self.tenantPlaceholder, with: tenant)
    }

    /// Checks every value; the first problem is thrown, naming the key as `label` + key
    /// (`label` is "" for the single-issuer form, `issuers[N].` for an entry).
    func validate(label: String) throws(AuthConfigurationError) {
        func key(_ name: String) -> String { "'\(label)\(name)'" }
        if issuer.trimmingCharacters(in: .whitespaces).isEmpty {
            throw AuthConfigurationError("auth.json: \(key("issuer")) must not be empty")
        }
        let sources = [("jwksFile", jwksFile), ("jwksURL", jwksURL), ("discoveryURL", discoveryURL)].filter { $0.1 != nil }
        if sources.count > 1 {
            throw AuthConfigurationError("auth.json: \(label.isEmpty ? "" : "\(label.dropLast()): ")set only one of 'jwksFile', 'jwksURL', 'discoveryURL' (found \(sources.map { "'\($0.0)'" }.joined(separator: ", ")))")
        }
        if let f = jwksFile, f.isEmpty {
            throw AuthConfigurationError("auth.json: \(key("jwksFile")) must not be empty")
        }
        for (name, value) in [("jwksURL", jwksURL), ("discoveryURL", discoveryURL)] {
            if let v = value, !AuthConfiguration.isHTTPURL(v) {
                throw AuthConfigurationError("auth.json: \(key(name)) must be an http:// or https:// URL, got '\(v)'")
            }
        }
        if issuer.contains("{") || issuer.contains("}") {
            // Only Entra's multi-tenant template, once. Anything else would be a pattern
            // nobody can read at a glance.
            let rest = issuer.replacingOccurrences(of: Self.tenantPlaceholder, with: "")
            guard issuer.components(separatedBy: Self.tenantPlaceholder).count == 2, !rest.contains("{"), !rest.contains("}") else {
                throw AuthConfigurationError("auth.json: \(key("issuer")) '\(issuer)': the only placeholder allowed is one '\(Self.tenantPlaceholder)' (Entra's multi-tenant issuer)")
            }
            // Without a tenant list the template would accept every Entra tenant in the world.
            if allowedTenants.isEmpty {
                throw AuthConfigurationError("auth.json: \(key("allowedTenants")) must list the tenants to accept when \(key("issuer")) is the multi-tenant template '\(issuer)'; without it any Entra tenant's users could log in")
            }
            if jwksFile == nil, jwksURL == nil, discoveryURL == nil {
                throw AuthConfigurationError("auth.json: \(key("issuer")) '\(issuer)' is a template, so keys cannot be discovered from it; set \(key("discoveryURL")) (for Entra: https://login.microsoftonline.com/organizations/v2.0/.well-known/openid-configuration), \(key("jwksURL")) or \(key("jwksFile"))")
            }
        } else if jwksFile == nil, jwksURL == nil, discoveryURL == nil, !AuthConfiguration.isHTTPURL(issuer) {
            throw AuthConfigurationError("auth.json: \(key("issuer")) '\(issuer)' is not an http(s) URL, so keys cannot be discovered from it; set \(key("discoveryURL")), \(key("jwksURL")) or \(key("jwksFile"))")
        }
        if audiences.isEmpty || audiences.contains(where: \.isEmpty) {
            throw AuthConfigurationError("auth.json: \(key("audiences")) must be a non-empty list of non-empty strings")
        }
        if allowedTenants.contains(where: \.isEmpty) {
            throw AuthConfigurationError("auth.json: \(key("allowedTenants")) must not contain empty strings")
        }
        if let bad = requiredClaims.keys.sorted().first(where: \.isEmpty) {
            throw AuthConfigurationError("auth.json: \(key("requiredClaims")) has an empty claim name (value '\(requiredClaims[bad] ?? "")')")
        }
        if !(0...AuthConfiguration.maxClockSkewSeconds).contains(clockSkewSeconds) {
            throw AuthConfigurationError("auth.json: \(key("clockSkewSeconds")) must be between 0 and \(AuthConfiguration.maxClockSkewSeconds), got \(clockSkewSeconds)")
        }
        if allowedAlgorithms.isEmpty {
            throw AuthConfigurationError("auth.json: \(key("allowedAlgorithms")) must not be empty")
        }
        for alg in allowedAlgorithms where SupportedAlgorithm(rawValue: alg) == nil {
            let why: String
            if alg.lowercased() == "none" {
                why = "unsigned tokens are never accepted"
            } else if alg.uppercased().hasPrefix("HS") {
                why = "HMAC algorithms are never accepted (a public key would become a shared secret)"
            } else {
                why = "not supported"
            }
            throw AuthConfigurationError("auth.json: \(key("allowedAlgorithms")) contains '\(alg)': \(why); allowed values: \(SupportedAlgorithm.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if let b = caBundle, b.isEmpty {
            throw AuthConfigurationError("auth.json: \(key("caBundle")) must not be empty")
        }
        if !(1...86_400).contains(jwksMinRefreshSeconds) {
            throw AuthConfigurationError("auth.json: \(key("jwksMinRefreshSeconds")) must be between 1 and 86400, got \(jwksMinRefreshSeconds)")
        }
        if !(jwksMinRefreshSeconds...(7 * 86_400)).contains(jwksMaxAgeSeconds) {
            throw AuthConfigurationError("auth.json: \(key("jwksMaxAgeSeconds")) must be between \(key("jwksMinRefreshSeconds")) (\(jwksMinRefreshSeconds)) and 604800, got \(jwksMaxAgeSeconds)")
        }
    }

    /// The algorithms as typed values (validated by `validate`, so none are dropped in practice).
    public var algorithms: [SupportedAlgorithm] {
        allowedAlgorithms.compactMap(SupportedAlgorithm.init(rawValue:))
    }

    public var keyLocation: AuthConfiguration.KeyLocation {
        if let f = jwksFile { return .file(f) }
        if let u = jwksURL { return .jwksURL(u) }
        if let d = discoveryURL { return .discovery(d) }
        var base = issuer
        while base.hasSuffix("/") { base.removeLast() }
        return .discovery(base + "/.well-known/openid-configuration")
    }

    /// Relative `jwksFile` and `caBundle` resolved against `dir`.
    func resolved(in dir: String) -> IssuerConfiguration {
        var c = self
        c.jwksFile = jwksFile.map { AuthConfiguration.resolve($0, in: dir) }
        c.caBundle = caBundle.map { AuthConfiguration.resolve($0, in: dir) }
        return c
    }
}

/// `auth.json`: what tokens the plugin accepts and where the issuers' keys come from, and
/// how client certificates are judged.
///
/// Tokens come from one issuer (the keys of `IssuerConfiguration` at the top level: the
/// original form) or from several (`issuers`, a list of such objects). A token's `iss`
/// picks the entry; it is then checked with that entry's keys and rules only.
public struct AuthConfiguration: Codable, Sendable, Equatable {
    /// The Microsoft Tunnel Gateway application id, the audience Entra puts in tokens
    /// requested for the Tunnel.
    public static let defaultAudience = "3678c9e9-9681-447a-974d-d19f668fcd88"
    public static let maxClockSkewSeconds = 600
    /// More issuers than anyone runs; each costs a key cache and, on an unknown `kid`, a fetch.
    public static let maxIssuers = 32

    /// The issuers tokens are accepted from, in file order. Empty only when
    /// `authenticationMode` is `certificate` and the file names no issuer.
    public var issuers: [IssuerConfiguration]
    /// Token, certificate, or both (default token).
    public var authenticationMode: AuthenticationMode
    /// Client-certificate trust; required when `authenticationMode` uses certificates.
    public var clientCertificates: ClientCertificateConfiguration?

    /// The single-issuer form. An empty `issuer` with `authenticationMode` `certificate`
    /// means no issuer at all.
    public init(issuer: String, discoveryURL: String? = nil, jwksURL: String? = nil, jwksFile: String? = nil,
                audiences: [String] = [AuthConfiguration.defaultAudience], allowedTenants: [String] = [],
                requiredClaims: [String: String] = [:], clockSkewSeconds: Int = 120,
                allowedAlgorithms: [String] = ["RS256", "ES256"], caBundle: String? = nil,
                jwksMinRefreshSeconds: Int = 60, jwksMaxAgeSeconds: Int = 3600,
                authenticationMode: AuthenticationMode = .token, clientCertificates: ClientCertificateConfiguration? = nil) {
        let entry = IssuerConfiguration(
            issuer: issuer, discoveryURL: discoveryURL, jwksURL: jwksURL, jwksFile: jwksFile, audiences: audiences,
            allowedTenants: allowedTenants, requiredClaims: requiredClaims, clockSkewSeconds: clockSkewSeconds,
            allowedAlgorithms: allowedAlgorithms, caBundle: caBundle, jwksMinRefreshSeconds: jwksMinRefreshSeconds,
            jwksMaxAgeSeconds: jwksMaxAgeSeconds)
        self.init(issuers: issuer.isEmpty && !authenticationMode.usesTokens ? [] : [entry],
                  authenticationMode: authenticationMode, clientCertificates: clientCertificates)
    }

    /// Several issuers.
    public init(issuers: [IssuerConfiguration], authenticationMode: AuthenticationMode = .token,
                clientCertificates: ClientCertificateConfiguration? = nil) {
        self.issuers = issuers
        self.authenticationMode = authenticationMode
        self.clientCertificates = clientCertificates
    }

    // MARK: The single-issuer form
    //
    // These read and write the first (in the single-issuer form, the only) entry of
    // `issuers`; they keep code written for one issuer working. Code that handles tokens
    // must look at `issuers`.

    private var primary: IssuerConfiguration {
        get { issuers.first ?? IssuerConfiguration(issuer: "") }
        set { if issuers.isEmpty { issuers = [newValue] } else { issuers[0] = newValue } }
    }
    /// The first issuer's `issuer` ("" when there is none).
    public var issuer: String { get { primary.issuer } set { primary.issuer = newValue } }
    public var discoveryURL: String? { get { primary.discoveryURL } set { primary.discoveryURL = newValue } }
    public var jwksURL: String? { get { primary.jwksURL } set { primary.jwksURL = newValue } }
    public var jwksFile: String? { get { primary.jwksFile } set { primary.jwksFile = newValue } }
    public var audiences: [String] { get { primary.audiences } set { primary.audiences = newValue } }
    public var allowedTenants: [String] { get { primary.allowedTenants } set { primary.allowedTenants = newValue } }
    public var requiredClaims: [String: String] { get { primary.requiredClaims } set { primary.requiredClaims = newValue } }
    public var clockSkewSeconds: Int { get { primary.clockSkewSeconds } set { primary.clockSkewSeconds = newValue } }
    public var allowedAlgorithms: [String] { get { primary.allowedAlgorithms } set { primary.allowedAlgorithms = newValue } }
    public var caBundle: String? { get { primary.caBundle } set { primary.caBundle = newValue } }
    public var jwksMinRefreshSeconds: Int { get { primary.jwksMinRefreshSeconds } set { primary.jwksMinRefreshSeconds = newValue } }
    public var jwksMaxAgeSeconds: Int { get { primary.jwksMaxAgeSeconds } set { primary.jwksMaxAgeSeconds = newValue } }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case issuer, discoveryURL, jwksURL, jwksFile, audiences, allowedTenants, requiredClaims
        case clockSkewSeconds, allowedAlgorithms, caBundle, jwksMinRefreshSeconds, jwksMaxAgeSeconds
        case authenticationMode, clientCertificates, issuers
    }

    /// The top-level keys that describe one issuer (the single-issuer form).
    static var issuerKeys: [String] { IssuerConfiguration.CodingKeys.allCases.map(\.rawValue) }

    /// Decodes with defaults for every optional key. Unknown keys are caught by `parse`,
    /// which sees the raw object; this initialiser only applies types and defaults.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let mode = try c.decodeIfPresent(String.self, forKey: .authenticationMode) ?? AuthenticationMode.token.rawValue
        guard let authenticationMode = AuthenticationMode(rawValue: mode) else {
            throw DecodingError.dataCorruptedError(forKey: .authenticationMode, in: c, debugDescription:
                "must be one of \(AuthenticationMode.allCases.map { "'\($0.rawValue)'" }.joined(separator: ", ")), got '\(mode)'")
        }
        self.authenticationMode = authenticationMode
        clientCertificates = try c.decodeIfPresent(ClientCertificateConfiguration.self, forKey: .clientCertificates)
        if c.contains(.issuers) {
            if let beside = c.allKeys.map(\.stringValue).filter(Self.issuerKeys.contains).sorted().first {
                throw DecodingError.dataCorruptedError(forKey: .issuers, in: c, debugDescription:
                    "'\(beside)' is set at the top level beside 'issuers'; with 'issuers' every entry carries its own issuer, keys and rules (move '\(beside)' into the entries)")
            }
            issuers = try c.decode([IssuerConfiguration].self, forKey: .issuers)
        } else if authenticationMode.usesTokens || c.contains(.issuer) {
            // The single-issuer form: the top level is the one entry. A certificate-only
            // file may carry an empty "issuer": no issuer, as before.
            let entry = try IssuerConfiguration(from: decoder)
            issuers = entry.issuer.isEmpty && !authenticationMode.usesTokens ? [] : [entry]
        } else {
            // A certificate-only plugin needs no issuer.
            issuers = []
        }
    }

    /// Writes the single-issuer form for one issuer, `issuers` otherwise.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(authenticationMode.rawValue, forKey: .authenticationMode)
        try c.encodeIfPresent(clientCertificates, forKey: .clientCertificates)
        if issuers.count == 1 {
            try issuers[0].encode(to: encoder)
        } else if !issuers.isEmpty {
            try c.encode(issuers, forKey: .issuers)
        }
    }

    /// Parses and validates the text of an `auth.json`. Relative `jwksFile` and `caBundle`
    /// paths are resolved against `stateDirectory` so the returned value is self-contained.
    public static func parse(_ data: Data, stateDirectory: String? = nil) throws(AuthConfigurationError) -> AuthConfiguration {
        guard let raw = try? JSONSerialization.jsonObject(with: data) else {
            throw AuthConfigurationError("auth.json: not valid JSON")
        }
        guard let object = raw as? [String: Any] else {
            throw AuthConfigurationError("auth.json: the top level must be a JSON object")
        }
        let known = Set(CodingKeys.allCases.map(\.rawValue))
        let unknown = object.keys.filter { !known.contains($0) }.sorted()
        if !unknown.isEmpty {
            throw AuthConfigurationError("auth.json: unknown key\(unknown.count > 1 ? "s" : "") \(unknown.map { "'\($0)'" }.joined(separator: ", ")) (known keys: \(CodingKeys.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        if let nested = object[CodingKeys.clientCertificates.rawValue] as? [String: Any] {
            let knownNested = ClientCertificateConfiguration.CodingKeys.allCases.map(\.rawValue)
            let unknownNested = nested.keys.filter { !knownNested.contains($0) }.sorted()
            if !unknownNested.isEmpty {
                throw AuthConfigurationError("auth.json: unknown key\(unknownNested.count > 1 ? "s" : "") \(unknownNested.map { "'clientCertificates.\($0)'" }.joined(separator: ", ")) (known keys in 'clientCertificates': \(knownNested.joined(separator: ", ")))")
            }
        }
        if let list = object[CodingKeys.issuers.rawValue] as? [Any] {
            for (index, element) in list.enumerated() {
                guard let entry = element as? [String: Any] else {
                    throw AuthConfigurationError("auth.json: 'issuers[\(index)]' must be an object with the keys of one issuer (\(issuerKeys.joined(separator: ", ")))")
                }
                let unknownInEntry = entry.keys.filter { !issuerKeys.contains($0) }.sorted()
                if !unknownInEntry.isEmpty {
                    throw AuthConfigurationError("auth.json: unknown key\(unknownInEntry.count > 1 ? "s" : "") \(unknownInEntry.map { "'issuers[\(index)].\($0)'" }.joined(separator: ", ")) (known keys in an entry of 'issuers': \(issuerKeys.joined(separator: ", ")))")
                }
            }
        }
        var config: AuthConfiguration
        do {
            config = try JSONDecoder().decode(AuthConfiguration.self, from: data)
        } catch let DecodingError.keyNotFound(key, ctx) {
            throw AuthConfigurationError("auth.json: '\(Self.path(ctx.codingPath + [key]))' is required")
        } catch let DecodingError.typeMismatch(type, ctx) {
            throw AuthConfigurationError("auth.json: '\(Self.path(ctx.codingPath))' has the wrong type (expected \(Self.typeName(type)))")
        } catch let DecodingError.valueNotFound(type, ctx) {
            throw AuthConfigurationError("auth.json: '\(Self.path(ctx.codingPath))' is null (expected \(Self.typeName(type)))")
        } catch let DecodingError.dataCorrupted(ctx) {
            throw AuthConfigurationError("auth.json: '\(Self.path(ctx.codingPath))': \(ctx.debugDescription)")
        } catch {
            throw AuthConfigurationError("auth.json: \(error)")
        }
        if object[CodingKeys.issuers.rawValue] != nil, config.issuers.isEmpty, config.authenticationMode.usesTokens {
            throw AuthConfigurationError("auth.json: 'issuers' must not be empty when 'authenticationMode' is '\(config.authenticationMode.rawValue)'")
        }
        if let dir = stateDirectory {
            config.issuers = config.issuers.map { $0.resolved(in: dir) }
            if var certificates = config.clientCertificates {
                if !certificates.caFile.isEmpty { certificates.caFile = Self.resolve(certificates.caFile, in: dir) }
                certificates.crlFile = certificates.crlFile.map { $0.isEmpty ? $0 : Self.resolve($0, in: dir) }
                config.clientCertificates = certificates
            }
        }
        try config.validate(listed: object[CodingKeys.issuers.rawValue] != nil)
        try config.checkCertificateFiles()
        return config
    }

    /// Reads and parses `path`.
    public static func load(path: String, stateDirectory: String? = nil) throws(AuthConfigurationError) -> AuthConfiguration {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw AuthConfigurationError("cannot read \(path): \(Self.describe(error))")
        }
        do {
            return try parse(data, stateDirectory: stateDirectory)
        } catch {
            throw AuthConfigurationError("\(path): \(error.message.hasPrefix("auth.json: ") ? String(error.message.dropFirst(11)) : error.message)")
        }
    }

    /// Checks every value; the first problem found is thrown, naming its key.
    public func validate() throws(AuthConfigurationError) {
        try validate(listed: issuers.count != 1)
    }

    /// `listed`: the issuers came from an `issuers` list, so messages name `issuers[N].key`.
    func validate(listed: Bool) throws(AuthConfigurationError) {
        if authenticationMode.usesCertificates, clientCertificates == nil {
            throw AuthConfigurationError("auth.json: 'clientCertificates.caFile' is required when 'authenticationMode' is '\(authenticationMode.rawValue)'")
        }
        if let certificates = clientCertificates {
            if certificates.caFile.isEmpty {
                throw AuthConfigurationError("auth.json: 'clientCertificates.caFile' must not be empty")
            }
            if let crl = certificates.crlFile, crl.isEmpty {
                throw AuthConfigurationError("auth.json: 'clientCertificates.crlFile' must not be empty")
            }
        }
        if authenticationMode.usesTokens, issuers.isEmpty {
            throw AuthConfigurationError("auth.json: 'issuer' is required when 'authenticationMode' is '\(authenticationMode.rawValue)'")
        }
        if issuers.count > Self.maxIssuers {
            throw AuthConfigurationError("auth.json: 'issuers' has \(issuers.count) entries; at most \(Self.maxIssuers) are allowed")
        }
        func label(_ index: Int) -> String { listed ? "issuers[\(index)]." : "" }
        for (index, entry) in issuers.enumerated() {
            try entry.validate(label: label(index))
        }
        // Each token must lead to exactly one entry: no issuer twice, and no exact issuer
        // that a template would also produce for one of its allowed tenants.
        for (index, entry) in issuers.enumerated() {
            for (earlier, other) in issuers.prefix(index).enumerated() {
                if entry.issuer == other.issuer {
                    throw AuthConfigurationError("auth.json: 'issuers[\(index)].issuer' '\(entry.issuer)' is the same as 'issuers[\(earlier)].issuer'; each issuer may be listed once")
                }
                for (template, templateIndex, exact, exactIndex) in [(other, earlier, entry, index), (entry, index, other, earlier)]
                where template.isTemplate && !exact.isTemplate {
                    if let tenant = template.allowedTenants.first(where: { template.expectedIssuer(tenant: $0) == exact.issuer }) {
                        throw AuthConfigurationError("auth.json: 'issuers[\(exactIndex)].issuer' '\(exact.issuer)' is also what the template 'issuers[\(templateIndex)].issuer' gives for tenant '\(tenant)' of its allowedTenants; list each issuer once")
                    }
                }
            }
        }
    }

    /// Loads `clientCertificates.caFile` and `crlFile` (when set) the way the plugin will,
    /// so a missing or unreadable file stops the plugin at start instead of refusing every
    /// certificate later. Paths are used as they are (`parse` has resolved them).
    public func checkCertificateFiles() throws(AuthConfigurationError) {
        guard let certificates = clientCertificates else { return }
        do {
            _ = try PKIFiles.certificates(pem: PKIFiles.read(certificates.caFile))
        } catch {
            throw AuthConfigurationError("auth.json: 'clientCertificates.caFile' \(certificates.caFile): \(error.message.replacingOccurrences(of: "cannot read \(certificates.caFile): ", with: ""))")
        }
        if let crlFile = certificates.crlFile {
            do {
                _ = try PKIFiles.crls(PKIFiles.read(crlFile))
            } catch {
                throw AuthConfigurationError("auth.json: 'clientCertificates.crlFile' \(crlFile): \(error.message.replacingOccurrences(of: "cannot read \(crlFile): ", with: ""))")
            }
        }
    }

    /// The first issuer's algorithms (see `issuers`).
    public var algorithms: [SupportedAlgorithm] { primary.algorithms }

    /// Where the signing keys come from, after defaults.
    public enum KeyLocation: Sendable, Equatable, CustomStringConvertible {
        case file(String)
        case jwksURL(String)
        case discovery(String)

        public var description: String {
            switch self {
            case .file(let p): return "file \(p)"
            case .jwksURL(let u): return "JWKS \(u)"
            case .discovery(let u): return "discovery \(u)"
            }
        }
    }

    /// The first issuer's key location (see `issuers`).
    public var keyLocation: KeyLocation { primary.keyLocation }

    static func isHTTPURL(_ s: String) -> Bool {
        guard let u = URL(string: s), let scheme = u.scheme?.lowercased(), scheme == "http" || scheme == "https",
              let host = u.host, !host.isEmpty else { return false }
        return true
    }

    static func resolve(_ path: String, in dir: String) -> String {
        path.hasPrefix("/") ? path : (dir.hasSuffix("/") ? dir + path : dir + "/" + path)
    }

    private static func path(_ keys: [any CodingKey]) -> String { CodingPathText.of(keys) }

    private static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Int.Type: return "an integer"
        case is [String].Type: return "a list of strings"
        case is [String: String].Type: return "an object of strings"
        case is [String: Any].Type: return "an object"
        default: return "\(type)"
        }
    }

    static func describe(_ error: any Error) -> String {
        let ns = error as NSError
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain,
           let code = POSIXErrorCode(rawValue: Int32(underlying.code)) {
            return SystemError.reason(code.rawValue)
        }
        if ns.domain == NSCocoaErrorDomain {
            switch ns.code {
            case NSFileReadNoSuchFileError: return "no such file"
            case NSFileReadNoPermissionError: return "permission denied"
            default: break
            }
        }
        return ns.localizedDescription
    }
}
