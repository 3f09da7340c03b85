import Crypto
import CryptoExtras
import Foundation
import GatewayAgentAPI
import GatewayAuth
import JWTKit

/// A development OpenID issuer inside the control plane, for standalone installs that have
/// no Entra tenant at hand (the quickstart): OIDC discovery, a JWKS, and an OAuth 2.0 token
/// endpoint (resource-owner password grant) for local users the admin creates. Tokens look
/// like Entra's v2 access tokens (`iss`, `aud` = the Tunnel Gateway app id, `tid`, `oid`,
/// `upn`, `preferred_username`), so the gateway validates them exactly as it would Entra's.
///
/// Off unless `serve --dev-issuer` is given, and refused together with an external admin
/// issuer (`--admin-auth-config`): it is a stand-in for an identity provider, not one.
///
/// State under `<state-dir>/dev-issuer/`: `tenant-id`, `signing-key.pem` (ES256, 0600),
/// `users.json` (PBKDF2-SHA256 password hashes, 0600).
public actor DevIssuer {
    public static let pathPrefix = "/dev-issuer"
    public static let tokenLifetime: TimeInterval = 3600
    static let passwordRounds = 210_000

    public nonisolated let tenantId: String
    public nonisolated let issuer: String
    nonisolated let baseURL: String
    nonisolated let keyId: String
    nonisolated let jwks: JSONValue
    let keys: JWTKeyCollection
    let directory: String
    var users: [String: DevUser]

    struct DevUser: Codable, Sendable {
        var id: String
        var userPrincipalName: String
        var displayName: String
        var salt: String
        var passwordHash: String
        var createdDateTime: String
        var roles: [String]?
    }

    public struct User: Sendable, Codable, Equatable {
        public var id: String
        public var userPrincipalName: String
        public var displayName: String
        public var createdDateTime: String
    }

    /// The issuer's URL base: `<publicBaseURL>/dev-issuer/<tenant>/v2.0`.
    public static func issuerURL(baseURL: String, tenantId: String) -> String {
        "\(baseURL)\(pathPrefix)/\(tenantId)/v2.0"
    }

    public static func loadOrCreate(stateDirectory: String, baseURL: String) async throws -> DevIssuer {
        let dir = stateDirectory + "/dev-issuer"
        try StateFiles.ensureDirectory(dir)
        let tenantPath = dir + "/tenant-id", keyPath = dir + "/signing-key.pem", usersPath = dir + "/users.json"
        let tenant: String
        if let data = FileManager.default.contents(atPath: tenantPath) {
            tenant = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard UUID(uuidString: tenant) != nil else { throw PKIError("\(tenantPath): not a tenant id (a UUID)") }
        } else {
            tenant = Secrets.newId()
            try StateFiles.write(Data((tenant + "\n").utf8), to: tenantPath, mode: 0o644)
        }
        let key: P256.Signing.PrivateKey
        if let data = FileManager.default.contents(atPath: keyPath) {
            do { key = try P256.Signing.PrivateKey(pemRepresentation: String(decoding: data, as: UTF8.self)) } catch {
                throw PKIError("\(keyPath): not a P-256 private key in PEM (\(error))")
            }
        } else {
            key = P256.Signing.PrivateKey()
            try StateFiles.write(Data(key.pemRepresentation.utf8), to: keyPath, mode: 0o600)
        }
        var users: [String: DevUser] = [:]
        if let data = FileManager.default.contents(atPath: usersPath) {
            do {
                for user in try JSONDecoder().decode([DevUser].self, from: data) { users[user.userPrincipalName.lowercased()] = user }
            } catch {
                throw PKIError("\(usersPath): unreadable (\(error)); move it away to start with no users")
            }
        }
        return try await DevIssuer(directory: dir, tenantId: tenant, baseURL: baseURL, key: key, users: users)
    }

    init(directory: String, tenantId: String, baseURL: String, key: P256.Signing.PrivateKey, users: [String: DevUser]) async throws {
        self.directory = directory
        self.tenantId = tenantId
        self.baseURL = baseURL
        self.issuer = Self.issuerURL(baseURL: baseURL, tenantId: tenantId)
        // The key id is derived from the public key, so it changes exactly when the key does.
        let point = key.publicKey.x963Representation
        self.keyId = String(Secrets.sha256Hex(point).prefix(16))
        self.jwks = .object(["keys": .array([.object([
            "kty": .string("EC"), "crv": .string("P-256"), "use": .string("sig"), "alg": .string("ES256"), "kid": .string(keyId),
            "x": .string(Secrets.base64url(Array(point.dropFirst().prefix(32)))), "y": .string(Secrets.base64url(Array(point.dropFirst(33)))),
        ])])])
        let collection = JWTKeyCollection()
        await collection.add(ecdsa: try ES256PrivateKey(pem: key.pemRepresentation), kid: JWKIdentifier(string: keyId))
        self.keys = collection
        self.users = users
    }

    // MARK: - OIDC documents

    public nonisolated var discoveryDocument: JSONValue {
        .object([
            "issuer": .string(issuer),
            "jwks_uri": .string("\(baseURL)\(Self.pathPrefix)/\(tenantId)/discovery/v2.0/keys"),
            "token_endpoint": .string(tokenEndpoint),
            "response_types_supported": .array([.string("token")]),
            "grant_types_supported": .array([.string("password")]),
            "subject_types_supported": .array([.string("pairwise")]),
            "id_token_signing_alg_values_supported": .array([.string("ES256")]),
            "token_endpoint_auth_methods_supported": .array([.string("none")]),
        ])
    }

    public nonisolated var tokenEndpoint: String { "\(baseURL)\(Self.pathPrefix)/\(tenantId)/oauth2/v2.0/token" }

    // MARK: - Users

    public func list() -> [User] {
        users.values.map(\.public).sorted { $0.userPrincipalName < $1.userPrincipalName }
    }

    /// Creates a local user, or sets a new password for an existing one (same id).
    public func upsert(userPrincipalName upn: String, displayName: String?, password: String, now: Date) throws(GraphError) -> User {
        let name = upn.trimmingCharacters(in: .whitespaces)
        guard name.count <= 256, name.contains("@"), !name.hasPrefix("@"), !name.hasSuffix("@"),
              name.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F }) else {
            throw GraphError(.badRequest, code: "InvalidUserPrincipalName", "userPrincipalName must look like name@domain (printable ASCII, no spaces)")
        }
        guard password.count >= 12, password.count <= 1024 else {
            throw GraphError(.badRequest, code: "WeakPassword", "password must be 12 to 1024 characters")
        }
        let salt = Secrets.randomBytes(16)
        let key = name.lowercased()
        let existing = users[key]
        let user = DevUser(id: existing?.id ?? Secrets.newId(), userPrincipalName: name,
                           displayName: displayName ?? existing?.displayName ?? String(name.split(separator: "@")[0]),
                           salt: Secrets.base64url(salt), passwordHash: Self.hash(password, salt: salt),
                           createdDateTime: existing?.createdDateTime ?? GraphDate.string(now), roles: existing?.roles)
        users[key] = user
        try save()
        return user.public
    }

    public func delete(_ idOrName: String) throws(GraphError) {
        guard let key = users.first(where: { $0.value.id == idOrName || $0.key == idOrName.lowercased() })?.key else {
            throw GraphError(.notFound, code: "ResourceNotFound", "no development-issuer user '\(idOrName)'")
        }
        users[key] = nil
        try save()
    }

    private func save() throws(GraphError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        do {
            try StateFiles.write(try encoder.encode(users.values.sorted { $0.id < $1.id }), to: directory + "/users.json", mode: 0o600)
        } catch {
            throw GraphError.internalError("cannot save the development issuer's users: \(error)")
        }
    }

    static func hash(_ password: String, salt: [UInt8]) -> String {
        // Cannot fail: SHA-256, a 32-byte output and rounds above the library's minimum.
        let key = try! KDF.Insecure.PBKDF2.deriveKey(from: Array(password.utf8), salt: salt, using: .sha256,
                                                     outputByteCount: 32, rounds: passwordRounds)
        return key.withUnsafeBytes { Secrets.base64url(Array($0)) }
    }

    // MARK: - Tokens

    public enum TokenError: Error, Equatable {
        /// OAuth 2.0 error code and description (RFC 6749 §5.2).
        case oauth(String, String)
    }

    /// The resource-owner password grant: `username` + `password` → a signed access token.
    /// The same answer for an unknown user and a wrong password.
    public func token(username: String, password: String, audience: String?, now: Date) async throws(TokenError) -> (token: String, user: User) {
        guard let user = users[username.lowercased()],
              let salt = Self.decodeBase64URL(user.salt),
              ConstantTime.equal(Array(Self.hash(password, salt: salt).utf8), Array(user.passwordHash.utf8)) else {
            throw .oauth("invalid_grant", "the user name or password is incorrect")
        }
        let t = Int64(now.timeIntervalSince1970)
        var claims: [String: JSONValue] = [
            "iss": .string(issuer), "aud": .string(audience ?? AuthConfiguration.defaultAudience), "tid": .string(tenantId),
            "oid": .string(user.id), "sub": .string(user.id), "upn": .string(user.userPrincipalName),
            "preferred_username": .string(user.userPrincipalName), "name": .string(user.displayName),
            "iat": .int(t), "nbf": .int(t), "exp": .int(t + Int64(Self.tokenLifetime)),
            "ver": .string("2.0"), "uti": .string(Secrets.randomToken(bytes: 12)),
        ]
        if let roles = user.roles, !roles.isEmpty { claims["roles"] = .array(roles.map(JSONValue.string)) }
        do {
            return (try await keys.sign(DevClaims(claims: claims), kid: JWKIdentifier(string: keyId)), user.public)
        } catch {
            throw .oauth("server_error", "signing failed")
        }
    }

    static func decodeBase64URL(_ text: String) -> [UInt8]? {
        var s = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while s.count % 4 != 0 { s += "=" }
        return Data(base64Encoded: s).map(Array.init)
    }
}

extension DevIssuer.DevUser {
    var `public`: DevIssuer.User {
        DevIssuer.User(id: id, userPrincipalName: userPrincipalName, displayName: displayName, createdDateTime: createdDateTime)
    }
}

/// Claims as a JSON object; validity is the gateway's business, not the signer's.
struct DevClaims: JWTPayload {
    var claims: [String: JSONValue]
    init(claims: [String: JSONValue]) { self.claims = claims }
    init(from decoder: any Decoder) throws { claims = try [String: JSONValue](from: decoder) }
    func encode(to encoder: any Encoder) throws { try claims.encode(to: encoder) }
    func verify(using algorithm: some JWTAlgorithm) async throws {}
}
