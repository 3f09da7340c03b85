import GatewayCore
import Testing
@testable import GatewaySessionCore

@Suite struct TunnelFrameTests {
    func step(_ type: UInt8, _ payload: [UInt8] = []) -> TunnelFrame.Step {
        payload.withUnsafeBytes { TunnelFrame.step(type: type, payload: $0) }
    }

    @Test func dataIsForwarded() { #expect(step(0x00, [0x45]) == .forward) }
    @Test func dpdRequestIsAnswered() { #expect(step(0x03, [1, 2, 3]) == .answerDPD) }
    @Test func dpdResponseAndKeepaliveNeedNothing() {
        #expect(step(0x04) == .nothing)
        #expect(step(0x07) == .nothing)
    }

    @Test func logoffEndsTheSessionWithTheClientsWords() {
        #expect(step(0x05, [0xB0] + Array("Client requested logoff".utf8)) == .logoff(reason: "Client requested logoff"))
    }

    @Test func logoffWordsCannotForgeALogLine() {
        let hostile = [0xB0] + Array("bye\n{\"msg\":\"session.created\"}\u{1b}[2J".utf8) + [0x00, 0xFF]
        #expect(step(0x05, hostile) == .logoff(reason: "bye{\"msg\":\"session.created\"}[2J"))
        let long = [0xB0] + [UInt8](repeating: 0x41, count: 1000)
        guard case .logoff(let reason) = step(0x05, long) else {
            Issue.record("expected logoff")
            return
        }
        #expect(reason.count == 128)
    }

    @Test func otherDisconnectKeepsTheSession() {
        #expect(step(0x05) == .detach)
        #expect(step(0x05, [0x00]) == .detach)
    }

    @Test func compressedIsDropped() { #expect(step(0x08, [1]) == .dropUnsupported) }

    @Test(arguments: [UInt8(0x09), 0x01, 0x02, 0x06, 0x0A, 0x42, 0xFF])
    func terminateAndUnknownTypesClose(_ type: UInt8) {
        #expect(step(type) == .close(reason: "unexpected CSTP frame type \(type)"))
    }
}

@Suite struct SourceCheckTests {
    let mine = IPv4Address("100.64.0.7")!

    func packet(version: UInt8 = 4, source: String, length: Int = 40) -> [UInt8] {
        var p = [UInt8](repeating: 0, count: length)
        p[0] = version << 4 | 5
        if length >= 4 { p[2] = UInt8(length >> 8); p[3] = UInt8(length & 0xFF) }
        if length >= 16, let a = IPv4Address(source) {
            let v = a.value
            p[12] = UInt8(v >> 24); p[13] = UInt8(v >> 16 & 0xFF); p[14] = UInt8(v >> 8 & 0xFF); p[15] = UInt8(v & 0xFF)
        }
        return p
    }

    func verdict(_ p: [UInt8]) -> SourceCheck.Verdict { p.withUnsafeBytes { SourceCheck.verdict($0, sessionAddress: mine) } }

    @Test func ownAddressPasses() { #expect(verdict(packet(source: "100.64.0.7")) == .pass) }
    @Test func anotherClientsAddressIsSpoofed() { #expect(verdict(packet(source: "100.64.0.8")) == .spoofed) }
    @Test func anInternalAddressIsSpoofed() { #expect(verdict(packet(source: "198.18.1.2")) == .spoofed) }
    @Test func ipv6WithoutAnIPv6AddressIsUnsupported() { #expect(verdict(packet(version: 6, source: "100.64.0.7")) == .unsupported) }

    let mine6 = IPv6Address("fd00:198:18:64::6440:7")!

    func packet6(source: String, payload: Int = 20, extra: Int = 0) -> [UInt8] {
        var p = [UInt8](repeating: 0, count: 40 + payload + extra)
        p[0] = 0x60
        p[4] = UInt8(payload >> 8); p[5] = UInt8(payload & 0xFF)
        let a = IPv6Address(source)!
        for i in 0..<8 { p[8 + i] = UInt8(truncatingIfNeeded: a.high >> (56 - 8 * UInt64(i))) }
        for i in 0..<8 { p[16 + i] = UInt8(truncatingIfNeeded: a.low >> (56 - 8 * UInt64(i))) }
        return p
    }

    func verdict6(_ p: [UInt8], _ six: IPv6Address? = nil) -> SourceCheck.Verdict {
        p.withUnsafeBytes { SourceCheck.verdict($0, sessionAddress: mine, sessionAddress6: six ?? mine6) }
    }

    @Test func ownIPv6AddressPasses() { #expect(verdict6(packet6(source: "fd00:198:18:64::6440:7")) == .pass) }
    @Test func anotherIPv6AddressIsSpoofed() {
        #expect(verdict6(packet6(source: "fd00:198:18:64::6440:8")) == .spoofed)
        #expect(verdict6(packet6(source: "fd00:198:18:1::2")) == .spoofed)
    }
    /// The client's own neighbour discovery and MLD: dropped, not counted as spoofing.
    @Test func linkLocalAndUnspecifiedSourcesAreUnsupported() {
        #expect(verdict6(packet6(source: "fe80::1234")) == .unsupported)
        #expect(verdict6(packet6(source: "febf::1")) == .unsupported)
        #expect(verdict6(packet6(source: "::")) == .unsupported)
        #expect(verdict6(packet6(source: "fec0::1")) == .spoofed)
    }
    @Test func ipv6LengthsThePacketContradictsAreMalformed() {
        #expect(verdict6(Array(packet6(source: "fd00:198:18:64::6440:7").prefix(39))) == .malformed)
        #expect(verdict6(Array(packet6(source: "fd00:198:18:64::6440:7", payload: 20).prefix(59))) == .malformed)
        #expect(verdict6(packet6(source: "fd00:198:18:64::6440:7", payload: 0, extra: 8)) == .malformed)
        #expect(verdict6(packet6(source: "fd00:198:18:64::6440:7", payload: 20, extra: 4)) == .pass)
    }
    @Test func truncatedIsMalformed() {
        #expect(verdict(packet(source: "100.64.0.7", length: 19)) == .malformed)
        #expect(verdict([]) == .malformed)
        #expect(verdict(packet(version: 6, source: "100.64.0.7", length: 39)) == .malformed)
    }

    @Test func otherVersionsAreMalformed() {
        for v: UInt8 in [0, 1, 5, 7, 15] { #expect(verdict(packet(version: v, source: "100.64.0.7")) == .malformed) }
    }

    /// IPv4 header lengths the packet contradicts: the kernel would refuse the write, and
    /// nothing past the gateway should have to read such a header.
    @Test func contradictoryIPv4LengthsAreMalformed() {
        var p = packet(source: "100.64.0.7")
        p[0] = 0x44  // header length 16 bytes
        #expect(verdict(p) == .malformed)
        p = packet(source: "100.64.0.7")
        p[2] = 0; p[3] = 41  // one byte past the end
        #expect(verdict(p) == .malformed)
        p[3] = 19  // shorter than the header
        #expect(verdict(p) == .malformed)
        p[3] = 20  // a bare header with padding behind it is a packet
        #expect(verdict(p) == .pass)
        p[0] = 0x4F; p[3] = 40  // 60-byte header in a 40-byte packet
        #expect(verdict(p) == .malformed)
    }
}
