import Foundation
import GatewayAgentAPI
import Testing
@testable import GatewayAgent

@Suite struct OutboxTests {
    func item(_ n: Int) -> ReportItem {
        ReportItem(id: "id-\(n)", createdDateTime: "2026-11-21T10:00:00.000Z",
                   event: AgentEvent(type: .sessionConnected, dateTime: "2026-11-21T10:00:00.000Z", userId: "u\(n)"))
    }

    func open(_ dir: TempDir, max: Int = 1000) throws -> Outbox {
        Outbox(database: try AgentDatabase(path: dir.path + "/agent/agent.sqlite"), maxRows: max)
    }

    @Test func batchesComeInInsertionOrder() throws {
        let dir = TempDir()
        let outbox = try open(dir)
        try outbox.enqueue((0 ..< 7).map(item))
        try outbox.enqueue((7 ..< 10).map(item))
        let batch = try outbox.nextBatch(limit: 4)
        #expect(batch.items.map(\.id) == ["id-0", "id-1", "id-2", "id-3"])
        #expect(batch.droppedSinceLastAck == 0)
        #expect(try outbox.nextBatch(limit: 10_000).items.count == 10)
    }

    @Test func ackDeletesOnlyAcknowledgedIds() throws {
        let dir = TempDir()
        let outbox = try open(dir)
        try outbox.enqueue((0 ..< 5).map(item))
        let batch = try outbox.nextBatch(limit: 3)
        // The control plane acknowledges two of three, plus an id we never sent.
        let deleted = try outbox.acknowledge(ReportAck(acknowledged: ["id-0", "id-2", "id-4"], duplicates: 0), for: batch)
        #expect(deleted == 2)
        #expect(try outbox.nextBatch().items.map(\.id) == ["id-1", "id-3", "id-4"])
    }

    @Test func sameIdIsStoredOnce() throws {
        let dir = TempDir()
        let outbox = try open(dir)
        try outbox.enqueue([item(1)])
        try outbox.enqueue([item(1)])
        #expect(outbox.depth() == 1)
    }

    @Test func boundDropsOldestAndCountsUntilAcknowledged() throws {
        let dir = TempDir()
        let outbox = try open(dir, max: 5)
        let dropped = try outbox.enqueue((0 ..< 8).map(item))
        #expect(dropped == 3)
        #expect(outbox.depth() == 5)
        let batch = try outbox.nextBatch()
        #expect(batch.items.first?.id == "id-3")
        #expect(batch.droppedSinceLastAck == 3)
        // More drops while that batch is in flight stay counted after the ack.
        try outbox.enqueue([item(8)])
        #expect(outbox.droppedCount() == 4)
        try outbox.acknowledge(ReportAck(acknowledged: batch.items.map(\.id), duplicates: 0), for: batch)
        #expect(outbox.droppedCount() == 1)
        #expect(outbox.depth() == 1)
    }

    @Test func survivesReopen() throws {
        let dir = TempDir()
        do {
            let outbox = try open(dir, max: 3)
            try outbox.enqueue((0 ..< 4).map(item), alsoSet: [.eventsSequence: "42"])
        }
        let reopened = try open(dir, max: 3)
        #expect(reopened.depth() == 3)
        #expect(reopened.droppedCount() == 1)
        #expect(reopened.database.value(.eventsSequence) == "42")
        #expect(try reopened.nextBatch().items.map(\.id) == ["id-1", "id-2", "id-3"])
    }

    @Test func undecodableRowIsDroppedNotBlocking() throws {
        let dir = TempDir()
        let outbox = try open(dir)
        try outbox.enqueue([item(0)])
        try outbox.database.write { db in
            try db.execute(sql: "INSERT INTO outbox(id, kind, createdDateTime, payload) VALUES('bad', 'health', 'x', X'00')")
        }
        try outbox.enqueue([item(1)])
        let batch = try outbox.nextBatch()
        #expect(batch.items.map(\.id) == ["id-0", "id-1"])
        #expect(batch.droppedSinceLastAck == 1)
    }

    @Test func actionsAreRememberedAcrossReopen() throws {
        let dir = TempDir()
        do {
            let db = try AgentDatabase(path: dir.path + "/agent/agent.sqlite")
            #expect(!db.isActionDone("a1"))
            try db.markActionDone(id: "a1", type: "collectLogs", outcome: "uploaded")
        }
        let db = try AgentDatabase(path: dir.path + "/agent/agent.sqlite")
        #expect(db.isActionDone("a1"))
        #expect(!db.isActionDone("a2"))
    }
}

@Suite struct OutboxLimitTests {
    @Test func queuedReportsAreClampedToWhatTheControlPlaneAccepts() throws {
        let dir = TempDir()
        let outbox = Outbox(database: try AgentDatabase(path: dir.path + "/agent/agent.sqlite"), maxRows: 10)
        let now = "2026-11-21T10:00:00.000Z"
        try outbox.enqueue([ReportItem(id: "big", createdDateTime: now, event: AgentEvent(
            type: .loginRejected, dateTime: now, userName: String(repeating: "u", count: 1 << 20), reason: String(repeating: "r", count: 8 << 20)))])
        let batch = try outbox.nextBatch()
        let item = try #require(batch.items.first)
        try item.checkLimits("items[0]")
        #expect(item.event?.reason?.utf8.count ?? 0 <= AgentAPILimits.reason)
        #expect(item.event?.userName?.utf8.count ?? 0 <= AgentAPILimits.userName)
    }
}
