import Foundation
import GatewayAgentAPI
import Logging

/// The agent's side of the agent API (AgentAPI.swift): JSON over HTTPS through libcurl,
/// trusting only the pinned control-plane CA and presenting the agent certificate.
///
/// Used from the agent's single loop thread only; calls block (see `CurlTransport`).
public final class ControlPlaneClient {
    public let baseURL: String
    public var trust: TLSTrust
    public var clientCertificateFile: String?
    public var clientKeyFile: String?
    public var logger: Logger
    /// Round trip of the last request that got an HTTP answer, ms (for diagnostics; the
    /// `latency` health metric is the gateway's transit time, see HealthCollector).
    public private(set) var lastRoundTripMilliseconds: Double?
    private var environment: [String: String]
    /// The proxy last logged, so the choice is logged when it changes, not per request.
    private var loggedProxy: String??
    /// The HTTP exchange itself; libcurl in production, a fake in tests (the only seam).
    var transport: (CurlRequest) -> Result<CurlResponse, ControlPlaneError> = { CurlTransport.perform($0) }

    public init(baseURL: String, trust: TLSTrust, clientCertificateFile: String? = nil, clientKeyFile: String? = nil,
                logger: Logger, environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.trust = trust
        self.clientCertificateFile = clientCertificateFile
        self.clientKeyFile = clientKeyFile
        self.logger = logger
        self.environment = environment
    }

    /// Checks an operator-given control-plane URL: https, a host, no credentials, no query.
    public static func validateURL(_ text: String) throws(AgentError) -> String {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let c = URLComponents(string: trimmed), c.scheme?.lowercased() == "https", let host = c.host, !host.isEmpty else {
            throw AgentError("--control-url must look like https://HOST[:PORT] (got '\(text)')")
        }
        guard c.user == nil, c.password == nil, c.query == nil, c.fragment == nil else {
            throw AgentError("--control-url must not contain credentials, a query or a fragment")
        }
        return trimmed.hasSuffix("/") ? String(trimmed.dropLast()) : trimmed
    }

    // MARK: - Endpoints

    /// `GET /agent/v1/ca` without verifying the server: the caller checks the bytes
    /// against the join token's hash before trusting them for anything.
    public func fetchCAUnverified() throws(ControlPlaneError) -> Data {
        var request = makeRequest(method: "GET", path: "/ca", trust: .insecureUnverified, mutualTLS: false)
        request.maxResponseBytes = 256 * 1024
        request.headers = ["Accept: application/x-pem-file, text/plain, */*"]
        return try perform(request).body
    }

    public func enroll(_ body: EnrollmentRequest) throws(ControlPlaneError) -> EnrollmentResponse {
        try json("POST", "/enroll", body, mutualTLS: false)
    }

    public func renew(_ body: RenewalRequest) throws(ControlPlaneError) -> EnrollmentResponse {
        try json("POST", "/renew", body, mutualTLS: true)
    }

    public func checkin(_ body: CheckinRequest) throws(ControlPlaneError) -> CheckinResponse {
        try json("POST", "/checkin", body, mutualTLS: true)
    }

    public func sendReports(_ batch: ReportBatch) throws(ControlPlaneError) -> ReportAck {
        try json("POST", "/reports", batch, mutualTLS: true)
    }

    /// `PUT /agent/v1/logCollections/{id}` with the collected lines as text/plain.
    public func uploadLogs(collectionId: String, text: Data) throws(ControlPlaneError) {
        var request = makeRequest(method: "PUT", path: "/logCollections/\(Self.pathComponent(collectionId))", trust: trust, mutualTLS: true)
        request.headers = ["Content-Type: text/plain; charset=utf-8", "Accept: application/json"]
        request.body = text
        // 64 MiB over a slow uplink takes a while; the JSON calls keep their short timeout.
        request.totalTimeoutSeconds = 600
        _ = try perform(request)
    }

