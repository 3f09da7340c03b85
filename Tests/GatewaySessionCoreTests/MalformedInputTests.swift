import Foundation
import GatewayCore
import GatewayWire
import Testing
@testable import GatewaySessionCore

/// The pieces that tell malformed tunnel input apart: DTLS record layers, the replay
/// window, CSTP headers, the counters and their wire form.
@Suite struct MalformedInputTests {
    /// A DTLS record header + `length` bytes of fragment.
    static func record(type: UInt8 = 23, version: UInt8 = 0xFD, epoch: UInt16 = 1, sequence: UInt64 = 5, length: Int = 40,
                       fragment first: UInt8 = 0) -> [UInt8] {
        var r: [UInt8] = [type, 0xFE, version, UInt8(epoch >> 8), UInt8(epoch & 0xFF)]
        for i in (0..<6).reversed() { r.append(UInt8(truncatingIfNeeded: sequence >> (8 * UInt64(i)))) }
        r += [UInt8(length >> 8), UInt8(length & 0xFF)]
        if length > 0 { r += [first] + [UInt8](repeating: 0xAB, count: length - 1) }
        return r
    }

    func shape(_ d: [UInt8]) -> DTLSRecords.Shape? { d.withUnsafeBytes { DTLSRecords.inspect($0) } }

    @Test func aDTLSRecordIsReadWithItsEpochAndSequence() throws {
        let s = try #require(shape(Self.record(epoch: 1, sequence: 0x0102_0304_0506)))
        #expect(s.records == 1 && s.allApplicationData && s.firstType == 23)
        #expect(s.firstEpoch == 1 && s.firstSequence == 0x0102_0304_0506)
        #expect(!s.isClientHello)
        let two = try #require(shape(Self.record(sequence: 1) + Self.record(type: 21, sequence: 2, length: 2)))
        #expect(two.records == 2 && !two.allApplicationData && two.firstSequence == 1)
        let hello = try #require(shape(Self.record(type: 22, version: 0xFF, epoch: 0, sequence: 0, length: 100, fragment: 1)))
        #expect(hello.isClientHello && !hello.allApplicationData)
        #expect(shape(Self.record(type: 22, epoch: 0, length: 100, fragment: 16))?.isClientHello == false)
        #expect(shape(Self.record(length: 0))?.records == 1)
    }

    @Test(arguments: [
        [],
        [0x17, 0xFE, 0xFD],                                          // shorter than a header
        MalformedInputTests.record(type: 24),                        // heartbeat: never negotiated
        MalformedInputTests.record(type: 0x53),                      // "STF…": CSTP on UDP
        [0x17, 0x03, 0x03] + MalformedInputTests.record().dropFirst(3),  // TLS, not DTLS
        Array(MalformedInputTests.record(length: 40).dropLast()),    // length past the end
        MalformedInputTests.record(length: 40) + [0x17, 0xFE],       // trailing bytes
        MalformedInputTests.record(length: 40) + Array(MalformedInputTests.record(length: 40).dropLast()),  // second record cut short
    ] as [[UInt8]])
    func whatIsNotAWholeSequenceOfRecords(_ d: [UInt8]) {
        #expect(shape(d) == nil)
    }

    @Test func theReplayWindowKnowsWhatWasReceived() {
        var w = DTLSReplayWindow()
        #expect(!w.isReplay(epoch: 1, sequence: 0), "nothing received yet")
        w.mark(epoch: 1, sequence: 10)
        #expect(w.isReplay(epoch: 1, sequence: 10))
        #expect(!w.isReplay(epoch: 1, sequence: 11))
        #expect(!w.isReplay(epoch: 1, sequence: 9), "older, inside the window, never received")
        w.mark(epoch: 1, sequence: 9)
        #expect(w.isReplay(epoch: 1, sequence: 9))
        w.mark(epoch: 1, sequence: 100)
        #expect(w.isReplay(epoch: 1, sequence: 100))
        #expect(!w.isReplay(epoch: 1, sequence: 99))
        #expect(w.isReplay(epoch: 1, sequence: 36), "64 behind the highest: outside the window")
        #expect(!w.isReplay(epoch: 1, sequence: 37))
        #expect(w.isReplay(epoch: 1, sequence: 10), "long gone")
        #expect(!w.isReplay(epoch: 2, sequence: 100), "another epoch is not a replay")
        // A jump of more than the window forgets everything before it.
        w.mark(epoch: 1, sequence: 1000)
        #expect(!w.isReplay(epoch: 1, sequence: 999) && w.isReplay(epoch: 1, sequence: 1000))
        // A later epoch starts over; an earlier one is ignored.
        w.mark(epoch: 2, sequence: 0)
        #expect(w.epoch == 2 && w.isReplay(epoch: 2, sequence: 0))
        w.mark(epoch: 1, sequence: 5000)
        #expect(w.epoch == 2 && w.highest == 0)
    }

