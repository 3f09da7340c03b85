import Foundation
import GatewayAgentAPI
import Hummingbird

/// An error answered to the client in Graph's OData shape, `{"error":{"code","message"}}`,
/// with its HTTP status. Every failure that reaches a client goes through this type, so
/// the two APIs never answer a bare text body or a stack trace.
public struct GraphError: Error, Sendable, Equatable, CustomStringConvertible, HTTPResponseError {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String
    /// Extra response headers (e.g. `WWW-Authenticate` on 401, `Allow` on 405).
    public var headers: [String: String]

    public init(_ status: HTTPResponse.Status, code: String, _ message: String, headers: [String: String] = [:]) {
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
    }

    public var description: String { "\(status.code) \(code): \(message)" }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        response()
    }

    func response() -> Response {
        let body = AgentAPIError.Body(error: AgentAPIError(code: code, message: message))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(body)) ?? Data("{\"error\":{\"code\":\"internalError\",\"message\":\"\"}}".utf8)
        var fields = HTTPFields()
        fields[.contentType] = "application/json"
        // Only the headers the APIs set; named here so no HTTPTypes import is needed.
        if let v = headers["WWW-Authenticate"] { fields[.wwwAuthenticate] = v }
        if let v = headers["Allow"] { fields[.allow] = v }
        if let v = headers["Retry-After"] { fields[.retryAfter] = v }
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    // MARK: - The errors the APIs use

    static func badRequest(_ message: String) -> GraphError { .init(.badRequest, code: "BadRequest", message) }
    static func validation(_ message: String) -> GraphError { .init(.badRequest, code: "ValidationError", message) }
    static func notFound(_ message: String) -> GraphError { .init(.notFound, code: "ResourceNotFound", message) }
    static func conflict(_ message: String) -> GraphError { .init(.conflict, code: "Conflict", message) }
    static func unauthenticated(_ message: String) -> GraphError {
        .init(.unauthorized, code: "Unauthorized", message, headers: ["WWW-Authenticate": "Bearer"])
    }
    static func forbidden(_ message: String) -> GraphError { .init(.forbidden, code: "Forbidden", message) }
    static func tooManyRequests(_ message: String, retryAfter seconds: Int) -> GraphError {
        .init(.tooManyRequests, code: "TooManyRequests", message, headers: ["Retry-After": "\(seconds)"])
    }
    static func internalError(_ message: String) -> GraphError { .init(.internalServerError, code: "InternalServerError", message) }
    static func unsupportedQuery(_ message: String) -> GraphError { .init(.badRequest, code: "BadRequest", message) }
}