    public func reportLogFailure(collectionId: String, message: String) throws(ControlPlaneError) {
        let _: EmptyReply = try json("POST", "/logCollections/\(Self.pathComponent(collectionId))/failure",
                                     LogCollectionFailure(message: AgentAPILimits.truncated(message, toBytes: AgentAPILimits.failureMessage)), mutualTLS: true)
    }

    /// Removes this server from its Site; its certificate is refused afterwards.
    public func leave() throws(ControlPlaneError) {
        let _: EmptyReply = try json("POST", "/leave", EmptyBody(), mutualTLS: true)
    }

    struct EmptyBody: Encodable {}

    // MARK: - Plumbing

    struct EmptyReply: Decodable {}

    private func json<Body: Encodable, Reply: Decodable>(_ method: String, _ path: String, _ body: Body, mutualTLS: Bool) throws(ControlPlaneError) -> Reply {
        var request = makeRequest(method: method, path: path, trust: trust, mutualTLS: mutualTLS)
        request.headers = ["Content-Type: application/json", "Accept: application/json"]
        do {
            request.body = try JSONEncoder().encode(body)
        } catch {
            throw .invalidResponse("cannot encode the request body: \(error)")
        }
        let response = try perform(request)
        if Reply.self == EmptyReply.self, let empty = EmptyReply() as? Reply { return empty }
        do {
            return try JSONDecoder().decode(Reply.self, from: response.body)
        } catch {
            throw .invalidResponse("\(method) \(path): body is not a valid \(Reply.self): \(Self.describe(error))")
        }
    }

    private func makeRequest(method: String, path: String, trust: TLSTrust, mutualTLS: Bool) -> CurlRequest {
        var request = CurlRequest(method: method, url: baseURL + AgentAPI.basePath + path)
        request.trust = trust
        if mutualTLS {
            request.clientCertificateFile = clientCertificateFile
            request.clientKeyFile = clientKeyFile
        }
        return request
    }

    /// Runs one request: proxy check first, then curl; maps non-2xx answers to errors.
    private func perform(_ request: CurlRequest) throws(ControlPlaneError) -> CurlResponse {
        let proxy = ProxyEnvironment.proxy(for: request.url, environment: environment)
        if let proxy {
            do {
                try ProxyEnvironment.refuseCredentials(proxy)
            } catch {
                throw .refused(error.message)
            }
        }
        if loggedProxy == nil || loggedProxy! != proxy {
            loggedProxy = .some(proxy)
            logger.info("agent.proxy", metadata: [
                "proxy": "\(proxy.map(ProxyEnvironment.redacted) ?? "none (direct connection)")",
                "control_plane": "\(baseURL)",
            ])
        }
        let response: CurlResponse
        switch transport(request) {
        case .success(let r): response = r
        case .failure(let e): throw e
        }
        lastRoundTripMilliseconds = response.roundTripMilliseconds
        guard (200 ..< 300).contains(response.status) else {
            if let body = try? JSONDecoder().decode(AgentAPIError.Body.self, from: response.body) {
                throw .api(status: response.status, body.error)
            }
            throw .http(status: response.status, Self.snippet(response.body))
        }
        return response
    }

    /// The first line of a non-JSON error body, for the message; never the whole page.
    static func snippet(_ body: Data) -> String {
        let text = String(decoding: body.prefix(200), as: UTF8.self)
        let line = text.split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
        return line.trimmingCharacters(in: .whitespaces)
    }

    static func pathComponent(_ s: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s
    }

    static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): return "missing '\(key.stringValue)'"
        case DecodingError.typeMismatch(_, let ctx), DecodingError.valueNotFound(_, let ctx):
            return "wrong type at '\(ctx.codingPath.map(\.stringValue).joined(separator: "."))'"
        case DecodingError.dataCorrupted(let ctx): return ctx.debugDescription
        default: return "\(error)"
        }
    }
}
