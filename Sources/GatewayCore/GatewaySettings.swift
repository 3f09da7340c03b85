import Foundation

/// The validated configuration the gateway runs on. Built only through `validate`, so
/// every instance is known good: a bad CIDR, too many split rules, or a pool that
/// overlaps a route never reaches the dataplane.
public struct GatewaySettings: Sendable, Equatable {
    public static let maxSplitRules = 500
    public static let defaultListenPort = 443
    /// The largest pool: the pool keeps one 4-byte owner entry per address, so /10 is
    /// 16 MiB; anything larger is a typo, not a deployment.
    public static let minPoolPrefixLength = 10

    public var displayName: String
    public var pool: IPv4Prefix
    public var ipv6Pool: IPv6Prefix?
    public var dnsServers: [IPAddress]
    public var defaultDomainSuffix: String?
    public var routeIncludes: [IPPrefix]
    public var routeExcludes: [IPPrefix]
    public var splitDNS: [String]
    public var listenPort: Int
    public var listenAddress: String
    public var disableUdpConnections: Bool
    public var advanced: Advanced
    /// In order; the first that matches a user applies (GroupPolicy.swift).
    public var groupPolicies: [GroupPolicy]

    /// `advancedSettings` keys we understand, with their defaults.
    public struct Advanced: Sendable, Equatable {
        /// Hard lifetime of a session from login, seconds; 0 = unlimited. (`session-timeout`)
        public var sessionTimeout = 3600
        /// How long a session whose connection dropped stays resumable with its cookie.
        /// (`reconnect-timeout`)
        public var reconnectTimeout = 300
        /// End the session after this many seconds without any tunnel traffic; 0 = never.
        /// (`idle-timeout`)
        public var idleTimeout = 0
        /// Dead-peer-detection interval advertised to clients, seconds. (`dpd`)
        public var dpd = 90
        /// Keepalive interval advertised to clients, seconds. (`keepalive`)
        public var keepalive = 300
        /// Upper bound of the tunnel (data) MTU. (`mtu`)
        public var mtu = 1434
        /// Text shown by the client after connecting. (`banner`)
        public var banner: String?
        /// Most sessions at once; 0 = limited by the pool only. (`max-sessions`)
        public var maxSessions = 0
        /// Login (HTTP phase) must finish within this many seconds; a session whose
        /// client never sends CONNECT is dropped after this long too. (`auth-timeout`)
        public var authTimeout = 60
        /// Most sessions one user (token `oid`) may hold; at the limit a new login
        /// replaces the user's oldest disconnected session, or is refused. 0 = no limit.
        /// (`max-sessions-per-user`)
        public var maxSessionsPerUser = 10
        /// Most connections one source address may have in their login phase (TLS
        /// handshake, HTTP, waiting for auth) at once; more are closed at accept. 0 = no
        /// limit. Tunnels do not count. (`max-login-connections-per-ip`)
        public var maxLoginConnectionsPerIP = 64
        /// Connections in their login phase from all addresses together; more are closed at
        /// accept. A quarter of the container's default 16,384 open files: what many
        /// addresses can hold at once stays well below what tunnels need. 0 = no limit.
        /// (`max-login-connections`)
        public var maxLoginConnections = 4096
        /// A source address whose ban score reaches this is refused at accept until its
        /// score resets; 0 turns banning off. A failed login or a malformed request scores
        /// 10 (ocserv's default weights). (`max-ban-score`)
        public var maxBanScore = 80
        /// Seconds after an address's last scored event until its score is forgotten
        /// (and a ban lifted). (`ban-reset-time`)
        public var banResetTime = 300
        /// The TLS handshake must finish within this many seconds of accept.
        /// (`handshake-timeout`)
        public var handshakeTimeout = 10
        /// This server's slice of the Site's pool, `index/count` (docs/site.md, "Addresses
        /// unique across the Site"): new logins get addresses from the slice only, so the
        /// servers of a Site never hand out the same one; a session resumed from a sibling
        /// keeps its address anywhere in the pool. Set by the agent from the control plane
        /// (per server, merged into the Site's configuration); nil: the whole pool.
        /// (`pool-slice`)
        public var poolSlice: PoolSlice?
        /// Addresses of the L4 proxies (HAProxy, nginx `stream`) in front of the gateway that
        /// put a PROXY protocol header (v1 or v2) before each connection's first byte: a
        /// connection from one of them must start with one, and the client's address in it
        /// replaces the proxy's for logs, limits and bans. Empty: no proxy, no header is read.
        /// Comma-separated CIDRs or addresses. (`proxy-protocol-from`)
        public var proxyProtocolFrom: [IPPrefix] = []
        /// Addresses of this server's slice that sibling servers hold for sessions resumed
        /// there (their foreign leases): no new login here gets one. Set by the agent from
        /// the control plane, like `pool-slice`. (`pool-reserved`, comma-separated)
        public var poolReserved: Set<IPv4Address> = []
        public init() {}

