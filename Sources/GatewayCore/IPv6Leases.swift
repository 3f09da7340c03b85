/// A session's IPv6 address, derived from its IPv4 lease: the IPv4 address in the low 32
/// bits of the `ipv6Network` prefix (the RFC 6052 layout for a /96; any shorter prefix
/// works the same with zeros between), e.g. 100.64.0.7 in fd00:198:18:64::/64 is
/// fd00:198:18:64::6440:7.
///
/// Derived rather than leased on its own, on purpose: the IPv4 lease is already unique in
/// the Site (slices, reservations), outlives the TLS connection, travels in resumption
/// tickets to a sibling and is restored after a restart — so the IPv6 address does all of
/// that with no state of its own, and the stock client, which gives up on a reconnect
/// whose IPv6 address differs, keeps it everywhere the IPv4 one is kept. Routing a packet
/// from the TUN stays O(1) without hashing: its low 32 bits index the IPv4 pool's owner
/// array (`AddressPool.owner(of:)`), retired prefixes included.
public struct IPv6Leases: Sendable, Equatable {
    /// At most /96 (`GatewaySettings.validate`), so every IPv4 address fits.
    public let prefix: IPv6Prefix

    /// The longest prefix that can embed an IPv4 address.
    public static let maxPrefixLength = 96
    /// The shortest accepted: the gateway puts an on-link route to the whole prefix on its TUN
    /// and masquerades it, which for a shorter one would swallow other networks' traffic.
    public static let minPrefixLength = 32

    /// Why `p` cannot be a client pool, or nil: multicast (ff00::/8), link-local (fe80::/10),
    /// or inside ::/8 (unspecified, loopback, IPv4-mapped and -compatible addresses).
    public static func unusable(_ p: IPv6Prefix) -> String? {
        let top = p.network.high >> 56
        if top == 0xFF { return "multicast (ff00::/8)" }
        if p.network.high >> 54 == 0x3FA { return "link-local (fe80::/10)" }
        if top == 0 { return "inside ::/8 (reserved: unspecified, loopback, IPv4-mapped)" }
        return nil
    }

    public init?(prefix: IPv6Prefix) {
        guard prefix.length <= Self.maxPrefixLength else { return nil }
        self.prefix = prefix
    }

    /// The IPv6 address of the session holding `v4`.
    @inlinable
    public func address(for v4: IPv4Address) -> IPv6Address {
        IPv6Address(high: prefix.network.high, low: prefix.network.low | UInt64(v4.value))
    }

    /// The IPv4 lease an address of this prefix stands for; nil for any address outside it.
    @inlinable
    public func lease(of v6: IPv6Address) -> IPv4Address? {
        // Bits 64…95 of the network are the prefix's own (or zero), never an IPv4 address's.
        guard v6.high == prefix.network.high, v6.low >> 32 == prefix.network.low >> 32 else { return nil }
        return IPv4Address(UInt32(truncatingIfNeeded: v6.low))
    }

    /// The address as written on the TUN (`address/prefix-length`, the on-link route to
    /// every client's IPv6 address) for the gateway's IPv4 address `gateway`.
    public func hostAddress(gateway: IPv4Address) -> String { "\(address(for: gateway))/\(prefix.length)" }

    /// The IPv6 address of the 16 bytes at `offset` of a packet (network order).
    @inlinable
    public static func read(_ p: UnsafeRawBufferPointer, at offset: Int) -> IPv6Address {
        var h: UInt64 = 0, l: UInt64 = 0
        for i in 0..<8 { h = h << 8 | UInt64(p[offset + i]) }
        for i in 8..<16 { l = l << 8 | UInt64(p[offset + i]) }
        return IPv6Address(high: h, low: l)
    }
}
