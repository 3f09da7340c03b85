import Foundation
import GatewayAuth
import Hummingbird
import NIOCore

/// The development issuer's HTTP surface (only when `serve --dev-issuer`):
/// - public, as an identity provider's are: `/dev-issuer/{tenant}/v2.0/.well-known/openid-configuration`,
///   `/dev-issuer/{tenant}/discovery/v2.0/keys`, `POST /dev-issuer/{tenant}/oauth2/v2.0/token`
///   (Entra's path shapes, so a client configured for one finds the other);
/// - admin, under `/beta/devIssuer`: the issuer's facts (for writing `auth.json`) and its
///   local users (`GET`/`POST /users`, `DELETE /users/{id}`).
extension ControlPlane {
    static let devIssuerAdminPath = "/beta/devIssuer"

    func addDevIssuerRoutes(_ router: RouteTable) {
        guard let issuer = devIssuer else { return }
        let base = DevIssuer.pathPrefix + "/{tenant}"
        @Sendable func checkTenant(_ context: ControlRequestContext) throws {
            guard try HTTP.parameter(context, "tenant") == issuer.tenantId else {
                throw GraphError.notFound("no such tenant on the development issuer")
            }
        }
        router.route(base + "/v2.0/.well-known/openid-configuration", [
            .get: { _, context in try checkTenant(context); return HTTP.json(issuer.discoveryDocument) },
        ])
        router.route(base + "/discovery/v2.0/keys", [
            .get: { _, context in try checkTenant(context); return HTTP.json(issuer.jwks) },
        ])
        router.route(base + "/oauth2/v2.0/token", [
            .post: { request, context in
                try checkTenant(context)
                return await self.devIssuerToken(request, issuer)
            },
        ])

        router.route(Self.devIssuerAdminPath, [
            .get: { _, _ in
                HTTP.json(.object([
                    "issuer": .string(issuer.issuer), "tenantId": .string(issuer.tenantId),
                    "discoveryUrl": .string(issuer.issuer + "/.well-known/openid-configuration"),
                    "tokenEndpoint": .string(issuer.tokenEndpoint), "audience": .string(AuthConfiguration.defaultAudience),
                ]))
            },
        ])
        router.route(Self.devIssuerAdminPath + "/users", [
            .get: { _, _ in
                let users = await issuer.list()
                return HTTP.collection(users.map { JSONValue.from($0).objectValue ?? [:] }, context: "devIssuer/users")
            },
            .post: { request, _ in
                guard let body = JSONValue.parseObject(try await HTTP.body(request)) else {
                    throw GraphError.badRequest("request body is not a JSON object")
                }
                let unknown = body.keys.filter { !["userPrincipalName", "displayName", "password"].contains($0) }.sorted()
                guard unknown.isEmpty else {
                    throw GraphError.badRequest("unknown properties: \(unknown.joined(separator: ", ")) (known: userPrincipalName, displayName, password)")
                }
                guard case .string(let upn)? = body["userPrincipalName"] else {
                    throw GraphError.badRequest("userPrincipalName (string) is required")
                }
                guard case .string(let password)? = body["password"] else { throw GraphError.badRequest("password (string) is required") }
                var displayName: String?
                if case .string(let d)? = body["displayName"] { displayName = d }
                let user = try await issuer.upsert(userPrincipalName: upn, displayName: displayName, password: password, now: self.now())
                self.logger.info("devissuer.user.saved", metadata: ["user": "\(user.userPrincipalName)", "id": "\(user.id)"])
                return try HTTP.json(encodable: user, status: .created)
            },
        ])
        router.route(Self.devIssuerAdminPath + "/users/{id}", [
            .delete: { _, context in
                try await issuer.delete(try HTTP.parameter(context, "id"))
                return HTTP.noContent()
            },
        ])
    }

    /// RFC 6749 §4.3 (password grant), answered with RFC 6749 §5.1/§5.2 bodies.
    func devIssuerToken(_ request: Request, _ issuer: DevIssuer) async -> Response {
        func oauthError(_ code: String, _ text: String, status: HTTPResponse.Status = .badRequest) -> Response {
            var response = HTTP.json(.object(["error": .string(code), "error_description": .string(text)]), status: status)
            response.headers[.cacheControl] = "no-store"
            return response
        }
        var request = request
        guard let buffer = try? await request.collectBody(upTo: 16 * 1024) else {
            return oauthError("invalid_request", "request body over 16 KiB")
        }
        guard request.headers[.contentType]?.lowercased().hasPrefix("application/x-www-form-urlencoded") == true else {
            return oauthError("invalid_request", "the body must be application/x-www-form-urlencoded")
        }
        let form: [String: String]
        do {
            form = Dictionary(try HTTP.query(String(buffer: buffer)), uniquingKeysWith: { a, _ in a })
        } catch {
            return oauthError("invalid_request", "malformed form body")
        }
        guard form["grant_type"] == "password" else {
            return oauthError("unsupported_grant_type", "only grant_type=password is supported by the development issuer")
        }
        guard let username = form["username"], let password = form["password"] else {
            return oauthError("invalid_request", "username and password are required")
        }
        do {
            let (token, user) = try await issuer.token(username: username, password: password, audience: nil, now: now())
            logger.info("devissuer.token.issued", metadata: ["user": "\(user.userPrincipalName)", "oid": "\(user.id)"])
            var response = HTTP.json(.object([
                "token_type": .string("Bearer"), "access_token": .string(token), "expires_in": .int(Int64(DevIssuer.tokenLifetime)),
                "scope": .string(AuthConfiguration.defaultAudience + "/.default"),
            ]))
            response.headers[.cacheControl] = "no-store"
            return response
        } catch {
            guard case .oauth(let code, let text) = error else { return oauthError("server_error", "internal error", status: .internalServerError) }
            logger.notice("devissuer.token.refused", metadata: ["user": "\(username.prefix(256))", "reason": "\(text)"])
            return oauthError(code, text, status: code == "server_error" ? .internalServerError : .badRequest)
        }
    }
}
