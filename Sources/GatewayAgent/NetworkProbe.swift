import Foundation
import GatewayAgentAPI

/// GET of the Site's `internalNetworkProbeUrl` from the gateway host.
///
/// Decisions:
/// - Always direct, never through `https_proxy`: the question is whether the gateway can
///   reach the internal network the way tunnel traffic does (routed + PAT from this host),
///   and tunnel traffic never goes through the management proxy.
/// - Any HTTP answer, whatever its status, means "reachable": the network path works; the
///   status code is reported for the control plane to judge.
/// - TLS is not verified: internal sites often use a private CA the host does not trust,
///   nothing is sent but a bare GET, and what we measure is reachability, not identity.
/// - No redirects followed: the first answer already proves the path.
public enum NetworkProbe {
    public static func probe(url: String, timeoutSeconds: Int = 10) -> ProbeReport {
        guard let c = URLComponents(string: url), let scheme = c.scheme?.lowercased(), ["http", "https"].contains(scheme),
              c.host?.isEmpty == false else {
            return ProbeReport(url: url, reachable: false, error: "not an http(s) URL")
        }
        var request = CurlRequest(method: "GET", url: url)
        request.trust = .insecureUnverified
        request.proxy = .direct
        request.allowedProtocols = "http,https"
        request.connectTimeoutSeconds = timeoutSeconds
        request.totalTimeoutSeconds = timeoutSeconds
        // Only the status matters; a large page is cut off without failing the probe.
        request.maxResponseBytes = 1 << 20
        switch CurlTransport.perform(request, userAgent: "mstunnel-agent-probe/\(AgentVersion.string)") {
        case .success(let r):
            return ProbeReport(url: url, reachable: true, statusCode: r.status, latencyMilliseconds: r.roundTripMilliseconds)
        case .failure(.invalidResponse):
            // Body over the limit: the server answered, so the path works.
            return ProbeReport(url: url, reachable: true, error: "answer larger than 1 MiB (not read)")
        case .failure(let e):
            return ProbeReport(url: url, reachable: false, error: "\(e)")
        }
    }
}
