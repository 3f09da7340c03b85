/// What a tunnel gets: computed once per CONNECT from the settings, the session and
/// the client's request headers, then serialized as the `HTTP/1.1 200 CONNECTED` head.
public struct TunnelParameters: Sendable, Equatable {
    public var address: IPv4Address
    public var netmask: IPv4Address
    /// The session's IPv6 address (`IPv6Leases`), sent only to a client that claims IPv6
    /// capability over a tunnel whose MTU can carry IPv6 (1280); nil otherwise, and then
    /// no IPv6 route either (nothing could use it).
    public var address6: IPv6Address?
    public var mtu: Int
    public var baseMTU: Int
    public var dnsServers: [IPAddress]
    public var defaultDomain: String?
    public var splitDNS: [String]
    public var includes: [IPPrefix]
    public var excludes: [IPPrefix]
    public var dpd: Int
    public var keepalive: Int
    public var idleTimeout: Int
    public var sessionTimeoutRemaining: Int
    public var banner: String?
    public var clientHostname: String?
    public var ipv6Capable: Bool
    /// DTLS offered to this client, if UDP is enabled and the client asked for
    /// PSK-NEGOTIATE.
    public var dtls: DTLSOffer?

    public struct DTLSOffer: Sendable, Equatable {
        public var port: Int
        /// Hex of the session id the client must put in its ClientHello.
        public var appID: String
        public var dpd: Int
        public var keepalive: Int
        public init(port: Int, appID: String, dpd: Int, keepalive: Int) {
            self.port = port
            self.appID = appID
            self.dpd = dpd
            self.keepalive = keepalive
        }
    }

    /// Whether the client's `X-DTLS-CipherSuite` offers the PSK-NEGOTIATE mode (absent
    /// with `openconnect --no-dtls`).
    public static func clientOffersPSK(_ request: HTTPRequest) -> Bool {
        guard let suites = request.header("x-dtls-ciphersuite") else { return false }
        return suites.split(separator: ":").contains { $0.trimmingSpaces == "PSK-NEGOTIATE" }
    }

    /// Overhead of a DTLS record around one packet with AES-GCM over IPv4:
    /// IP 20 + UDP 8 + DTLS header 13 + explicit nonce 8 + tag 16 + type byte 1.
    public static let dtlsOverhead = 66

    /// The data MTU for a client reporting `X-CSTP-Base-MTU` (absent: 1406, its own
    /// default), capped by the configured `mtu`.
    public static func dataMTU(clientBaseMTU: Int?, configured: Int) -> (mtu: Int, base: Int) {
        let base = max(576, min(clientBaseMTU ?? 1406, 1500))
        return (max(576 - 28, min(configured, base - dtlsOverhead)), base)
    }

    /// `policy`: the user's group policy (`GatewaySettings.effectivePolicy`); nil gives the
    /// server-wide routes and DNS.
    /// The smallest MTU IPv6 allows (RFC 8200): below it the tunnel carries IPv4 only.
    public static let ipv6MinimumMTU = 1280

    public init(settings: GatewaySettings, address: IPv4Address, sessionTimeoutRemaining: Int,
                request: HTTPRequest, policy: EffectivePolicy? = nil) {
        self.address = address
        netmask = settings.pool.mask
        let m = Self.dataMTU(clientBaseMTU: request.header("x-cstp-base-mtu").flatMap { Int($0) }, configured: settings.advanced.mtu)
        mtu = m.mtu
        baseMTU = m.base
        let policy = policy ?? settings.serverWidePolicy
        dnsServers = policy.dnsServers
        defaultDomain = policy.defaultDomainSuffix
        splitDNS = policy.splitDNS
        includes = policy.routeIncludes
        excludes = policy.routeExcludes
        dpd = settings.advanced.dpd
        keepalive = settings.advanced.keepalive
        idleTimeout = settings.advanced.idleTimeout
        self.sessionTimeoutRemaining = sessionTimeoutRemaining
        banner = settings.advanced.banner
        clientHostname = request.header("x-cstp-hostname")
        ipv6Capable = request.header("x-cstp-full-ipv6-capability")?.lowercased() == "true"
        let leases6 = settings.ipv6Pool.flatMap(IPv6Leases.init(prefix:))
        address6 = ipv6Capable && mtu >= Self.ipv6MinimumMTU ? leases6?.address(for: address) : nil
        // A split tunnel (routes given) with no IPv6 route: the client's IPv6 stays split too,
        // with only the pool through the tunnel — without any IPv6 include the stock client
        // would send all its IPv6 here (vpnc-script sets an IPv6 default route).
        if address6 != nil, let leases6, !includes.isEmpty, !includes.contains(where: { if case .v6 = $0 { true } else { false } }) {
            includes.append(.v6(leases6.prefix))
        }
        dtls = nil
    }

