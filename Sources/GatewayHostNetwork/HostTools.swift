internal import CGatewayShims
import Foundation
import GatewayCore
import GatewaySystem

public struct NetworkSetupError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Host network plumbing: `ip`, `nft`, sysctls. Only the privileged helper
/// (`HostNetworkHelper`) calls these; the gateway itself cannot (it has no capabilities
/// and may not start programs).
/// These are configuration steps, not per-packet work, so running the standard tools is
/// the clearest and most auditable way to do them.
public enum NetworkSetup {
    public static func ip(_ args: [String]) throws {
        try run("/usr/sbin/ip", args, input: nil, fallback: "/sbin/ip")
    }

    /// Applies an nftables script atomically (`nft -f -`).
    public static func nft(_ script: String) throws {
        try run("/usr/sbin/nft", ["-f", "-"], input: script, fallback: "/sbin/nft")
    }

    /// Runs `path` (or `fallback` when `path` is not executable) with `args`, `input` on
    /// stdin; throws with the tool's stderr when it fails. Spawned directly
    /// (`CGatewayShims_runTool`), not through a shell, so arguments are never reparsed.
    static func run(_ path: String, _ args: [String], input: String?, fallback: String) throws {
        let exe = access(path, X_OK) == 0 ? path : fallback
        var argv: [UnsafeMutablePointer<CChar>?] = ([exe] + args).map { strdup($0) }
        argv.append(nil)
        defer { for a in argv { free(a) } }
        var errText = [CChar](repeating: 0, count: 4096)
        var errLen = 0
        let bytes = Array((input ?? "").utf8)
        let status = bytes.withUnsafeBufferPointer { inBuf in
            CGatewayShims_runTool(exe, &argv, input == nil ? nil : inBuf.baseAddress, inBuf.count,
                                  &errText, errText.count, &errLen)
        }
        if status < 0 {
            throw NetworkSetupError("cannot run \(exe): \(SystemError.reason(-status))")
        }
        if status != 0 {
            let text = String(decoding: errText.prefix(errLen).map { UInt8(bitPattern: $0) }, as: UTF8.self)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let name = exe.split(separator: "/").last.map(String.init) ?? exe
            throw NetworkSetupError("\(name) \(args.joined(separator: " ")) failed"
                + (text.isEmpty ? " with exit status \(status)" : ": \(text)"))
        }
    }

    /// Turns on IPv4 (and IPv6) forwarding; returns false when the sysctl is read-only
    /// (a container without the sysctl granted), so the caller can say so clearly.
    @discardableResult
    public static func enableForwarding(ipv6: Bool) -> Bool {
        var ok = writeSysctl("/proc/sys/net/ipv4/ip_forward", "1")
        if ipv6 { ok = writeSysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1") && ok }
        return ok
    }

    /// Turns on IPv6 forwarding for the client pool (`ipv6Network`). A host that forwards
    /// IPv6 stops taking router advertisements on links whose `accept_ra` is 1 — it could lose
    /// its own IPv6 default route hours later — so those links (and `default`, for links to
    /// come) get `accept_ra=2` first, which keeps them taking advertisements. Returns whether
    /// forwarding is on, and the links changed.
    public static func enableIPv6Forwarding() -> (enabled: Bool, acceptRA2: [String]) {
        if forwardingEnabled(ipv6: true) { return (true, []) }
        let base = "/proc/sys/net/ipv6/conf"
        var changed: [String] = []
        for link in ((try? FileManager.default.contentsOfDirectory(atPath: base)) ?? []).sorted() where link != "all" && link != "lo" {
            let path = "\(base)/\(link)/accept_ra"
            if (try? String(contentsOfFile: path, encoding: .utf8))?.hasPrefix("1") == true, writeSysctl(path, "2") {
                changed.append(link)
            }
        }
        return (writeSysctl("\(base)/all/forwarding", "1") || forwardingEnabled(ipv6: true), changed)
    }

    public static func forwardingEnabled(ipv6: Bool = false) -> Bool {
        let path = ipv6 ? "/proc/sys/net/ipv6/conf/all/forwarding" : "/proc/sys/net/ipv4/ip_forward"
        return (try? String(contentsOfFile: path, encoding: .utf8))?.hasPrefix("1") ?? false
    }

    static func writeSysctl(_ path: String, _ value: String) -> Bool {
        if let current = try? String(contentsOfFile: path, encoding: .utf8), current.hasPrefix(value) { return true }
        return FileManager.default.createFile(atPath: path, contents: Data(value.utf8))
            || ((try? value.write(toFile: path, atomically: false, encoding: .utf8)) != nil)
    }
}

/// Port address translation for client traffic: everything from the pool that leaves
/// through any interface other than the TUN is masqueraded to that interface's address,
/// so the internal network sees the gateway, never a client address. Kept in its own
/// nftables table so it never touches the host's other rules.
public struct PATRules: Sendable {
    public static let table = "mstunnel"
    /// The current pool first, then retired prefixes whose sessions still hold leases
    /// after a renumbering (their traffic must keep leaving with the host's address).
    public let pools: [IPv4Prefix]
    /// The IPv6 pool (`ipv6Network`), if any.
    public let pools6: [IPv6Prefix]
    public let tunName: String

    public init(pools: [IPv4Prefix], pools6: [IPv6Prefix], tunName: String) {
        self.pools = pools
        self.pools6 = pools6
        self.tunName = tunName
    }

    /// The nftables script. `table …; delete table …;` first makes the replacement
    /// atomic whether or not the table already exists.
    public var script: String {
        var s = "table inet \(Self.table)\ndelete table inet \(Self.table)\n"
        s += "table inet \(Self.table) {\n"
        s += "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n"
        for pool in pools { s += "    ip saddr \(pool) oifname != \"\(tunName)\" masquerade\n" }
        for pool6 in pools6 { s += "    ip6 saddr \(pool6) oifname != \"\(tunName)\" masquerade\n" }
        s += "  }\n}\n"
        return s
    }

    public func apply() throws { try NetworkSetup.nft(script) }

    public static func remove() {
        try? NetworkSetup.nft("table inet \(table)\ndelete table inet \(table)\n")
    }
}
