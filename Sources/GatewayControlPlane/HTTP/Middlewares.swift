import Foundation
import Hummingbird
import Logging

/// Outermost: every error becomes an OData error body. Hummingbird's own errors (404 for
/// an unknown path, 413, decoding) are mapped; anything unexpected is a 500 whose detail
/// goes to the log, not to the client.
struct ODataErrorMiddleware: RouterMiddleware {
    typealias Context = ControlRequestContext
    let logger: Logger

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
                return GraphError(.notFound, code: "ResourceNotFound", "no resource at \(request.method.rawValue) \(request.uri.path)").response()
            case .contentTooLarge:
                return GraphError(.contentTooLarge, code: "RequestEntityTooLarge", error.body ?? "request body too large").response()
            default:
                return GraphError(error.status, code: error.status.reasonPhrase.replacingOccurrences(of: " ", with: ""),
                                  error.body ?? error.status.reasonPhrase).response()
            }
        } catch let error as any HTTPResponseError {
            return GraphError(error.status, code: "Error", error.status.reasonPhrase).response()
        } catch {
            logger.error("http.internalError", metadata: ["method": "\(request.method.rawValue)", "path": "\(request.uri.path)", "error": "\(error)"])
            return GraphError.internalError("internal error; see the control plane's log").response()
        }
    }
}

/// Admin authentication for everything under `/beta/`, and the audit line of every admin
/// write. No anonymous reads: even an unknown `/beta` path needs credentials first.
struct AdminAuthMiddleware: RouterMiddleware {
    typealias Context = ControlRequestContext
    let authenticator: AdminAuthenticator
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard request.uri.path.hasPrefix("/beta/") || request.uri.path == "/beta" else {
            return try await next(request, context)
        }
        let principal: AdminPrincipal
        switch await authenticator.authenticate(authorization: request.headers[.authorization]) {
        case .success(let p): principal = p
        case .failure(let error):
            logger.notice("admin.auth.rejected", metadata: [
                "method": "\(request.method.rawValue)", "path": "\(request.uri.path)", "status": "\(error.status.code)", "reason": "\(error.message)",
            ])
            throw error
        }
        var context = context
        context.admin = principal
        let isWrite = request.method != .get && request.method != .head
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
