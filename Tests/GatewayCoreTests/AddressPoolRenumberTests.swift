import GatewayCore
import Testing

@Suite struct AddressPoolRenumberTests {
    func prefix(_ s: String) throws -> IPv4Prefix { try IPv4Prefix.parse(s).get() }

    @Test func leasesOutsideTheNewPrefixAreKeptAndRouted() throws {
        var pool = AddressPool(prefix: try prefix("100.64.0.0/24"))
        let lease_a = pool.allocate(owner: 1, hint: 0)
        let a = try #require(lease_a)
        let lease_b = pool.allocate(owner: 2, hint: 0)
        let b = try #require(lease_b)
        let gone = pool.changePrefix(to: try prefix("100.65.0.0/24"))
        #expect(gone.isEmpty)  // the old prefix still holds two leases
        #expect(pool.owner(of: a) == 1)
        #expect(pool.owner(of: b) == 2)
        #expect(pool.inUse == 0)
        #expect(pool.routedPrefixes.map(\.description) == ["100.65.0.0/24", "100.64.0.0/24"])
        // New leases come from the new prefix only.
        let lease_c = pool.allocate(owner: 3, hint: 0)
        let c = try #require(lease_c)
        #expect(try prefix("100.65.0.0/24").contains(c))
        // The retired block goes away with its last lease.
        #expect(pool.release(a, owner: 1) == nil)
        #expect(pool.release(b, owner: 2)?.description == "100.64.0.0/24")
        #expect(pool.routedPrefixes.map(\.description) == ["100.65.0.0/24"])
        #expect(pool.owner(of: a) == nil)
    }

    @Test func leasesInsideAWiderPrefixMoveIntoIt() throws {
        var pool = AddressPool(prefix: try prefix("100.64.1.0/24"))
        let lease_a = pool.allocate(owner: 7, hint: 5)
        let a = try #require(lease_a)
        let gone = pool.changePrefix(to: try prefix("100.64.0.0/16"))
        #expect(gone.map(\.description) == ["100.64.1.0/24"])
        #expect(pool.retired.isEmpty)
        #expect(pool.owner(of: a) == 7)
        #expect(pool.inUse == 1)
        // The moved address is not handed out twice.
        for i in 0..<300 { _ = pool.allocate(owner: Int32(100 + i), hint: UInt64(i)) }
        #expect(pool.owner(of: a) == 7)
    }

    @Test func wrongOwnerDoesNotRelease() throws {
        var pool = AddressPool(prefix: try prefix("100.64.0.0/29"))
        let lease_a = pool.allocate(owner: 1, hint: 0)
        let a = try #require(lease_a)
        _ = pool.changePrefix(to: try prefix("100.66.0.0/29"))
        #expect(pool.release(a, owner: 9) == nil)
        #expect(pool.owner(of: a) == 1)
    }
}
