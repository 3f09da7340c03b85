import Foundation
import GatewayAgentAPI
import GatewayWire
import Testing
@testable import GatewayAgent

@Suite struct SessionEventMappingTests {
    @Test func gatewayEventBecomesAgentEvent() {
        let e = GatewaySessionEvent(sequence: 7, type: .sessionDisconnected, time: 1_795_297_297_123, userId: "oid-1", userName: "a@b.test",
                                    deviceId: "dev", sessionId: "s1", clientAddress: "198.18.0.2", assignedAddress: "100.64.0.5",
                                    reason: "logoff", rxBytes: 10, txBytes: 20)
        let a = SessionEventPump.map(e)
        #expect(a.type == .sessionDisconnected)
        #expect(a.dateTime == "2026-11-21T21:41:37.123Z")
        #expect(a.userId == "oid-1" && a.userName == "a@b.test" && a.deviceId == "dev" && a.sessionId == "s1")
        #expect(a.clientAddress == "198.18.0.2" && a.assignedAddress == "100.64.0.5" && a.reason == "logoff")
        #expect(a.bytesIn == 10 && a.bytesOut == 20)
        #expect(SessionEventPump.map(GatewaySessionEvent(sequence: 1, type: .loginRejected, time: 0, rxBytes: .max)).bytesIn == Int64.max)
    }
}
