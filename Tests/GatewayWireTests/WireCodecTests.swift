import Foundation
import Testing
@testable import GatewayWire

@Suite struct WireGoldenTests {
    static let cases: [(String, WireEnvelope)] = [
        ("validateToken-request", WireEnvelope(id: 7, .request(.validateToken(ValidateTokenRequest(
            token: "eyJhbGciOiJSUzI1NiJ9.e30.c2ln", transport: .bearer, peerAddress: "198.18.0.2:40000"))))),
        ("validateToken-accepted", WireEnvelope(id: 7, .response(.validateToken(.accepted(Identity(
            userId: "oid-1", userName: "alice@corp.test", tenantId: "t-1", deviceId: "dev-1", expiresAt: 1_800_000_000)))))),
        ("validateToken-rejected", WireEnvelope(id: 8, .response(.validateToken(.rejected(.expired, "token expired 600 s ago"))))),
        ("error", WireEnvelope(id: 9, .response(.error(WireErrorResponse(code: WireErrorResponse.unknownRequest, message: "unknown request type"))))),
        ("listSessions-request", WireEnvelope(id: 10, .request(.listSessions(ListSessionsRequest(user: "alice"))))),
        ("applySettings-request", WireEnvelope(id: 11, .request(.applySettings(ApplySettingsRequest(
            settingsJSON: "{\"network\":\"100.64.0.0/16\"}", version: 3))))),
        ("applySettings-refused", WireEnvelope(id: 11, .response(.applySettings(ApplySettingsResponse(
            applied: false, error: "network: 10.0.0.0/33 is not a prefix"))))),
        ("sessionEvents-response", WireEnvelope(id: 12, .response(.sessionEvents(SessionEventsResponse(
            events: [GatewaySessionEvent(sequence: 4, type: .sessionConnected, time: 1_800_000_000_000, userId: "oid-1",
                                         sessionId: "a1b2", assignedAddress: "100.64.0.5")],
            bootId: "0011223344556677", missed: 2))))),
        ("hostNetwork-request", WireEnvelope(id: 13, .request(.hostNetwork(HostNetworkRequest(state: HostNetworkState(
            mtu: 1400, addresses: ["100.64.0.1/24"], natPrefixes: ["100.64.0.0/24"])))))),
        ("hostNetwork-failed", WireEnvelope(id: 13, .response(.hostNetwork(HostNetworkResponse(
            applied: false, error: "nat 100.64.0.0/24: nft: Could not process rule", steps: ["mtu 1400"], warnings: []))))),
        ("saveSession-request", WireEnvelope(id: 14, .request(.saveSession(SaveSessionRequest(session: Self.stored))))),
        ("restoreSessions-response", WireEnvelope(id: 15, .response(.restoreSessions(RestoreSessionsResponse(sessions: [Self.stored]))))),
        ("sealSession-response", WireEnvelope(id: 16, .response(.sealSession(SealSessionResponse(
            ticket: "mst.1.s-0011aabbccdd.c2VhbGVk", cookieDigest: String(repeating: "0f", count: 32)))))),
        ("openTicket-response", WireEnvelope(id: 17, .response(.openTicket(OpenTicketResponse(session: Self.stored, keyId: "s-0011aabbccdd"))))),
        ("forgetSession-request", WireEnvelope(id: 18, .request(.forgetSession(ForgetSessionRequest(
            cookieDigest: String(repeating: "0f", count: 32), sessionId: String(repeating: "a1", count: 32), revoke: false))))),
        ("installTicketKeys-request", WireEnvelope(id: 19, .request(.installTicketKeys(InstallTicketKeysRequest(keys: TicketKeyFile(
            sealing: "s-0011aabbccdd", keys: [.init(id: "s-0011aabbccdd", key: Data(count: 32).base64EncodedString())], lifetimeSeconds: 86_400)))))),
        ("drain-request", WireEnvelope(id: 20, .request(.drain(DrainRequest(drain: true, handOverAfterSeconds: 10))))),
        ("drain-response", WireEnvelope(id: 20, .response(.drain(DrainResponse(
            drain: DrainStatus(since: 1_800_000_000, handOverAt: 1_800_000_010, handedOver: 3), sessions: 0))))),
    ]

