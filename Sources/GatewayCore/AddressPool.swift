/// The IPv4 client pool. Each lease belongs to one session (an opaque `Int32` slot); the
/// owner array doubles as the routing table of the dataplane: a packet from the TUN is
/// delivered by `owner(of: destination)` in O(1), with no hashing.
///
/// Addresses reserved: the network address, the gateway's own address (network + 1),
/// and the broadcast address.
///
/// The pool can be renumbered while sessions hold leases (`changePrefix`): leases that
/// fit the new prefix move into it, the others stay in a *retired* block of their old
/// prefix until their sessions end. A retired block hands out no new address; it only
/// keeps routing packets to the sessions that still hold one, so a configuration push
/// never takes an address away from a connected client.
public struct AddressPool: Sendable {
    public private(set) var prefix: IPv4Prefix
    public var gatewayAddress: IPv4Address { IPv4Address(prefix.network.value + 1) }
    @usableFromInline var owners: [Int32]
    public private(set) var inUse = 0
    /// Times an allocation failed because every address was taken (a health metric).
    public private(set) var exhaustedCount = 0
    /// Where `allocate(owner:hint:)` looks (this server's slice of the Site's pool); exact
    /// allocations (a restored or resumed session) take any address of the pool.
    public private(set) var slice: PoolSlice?
    private var sliceRange: Range<Int>?
    /// Addresses a sibling server of the Site holds for a session that resumed there (its
    /// foreign lease, docs/site.md): no new login here gets one. Marked `reserved` in
    /// `owners`; a session resuming here with exactly that address may still take it.
    public private(set) var reserved: Set<UInt32> = []
    /// What `setReserved` was last given: an address held here then becomes reserved when
    /// its session here ends.
    public private(set) var reservedRequested: Set<UInt32> = []
    /// Addresses kept from new logins until a moment (wall-clock seconds): those of sessions
    /// this server restored after a restart that ended without their client coming back here
    /// (`quarantine(_:until:)`). Marked `reserved` in `owners` like the sibling-held ones.
    public private(set) var quarantined: [UInt32: Int64] = [:]
    /// The earliest end among `quarantined` (a timer tick checks it before anything else).
    private var nextQuarantineEnd = Int64.max
    @usableFromInline static let free: Int32 = -1
    @usableFromInline static let reservedMark: Int32 = -2

    public init(prefix: IPv4Prefix) {
        precondition(prefix.length <= 30, "pool must be /30 or larger (validated earlier)")
        self.prefix = prefix
        owners = [Int32](repeating: -1, count: Int(prefix.size))
    }