        static let keys: [String] = [
            "session-timeout", "reconnect-timeout", "idle-timeout", "dpd", "keepalive", "mtu", "banner",
            "max-sessions", "max-sessions-per-user", "auth-timeout", "listen-address",
            "max-login-connections-per-ip", "max-login-connections", "max-ban-score", "ban-reset-time", "handshake-timeout",
            "pool-slice", "pool-reserved", "proxy-protocol-from",
        ]
    }

    /// Validates the Graph-shaped file. All problems are collected, so an operator sees
    /// every mistake at once.
    public static func validate(_ s: AdminSettings) -> Result<GatewaySettings, ConfigurationError> {
        var problems: [String] = []
        func note(_ p: String) { problems.append(p) }

        var pool: IPv4Prefix?
        if let n = s.network {
            switch IPv4Prefix.parse(n) {
            case .success(let p):
                if p.length > 30 {
                    note("network: \(n) is too small for a pool (at most /30)")
                } else if p.length < minPoolPrefixLength {
                    note("network: \(n) is larger than a pool can be (at least /\(minPoolPrefixLength), 4 million addresses)")
                } else {
                    pool = p
                }
            case .failure(let e): note("network: \(e)")
            }
        } else {
            note("network: missing (the client address pool, e.g. \"100.64.0.0/16\")")
        }

        var pool6: IPv6Prefix?
        if let n = s.ipv6Network, !n.isEmpty {
            switch IPv6Prefix.parse(n) {
            case .success(let p):
                // Each session's IPv6 address embeds its IPv4 one (`IPv6Leases`): 32 bits.
                if p.length > IPv6Leases.maxPrefixLength {
                    note("ipv6Network: \(n) is too small: at most /\(IPv6Leases.maxPrefixLength) (each client's IPv6 address carries its IPv4 address in the last 32 bits), e.g. a /64")
                } else if p.length < IPv6Leases.minPrefixLength {
                    note("ipv6Network: \(n) is too large: at least /\(IPv6Leases.minPrefixLength) (the gateway routes and masquerades all of it), e.g. a /64")
                } else if let why = IPv6Leases.unusable(p) {
                    note("ipv6Network: \(n) is \(why); use a unique local (fd00::/8) or global prefix, e.g. a /64")
                } else { pool6 = p }
            case .failure(let e): note("ipv6Network: \(e)")
            }
        }

        var dns: [IPAddress] = []
        for (i, d) in (s.dnsServers ?? []).enumerated() {
            if let a = IPAddress(d) { dns.append(a) } else { note("dnsServers[\(i)]: '\(d)' is not an IP address") }
        }
        if dns.count > 3 { note("dnsServers: at most 3 servers (clients keep only 3), got \(dns.count)") }

        let includesText = (s.routeIncludes ?? []) + (s.routesInclude ?? [])
        let excludesText = (s.routeExcludes ?? []) + (s.routesExclude ?? [])
        // The limit counts every rule the gateway may hand out, group policies' included:
        // it bounds the CONNECT response head and what one configuration can ask of clients.
        let policyRules = (s.groupPolicies ?? []).reduce(0) { $0 + ($1.routeIncludes?.count ?? 0) + ($1.routeExcludes?.count ?? 0) }
        if includesText.count + excludesText.count + policyRules > maxSplitRules {
            let split = policyRules > 0 ? " (\(includesText.count + excludesText.count) server-wide, \(policyRules) in groupPolicies)" : ""
            note("routeIncludes + routeExcludes: \(includesText.count + excludesText.count + policyRules) rules\(split), at most \(maxSplitRules) allowed")
        }
        func parseRoutes(_ list: [String], _ field: String) -> [IPPrefix] {
            var out: [IPPrefix] = []
            var seen = Set<IPPrefix>()
            for (i, r) in list.enumerated() {
                switch IPPrefix.parse(r.trimmingCharacters(in: .whitespaces)) {
                case .success(let p):
                    if seen.insert(p).inserted { out.append(p) }
                case .failure(let e): note("\(field)[\(i)]: \(e)")
                }
            }
            return out
        }
        let includes = parseRoutes(includesText, "routeIncludes")
        let excludes = parseRoutes(excludesText, "routeExcludes")
        func checkPoolOverlap(_ routes: [IPPrefix]) {
            for r in routes {
                switch r {
                case .v4(let p):
                    if let pool, p.length > 0, p.overlaps(pool) { note("route \(p) overlaps the client pool \(pool)") }
                case .v6(let p):
                    if let pool6, p.length > 0, p.overlaps(pool6) { note("route \(p) overlaps the IPv6 client pool \(pool6)") }
                }
            }
        }
        checkPoolOverlap(includes + excludes)

        let policies = validateGroupPolicies(s.groupPolicies ?? [], parseRoutes: { list, field in
            let routes = parseRoutes(list, field)
            checkPoolOverlap(routes)
            return routes
        }, note: note)

        var splitDNS: [String] = []
        for (i, d) in (s.splitDNS ?? []).enumerated() {
            if Self.isDomainName(d) { splitDNS.append(d) } else { note("splitDNS[\(i)]: '\(d)' is not a domain name") }
        }
        if let suffix = s.defaultDomainSuffix, !suffix.isEmpty, !Self.isDomainName(suffix) {
            note("defaultDomainSuffix: '\(suffix)' is not a domain name")
        }

        let port = s.listenPort ?? defaultListenPort
        if !(1...65535).contains(port) { note("listenPort: \(port) is not a port (1-65535)") }

        var adv = Advanced()
        var listenAddress = "::"
        var seenKeys = Set<String>()
        for kv in s.advancedSettings ?? [] {
            let key = kv.name.lowercased()
            if !seenKeys.insert(key).inserted { note("advancedSettings: '\(kv.name)' given twice") }
            func int(_ range: ClosedRange<Int>) -> Int? {
                guard let v = Int(kv.value.trimmingCharacters(in: .whitespaces)), range.contains(v) else {
                    note("advancedSettings.\(kv.name): '\(kv.value)' must be an integer in \(range.lowerBound)...\(range.upperBound)")
                    return nil
                }
                return v
            }
            switch key {
            case "session-timeout": adv.sessionTimeout = int(0...31_536_000) ?? adv.sessionTimeout
            case "reconnect-timeout": adv.reconnectTimeout = int(0...86_400) ?? adv.reconnectTimeout
            case "idle-timeout": adv.idleTimeout = int(0...31_536_000) ?? adv.idleTimeout
            case "dpd": adv.dpd = int(5...3600) ?? adv.dpd
            case "keepalive": adv.keepalive = int(5...86_400) ?? adv.keepalive
            case "mtu": adv.mtu = int(576...1500) ?? adv.mtu
            case "max-sessions": adv.maxSessions = int(0...1_000_000) ?? adv.maxSessions
            case "auth-timeout": adv.authTimeout = int(5...600) ?? adv.authTimeout
            case "max-sessions-per-user": adv.maxSessionsPerUser = int(0...10_000) ?? adv.maxSessionsPerUser
            case "max-login-connections-per-ip": adv.maxLoginConnectionsPerIP = int(0...100_000) ?? adv.maxLoginConnectionsPerIP
            case "max-login-connections": adv.maxLoginConnections = int(0...1_000_000) ?? adv.maxLoginConnections
            case "max-ban-score": adv.maxBanScore = int(0...1_000_000) ?? adv.maxBanScore
            case "ban-reset-time": adv.banResetTime = int(1...86_400) ?? adv.banResetTime
            case "handshake-timeout": adv.handshakeTimeout = int(1...600) ?? adv.handshakeTimeout
            case "banner": adv.banner = kv.value
            case "pool-slice":
                if let slice = PoolSlice(kv.value), let p = pool, slice.range(poolSize: Int(p.size)) != nil {
                    adv.poolSlice = slice
                } else {
                    note("advancedSettings.pool-slice: '\(kv.value)' must be INDEX/COUNT with 0 <= INDEX < COUNT <= 256, and leave each slice of the pool at least 4 addresses")
                }
            case "pool-reserved":
                for item in kv.value.split(separator: ",") {
                    let text = item.trimmingCharacters(in: .whitespaces)
                    guard !text.isEmpty else { continue }
                    if let a = IPv4Address(text), let p = pool, p.contains(a) {
                        adv.poolReserved.insert(a)
                    } else {
                        note("advancedSettings.pool-reserved: '\(text)' is not an address of the pool")
                        break
                    }
                }
            case "proxy-protocol-from":
                for item in kv.value.split(whereSeparator: { $0 == "," || $0 == " " }) where !item.isEmpty {
                    let text = item.contains("/") ? String(item) : item + (item.contains(":") ? "/128" : "/32")
                    switch IPPrefix.parse(text) {
                    case .success(let p): adv.proxyProtocolFrom.append(p)
                    case .failure(let e): note("advancedSettings.proxy-protocol-from: \(e)")
                    }
                }
            case "listen-address":
                if IPAddress(kv.value) != nil { listenAddress = kv.value } else {
                    note("advancedSettings.listen-address: '\(kv.value)' is not an IP address")
                }
            default:
                note("advancedSettings: unknown setting '\(kv.name)' (known: \(Advanced.keys.joined(separator: ", ")))")
            }
        }

        // Linux takes IPv6 off a device whose MTU is under IPv6's minimum: the TUN would lose
        // the gateway's IPv6 address and route.
        if pool6 != nil, adv.mtu < TunnelParameters.ipv6MinimumMTU {
            note("ipv6Network needs an mtu of at least \(TunnelParameters.ipv6MinimumMTU) (IPv6's minimum); advancedSettings.mtu is \(adv.mtu)")
        }
        if !problems.isEmpty { return .failure(ConfigurationError(problems.joined(separator: "; "))) }
        return .success(GatewaySettings(
            displayName: s.displayName ?? "mstunnel", pool: pool!, ipv6Pool: pool6, dnsServers: dns,
            defaultDomainSuffix: (s.defaultDomainSuffix?.isEmpty ?? true) ? nil : s.defaultDomainSuffix,
            routeIncludes: includes, routeExcludes: excludes, splitDNS: splitDNS, listenPort: port,
            listenAddress: listenAddress, disableUdpConnections: s.disableUdpConnections ?? false, advanced: adv,
            groupPolicies: policies))
    }

    static func isDomainName(_ s: String) -> Bool {
        guard !s.isEmpty, s.utf8.count <= 253 else { return false }
        let labels = s.hasSuffix(".") ? s.dropLast().split(separator: ".", omittingEmptySubsequences: false)
            : s.split(separator: ".", omittingEmptySubsequences: false)
        return labels.allSatisfy { label in
            !label.isEmpty && label.utf8.count <= 63 && !label.hasPrefix("-") && !label.hasSuffix("-")
                && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
        }
    }
}
