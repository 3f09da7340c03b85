import Foundation
import Testing
@testable import GatewayCore

@Suite struct IPv6LeasesTests {
    func leases(_ text: String) throws -> IPv6Leases {
        try #require(IPv6Leases(prefix: try IPv6Prefix.parse(text).get()))
    }

    @Test func theIPv4LeaseIsTheLast32Bits() throws {
        let l = try leases("fd00:198:18:64::/64")
        #expect(l.address(for: IPv4Address("100.64.0.7")!).description == "fd00:198:18:64::6440:7")
        #expect(l.lease(of: IPv6Address("fd00:198:18:64::6440:7")!) == IPv4Address("100.64.0.7"))
        #expect(l.hostAddress(gateway: IPv4Address("100.64.0.1")!) == "fd00:198:18:64::6440:1/64")
    }

    /// Every address of the prefix outside the embedding, and every address outside it, is no lease.
    @Test func addressesOutsideTheLayoutAreNoLease() throws {
        let l = try leases("fd00:198:18:64::/64")
        #expect(l.lease(of: IPv6Address("fd00:198:18:65::6440:7")!) == nil)
        #expect(l.lease(of: IPv6Address("fd00:198:18:64:0:1:6440:7")!) == nil)  // bits 64…95 set
        #expect(l.lease(of: IPv6Address("fe80::6440:7")!) == nil)
        #expect(l.lease(of: IPv6Address("ff02::1")!) == nil)
    }

    /// A /96 and a /80 whose bits 64…95 are part of the network.
    @Test func longerPrefixesKeepTheirOwnBits() throws {
        let l96 = try leases("fd00:198:18:64:1:2::/96")
        let a = l96.address(for: IPv4Address("100.64.3.4")!)
        #expect(a.description == "fd00:198:18:64:1:2:6440:304")
        #expect(l96.lease(of: a) == IPv4Address("100.64.3.4"))
        #expect(l96.lease(of: IPv6Address("fd00:198:18:64:1:3:6440:304")!) == nil)
        let l80 = try leases("fd00:198:18:64:7::/80")
        #expect(l80.lease(of: l80.address(for: IPv4Address("100.127.255.254")!)) == IPv4Address("100.127.255.254"))
    }