    static let stored = StoredSession(
        cookieDigest: String(repeating: "0f", count: 32), id: String(repeating: "a1", count: 32),
        identity: Identity(userId: "oid-1", userName: "alice@corp.test", expiresAt: 1_800_003_600, groups: ["g-1"]),
        transport: .bearer, address: "100.64.0.5", createdAt: 1_800_000_000, deadline: 1_800_003_600)

    func golden(_ name: String) throws -> [UInt8] {
        let url = try #require(Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "Golden"))
        return Array(try Data(contentsOf: url))
    }

    @Test(arguments: 0..<cases.count)
    func encodingMatchesGoldenFile(_ i: Int) throws {
        let (name, envelope) = Self.cases[i]
        let frame = try WireCodec.encode(envelope)
        let payload = Array(frame[WireFrame.headerSize...])
        #expect(String(decoding: payload, as: UTF8.self) == String(decoding: try golden(name), as: UTF8.self))
        #expect(Array(frame[0..<4]) == [0x4D, 0x53, 0x54, 0x01])
        let n = Int(frame[4]) << 24 | Int(frame[5]) << 16 | Int(frame[6]) << 8 | Int(frame[7])
        #expect(n == payload.count)
        // And the golden bytes decode back to the same message.
        #expect(try WireCodec.decodePayload(try golden(name)) == envelope)
    }
}

@Suite struct WireDecoderTests {
    func frame(version: UInt8 = 1, magic: [UInt8] = [0x4D, 0x53, 0x54], payload: [UInt8]) -> [UInt8] {
        let n = payload.count
        return magic + [version, UInt8(n >> 24 & 0xFF), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)] + payload
    }

    @Test func byteByByteAndBackToBack() throws {
        let a = try WireCodec.encode(WireEnvelope(id: 1, .request(.ping(PingRequest()))))
        let b = try WireCodec.encode(WireEnvelope(id: 2, .response(.ping(PingResponse(process: "x", version: "1")))))
        var d = WireFrameDecoder()
        var got: [WireEnvelope] = []
        for byte in a + b {
            d.append([byte])
            while let e = try d.next() { got.append(e) }
        }
        #expect(got.map(\.id) == [1, 2])
        #expect(d.buffered == 0)
    }

    @Test func unknownVersionIsRefusedClearly() {
        var d = WireFrameDecoder()
        d.append(frame(version: 2, payload: Array("{}".utf8)))
        #expect(throws: WireFrameError(.unsupportedVersion, "")) { try d.next() }
        let text = WireFrameError(.unsupportedVersion, "2").description
        #expect(text.contains("unsupported protocol version 2") && text.contains("speaks 1"))
    }

    @Test func badMagic() {
        var d = WireFrameDecoder()
        d.append(Array("GET / HTTP/1.1\r\n".utf8))
        #expect(throws: WireFrameError(.badMagic, "")) { try d.next() }
    }

    @Test func oversizeIsRefusedBeforeBuffering() {
        var d = WireFrameDecoder(maxPayload: 1024)
        d.append([0x4D, 0x53, 0x54, 0x01, 0x7F, 0xFF, 0xFF, 0xFF])
        #expect(throws: WireFrameError(.oversize, "")) { try d.next() }
    }

    @Test(arguments: ["{", "[]", #"{"id":1}"#, #"{"id":1,"kind":"request","type":"bogus","body":{}}"#,
                      #"{"id":1,"kind":"sideways","type":"ping","body":{}}"#,
                      #"{"id":"x","kind":"request","type":"ping","body":{}}"#,
                      #"{"id":1,"kind":"request","type":"validateToken","body":{"token":"t"}}"#,
                      #"{"id":1,"kind":"request","type":"validateToken","body":{"token":"t","transport":"carrier-pigeon"}}"#])
    func malformedPayloads(_ json: String) {
        var d = WireFrameDecoder()
        d.append(frame(payload: Array(json.utf8)))
        #expect(throws: WireFrameError(.malformedPayload, "")) { try d.next() }
    }

    @Test func unknownTypeNamesItself() {
        var d = WireFrameDecoder()
        d.append(frame(payload: Array(#"{"id":1,"kind":"request","type":"launchRockets","body":{}}"#.utf8)))
        do {
            _ = try d.next()
            Issue.record("should throw")
        } catch {
            #expect(error.description.contains("unknown request type 'launchRockets'"))
        }
    }
}