    /// The response head. Header names after `X-CSTP-`/`X-DTLS-` are matched
    /// case-sensitively by openconnect, so they are spelled exactly as it expects.
    public func responseHead(serverName: String) -> String {
        var h = "HTTP/1.1 200 CONNECTED\r\n"
        func add(_ name: String, _ value: String) { h += "\(name): \(value)\r\n" }
        add("X-CSTP-Version", "1")
        add("X-CSTP-Server-Name", serverName)
        if let clientHostname, clientHostname.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) { add("X-CSTP-Hostname", clientHostname) }
        add("X-CSTP-Address", address.description)
        add("X-CSTP-Netmask", netmask.description)
        // /128, as ocserv gives by default: the client's own address; its routes say what
        // else goes through the tunnel (no split include: everything).
        if let address6 { add("X-CSTP-Address-IP6", "\(address6)/128") }
        for d in dnsServers { add("X-CSTP-DNS", d.description) }
        if let defaultDomain { add("X-CSTP-Default-Domain", defaultDomain) }
        for d in splitDNS { add("X-CSTP-Split-DNS", d) }
        for r in includes {
            switch r {
            case .v4(let p): add("X-CSTP-Split-Include", p.dottedMaskForm)
            case .v6(let p): if address6 != nil { add("X-CSTP-Split-Include-IP6", p.description) }
            }
        }
        for r in excludes {
            switch r {
            case .v4(let p): add("X-CSTP-Split-Exclude", p.dottedMaskForm)
            case .v6(let p): if address6 != nil { add("X-CSTP-Split-Exclude-IP6", p.description) }
            }
        }
        add("X-CSTP-Tunnel-All-DNS", includes.isEmpty ? "true" : "false")
        add("X-CSTP-DPD", "\(dpd)")
        add("X-CSTP-Keepalive", "\(keepalive)")
        add("X-CSTP-Idle-Timeout", idleTimeout > 0 ? "\(idleTimeout)" : "none")
        add("X-CSTP-Session-Timeout", sessionTimeoutRemaining > 0 ? "\(sessionTimeoutRemaining)" : "none")
        if sessionTimeoutRemaining > 0 { add("X-CSTP-Session-Timeout-Remaining", "\(sessionTimeoutRemaining)") }
        // We do not renegotiate TLS; a client that wants fresh keys reconnects with its cookie.
        add("X-CSTP-Rekey-Method", "none")
        add("X-CSTP-Base-MTU", "\(baseMTU)")
        add("X-CSTP-MTU", "\(mtu)")
        if let dtls {
            add("X-DTLS-Port", "\(dtls.port)")
            add("X-DTLS-App-ID", dtls.appID)
            add("X-DTLS-CipherSuite", "PSK-NEGOTIATE")
            add("X-DTLS-DPD", "\(dtls.dpd)")
            add("X-DTLS-Keepalive", "\(dtls.keepalive)")
            add("X-DTLS-Rekey-Method", "none")
        }
        if let banner, !banner.isEmpty { add("X-CSTP-Banner", Self.percentEscape(banner)) }
        h += "\r\n"
        return h
    }

    /// openconnect decodes %XX in the banner; escape `%`, control bytes (which would
    /// break the header line) and non-ASCII bytes (decoded back to the same UTF-8).
    static func percentEscape(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            if b == UInt8(ascii: "%") || b < 0x20 || b >= 0x7F {
                out += "%" + String(b, radix: 16, uppercase: true).leftPadded(2)
            } else {
                out.unicodeScalars.append(Unicode.Scalar(b))
            }
        }
        return out
    }
}

extension String {
    func leftPadded(_ n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}
