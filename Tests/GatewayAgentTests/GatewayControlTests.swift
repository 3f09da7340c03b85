import Foundation
import GatewayIPC
import GatewayWire
import Glibc
import Testing
@testable import GatewayAgent

@Suite struct GatewayControlTests {
    func peer(uid: UInt32, gid: UInt32) -> PeerCredentials { PeerCredentials(pid: 4242, uid: uid, gid: gid) }

    @Test func rootAndTheAgentsOwnUidAreTrusted() {
        #expect(GatewayControl.peerRefusal(peer(uid: 0, gid: 0), ownUID: 1000, allowedGIDs: []) == nil)
        #expect(GatewayControl.peerRefusal(peer(uid: 0, gid: 5555), ownUID: 1000, allowedGIDs: []) == nil)
        #expect(GatewayControl.peerRefusal(peer(uid: 1000, gid: 1000), ownUID: 1000, allowedGIDs: []) == nil)
    }

    @Test func anyOtherUserIsRefusedUnlessItsGroupIsAllowed() throws {
        let refusal = try #require(GatewayControl.peerRefusal(peer(uid: 1001, gid: 1001), ownUID: 1000, allowedGIDs: []))
        #expect(refusal.contains("uid 1001"))
        #expect(refusal.contains("gid 1001"))
        #expect(refusal.contains("pid 4242"))
        #expect(refusal.contains("--gateway-gid"))
        // An agent running as root does not trust every uid either.
        #expect(GatewayControl.peerRefusal(peer(uid: 65534, gid: 65534), ownUID: 0, allowedGIDs: []) != nil)
        #expect(GatewayControl.peerRefusal(peer(uid: 1001, gid: 998), ownUID: 1000, allowedGIDs: [998]) == nil)
        #expect(GatewayControl.peerRefusal(peer(uid: 1001, gid: 997), ownUID: 1000, allowedGIDs: [998, 999]) != nil)
    }

    /// The check runs on a real connection: a listener of our own uid is trusted, so the
    /// call goes on (and, with nobody answering, times out instead of being refused).
    @Test func aListenerOfOurOwnUidIsTalkedTo() throws {
        let dir = TempDir()
        let fd = try UnixSocket.listen(path: dir.path + "/server.sock")
        defer { close(fd) }
        var control = GatewayControl(runDirectory: dir.path)
        control.timeoutSeconds = 0.2
        switch control.ping() {
        case .failure(.failed(let text)): #expect(text.contains("no answer"))
        case let other: Issue.record("expected a timeout, got \(other)")
        }
    }

    @Test func noSocketIsNotRunning() {
        let dir = TempDir()
        guard case .failure(.notRunning) = GatewayControl(runDirectory: dir.path).ping() else {
            Issue.record("expected notRunning")
            return
        }
    }
}
