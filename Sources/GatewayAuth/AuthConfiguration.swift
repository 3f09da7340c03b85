import Foundation
import GatewaySystem

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

/// `auth.json`: what tokens the plugin accepts and where the issuer's keys come from.
public struct AuthConfiguration: Codable, Sendable, Equatable {
    /// The Microsoft Tunnel Gateway application id, the audience Entra puts in tokens
    /// requested for the Tunnel.
    public static let defaultAudience = "3678c9e9-9681-447a-974d-d19f668fcd88"
    public static let maxClockSkewSeconds = 600

    /// Exact value the `iss` claim must have. Empty only when `authenticationMode` is
    /// `certificate` and the file has no `issuer`.
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
    /// Token, certificate, or both (default token).
    public var authenticationMode: AuthenticationMode
    /// Client-certificate trust; required when `authenticationMode` uses certificates.
    public var clientCertificates: ClientCertificateConfiguration?

    public init(issuer: String, discoveryURL: String? = nil, jwksURL: String? = nil, jwksFile: String? = nil,
                audiences: [String] = [AuthConfiguration.defaultAudience], allowedTenants: [String] = [],
                requiredClaims: [String: String] = [:], clockSkewSeconds: Int = 120,
                allowedAlgorithms: [String] = ["RS256", "ES256"], caBundle: String? = nil,
                jwksMinRefreshSeconds: Int = 60, jwksMaxAgeSeconds: Int = 3600,
                authenticationMode: AuthenticationMode = .token, clientCertificates: ClientCertificateConfiguration? = nil) {
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
        self.authenticationMode = authenticationMode
        self.clientCertificates = clientCertificates
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case issuer, discoveryURL, jwksURL, jwksFile, audiences, allowedTenants, requiredClaims
        case clockSkewSeconds, allowedAlgorithms, caBundle, jwksMinRefreshSeconds, jwksMaxAgeSeconds
        case authenticationMode, clientCertificates
    }

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
        // A certificate-only plugin needs no issuer; every other mode does.
        if authenticationMode.usesTokens {
            issuer = try c.decode(String.self, forKey: .issuer)
        } else {
            issuer = try c.decodeIfPresent(String.self, forKey: .issuer) ?? ""
        }
        discoveryURL = try c.decodeIfPresent(String.self, forKey: .discoveryURL)
        jwksURL = try c.decodeIfPresent(String.self, forKey: .jwksURL)
        jwksFile = try c.decodeIfPresent(String.self, forKey: .jwksFile)
        audiences = try c.decodeIfPresent([String].self, forKey: .audiences) ?? [Self.defaultAudience]
        allowedTenants = try c.decodeIfPresent([String].self, forKey: .allowedTenants) ?? []
        requiredClaims = try c.decodeIfPresent([String: String].self, forKey: .requiredClaims) ?? [:]
        clockSkewSeconds = try c.decodeIfPresent(Int.self, forKey: .clockSkewSeconds) ?? 120
        allowedAlgorithms = try c.decodeIfPresent([String].self, forKey: .allowedAlgorithms) ?? ["RS256", "ES256"]
        caBundle = try c.decodeIfPresent(String.self, forKey: .caBundle)
        jwksMinRefreshSeconds = try c.decodeIfPresent(Int.self, forKey: .jwksMinRefreshSeconds) ?? 60
        jwksMaxAgeSeconds = try c.decodeIfPresent(Int.self, forKey: .jwksMaxAgeSeconds) ?? 3600
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
        if let dir = stateDirectory {
            config.jwksFile = config.jwksFile.map { Self.resolve($0, in: dir) }
            config.caBundle = config.caBundle.map { Self.resolve($0, in: dir) }
            if var certificates = config.clientCertificates {
                if !certificates.caFile.isEmpty { certificates.caFile = Self.resolve(certificates.caFile, in: dir) }
                certificates.crlFile = certificates.crlFile.map { $0.isEmpty ? $0 : Self.resolve($0, in: dir) }
                config.clientCertificates = certificates
            }
        }
        try config.validate()
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
        // Certificate-only without an issuer: the token settings keep their defaults and
        // are never used, so there is no issuer to check.
        let tokenSettingsUnused = !authenticationMode.usesTokens && issuer.isEmpty
        if !tokenSettingsUnused, issuer.trimmingCharacters(in: .whitespaces).isEmpty {
            throw AuthConfigurationError("auth.json: 'issuer' must not be empty")
        }
        let sources = [("jwksFile", jwksFile), ("jwksURL", jwksURL), ("discoveryURL", discoveryURL)].filter { $0.1 != nil }
        if sources.count > 1 {
            throw AuthConfigurationError("auth.json: set only one of 'jwksFile', 'jwksURL', 'discoveryURL' (found \(sources.map { "'\($0.0)'" }.joined(separator: ", ")))")
        }
        if let f = jwksFile, f.isEmpty {
            throw AuthConfigurationError("auth.json: 'jwksFile' must not be empty")
        }
        for (key, value) in [("jwksURL", jwksURL), ("discoveryURL", discoveryURL)] {
            if let v = value, !Self.isHTTPURL(v) {
                throw AuthConfigurationError("auth.json: '\(key)' must be an http:// or https:// URL, got '\(v)'")
            }
        }
        if !tokenSettingsUnused, jwksFile == nil, jwksURL == nil, discoveryURL == nil, !Self.isHTTPURL(issuer) {
            throw AuthConfigurationError("auth.json: 'issuer' '\(issuer)' is not an http(s) URL, so keys cannot be discovered from it; set 'discoveryURL', 'jwksURL' or 'jwksFile'")
        }
        if audiences.isEmpty || audiences.contains(where: \.isEmpty) {
            throw AuthConfigurationError("auth.json: 'audiences' must be a non-empty list of non-empty strings")
        }
        if allowedTenants.contains(where: \.isEmpty) {
            throw AuthConfigurationError("auth.json: 'allowedTenants' must not contain empty strings")
        }
        if let bad = requiredClaims.keys.sorted().first(where: \.isEmpty) {
            throw AuthConfigurationError("auth.json: 'requiredClaims' has an empty claim name (value '\(requiredClaims[bad] ?? "")')")
        }
        if !(0...Self.maxClockSkewSeconds).contains(clockSkewSeconds) {
            throw AuthConfigurationError("auth.json: 'clockSkewSeconds' must be between 0 and \(Self.maxClockSkewSeconds), got \(clockSkewSeconds)")
        }
        if allowedAlgorithms.isEmpty {
            throw AuthConfigurationError("auth.json: 'allowedAlgorithms' must not be empty")
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
            throw AuthConfigurationError("auth.json: 'allowedAlgorithms' contains '\(alg)': \(why); allowed values: \(SupportedAlgorithm.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if let b = caBundle, b.isEmpty {
            throw AuthConfigurationError("auth.json: 'caBundle' must not be empty")
        }
        if !(1...86_400).contains(jwksMinRefreshSeconds) {
            throw AuthConfigurationError("auth.json: 'jwksMinRefreshSeconds' must be between 1 and 86400, got \(jwksMinRefreshSeconds)")
        }
        if !(jwksMinRefreshSeconds...(7 * 86_400)).contains(jwksMaxAgeSeconds) {
            throw AuthConfigurationError("auth.json: 'jwksMaxAgeSeconds' must be between 'jwksMinRefreshSeconds' (\(jwksMinRefreshSeconds)) and 604800, got \(jwksMaxAgeSeconds)")
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

    /// The algorithms as typed values (validated by `validate`, so none are dropped in practice).
    public var algorithms: [SupportedAlgorithm] {
        allowedAlgorithms.compactMap(SupportedAlgorithm.init(rawValue:))
    }

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

    public var keyLocation: KeyLocation {
        if let f = jwksFile { return .file(f) }
        if let u = jwksURL { return .jwksURL(u) }
        if let d = discoveryURL { return .discovery(d) }
        var base = issuer
        while base.hasSuffix("/") { base.removeLast() }
        return .discovery(base + "/.well-known/openid-configuration")
    }

    static func isHTTPURL(_ s: String) -> Bool {
        guard let u = URL(string: s), let scheme = u.scheme?.lowercased(), scheme == "http" || scheme == "https",
              let host = u.host, !host.isEmpty else { return false }
        return true
    }

    static func resolve(_ path: String, in dir: String) -> String {
        path.hasPrefix("/") ? path : (dir.hasSuffix("/") ? dir + path : dir + "/" + path)
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }

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
