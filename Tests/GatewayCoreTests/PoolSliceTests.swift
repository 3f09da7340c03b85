import Testing
@testable import GatewayCore

/// A server's slice of the Site's pool (docs/site.md): new logins get addresses from the
/// slice only, a restored or resumed session keeps its address anywhere in the pool, the
/// setting is checked, and a renumbering keeps the slice.
@Suite struct PoolSliceTests {
    static let pool = try! IPv4Prefix.parse("100.64.0.0/24").get()

    @Test func slicesCutTheUsableAddressesWithoutOverlap() throws {
        let ranges = (0..<8).map { PoolSlice(index: $0, count: 8)!.range(poolSize: 256)! }
        #expect(ranges.first?.lowerBound == 2)
        #expect(ranges.last?.upperBound == 255)  // the broadcast address is never leased
        for (a, b) in zip(ranges, ranges.dropFirst()) { #expect(a.upperBound == b.lowerBound) }
        #expect(ranges.dropLast().allSatisfy { $0.count == 31 })
        #expect(PoolSlice(index: 0, count: 64)?.range(poolSize: 256) == nil)  // 3 each: too few
        #expect(PoolSlice("3/8") == PoolSlice(index: 3, count: 8))
        for bad in ["8/8", "-1/8", "1/0", "1/257", "1", "a/b", "1/2/3", ""] { #expect(PoolSlice(bad) == nil, "\(bad)") }
    }

    @Test func newLoginsComeFromTheSliceResumedSessionsFromAnywhere() throws {
        var pool = AddressPool(prefix: Self.pool)
        pool.setSlice(PoolSlice(index: 2, count: 8))
        let range = try #require(PoolSlice(index: 2, count: 8)!.range(poolSize: 256))
        var got: [UInt32] = []
        for owner in 0..<Int32(range.count) {
            let leased = pool.allocate(owner: owner, hint: UInt64(owner) &* 0x9E37_79B9_7F4A_7C15)
            let a = try #require(leased)
            got.append(a.value - Self.pool.network.value)
        }
        #expect(got.allSatisfy { range.contains(Int($0)) })
        #expect(Set(got).count == range.count)
        // The slice is full: no address, though the pool has plenty.
        #expect(pool.allocate(owner: 999, hint: 1) == nil)
        #expect(pool.exhaustedCount == 1)
        // A session from a sibling keeps its address outside this slice.
        let foreign = IPv4Address(Self.pool.network.value + 200)
        #expect(pool.allocate(owner: 1000, exactly: foreign) == foreign)
        // Renumbered, the slice stays.
        _ = pool.changePrefix(to: try IPv4Prefix.parse("100.64.0.0/23").get())
        #expect(pool.slice == PoolSlice(index: 2, count: 8))
    }

    @Test func theSettingIsCheckedAgainstThePool() {
        func validate(_ network: String, _ slice: String) -> Result<GatewaySettings, ConfigurationError> {
            var s = AdminSettings()
            s.network = network
            s.advancedSettings = [AdminSettings.KeyValuePair(name: "pool-slice", value: slice)]
            return GatewaySettings.validate(s)
        }
        #expect((try? validate("100.64.0.0/24", "7/8").get())?.advanced.poolSlice == PoolSlice(index: 7, count: 8))
        for (network, slice) in [("100.64.0.0/24", "8/8"), ("100.64.0.0/28", "1/8"), ("100.64.0.0/24", "x")] {
            guard case .failure(let e) = validate(network, slice) else { Issue.record("\(network) \(slice) accepted"); continue }
            #expect("\(e)".contains("pool-slice"))
        }
    }

    @Test func reservedAddressesGoToNoNewLoginButToTheirSessionComingBack() throws {
        var pool = AddressPool(prefix: try IPv4Prefix.parse("100.64.0.0/29").get())  // 5 for clients
        let all = (2...6).map { IPv4Address(100, 64, 0, UInt8($0)) }
        // A session here already holds .3: reserving it is a conflict, reported, not applied.
        #expect(pool.allocate(owner: 1, exactly: all[1]) == all[1])
        #expect(pool.setReserved([all[0], all[1], all[4]]) == [all[1]])
        #expect(pool.reserved == [all[0].value, all[4].value])
        var given: [IPv4Address] = []
        for owner in 2..<10 { if let a = pool.allocate(owner: Int32(owner), hint: 0) { given.append(a) } }
        #expect(Set(given) == Set([all[2], all[3]]), "only the free, unreserved ones")
        #expect(pool.exhaustedCount > 0)
        // The session that holds .2 at a sibling moves here again: it may take it.
        #expect(pool.allocate(owner: 20, exactly: all[0]) == all[0])
        #expect(pool.reserved == [all[4].value])
        // The session here that held .3 when it was reserved ends: .3 is reserved now.
        #expect(pool.release(all[1], owner: 1) == nil)
        #expect(pool.reserved == [all[1].value, all[4].value])
        // Replaced by a new set: .3 and .6 free again, nothing reserved.
        #expect(pool.setReserved([]) == [])
        #expect(pool.reservedRequested.isEmpty)
        #expect(pool.allocate(owner: 21, hint: 0) == all[1])
        #expect(pool.allocate(owner: 22, hint: 0) == all[4])
        #expect(pool.owner(of: all[4]) == 22)
    }
}

@Suite struct PoolQuarantineTests {
    func pool() throws -> AddressPool {
        var p = AddressPool(prefix: try IPv4Prefix.parse("100.64.0.0/28").get())
        p.setSlice(PoolSlice(index: 0, count: 1))
        return p
    }

    /// A quarantined address goes to no new login until its moment, then it does again.
    @Test func aQuarantinedAddressWaitsForItsMoment() throws {
        var p = try pool()
        let a = IPv4Address("100.64.0.5")!
        #expect(p.allocate(owner: 1, exactly: a) == a)
        p.release(a, owner: 1)
        p.quarantine(a, until: 1_000)
        var given: Set<IPv4Address> = []
        while let x = p.allocate(owner: 2, hint: 3) { given.insert(x) }
        #expect(!given.contains(a) && given.count == p.capacity - 1)
        #expect(p.endQuarantines(now: 999) == 0)
        #expect(p.endQuarantines(now: 1_000) == 1)
        #expect(p.allocate(owner: 3, hint: 0) == a)
    }

    /// The session itself (its client came back, or its ticket was shown here) takes it back.
    @Test func theSameSessionMayTakeItBack() throws {
        var p = try pool()
        let a = IPv4Address("100.64.0.5")!
        p.quarantine(a, until: 1_000)
        #expect(p.allocate(owner: 7, exactly: a) == a)
        #expect(p.quarantined.isEmpty)
        p.release(a, owner: 7)
        #expect(p.allocate(owner: 8, exactly: a) == a)
    }

    /// The control plane's reserved list replaced, or the pool renumbered: the quarantine stays.
    @Test func survivesAReservedListAndARenumbering() throws {
        var p = try pool()
        let a = IPv4Address("100.64.0.5")!, b = IPv4Address("100.64.0.6")!
        p.quarantine(a, until: 1_000)
        p.setReserved([a, b])
        p.setReserved([])
        #expect(p.owner(of: a) == nil)
        var q = p
        var given: Set<IPv4Address> = []
        while let x = q.allocate(owner: 2, hint: 0) { given.insert(x) }
        #expect(!given.contains(a) && given.contains(b))
        _ = p.changePrefix(to: try IPv4Prefix.parse("100.64.0.0/27").get())
        #expect(p.quarantined[a.value] == 1_000)
        given = []
        while let x = p.allocate(owner: 2, hint: 0) { given.insert(x) }
        #expect(!given.contains(a))
        // A reserved address stays reserved when it ends its quarantine.
        var r = try pool()
        r.quarantine(a, until: 10)
        r.setReserved([a])
        r.endQuarantines(now: 10)
        given = []
        while let x = r.allocate(owner: 2, hint: 0) { given.insert(x) }
        #expect(!given.contains(a))
    }
}
