import Foundation
import GatewayAgentAPI
import GatewayWire
import Testing
@testable import GatewayAgent

/// A gateway's event ring as the pump sees it.
final class FakeEventSource {
    var bootId = "boot-a"
    var events: [GatewaySessionEvent] = []
    var requests: [UInt64] = []

    func add(_ n: Int) {
        for _ in 0 ..< n {
            let seq = (events.last?.sequence ?? 0) + 1
            events.append(GatewaySessionEvent(sequence: seq, type: .sessionConnected, time: 1_795_297_297_000, userId: "u\(seq)"))
        }
    }

    func restart() {
        bootId = UUID().uuidString
        events = []
    }

    func fetch(after: UInt64, limit: Int) -> Result<SessionEventsResponse, GatewayCallError> {
        requests.append(after)
        return .success(SessionEventsResponse(events: Array(events.filter { $0.sequence > after }.prefix(limit)), bootId: bootId, missed: 0))
    }
}

@Suite struct SessionEventPumpTests {
    func userIds(_ outbox: Outbox) throws -> [String] {
        try outbox.nextBatch().items.compactMap { $0.event?.userId }
    }

    @Test func eachEventIsQueuedOnceAcrossRestartsOfBothSides() throws {
        let dir = TempDir()
        let dbPath = dir.path + "/agent/agent.sqlite"
        let gateway = FakeEventSource()
        gateway.add(3)
        do {
            let outbox = Outbox(database: try AgentDatabase(path: dbPath), maxRows: 1000)
            let pump = SessionEventPump(outbox: outbox, logger: .init(label: "test"), fetch: gateway.fetch)
            #expect(pump.poll() == 3)
            #expect(pump.poll() == 0)
        }
        // Agent restart: the cursor is durable, nothing is queued twice.
        gateway.add(2)
        let outbox = Outbox(database: try AgentDatabase(path: dbPath), maxRows: 1000)
        let pump = SessionEventPump(outbox: outbox, logger: .init(label: "test"), fetch: gateway.fetch)
        #expect(pump.poll() == 2)
        #expect(try userIds(outbox) == ["u1", "u2", "u3", "u4", "u5"])

        // Gateway restart: numbering starts over under a new bootId; the first two events of
        // the new boot (sequences 1, 2 ≤ the old cursor 5) must not be skipped.
        gateway.restart()
        gateway.add(2)
        gateway.requests = []
        #expect(pump.poll() == 2)
        #expect(gateway.requests.first == 5)
        #expect(gateway.requests.dropFirst().first == 0)
        #expect(try userIds(outbox) == ["u1", "u2", "u3", "u4", "u5", "u1", "u2"])
        #expect(outbox.database.value(.eventsBootId) == gateway.bootId)
        #expect(outbox.database.value(.eventsSequence) == "2")
    }

    @Test func pagesUntilDrained() throws {
        let dir = TempDir()
        let gateway = FakeEventSource()
        gateway.add(SessionEventPump.pageSize + 10)
        let outbox = Outbox(database: try AgentDatabase(path: dir.path + "/agent/agent.sqlite"), maxRows: 10_000)
        let pump = SessionEventPump(outbox: outbox, logger: .init(label: "test"), fetch: gateway.fetch)
        #expect(pump.poll() == SessionEventPump.pageSize + 10)
        #expect(outbox.depth() == SessionEventPump.pageSize + 10)
    }

    @Test func gatewayDownQueuesNothingAndKeepsTheCursor() throws {
        let dir = TempDir()
        let outbox = Outbox(database: try AgentDatabase(path: dir.path + "/agent/agent.sqlite"), maxRows: 1000)
        let pump = SessionEventPump(outbox: outbox, logger: .init(label: "test")) { _, _ in .failure(.notRunning("no socket")) }
        #expect(pump.poll() == 0)
        #expect(outbox.database.value(.eventsSequence) == nil)
    }
}
