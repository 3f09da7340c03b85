import Testing
@testable import GatewaySessionCore

@Suite struct DatagramRouteTests {
    @Test func aBoundChannelIsFedItsDatagrams() {
        #expect(DatagramRoute.feedsBoundChannel(established: true, isClientHello: false))
        // During the handshake the client's retransmitted ClientHello belongs to it too.
        #expect(DatagramRoute.feedsBoundChannel(established: false, isClientHello: true))
    }

    @Test func aFreshClientHelloOnAnEstablishedChannelStartsOver() {
        #expect(!DatagramRoute.feedsBoundChannel(established: true, isClientHello: true))
    }

    @Test func theClientHelloIsOnlyParsedWhenItMatters() {
        var parsed = 0
        func hello() -> Bool { parsed += 1; return true }
        _ = DatagramRoute.feedsBoundChannel(established: false, isClientHello: hello())
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
