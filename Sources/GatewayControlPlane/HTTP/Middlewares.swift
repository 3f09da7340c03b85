import Foundation
import Hummingbird
import Logging

/// Outermost: every error becomes an OData error body. Hummingbird's own errors (404 for
/// an unknown path, 413, decoding) are mapped; anything unexpected is a 500 whose detail
/// goes to the log, not to the client.
struct ODataErrorMiddleware: RouterMiddleware {
    typealias Context = ControlRequestContext
    let logger: Logger
    /// What is routed, to tell a wrong method on a known path (405) from an unknown path.
    let routes: RouteRegistry

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as GraphError {
            // Agent-side refusals other than authentication (logged where they happen) get
            // a line here, so a failing check-in or upload is visible on the control plane.
            if request.uri.path.hasPrefix("/agent/"), error.status != .unauthorized {
                logger.notice("agent.request.refused", metadata: [
                    "method": "\(request.method.rawValue)", "path": "\(request.uri.path)", "status": "\(error.status.code)", "reason": "\(error.message)",
                ])
            }
            return error.response()
        } catch let error as HTTPError {
            switch error.status {
            case .notFound:
                // HTTP.route answers 405 for the usual methods; a method with no entry at all
                // (TRACE, QUERY, …) reaches here. The API prober found those answered 404.
                if let allowed = routes.allowedMethods(forPath: request.uri.path), !allowed.contains(request.method.rawValue) {
                    let list = allowed.joined(separator: ", ")
                    return GraphError(.methodNotAllowed, code: "MethodNotAllowed",
                                      "\(request.method.rawValue) is not allowed on this resource (allowed: \(list))", headers: ["Allow": list]).response()
                }
                return GraphError(.notFound, code: "ResourceNotFound", "no resource at \(request.method.rawValue) \(request.uri.path)").response()
            case .contentTooLarge:
                return GraphError(.contentTooLarge, code: "RequestEntityTooLarge", error.body ?? "request body too large").response()
            default:
                return GraphError(error.status, code: error.status.reasonPhrase.replacingOccurrences(of: " ", with: ""),
                                  error.body ?? error.status.reasonPhrase).response()
            }
        } catch let error as any HTTPResponseError {
            return GraphError(error.status, code: "Error", error.status.reasonPhrase).response()
        } catch let error as SQLStoreError where error.isUnavailable {
            // The database is away (PostgreSQL restarting, its link down): the request may
            // succeed later or on another instance, so 503, not 500.
            logger.error("http.database_unavailable", metadata: ["method": "\(request.method.rawValue)", "path": "\(request.uri.path)", "error": "\(error)"])
            return GraphError(.serviceUnavailable, code: "ServiceUnavailable", "the database does not answer; retry shortly",
                              headers: ["Retry-After": "5"]).response()
        } catch {
            logger.error("http.internal_error", metadata: ["method": "\(request.method.rawValue)", "path": "\(request.uri.path)", "error": "\(error)"])
            return GraphError.internalError("internal error; see the control plane's log").response()
        }
    }
}

/// Refuses, before routing, request paths that could be spelled to look like one thing
/// and route as another: empty segments (`//beta/…`, `/beta//x` — the router skips them),
/// dot segments (`.`, `..`, also percent-encoded), percent-encoded `/` or `\`, malformed
/// percent-encoding and control characters. One trailing `/` is allowed. Answers 400.
struct CanonicalPathMiddleware: RouterMiddleware {
    typealias Context = ControlRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if let problem = Self.problem(request.uri.path) {
            throw GraphError(.badRequest, code: "BadRequest", "request path refused: \(problem)")
        }
        return try await next(request, context)
    }

    /// Why `path` is refused, nil when it is canonical.
    static func problem(_ path: String) -> String? {
        guard path.hasPrefix("/") else { return "it must start with '/'" }
        guard path != "/" else { return nil }
        var segments = path.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
        if segments.count > 1, segments.last?.isEmpty == true { segments.removeLast() }
        for segment in segments {
            if segment.isEmpty { return "empty path segment ('//')" }
            guard let decoded = String(segment).removingPercentEncoding else { return "malformed percent-encoding" }
            if decoded == "." || decoded == ".." { return "dot segment ('\(decoded)')" }
            if decoded.contains("/") || decoded.contains("\\") { return "encoded '/' or '\\' in a path segment" }
            if decoded.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) { return "control character in the path" }
        }
        return nil
    }
}

