import Glibc
import Testing
import GatewaySystem

/// The one socket-address type: literals, Unix paths, what the kernel fills in, and the
/// per-datagram key, checked against real sockets on loopback.
@Suite struct SocketAddressTests {
    @Test func literalsPrintAsLogsShowPeers() throws {
        #expect(SocketAddress(literal: "198.18.0.1", port: 443)?.description == "198.18.0.1:443")
        #expect(SocketAddress(literal: "fd00:198:18::1", port: 8443)?.description == "[fd00:198:18::1]:8443")
        // An IPv4 client on a dual-stack socket arrives IPv4-mapped; logs show it as IPv4.
        #expect(SocketAddress(literal: "::ffff:198.18.0.2", port: 5)?.description == "198.18.0.2:5")
        #expect(SocketAddress(literal: "198.18.0.1", port: 1)?.family == AF_INET)
        #expect(SocketAddress(literal: "::", port: 1)?.family == AF_INET6)
        #expect(SocketAddress(literal: "198.18.0.1", port: 443)?.port == 443)
    }

    @Test(arguments: ["", "gw.example", "198.18.0.256", "1.2.3", "[::1]", "fd00::1::2", "198.18.0.1:443"])
    func notALiteral(text: String) {
        #expect(SocketAddress(literal: text, port: 1) == nil)
    }

    @Test func anIPv4AddressAndItsMappedFormHaveOneKey() throws {
        let v4 = try #require(SocketAddress(literal: "198.18.0.2", port: 4000))
        let mapped = try #require(SocketAddress(literal: "::ffff:198.18.0.2", port: 4000))
        #expect(v4.key == mapped.key)
        #expect(v4.key.isIPv4)
        #expect(v4.key != SocketAddress(literal: "198.18.0.2", port: 4001)?.key)
        let v6 = try #require(SocketAddress(literal: "fd00::2", port: 4000))
        #expect(!v6.key.isIPv4)
        #expect(v6.key.description == "[fd00::2]:4000")
    }

    @Test func unixPaths() throws {
        let a = try SocketAddress(unixPath: "/run/mstunnel/auth.sock")
        #expect(a.family == AF_UNIX)
        #expect(a.description == "/run/mstunnel/auth.sock")
        #expect(a.port == nil)
        #expect(throws: SocketAddressError.self) { try SocketAddress(unixPath: String(repeating: "x", count: 108)) }
        #expect(throws: SocketAddressError.self) { try SocketAddress(unixPath: "") }
        _ = try SocketAddress(unixPath: "/" + String(repeating: "x", count: 106))
    }

    @Test func resolvesLiteralsAndLocalhost() throws {
        #expect(try SocketAddress.resolve(host: "127.0.0.1", port: 9).description == "127.0.0.1:9")
        #expect(throws: SocketAddressError.self) { try SocketAddress.resolve(host: "127.0.0.1", port: 9, family: AF_INET6) }
        let local = try SocketAddress.resolve(host: "localhost", port: 9, family: AF_INET)
        #expect(local.description == "127.0.0.1:9")
        #expect(throws: SocketAddressError.self) { try SocketAddress.resolve(host: "no-such-host.invalid", port: 9) }
    }

    /// Bind with one, let the kernel fill in another (`getsockname`), and the keys agree,
    /// read in place as the gateway reads a datagram's sender.
    @Test func whatTheKernelFillsInRoundTrips() throws {
        for literal in ["127.0.0.1", "::1"] {
            let want = try #require(SocketAddress(literal: literal, port: 0))
            let fd = socket(want.family, Int32(SOCK_DGRAM.rawValue), 0)
            try #require(fd >= 0)
            defer { close(fd) }
            try #require(want.withSockaddr { bind(fd, $0, $1) } == 0)
            var ss = sockaddr_storage()
            var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
            _ = withUnsafeMutablePointer(to: &ss) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
            let got = SocketAddress(storage: ss, length: len)
            let port = try #require(got.port)
            #expect(port != 0)
            #expect(got.description == (literal == "::1" ? "[::1]:\(port)" : "127.0.0.1:\(port)"))
            #expect(withUnsafePointer(to: &ss) { SocketAddress.key(of: $0) } == SocketAddress(literal: literal, port: port)?.key)
        }
    }
}