    /// The window agrees with a plain set of received numbers for every sequence within 64
    /// of the highest, whatever the order records arrived in.
    @Test func theWindowAgreesWithASetOfReceivedNumbers() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<50 {
            var w = DTLSReplayWindow()
            var received = Set<UInt64>()
            for _ in 0..<300 {
                let seq = UInt64.random(in: 0..<400, using: &rng)
                let expected = received.contains(seq) || (!received.isEmpty && received.max()! >= seq + 64)
                #expect(w.isReplay(epoch: 1, sequence: seq) == expected, "sequence \(seq)")
                if !expected {
                    w.mark(epoch: 1, sequence: seq)
                    received.insert(seq)
                }
            }
        }
    }

    @Test func datagramsFromAnAddressWithNoChannelAreClassified() {
        func kind(_ d: [UInt8], names: Bool = false) -> MalformedInput? {
            d.withUnsafeBytes { DatagramRoute.malformedClass($0, namesLiveSession: names) }
        }
        #expect(kind(Array("hello".utf8)) == .dtlsNotDTLS)
        #expect(kind(Self.record()) == .dtlsBeforeHandshake)
        #expect(kind(Self.record(type: 21, length: 2)) == .dtlsBeforeHandshake)
        let hello = Self.record(type: 22, version: 0xFF, epoch: 0, sequence: 0, length: 100, fragment: 1)
        #expect(kind(hello) == .dtlsNoSession)
        #expect(kind(hello, names: true) == nil, "a session's ClientHello refused for policy is no malformed input")
    }

    @Test func aBadCSTPHeaderIsToldFromAnOversizeOne() {
        func kind(_ h: [UInt8]) -> MalformedInput { h.withUnsafeBytes { TunnelFrame.invalidHeaderClass($0) } }
        #expect(kind([0x53, 0x54, 0x46, 0x01, 0x40, 0x00, 0x00, 0x00]) == .cstpOversize)
        #expect(kind([0x53, 0x54, 0x46, 0x01, 0x3F, 0xF9, 0x00, 0x00]) == .cstpOversize)
        #expect(kind([0x53, 0x54, 0x46, 0x02, 0x00, 0x10, 0x00, 0x00]) == .cstpBadHeader)
        #expect(kind([0x53, 0x54, 0x46, 0x01, 0x00, 0x10, 0x00, 0x01]) == .cstpBadHeader)
        #expect(kind([0x47, 0x45, 0x54, 0x20, 0x2F, 0x20, 0x48, 0x54]) == .cstpBadHeader)
        // The header parser agrees these are invalid.
        for h: [UInt8] in [[0x53, 0x54, 0x46, 0x01, 0x40, 0x00, 0x00, 0x00], [0x53, 0x54, 0x46, 0x02, 0x00, 0x10, 0x00, 0x00]] {
            #expect(h.withUnsafeBytes { CSTP.parseHeader($0) } == .invalid)
        }
    }

    @Test func everyClassHasItsOwnCounter() {
        var c = MalformedInputCounts()
        for (i, kind) in MalformedInput.allCases.enumerated() {
            for _ in 0...i { c.count(kind) }
        }
        for (i, kind) in MalformedInput.allCases.enumerated() { #expect(c[kind] == UInt64(i + 1), "\(kind)") }
        let n = UInt64(MalformedInput.allCases.count)
        #expect(c.total == n * (n + 1) / 2)
    }

    /// The wire form: one key per class, named as the class; absent keys read as 0 (a newer
    /// gateway may add classes); an older gateway's status has no `malformed` at all.
    @Test func theCountsOnTheWire() throws {
        var c = MalformedInputCounts()
        for kind in MalformedInput.allCases { c.count(kind) }
        let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(c)) as? [String: Any]
        #expect(Set(json?.keys ?? [:].keys) == Set(MalformedInput.allCases.map(\.rawValue)))
        #expect(try JSONDecoder().decode(MalformedInputCounts.self, from: JSONEncoder().encode(c)) == c)
        let partial = try JSONDecoder().decode(MalformedInputCounts.self, from: Data(#"{"dtlsReplayed": 7, "somethingNew": 1}"#.utf8))
        #expect(partial.dtlsReplayed == 7 && partial.total == 7)
        var status = ServerStatusResponse(version: "0.1.0", startedAt: 0, listenPort: 443, tunDevice: "mstun0", activeSessions: 0,
                                          connectedSessions: 0, totalSessions: 0, authFailures: 0, poolSize: 254, poolInUse: 0,
                                          poolExhaustedCount: 0, rxBytes: 0, txBytes: 0, authAvailable: true)
        let old = try JSONDecoder().decode(ServerStatusResponse.self, from: JSONEncoder().encode(status))
        #expect(old.malformed == nil)
        status.malformed = c
        #expect(try JSONDecoder().decode(ServerStatusResponse.self, from: JSONEncoder().encode(status)).malformed == c)
    }
}

/// A CSTP frame sent before the gateway accepted a CONNECT: named as such (the gateway
/// counts it as malformed tunnel input), answered 400, and the connection closes.
@Suite struct TunnelFrameBeforeConnectTests {
    static let dpd: [UInt8] = [0x53, 0x54, 0x46, 0x01, 0x00, 0x00, 0x03, 0x00]

    @Test func rightAfterTheHandshake() {
        var c = LoginConversation()
        c.handshakeDone()
        let actions = c.received(Self.dpd, isSession: { _ in false })
        guard actions.count == 2, actions[0] == .tunnelFrameBeforeConnect, case .reply(.badRequest)? = actions.last else {
            Issue.record("got \(actions)")
            return
        }
        #expect(c.state == .closing)
    }

    /// A CONNECT refused (no such session), then the frames the client sent behind it.
    @Test func behindARefusedConnect() {
        var c = LoginConversation()
        c.handshakeDone()
        let actions = c.received(Array(LoginConversationTests.connect(cookie: "gone").utf8) + Self.dpd, isSession: { _ in false })
        #expect(!actions.contains(.tunnelFrameBeforeConnect), "the refusal closes first: \(actions)")
        #expect(c.state == .closing)
    }

    /// Behind an accepted CONNECT the same bytes are the tunnel's first frame.
    @Test func notBehindAnAcceptedConnect() {
        var c = LoginConversation()
        c.handshakeDone()
        let actions = c.received(Array(LoginConversationTests.connect(cookie: "live").utf8) + Self.dpd, isSession: { $0 == "live" })
        guard case .startTunnel? = actions.first, actions.count == 1 else {
            Issue.record("got \(actions)")
            return
        }
        #expect(c.tunnelStarted() == Self.dpd)
    }
}
