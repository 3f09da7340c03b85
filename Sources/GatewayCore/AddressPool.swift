/// The IPv4 client pool. Each lease belongs to one session (an opaque `Int32` slot); the
/// owner array doubles as the routing table of the dataplane: a packet from the TUN is
/// delivered by `owner(of: destination)` in O(1), with no hashing.
///
/// Addresses reserved: the network address, the gateway's own address (network + 1),
/// and the broadcast address.
public struct AddressPool: Sendable {
    public let prefix: IPv4Prefix
    public var gatewayAddress: IPv4Address { IPv4Address(prefix.network.value + 1) }
    @usableFromInline var owners: [Int32]
    public private(set) var inUse = 0
    /// Times an allocation failed because every address was taken (a health metric).
    public private(set) var exhaustedCount = 0

    public init(prefix: IPv4Prefix) {
        precondition(prefix.length <= 30, "pool must be /30 or larger (validated earlier)")
        self.prefix = prefix
        owners = [Int32](repeating: -1, count: Int(prefix.size))
    }

    /// Addresses a client can get.
    public var capacity: Int { owners.count - 3 }

    @inlinable
    func index(of a: IPv4Address) -> Int? {
        let off = a.value &- prefix.network.value
        return off < UInt32(owners.count) ? Int(off) : nil
    }

    private func usable(_ i: Int) -> Bool { i >= 2 && i < owners.count - 1 }

    /// Leases an address to `owner`. The first candidate is derived from `hint` (a hash
    /// of the user id), so a user tends to get the same address across sessions; after
    /// that, the next free address. Nil when the pool is exhausted.
    public mutating func allocate(owner: Int32, hint: UInt64) -> IPv4Address? {
        let n = owners.count - 3
        guard inUse < n else {
            exhaustedCount += 1
            return nil
        }
        var i = 2 + Int(hint % UInt64(n))
        for _ in 0..<n {
            if owners[i] < 0 {
                owners[i] = owner
                inUse += 1
                return IPv4Address(prefix.network.value + UInt32(i))
            }
            i += 1
            if i >= owners.count - 1 { i = 2 }
        }
        exhaustedCount += 1
        return nil
    }

    /// Leases exactly `address` (a reconnecting client asking for its old address after
    /// a gateway restart). Nil if taken or outside the pool.
    public mutating func allocate(owner: Int32, exactly address: IPv4Address) -> IPv4Address? {
        guard let i = index(of: address), usable(i), owners[i] < 0 else { return nil }
        owners[i] = owner
        inUse += 1
        return address
    }

    public mutating func release(_ address: IPv4Address, owner: Int32) {
        guard let i = index(of: address), owners[i] == owner else { return }
        owners[i] = -1
        inUse -= 1
    }

    /// The session slot holding `address`, or nil.
    @inlinable
    public func owner(of address: IPv4Address) -> Int32? {
        guard let i = index(of: address) else { return nil }
        let o = owners[i]
        return o >= 0 ? o : nil
    }
}

/// FNV-1a, for address hints: stable across runs and platforms (Swift's Hasher is
/// seeded per process, which would defeat "same user, same address").
public func stableHash(_ s: String) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in s.utf8 {
        h ^= UInt64(b)
        h = h &* 0x100_0000_01b3
    }
    return h
}
