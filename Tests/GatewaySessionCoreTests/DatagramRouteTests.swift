import Testing
@testable import GatewaySessionCore

@Suite struct DatagramRouteTests {
    func target(bound: Bool = false, handshake: Bool = false, data: Bool = false, hello: Bool? = nil) -> DatagramRoute.Target {
        DatagramRoute.target(bound: bound, handshake: handshake, isApplicationData: data, sameHello: { hello })
    }

    @Test func applicationDataGoesToTheEstablishedChannel() {
        #expect(target(bound: true, data: true) == .bound)
        // Even while a handshake runs at the same address (a replayed ClientHello from the
        // client's own address and port must not take its data).
        #expect(target(bound: true, handshake: true, data: true) == .bound)
        // Data before the handshake's channel replaced the old one (it may be its first
        // record after Finished): the handshake's.
        #expect(target(handshake: true, data: true) == .handshake)
        #expect(target(data: true) == .unknown)
    }

    @Test func aClientHelloBesideAnEstablishedChannelStartsAHandshakeBesideIt() {
        // The client restarting DTLS, or someone replaying its hello: either way the channel
        // stays until a handshake completes.
        #expect(target(bound: true, hello: false) == .newHandshake)
        #expect(target(hello: false) == .newHandshake)
    }

    @Test func theHandshakesOwnClientHelloIsFedToIt() {
        // A retransmission, or the second hello after a HelloVerifyRequest: same random.
        #expect(target(handshake: true, hello: true) == .handshake)
        #expect(target(bound: true, handshake: true, hello: true) == .handshake)
        // Another random at that address: the client started over.
        #expect(target(bound: true, handshake: true, hello: false) == .newHandshake)
    }

    @Test func otherHandshakeRecordsGoToTheHandshake() {
        #expect(target(handshake: true) == .handshake)
        #expect(target(bound: true, handshake: true) == .handshake)
        // An alert or a handshake record on the established channel, nothing in progress.
        #expect(target(bound: true) == .bound)
        #expect(target() == .unknown)
    }

    @Test func theClientHelloIsOnlyParsedWhenItMatters() {
        var parsed = 0
        _ = DatagramRoute.target(bound: true, handshake: true, isApplicationData: true) { parsed += 1; return false }
        #expect(parsed == 0)
    }

    // Sessions by the id their ClientHello carries.
    let sessions: [String: (String, DatagramRoute.Candidate)] = [
        "alice": ("session-alice", .init(hasKey: true, connected: true)),
        "bob-no-dtls": ("session-bob", .init(hasKey: false, connected: true)),
        "carol-detached": ("session-carol", .init(hasKey: true, connected: false)),
    ]

    func route(_ id: String?, udpDisabled: Bool = false) -> DatagramRoute.NewChannel<String> {
        DatagramRoute.newChannel(helloSessionID: id, udpDisabled: udpDisabled) { sessions[$0] }
    }

    @Test func aClientHelloNamingASessionStartsItsChannel() {
        // Also roaming: the same session from a new address.
        #expect(route("alice") == .handshake("session-alice"))
    }

    @Test func anythingElseFromAnUnknownAddressIsDropped() {
        #expect(route(nil) == .drop(reason: "not a ClientHello, from an address no session uses"))
        #expect(route("mallory") == .drop(reason: "the ClientHello names no session"))
    }

    @Test func dtlsOffIsRespected() {
        #expect(route("alice", udpDisabled: true) == .drop(reason: "DTLS is turned off (disableUdpConnections)"))
    }

    @Test func aSessionWithoutAKeyOrWithoutItsTLSConnectionGetsNoChannel() {
        #expect(route("bob-no-dtls") == .drop(reason: "the session's client did not offer DTLS"))
        #expect(route("carol-detached") == .drop(reason: "the session has no TLS connection"))
    }
}