    /// Leases of an earlier prefix, kept until their sessions end.
    public struct RetiredBlock: Sendable {
        public let prefix: IPv4Prefix
        var byAddress: [UInt32: Int32] = [:]
        public var inUse: Int { byAddress.count }
    }
    public private(set) var retired: [RetiredBlock] = []

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
        let range = sliceRange ?? 2..<(owners.count - 1)
        let n = range.count
        guard inUse < owners.count - 3 else {
            exhaustedCount += 1
            return nil
        }
        var i = range.lowerBound + Int(hint % UInt64(n))
        for _ in 0..<n {
            if owners[i] == Self.free {
                owners[i] = owner
                inUse += 1
                return IPv4Address(prefix.network.value + UInt32(i))
            }
            i += 1
            if i >= range.upperBound { i = range.lowerBound }
        }
        exhaustedCount += 1
        return nil
    }

    /// New logins from `slice` only (nil: the whole pool). Leases outside it stay.
    public mutating func setSlice(_ slice: PoolSlice?) {
        self.slice = slice
        sliceRange = slice?.range(poolSize: owners.count)
    }

    /// Addresses new logins can get (the slice's, or the pool's).
    public var sliceCapacity: Int { sliceRange?.count ?? capacity }

    /// False for an address of the pool outside this server's slice: a session holding one
    /// came from a sibling (a foreign lease). True without a slice.
    public func isInSlice(_ a: IPv4Address) -> Bool {
        guard let r = sliceRange, let i = index(of: a) else { return true }
        return r.contains(i)
    }

    /// Leases exactly `address` (a reconnecting client asking for its old address after
    /// a gateway restart, or a session resuming here from a sibling — which may take an
    /// address reserved for that sibling: it is the same session). Nil if taken or outside
    /// the pool.
    public mutating func allocate(owner: Int32, exactly address: IPv4Address) -> IPv4Address? {
        guard let i = index(of: address), usable(i), owners[i] < 0 else { return nil }
        owners[i] = owner
        inUse += 1
        reserved.remove(address.value)
        quarantined[address.value] = nil
        return address
    }

    /// Keeps a free `address` from new logins until `until` (wall-clock seconds): a session
    /// this server restored after a restart ended here without its client coming back, so
    /// the client may be on a sibling that took the session over with this address while
    /// this server was down — and while the control plane cannot say so (its reserved list,
    /// `setReserved`, is what normally keeps such addresses out), only time can: until the
    /// session's ticket could no longer open anywhere. A resuming session may still take it.
    public mutating func quarantine(_ address: IPv4Address, until: Int64) {
        guard let i = index(of: address), usable(i), owners[i] < 0 else { return }
        owners[i] = Self.reservedMark
        let end = max(until, quarantined[address.value] ?? until)
        quarantined[address.value] = end
        nextQuarantineEnd = min(nextQuarantineEnd, end)
    }

    /// Ends the quarantines due by `now`; returns how many ended.
    @discardableResult
    public mutating func endQuarantines(now: Int64) -> Int {
        guard now >= nextQuarantineEnd else { return 0 }
        let due = quarantined.filter { $0.value <= now }.map(\.key)
        for a in due {
            quarantined[a] = nil
            if let i = index(of: IPv4Address(a)), owners[i] == Self.reservedMark, !reserved.contains(a) { owners[i] = Self.free }
        }
        nextQuarantineEnd = quarantined.values.min() ?? .max
        return due.count
    }

    /// Replaces the reserved addresses (`reserved`). Returns those of `addresses` a session
    /// here holds already (a conflict the caller reports: the address is leased twice in
    /// the Site until one of the two sessions ends).
    @discardableResult
    public mutating func setReserved(_ addresses: Set<IPv4Address>) -> [IPv4Address] {
        for a in reserved where quarantined[a] == nil {
            if let i = index(of: IPv4Address(a)), owners[i] == Self.reservedMark { owners[i] = Self.free }
        }
        reserved = []
        reservedRequested = Set(addresses.map(\.value))
        var held: [IPv4Address] = []
        for a in addresses {
            guard let i = index(of: a), usable(i) else { continue }
            if owners[i] >= 0 {
                held.append(a)
            } else {
                owners[i] = Self.reservedMark
                reserved.insert(a.value)
            }
        }
        return held.sorted()
    }

    /// Frees a lease. Returns the prefix of a retired block that this release emptied
    /// (the caller then removes that prefix's route and NAT rule), else nil.
    @discardableResult
    public mutating func release(_ address: IPv4Address, owner: Int32) -> IPv4Prefix? {
        if let i = index(of: address), owners[i] == owner {
            // A sibling holds it for a session that resumed there: not for a new login here.
            if reservedRequested.contains(address.value) {
                owners[i] = Self.reservedMark
                reserved.insert(address.value)
            } else {
                owners[i] = Self.free
            }
            inUse -= 1
            return nil
        }
        for b in retired.indices where retired[b].byAddress[address.value] == owner {
            retired[b].byAddress[address.value] = nil
            if retired[b].byAddress.isEmpty {
                return retired.remove(at: b).prefix
            }
            return nil
        }
        return nil
    }

    /// The session slot holding `address`, or nil.
    @inlinable
    public func owner(of address: IPv4Address) -> Int32? {
        if let i = index(of: address) {
            let o = owners[i]
            if o >= 0 { return o }
        }
        return retired.isEmpty ? nil : retiredOwner(of: address)
    }

    @usableFromInline
    func retiredOwner(of address: IPv4Address) -> Int32? {
        for b in retired { if let o = b.byAddress[address.value] { return o } }
        return nil
    }

    /// Every prefix that still routes to a client: the current one and the retired
    /// blocks that hold leases.
    public var routedPrefixes: [IPv4Prefix] { [prefix] + retired.map(\.prefix) }

    /// Renumbers the pool to `newPrefix` without taking any lease away. Leases inside
    /// the new prefix (and not on one of its reserved addresses) move into it; the rest
    /// stay in retired blocks of their old prefixes. Returns the prefixes that are no
    /// longer routed (a retired or old prefix that ended up with no lease).
    public mutating func changePrefix(to newPrefix: IPv4Prefix) -> [IPv4Prefix] {
        precondition(newPrefix.length <= 30, "pool must be /30 or larger (validated earlier)")
        guard newPrefix != prefix else { return [] }
        // Every lease, with the prefix it was given from.
        var leases: [(address: IPv4Address, owner: Int32, from: IPv4Prefix)] = []
        for (i, o) in owners.enumerated() where o >= 0 {
            leases.append((IPv4Address(prefix.network.value + UInt32(i)), o, prefix))
        }
        for b in retired {
            for (a, o) in b.byAddress { leases.append((IPv4Address(a), o, b.prefix)) }
        }
        let before = Set(routedPrefixes)
        let oldExhausted = exhaustedCount
        let oldSlice = slice
        let oldReserved = reservedRequested
        let oldQuarantined = quarantined
        self = AddressPool(prefix: newPrefix)
        exhaustedCount = oldExhausted
        setSlice(oldSlice)
        var blocks: [IPv4Prefix: RetiredBlock] = [:]
        for l in leases {
            if allocate(owner: l.owner, exactly: l.address) != nil { continue }
            blocks[l.from, default: RetiredBlock(prefix: l.from)].byAddress[l.address.value] = l.owner
        }
        retired = blocks.values.sorted { $0.prefix.network.value < $1.prefix.network.value }
        // What siblings hold and what is quarantined stays out of new logins where it still fits.
        setReserved(Set(oldReserved.map(IPv4Address.init)))
        for (a, until) in oldQuarantined { quarantine(IPv4Address(a), until: until) }
        return before.subtracting(routedPrefixes).sorted { $0.network.value < $1.network.value }
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

/// One server's share of a Site's pool: slice `index` of `count` equal parts of the usable
/// addresses (the last part takes the remainder). Written `index/count`.
public struct PoolSlice: Sendable, Equatable, CustomStringConvertible {
    public let index: Int
    public let count: Int

    public init?(index: Int, count: Int) {
        guard (1...256).contains(count), (0..<count).contains(index) else { return nil }
        self.index = index
        self.count = count
    }

    public init?(_ text: String) {
        let parts = text.trimmingCharacters(in: .whitespaces).split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let i = Int(parts[0]), let n = Int(parts[1]) else { return nil }
        self.init(index: i, count: n)
    }

    public var description: String { "\(index)/\(count)" }

    /// The owner-array indices of this slice in a pool of `poolSize` addresses (index 0, 1
    /// and the last are never leased), or nil when a slice would hold fewer than 4.
    public func range(poolSize: Int) -> Range<Int>? {
        let usable = poolSize - 3
        let each = usable / count
        guard each >= 4 else { return nil }
        let lower = 2 + index * each
        let upper = index == count - 1 ? poolSize - 1 : lower + each
        return lower..<upper
    }
}

