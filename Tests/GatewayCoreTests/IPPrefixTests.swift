import Testing
@testable import GatewayCore

@Suite struct IPPrefixTests {
    @Test func parsesCIDRAndDottedMask() throws {
        let a = try IPv4Prefix.parse("198.18.1.0/24").get()
        let b = try IPv4Prefix.parse("198.18.1.0/255.255.255.0").get()
        #expect(a == b)
        #expect(a.dottedMaskForm == "198.18.1.0/255.255.255.0")
        #expect(a.contains(IPv4Address("198.18.1.77")!))
        #expect(!a.contains(IPv4Address("198.18.2.1")!))
    }

    @Test func rejectsMalformed() {
        for bad in ["", "10.0.0.0", "10.0.0.0/33", "10.0.0/8", "256.0.0.0/8", "10.0.0.0/8/8", "10.0.0.0/-1",
                    "10.0.0.0/255.0.255.0", "a.b.c.d/8", " 10.0.0.0/8", "10.0.0.0/ 8", "1.2.3.4.5/32"] {
            #expect((try? IPv4Prefix.parse(bad).get()) == nil, "\(bad) should be refused")
        }
    }

    @Test func hostBitsAreAnErrorWhenStrict() {
        #expect(IPv4Prefix.parse("10.0.0.1/8") == .failure(.hostBitsSet("10.0.0.1/8")))
        #expect((try? IPv4Prefix.parse("10.0.0.1/8", strict: false).get())?.description == "10.0.0.0/8")
    }

    @Test func ipv6() throws {
        let p = try IPv6Prefix.parse("fd64:6464::/64").get()
        #expect(p.contains(IPv6Address("fd64:6464::1")!))
        #expect(!p.contains(IPv6Address("fd64:6465::1")!))
        #expect(IPv6Prefix.parse("fd64::1/64") == .failure(.hostBitsSet("fd64::1/64")))
        #expect((try? IPv6Prefix.parse("fd64::/129").get()) == nil)
        #expect(IPv6Address("fd64:6464::1")!.description == "fd64:6464::1")
    }

    @Test func overlaps() throws {
        let pool = try IPv4Prefix.parse("100.64.0.0/16").get()
        #expect(pool.overlaps(try IPv4Prefix.parse("100.64.5.0/24").get()))
        #expect(pool.overlaps(try IPv4Prefix.parse("100.0.0.0/8").get()))
        #expect(!pool.overlaps(try IPv4Prefix.parse("100.65.0.0/16").get()))
    }
}
