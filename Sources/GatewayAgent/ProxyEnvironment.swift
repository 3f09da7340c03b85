import Foundation

/// Which proxy libcurl will use for a URL, worked out the way libcurl does it from the
/// environment (we never set CURLOPT_PROXY for control-plane requests, so libcurl's own
/// `https_proxy` / `HTTPS_PROXY` / `all_proxy` / `no_proxy` handling applies, exactly as for
/// `curl` on the same host). We repeat the lookup only to log the proxy and to refuse a
/// proxy URL with credentials *before* anything is sent to it.
public enum ProxyEnvironment {
    /// The proxy URL curl would pick for `url`, or nil for a direct connection.
    /// libcurl: for https, `https_proxy` then `HTTPS_PROXY`; for http only the lowercase
    /// `http_proxy` (the uppercase one is ignored, CGI safety); then `all_proxy`/`ALL_PROXY`;
    /// all skipped when `no_proxy`/`NO_PROXY` matches the host.
    public static func proxy(for url: String, environment: [String: String]) -> String? {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
              let host = components.host else { return nil }
        let noProxy = nonEmpty(environment["no_proxy"]) ?? nonEmpty(environment["NO_PROXY"])
        if let noProxy, matchesNoProxy(host: host, list: noProxy) { return nil }
        var candidates: [String] = []
        if scheme == "https" {
            candidates = ["https_proxy", "HTTPS_PROXY"]
        } else if scheme == "http" {
            candidates = ["http_proxy"]
        }
        candidates += ["all_proxy", "ALL_PROXY"]
        for name in candidates {
            if let value = nonEmpty(environment[name]) { return value }
        }
        return nil
    }

    /// Refuses a proxy URL that carries a user name or password: we do not support
    /// authenticated proxies, and sending credentials we were never meant to handle is
    /// worse than failing clearly.
    public static func refuseCredentials(_ proxy: String) throws(AgentError) {
        // A proxy may be given without a scheme ("user:pw@proxy:3128"); curl assumes http://.
        let withScheme = proxy.contains("://") ? proxy : "http://" + proxy
        let components = URLComponents(string: withScheme)
        let hasUser = components?.user.map { !$0.isEmpty } ?? false
        let hasPassword = components?.password != nil
        // URLComponents gives up on some malformed strings; an '@' before the host part is
        // then the tell-tale of credentials.
        let authority = withScheme.components(separatedBy: "://").dropFirst().first?.split(separator: "/").first ?? ""
        if hasUser || hasPassword || authority.contains("@") {
            throw AgentError("authenticated proxies are not supported: the proxy \(redacted(proxy)) has credentials in its URL; use a proxy that allows this host without authentication, or exclude the control plane with no_proxy")
        }
    }

    /// The proxy URL without any credentials, safe to log.
    public static func redacted(_ proxy: String) -> String {
        guard let at = proxy.lastIndex(of: "@") else { return proxy }
        let schemeEnd = proxy.range(of: "://")?.upperBound ?? proxy.startIndex
        guard at > schemeEnd else { return proxy }
        return String(proxy[..<schemeEnd]) + "***@" + String(proxy[proxy.index(after: at)...])
    }

    /// libcurl's `no_proxy` rules: `*` matches everything; otherwise a comma-separated list
    /// of host names (matching the host or any subdomain; a leading dot is ignored), IP
    /// addresses and CIDR ranges.
    public static func matchesNoProxy(host rawHost: String, list: String) -> Bool {
        let host = rawHost.trimmingCharacters(in: CharacterSet(charactersIn: "[]")).lowercased()
        for rawEntry in list.split(separator: ",") {
            var entry = rawEntry.trimmingCharacters(in: .whitespaces).lowercased()
            if entry.isEmpty { continue }
            if entry == "*" { return true }
            entry = entry.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            if entry.hasPrefix(".") { entry.removeFirst() }
            if entry.contains("/") {
                if cidrContains(entry, host) { return true }
                continue
            }
            if host == entry || host.hasSuffix("." + entry) { return true }
        }
        return false
    }

    static func cidrContains(_ cidr: String, _ host: String) -> Bool {
        let parts = cidr.split(separator: "/")
        guard parts.count == 2, let bits = Int(parts[1]) else { return false }
        guard let network = ipBytes(String(parts[0])), let address = ipBytes(host), network.count == address.count,
              bits >= 0, bits <= network.count * 8 else { return false }
        var remaining = bits
        for i in 0 ..< network.count where remaining > 0 {
            let take = min(8, remaining)
            let mask: UInt8 = take == 8 ? 0xFF : ~(0xFF >> UInt8(take))
            if network[i] & mask != address[i] & mask { return false }
            remaining -= take
        }
        return true
    }

    static func ipBytes(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        return nil
    }

    private static func nonEmpty(_ s: String?) -> String? {
        guard let s, !s.trimmingCharacters(in: .whitespaces).isEmpty else { return nil }
        return s
    }
}
