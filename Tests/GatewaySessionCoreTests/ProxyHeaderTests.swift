import GatewayCore
@testable import GatewaySessionCore
import GatewaySystem
import Testing

@Suite struct ProxyHeaderTests {
    func v2(command: UInt8 = 0x21, family: UInt8 = 0x11, addresses: [UInt8], tlv: [UInt8] = []) -> [UInt8] {
        let body = addresses + tlv
        return ProxyHeader.v2Signature + [command, family, UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body
    }

    @Test func versionTwoIPv4GivesTheClientAndItsLength() {
        // 198.18.0.2:51234 → 198.18.0.1:443, then a TLV (ignored), then the TLS bytes.
        let header = v2(addresses: [198, 18, 0, 2, 198, 18, 0, 1, 0xC8, 0x22, 0x01, 0xBB], tlv: [0x04, 0x00, 0x01, 0x00])
        let outcome = ProxyHeader.parse(header + [0x16, 0x03, 0x01])
        guard case .complete(let length, let source?) = outcome else { Issue.record("\(outcome)"); return }
        #expect(length == header.count)
        #expect(source.description == "198.18.0.2:51234")
    }

    @Test func versionTwoIPv6AndLocal() {
        var addresses = [UInt8](repeating: 0, count: 36)
        addresses[0] = 0xFD; addresses[15] = 0x02; addresses[16] = 0xFD; addresses[31] = 0x01
        addresses[32] = 0x30; addresses[33] = 0x39; addresses[34] = 0x01; addresses[35] = 0xBB
        guard case .complete(_, let source?) = ProxyHeader.parse(v2(family: 0x21, addresses: addresses)) else { Issue.record("v6"); return }
        #expect(source.description == "[fd00::2]:12345")
        // LOCAL (HAProxy's health checks with check-send-proxy): the proxy's own address stays.
        #expect(ProxyHeader.parse(v2(command: 0x20, family: 0x00, addresses: [])) == .complete(length: 16, source: nil))
    }

    @Test func versionOneLines() {
        let line = Array("PROXY TCP4 198.18.0.2 198.18.0.1 51234 443\r\n".utf8)
        guard case .complete(let length, let source?) = ProxyHeader.parse(line + [0x16]) else { Issue.record("v1"); return }
        #expect(length == line.count)
        #expect(source.description == "198.18.0.2:51234")
        guard case .complete(_, let six?) = ProxyHeader.parse(Array("PROXY TCP6 fd00::2 fd00::1 7 443\r\n".utf8)) else { Issue.record("v1 v6"); return }
        #expect(six.description == "[fd00::2]:7")
        #expect(ProxyHeader.parse(Array("PROXY UNKNOWN\r\n".utf8)) == .complete(length: 15, source: nil))
    }

    @Test func everyShorterPrefixAsksForMoreAndNeverMore() {
        let headers = [
            v2(addresses: [198, 18, 0, 2, 198, 18, 0, 1, 0xC8, 0x22, 0x01, 0xBB]),
            Array("PROXY TCP4 198.18.0.2 198.18.0.1 51234 443\r\n".utf8),
        ]
        for header in headers {
            for n in 0..<header.count {
                #expect(ProxyHeader.parse(Array(header.prefix(n))) == .needMore, "\(n) of \(header.count)")
            }
        }
    }

    @Test func badHeadersAreRefusedWithAReason() {
        let bad: [[UInt8]] = [
            [0x16, 0x03, 0x01, 0x00],                                    // TLS without a header
            Array("GET / HTTP/1.1\r\n".utf8),                            // starts like neither
            Array("PROXY TCP4 1.2.3.4 5.6.7.8 99999 443\r\n".utf8),      // port out of range
            Array("PROXY TCP4 1.2.3.4 5.6.7.8 080 443\r\n".utf8),        // leading zero
            Array("PROXY TCP4 1.2.3 5.6.7.8 1 443\r\n".utf8),            // not an address
            Array("PROXY TCP6 1.2.3.4 5.6.7.8 1 443\r\n".utf8),          // family mismatch
            Array("PROXY TCP4 1.2.3.4 5.6.7.8 1 443\n".utf8),            // LF without CR
            Array("PROXY TCP4  1.2.3.4 5.6.7.8 1 443\r\n".utf8),         // two spaces
            Array("PROXY ".utf8) + [UInt8](repeating: 0x41, count: 120), // no end within 107 bytes
            v2(command: 0x22, addresses: [1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]),  // unknown command
            v2(family: 0x12, addresses: [1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]),   // UDP on a TCP connection
            v2(family: 0x11, addresses: [1, 2, 3, 4]),                           // IPv4 cut short
            ProxyHeader.v2Signature + [0x31, 0x11, 0x00, 0x0C] + [UInt8](repeating: 0, count: 12),  // version 3
            ProxyHeader.v2Signature + [0x21, 0x11, 0x10, 0x00],                  // 4 KiB of TLVs announced
            [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0B],  // signature off by one
        ]
        for b in bad {
            guard case .invalid = ProxyHeader.parse(b) else {
                Issue.record("accepted: \(String(decoding: b, as: UTF8.self))")
                continue
            }
        }
    }

    @Test func onlyTrustedProxiesAreAsked() throws {
        let proxies: [IPPrefix] = [try IPPrefix.parse("198.18.2.0/24").get(), try IPPrefix.parse("fd00:198:18::/48").get()]
        let inside = try #require(SocketAddress(literal: "198.18.2.1", port: 40000)).key
        let outside = try #require(SocketAddress(literal: "198.18.3.1", port: 40000)).key
        let inside6 = try #require(SocketAddress(literal: "fd00:198:18::7", port: 1)).key
        let mapped = try #require(SocketAddress(literal: "::ffff:198.18.2.9", port: 1)).key
        #expect(ProxyHeader.isTrusted(inside, proxies: proxies))
        #expect(!ProxyHeader.isTrusted(outside, proxies: proxies))
        #expect(ProxyHeader.isTrusted(inside6, proxies: proxies))
        #expect(ProxyHeader.isTrusted(mapped, proxies: proxies), "a dual-stack socket's IPv4 peer is IPv4")
        #expect(!ProxyHeader.isTrusted(inside, proxies: []))
    }
}

@Suite struct ProxyProtocolSettingTests {
    func validate(_ value: String) -> Result<GatewaySettings, ConfigurationError> {
        var s = AdminSettings()
        s.network = "100.64.0.0/24"
        s.advancedSettings = [AdminSettings.KeyValuePair(name: "proxy-protocol-from", value: value)]
        return GatewaySettings.validate(s)
    }

    @Test func addressesAndPrefixesParseAndMistakesAreNamed() throws {
        let proxies = try validate("198.18.2.1, 10.0.0.0/8 fd00::5").get().advanced.proxyProtocolFrom
        #expect(proxies.map(\.description) == ["198.18.2.1/32", "10.0.0.0/8", "fd00::5/128"])
        #expect(try validate("").get().advanced.proxyProtocolFrom.isEmpty)
        for bad in ["198.18.2.300", "10.0.0.1/8", "proxy.example"] {
            guard case .failure(let e) = validate(bad) else { Issue.record("\(bad) accepted"); continue }
            #expect("\(e)".contains("proxy-protocol-from"), "\(e)")
        }
    }
}