    @Test func aPrefixTooLongForAnIPv4AddressIsRefused() throws {
        #expect(IPv6Leases(prefix: try IPv6Prefix.parse("fd00::/97").get()) == nil)
        let admin = try AdminSettings.decode(Data(#"{"network":"100.64.0.0/24","ipv6Network":"fd00:198:18:64::/112"}"#.utf8))
        guard case .failure(let e) = GatewaySettings.validate(admin) else { Issue.record("a /112 was accepted"); return }
        #expect("\(e)".contains("ipv6Network: fd00:198:18:64::/112 is too small: at most /96"))
    }

    /// Prefixes that would route other networks into the tunnel, or cannot be a pool, and an
    /// MTU under IPv6's minimum (Linux takes IPv6 off such a device): refused, with the reason.
    @Test(arguments: [
        (#""ipv6Network":"fd00::/31""#, "is too large: at least /32"),
        (#""ipv6Network":"::/0""#, "is too large"),
        (#""ipv6Network":"ff05::/64""#, "multicast"),
        (#""ipv6Network":"fe80::/64""#, "link-local"),
        (#""ipv6Network":"::ffff:0:0/96""#, "inside ::/8"),
        (#""ipv6Network":"fd00:198:18:64::/64","advancedSettings":[{"name":"mtu","value":"1200"}]"#, "needs an mtu of at least 1280"),
    ])
    func unusablePoolsAreRefused(_ fields: String, _ reason: String) throws {
        let admin = try AdminSettings.decode(Data(#"{"network":"100.64.0.0/24",\#(fields)}"#.utf8))
        guard case .failure(let e) = GatewaySettings.validate(admin) else { Issue.record("accepted: \(fields)"); return }
        #expect("\(e)".contains(reason), "\(e)")
    }

    @Test func readsAnAddressFromAPacket() {
        var p = [UInt8](repeating: 0, count: 40)
        let bytes: [UInt8] = [0xfd, 0, 0x01, 0x98, 0, 0x18, 0, 0x64, 0, 0, 0, 0, 0x64, 0x40, 0, 7]
        p.replaceSubrange(8..<24, with: bytes)
        #expect(p.withUnsafeBytes { IPv6Leases.read($0, at: 8) } == IPv6Address("fd00:198:18:64::6440:7"))
    }
}

@Suite struct TunnelParametersIPv6Tests {
    func head(ipv6Network: String?, capable: Bool, baseMTU: Int = 1500, routes: String = #""198.18.1.0/24","fd00:198:18:1::/64""#) throws -> TunnelParameters {
        let pool6 = ipv6Network.map { #","ipv6Network":"\#($0)""# } ?? ""
        let admin = try AdminSettings.decode(Data(#"{"network":"100.64.0.0/24"\#(pool6),"routeIncludes":[\#(routes)]}"#.utf8))
        let s = try GatewaySettings.validate(admin).get()
        var p = HTTPRequestParser()
        let cap = capable ? "X-CSTP-Full-IPv6-Capability: true\r\nX-CSTP-Address-Type: IPv6,IPv4\r\n" : ""
        p.append(Array("CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nX-CSTP-Base-MTU: \(baseMTU)\r\n\(cap)\r\n".utf8))
        let r = try #require(try p.next())
        return TunnelParameters(settings: s, address: IPv4Address("100.64.0.9")!, sessionTimeoutRemaining: 0, request: r)
    }

    @Test func aCapableClientGetsItsAddressAndTheIPv6Routes() throws {
        let t = try head(ipv6Network: "fd00:198:18:64::/64", capable: true)
        #expect(t.address6 == IPv6Address("fd00:198:18:64::6440:9"))
        let h = t.responseHead(serverName: "t")
        #expect(h.contains("X-CSTP-Address-IP6: fd00:198:18:64::6440:9/128\r\n"))
        #expect(h.contains("X-CSTP-Split-Include-IP6: fd00:198:18:1::/64\r\n"))
        #expect(h.contains("X-CSTP-Address: 100.64.0.9\r\n"))
    }

    /// A split tunnel whose routes are all IPv4 stays split for IPv6 too: the pool is its only
    /// IPv6 route (else the stock client would send all its IPv6 here). A full tunnel adds none.
    @Test func aSplitTunnelWithoutIPv6RoutesGetsThePoolOnly() throws {
        let split = try head(ipv6Network: "fd00:198:18:64::/64", capable: true, routes: #""198.18.1.0/24""#).responseHead(serverName: "t")
        #expect(split.contains("X-CSTP-Split-Include-IP6: fd00:198:18:64::/64\r\n"))
        #expect(split.contains("X-CSTP-Split-Include: 198.18.1.0/255.255.255.0\r\n"))
        let full = try head(ipv6Network: "fd00:198:18:64::/64", capable: true, routes: "").responseHead(serverName: "t")
        #expect(full.contains("X-CSTP-Address-IP6: ") && !full.contains("Split-Include"))
        #expect(full.contains("X-CSTP-Tunnel-All-DNS: true\r\n"))
    }

    /// No address: a client that did not claim IPv6, a server without `ipv6Network`, or a
    /// tunnel MTU under IPv6's 1280 — and then no IPv6 route either.
    @Test(arguments: [(String?("fd00:198:18:64::/64"), false, 1500), (nil, true, 1500), ("fd00:198:18:64::/64", true, 1300)])
    func otherwiseNoIPv6AtAll(_ pool6: String?, _ capable: Bool, _ baseMTU: Int) throws {
        let t = try head(ipv6Network: pool6, capable: capable, baseMTU: baseMTU)
        #expect(t.address6 == nil)
        #expect(!t.responseHead(serverName: "t").contains("IP6"))
    }
}
