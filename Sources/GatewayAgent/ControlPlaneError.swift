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

    /// The HTTP status when the server answered at all.
    public var status: Int? {
        switch self {
        case .api(let s, _), .http(let s, _): return s
        default: return nil
        }
    }

    /// A 4xx other than 408/429 will not get better by resending the same request.
    public var isPermanent: Bool {
        guard let s = status else { return false }
        return (400 ..< 500).contains(s) && s != 408 && s != 429
    }
}