/// Admin authentication and the audit line of every admin write.
///
/// Installed twice: on the `/beta` route group (`scope: .group`), so every matched admin
/// route is authenticated however the raw path was spelled; and on the router
/// (`scope: .pathPrefix`) for requests whose first path segment is `beta`, so even an unknown
/// `/beta` path needs credentials before it gets its 404 (no anonymous probing). The outer
/// instance authenticates and audits; the group instance then sees `context.admin` set and
/// passes through, or authenticates itself if the outer one did not.
struct AdminAuthMiddleware: RouterMiddleware {
    typealias Context = ControlRequestContext
    enum Scope: Sendable { case pathPrefix, group }
    let authenticator: AdminAuthenticator
    /// Failed authentications per source address: 429 during a lockout (AdminAuthThrottle).
    let throttle: AdminAuthThrottle
    let now: @Sendable () -> Date
    let logger: Logger
    let logGate: LogGate
    var scope: Scope = .group

    /// True when the path's first segment is `beta` (percent-decoded, any case).
    static func isAdminPath(_ path: String) -> Bool {
        guard let first = path.split(separator: "/").first else { return false }
        return (String(first).removingPercentEncoding ?? String(first)).lowercased() == "beta"
    }

    /// Graph actions that are POSTs but change nothing: not audited as writes.
    static let readActions: Set<String> = ["getHealthMetrics", "getHealthMetricTimeSeries"]

    static func isReadAction(_ path: String) -> Bool {
        guard let last = path.split(separator: "/").last else { return false }
        return readActions.contains(String(last))
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        switch scope {
        case .pathPrefix:
            guard Self.isAdminPath(request.uri.path) else { return try await next(request, context) }
        case .group:
            if context.admin != nil { return try await next(request, context) }
        }
        // Locked out: refused before the credential is even looked at, a correct one too.
        let source = SourceAddress.key(context.channel.remoteAddress)
        if let wait = throttle.retryAfter(source, now: now()) {
            if let suppressed = logGate.pass("admin.auth.throttled") {
                logger.notice("admin.auth.throttled", metadata: [
                    "method": "\(request.method.rawValue)", "path": "\(request.uri.path)", "source": "\(source)",
                    "retry_after": "\(wait)", "suppressed": "\(suppressed)",
                ])
            }
            throw GraphError.tooManyRequests(
                "too many failed admin authentications from this address; every admin request from it is refused for \(wait) s more",
                retryAfter: wait)
        }
        let authorization = request.headers[.authorization]
        let principal: AdminPrincipal
        switch await authenticator.authenticate(authorization: authorization) {
        case .success(let p): principal = p
        case .failure(let error):
            var metadata: Logger.Metadata = [
                "method": "\(request.method.rawValue)", "path": "\(request.uri.path)", "status": "\(error.status.code)",
                "reason": "\(error.message)", "source": "\(source)",
            ]
            // A presented credential that is wrong counts; no credential at all, or a valid
            // JWT without the admin role (403), does not.
            if error.status == .unauthorized, let authorization, !authorization.isEmpty,
               let lockout = throttle.recordFailure(source, now: now()) {
                metadata["lockout_s"] = "\(lockout)"
                logger.warning("admin.auth.locked_out", metadata: metadata)
            } else {
                // Every rejection (the lockout bounds how many one source can cause).
                logger.notice("admin.auth.rejected", metadata: metadata)
            }
            throw error
        }
        var context = context
        context.admin = principal
        let isWrite = request.method != .get && request.method != .head && !Self.isReadAction(request.uri.path)
        do {
            let response = try await next(request, context)
            if isWrite {
                logger.info("admin.write", metadata: [
                    "method": "\(request.method.rawValue)", "path": "\(request.uri.path)", "admin": "\(principal.name)",
                    "auth": "\(principal.method.rawValue)", "status": "\(response.status.code)",
                ])
            }
            return response
        } catch let error as GraphError {
            if isWrite {
                logger.notice("admin.write.refused", metadata: [
                    "method": "\(request.method.rawValue)", "path": "\(request.uri.path)", "admin": "\(principal.name)",
                    "status": "\(error.status.code)", "reason": "\(error.message)",
                ])
            }
            throw error
        }
    }
}
