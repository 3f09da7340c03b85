import GatewayAgentAPI

/// Why a control-plane request failed, worded for an operator.
public enum ControlPlaneError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The control plane answered with an OData error body (`{"error":{"code","message"}}`).
    case api(status: Int, AgentAPIError)
    /// An error status without an OData body (a load balancer page, an old server…).
    case http(status: Int, String)
    /// No answer: DNS, connect, TLS, timeout. The text is curl's.
    case transport(String)
    /// Refused before anything was sent (e.g. a proxy URL with credentials).
    case refused(String)
    /// A 2xx answer whose body is not what the API promises.
    case invalidResponse(String)

    public var description: String {
        switch self {
        case .api(let status, let e): return "control plane refused (HTTP \(status)): \(e.message) [\(e.code)]"
        case .http(let status, let text): return "control plane answered HTTP \(status)\(text.isEmpty ? "" : ": \(text)")"
        case .transport(let text): return text
        case .refused(let text): return text
        case .invalidResponse(let text): return "unexpected answer from the control plane: \(text)"
        }
    }

    /// The control plane itself said this log collection can never take an upload: it does
    /// not exist for this server (404 `ResourceNotFound`), it is no longer pending (409
    /// `Conflict`), or the body is over its limit (413). Only our own OData error bodies
    /// count: a load balancer's or proxy's 4xx says nothing about the collection, and
    /// marking the action done on one would lose the collection.
    public var closesLogCollection: Bool {
        guard case .api(let status, let e) = self else { return false }
        switch (status, e.code) {
        case (404, "ResourceNotFound"), (409, "Conflict"), (413, _): return true
        default: return false
        }
    }

    /// The HTTP status when the server answered at all.
    public var status: Int? {
        switch self {
        case .api(let s, _), .http(let s, _): return s
        default: return nil
        }
    }

    /// The control plane itself refused a `POST /agent/v1/reports` because of what the
    /// batch holds, in its own OData words (GatewayControlPlane, `receiveReports` and the
    /// body decoder of the agent routes):
    /// - 400 `BadRequest` whose message names the batch: `items[i]…` (an item it will never
    ///   accept) or `ReportBatch: …` (a field that does not decode);
    /// - 413 `batchTooLarge` (more items than it takes) or 413 `RequestEntityTooLarge` (the
    ///   body is over its byte limit).
    ///
    /// Anything else — another status, a 4xx without an OData body (load balancer, proxy,
    /// an HTML error page), another code, no answer at all — says nothing about the
    /// reports, so the batch is kept and retried with backoff.
    public var blamesReportBatch: Bool {
        guard case .api(let status, let error) = self else { return false }
        switch (status, error.code) {
        case (400, "BadRequest"):
            return error.message.hasPrefix("items[") || error.message.hasPrefix("ReportBatch:")
        case (413, "batchTooLarge"), (413, "RequestEntityTooLarge"):
            return true
        default:
            return false
        }
    }
}
