import Crypto
import Foundation
import GatewayAuth
import Logging

/// Who made an admin request, for the audit log. Never a token.
public struct AdminPrincipal: Sendable, Equatable {
    public enum Method: String, Sendable { case localToken, jwt }
    public var method: Method
    /// `local-admin`, or the token's user name (upn / preferred_username / oid).
    public var name: String
}

/// Checks `Authorization: Bearer …` on the admin API.
///
/// Two kinds of credential: the local admin token (standalone mode, written to
/// `<state-dir>/admin-token` at first start), compared as SHA-256 digests in constant
/// time; and, when `--admin-auth-config` is given, JWTs from the configured issuer, which
/// must carry the admin role in `roles`.
public struct AdminAuthenticator: Sendable {
    let localTokenDigest: [UInt8]?
    let validator: TokenValidator?
    public let requiredRole: String

    public static let defaultRole = "MSTunnel.Admin"

    public init(localToken: String?, validator: TokenValidator?, requiredRole: String = defaultRole) {
        self.localTokenDigest = localToken.map { Array(SHA256.hash(data: Data($0.utf8))) }
        self.validator = validator
        self.requiredRole = requiredRole
    }

    public func authenticate(authorization: String?) async -> Result<AdminPrincipal, GraphError> {
        guard let authorization, !authorization.isEmpty else {
            return .failure(.unauthenticated("this API needs 'Authorization: Bearer <token>' (the local admin token or an admin JWT)"))
        }
        let parts = authorization.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else {
            return .failure(.unauthenticated("only the Bearer authorization scheme is accepted"))
        }
        let token = parts[1].trimmingCharacters(in: .whitespaces)
        if let localTokenDigest {
            let presented = Array(SHA256.hash(data: Data(token.utf8)))
            if ConstantTime.equal(presented, localTokenDigest) {
                return .success(AdminPrincipal(method: .localToken, name: "local-admin"))
            }
        }
        let looksLikeJWT = token.split(separator: ".", omittingEmptySubsequences: false).count == 3
        guard looksLikeJWT, let validator else {
            return .failure(.unauthenticated(validator == nil
                ? "the bearer token is not the local admin token"
                : "the bearer token is neither the local admin token nor a JWT"))
        }
        let result = await validator.validate(token)
        guard let identity = result.identity else {
            let reason = result.rejection?.reason ?? "rejected"
            return .failure(.unauthenticated("the bearer token was rejected: \(reason)"))
        }
        // The signature checked out, so the payload is the issuer's word; read its roles.
        guard Self.roles(ofVerifiedJWT: token).contains(requiredRole) else {
            return .failure(.forbidden("the token of '\(identity.userName)' is valid but its 'roles' claim lacks '\(requiredRole)'"))
        }
        return .success(AdminPrincipal(method: .jwt, name: identity.userName))
    }

    static func roles(ofVerifiedJWT token: String) -> [String] {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let payload = Base64URLDecoding.decode(String(parts[1])),
              let claims = JSONValue.parseObject(payload) else { return [] }
        switch claims["roles"] {
        case .array(let items)?: return items.compactMap(\.stringValue)
        case .string(let s)?: return [s]
        default: return []
        }
    }
}

enum Base64URLDecoding {
    static func decode(_ text: String) -> Data? {
        var s = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while s.count % 4 != 0 { s.append("=") }
        return Data(base64Encoded: s)
    }
}

/// The local admin token file: `<state-dir>/admin-token`, mode 0600, created at first start.
public enum LocalAdminToken {
    public static func path(stateDirectory: String) -> String { stateDirectory + "/admin-token" }

    /// Reads the token, creating it when the file does not exist.
    public static func loadOrCreate(stateDirectory: String) throws -> String {
        let path = path(stateDirectory: stateDirectory)
        if let text = try? String(contentsOfFile: path, encoding: .utf8) {
            let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard token.count >= 32 else { throw PKIError("\(path) holds a token shorter than 32 characters; delete it to get a new one") }
            return token
        }
        let token = newToken()
        try write(token, stateDirectory: stateDirectory)
        return token
    }

    public static func newToken() -> String { "mstadm_" + Secrets.randomToken(bytes: 32) }

    /// Writes the token (0600), e.g. the one several instances share from their store.
    public static func write(_ token: String, stateDirectory: String) throws {
        try StateFiles.write(Data((token + "\n").utf8), to: path(stateDirectory: stateDirectory), mode: 0o600)
    }

    public static func read(stateDirectory: String) throws -> String {
        let path = path(stateDirectory: stateDirectory)
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw PKIError("cannot read \(path) (has 'mstunnel-control serve' run with this --state-dir, and are you its user?)")
        }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
