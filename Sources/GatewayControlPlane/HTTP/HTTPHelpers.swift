import Foundation
import GatewayAuth
import Hummingbird
import NIOCore

typealias Handler = @Sendable (Request, ControlRequestContext) async throws -> Response

enum HTTP {
    static let methods: [HTTPRequest.Method] = [.get, .post, .put, .patch, .delete]

    /// Registers `handlers` on `path` and a 405 (OData error, `Allow` header) for every
    /// other method, so a wrong verb is told apart from a wrong path.
    static func route(_ router: some RouterMethods<ControlRequestContext>, _ path: String, _ handlers: [HTTPRequest.Method: Handler]) {
        let allowed = methods.filter { handlers[$0] != nil }.map(\.rawValue).joined(separator: ", ")
        for method in methods {
            if let handler = handlers[method] {
                router.on(RouterPath(path), method: method, use: handler)
            } else {
                router.on(RouterPath(path), method: method) { request, _ -> Response in
                    throw GraphError(.methodNotAllowed, code: "MethodNotAllowed",
                                     "\(request.method.rawValue) is not allowed on this resource (allowed: \(allowed))", headers: ["Allow": allowed])
                }
            }
        }
    }

    /// Registers through the route table (admin paths land on the authenticated /beta group).
    static func route(_ table: RouteTable, _ path: String, _ handlers: [HTTPRequest.Method: Handler]) {
        table.route(path, handlers)
    }

    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func json<T: Encodable>(encodable value: T, status: HTTPResponse.Status = .ok) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(value)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func noContent() -> Response { Response(status: .noContent) }

    /// A Graph collection: `{"@odata.context": …, "value": [...]}`.
    static func collection(_ items: [[String: JSONValue]], context: String) -> Response {
        json(.object(["@odata.context": .string("/beta/$metadata#\(context)"), "value": .array(items.map(JSONValue.object))]))
    }

    /// Reads a JSON request body (up to `GraphBody.maxBytes`), insisting on a JSON
    /// content type when a body is present.
    static func body(_ request: Request) async throws -> Data {
        var request = request
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: GraphBody.maxBytes)
        } catch {
            throw bodyError(error, limit: GraphBody.maxBytes)
        }
        if buffer.readableBytes > 0 {
            let type = request.headers[.contentType]?.lowercased() ?? ""
            guard type.hasPrefix("application/json") else {
                throw GraphError(.unsupportedMediaType, code: "UnsupportedMediaType",
                                 "send the body as Content-Type: application/json (got '\(type.isEmpty ? "none" : type)')")
            }
        }
        let data = Data(buffer: buffer)
        try refuseNUL(data)
        return data
    }

    /// A JSON body may carry U+0000 only as the escape `\u0000` (a raw control character is
    /// not JSON). SQLite would store it and PostgreSQL refuses it in text (SQLSTATE 22021):
    /// one store must not take what the other would answer with a 500, so it is a 400 here.
    static func refuseNUL(_ data: Data) throws(GraphError) {
        let escape: [UInt8] = Array("\\u0000".utf8)
        guard data.count >= escape.count else { return }
        var i = data.startIndex
        while let found = data[i...].firstIndex(of: escape[0]) {
            if data[found...].starts(with: escape) {
                throw GraphError.badRequest("the body holds a NUL character (\\u0000), which no field may contain")
            }
            i = data.index(after: found)
        }
    }

    /// True for the error of a body over the collection limit (and nothing else: a client
    /// that disconnects or times out mid-body is not "too large").
    static func isTooLarge(_ error: any Error) -> Bool {
        if error is NIOTooManyBytesError { return true }
        if let e = error as? any HTTPResponseError, e.status == .contentTooLarge { return true }
        return false
    }

    /// The answer to a body that could not be collected: 413 when over `limit`, else 400.
    static func bodyError(_ error: any Error, limit: Int) -> GraphError {
        if isTooLarge(error) {
            return GraphError(.contentTooLarge, code: "RequestEntityTooLarge", "request body larger than \(limit) bytes")
        }
        return GraphError(.badRequest, code: "IncompleteBody", "the request body could not be read completely")
    }

    /// Query parameters, names and values decoded as a form (`application/x-www-form-urlencoded`):
    /// `+` is a space, then percent-decoding (`%24filter` is `$filter`, `%2B` a literal `+`).
    /// Malformed percent-encoding is a 400 rather than a guess.
    static func query(_ request: Request) throws(GraphError) -> [(String, String)] {
        try query(request.uri.query)
    }

    static func query(_ raw: String?) throws(GraphError) -> [(String, String)] {
        guard let raw, !raw.isEmpty else { return [] }
        var out: [(String, String)] = []
        for pair in raw.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = try formDecode(parts[0])
            let value = parts.count > 1 ? try formDecode(parts[1]) : ""
            out.append((name, value))
        }
        return out
    }

    static func formDecode(_ text: Substring) throws(GraphError) -> String {
        let spaced = text.replacingOccurrences(of: "+", with: " ")
        guard let decoded = spaced.removingPercentEncoding else {
            throw GraphError.badRequest("query string: malformed percent-encoding in '\(text.prefix(100))'")
        }
        return decoded
    }

    static func parameter(_ context: ControlRequestContext, _ name: String) throws -> String {
        guard let value = context.parameters.get(name), !value.isEmpty else {
            throw GraphError.badRequest("missing path parameter '\(name)'")
        }
        return value.removingPercentEncoding ?? value
    }
}

extension JSONValue {
    /// Encodes any Codable value into a JSON value (for `$select`/`$filter` and merging).
    static func from<T: Encodable>(_ value: T) -> JSONValue {
        guard let data = try? JSONEncoder().encode(value), let v = try? JSONDecoder().decode(JSONValue.self, from: data) else { return .null }
        return v
    }

    var objectValue: [String: JSONValue]? {
        if case .object(let o) = self { return o }
        return nil
    }

    /// Decodes a JSON value into a Codable type.
    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try JSONDecoder().decode(type, from: JSONEncoder().encode(self))
    }
}

/// Adds every schema property missing from `object` as null, as Graph answers, and the
/// entity's `@odata.type`.
func graphEntity(_ object: [String: JSONValue], schema: GraphSchema) -> [String: JSONValue] {
    var out = object
    for f in schema.fields where out[f.name] == nil { out[f.name] = .null }
    return out
}

func withODataType(_ object: [String: JSONValue], _ schema: GraphSchema) -> [String: JSONValue] {
    var out = object
    out["@odata.type"] = .string("#microsoft.graph.\(schema.entityType)")
    return out
}
