import Foundation
import GRDB
import GatewayAgentAPI

/// The durable outbox: every health report and gateway event is stored here, with its
/// UUID, *before* any attempt to send it.
///
/// Delivery is at-least-once: a batch is resent until the control plane acknowledges its
/// ids, and only acknowledged ids are deleted. The control plane stores each id once, so a
/// resend after a lost answer is acknowledged again without being counted twice — each
/// report ends up stored exactly once.
///
/// Bounded: at `maxRows` the oldest rows are dropped to make room, and the number dropped
/// is counted durably and sent as `droppedSinceLastAck` until a batch carrying it is
/// acknowledged, so loss is visible rather than silent.
public struct Outbox: Sendable {
    public let database: AgentDatabase
    public let maxRows: Int

    public init(database: AgentDatabase, maxRows: Int) {
        self.database = database
        self.maxRows = max(1, maxRows)
    }

    /// Stores items in one transaction, with optional state updates that must commit with
    /// them (the gateway event cursor: an event is queued exactly once, or not at all).
    /// Returns how many old rows were dropped to stay within the bound.
    @discardableResult
    public func enqueue(_ items: [ReportItem], alsoSet state: [StateKey: String] = [:]) throws(AgentError) -> Int {
        if items.isEmpty && state.isEmpty { return 0 }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var payloads: [(ReportItem, Data)] = []
        // Every field within what the control plane accepts (AgentAPILimits): a long gateway
        // message is cut here rather than have its report refused later.
        for item in items.map({ $0.clampedToLimits() }) {
            do {
                payloads.append((item, try encoder.encode(item)))
            } catch {
                throw AgentError("cannot encode report \(item.id): \(error)")
            }
        }
        let bound = maxRows
        return try database.write { db in
            for (item, payload) in payloads {
                try db.execute(sql: "INSERT OR IGNORE INTO outbox(id, kind, createdDateTime, payload) VALUES(?, ?, ?, ?)",
                               arguments: [item.id, item.kind.rawValue, item.createdDateTime, payload])
            }
            let count = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM outbox") ?? 0
            var dropped = 0
            if count > bound {
                dropped = count - bound
                try db.execute(sql: "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)", arguments: [dropped])
                let previous = Int64(try String.fetchOne(db, sql: "SELECT value FROM state WHERE key = ?",
                                                         arguments: [StateKey.droppedReports.rawValue]) ?? "0") ?? 0
                try AgentDatabase.set(db, .droppedReports, String(previous + Int64(dropped)))
            }
            for (k, v) in state { try AgentDatabase.set(db, k, v) }
            return dropped
        }
    }

    /// The oldest items, in insertion order, and the drop count to report with them.
    /// A row that no longer decodes (damaged, or written by a newer agent) is deleted and
    /// counted as dropped, so one bad row cannot block the queue forever.
    public func nextBatch(limit: Int = ReportBatch.maxItems) throws(AgentError) -> ReportBatch {
        let n = min(max(1, limit), ReportBatch.maxItems)
        return try database.write { db in
            let rows = try Row.fetchAll(db, sql: "SELECT seq, payload FROM outbox ORDER BY seq LIMIT ?", arguments: [n])
            var items: [ReportItem] = []
            let decoder = JSONDecoder()
            var bad: [Int64] = []
            for row in rows {
                let payload: Data = row["payload"]
                if let item = try? decoder.decode(ReportItem.self, from: payload) {
                    items.append(item)
                } else {
                    bad.append(row["seq"])
                }
            }
            var dropped = Int64(try String.fetchOne(db, sql: "SELECT value FROM state WHERE key = ?",
                                                    arguments: [StateKey.droppedReports.rawValue]) ?? "0") ?? 0
            if !bad.isEmpty {
                for seq in bad { try db.execute(sql: "DELETE FROM outbox WHERE seq = ?", arguments: [seq]) }
                dropped += Int64(bad.count)
                try AgentDatabase.set(db, .droppedReports, String(dropped))
            }
            return ReportBatch(items: items, droppedSinceLastAck: dropped)
        }
    }

    /// Deletes the acknowledged ids among those sent (an id the control plane names that
    /// was not in the batch is ignored) and subtracts the drop count that batch reported.
    /// Returns how many rows were deleted.
    @discardableResult
    public func acknowledge(_ ack: ReportAck, for batch: ReportBatch) throws(AgentError) -> Int {
        let sent = Set(batch.items.map(\.id))
        let acked = ack.acknowledged.filter { sent.contains($0) }
        return try database.write { db in
            var deleted = 0
            for chunk in stride(from: 0, to: acked.count, by: 200) {
                let part = Array(acked[chunk ..< min(chunk + 200, acked.count)])
                let marks = Array(repeating: "?", count: part.count).joined(separator: ",")
                try db.execute(sql: "DELETE FROM outbox WHERE id IN (\(marks))", arguments: StatementArguments(part))
                deleted += db.changesCount
            }
            if batch.droppedSinceLastAck > 0 {
                let current = Int64(try String.fetchOne(db, sql: "SELECT value FROM state WHERE key = ?",
                                                        arguments: [StateKey.droppedReports.rawValue]) ?? "0") ?? 0
                // Drops that happened while the batch was in flight stay counted.
                try AgentDatabase.set(db, .droppedReports, String(max(0, current - batch.droppedSinceLastAck)))
            }
            return deleted
        }
    }

    /// Deletes one report the control plane refused on its own and counts it as dropped
    /// (sent as `droppedSinceLastAck`), in one transaction.
    public func dropRefused(id: String) throws(AgentError) {
        try database.write { db in
            try db.execute(sql: "DELETE FROM outbox WHERE id = ?", arguments: [id])
            guard db.changesCount > 0 else { return }
            let previous = Int64(try String.fetchOne(db, sql: "SELECT value FROM state WHERE key = ?",
                                                     arguments: [StateKey.droppedReports.rawValue]) ?? "0") ?? 0
            try AgentDatabase.set(db, .droppedReports, String(previous + 1))
        }
    }

    public func depth() -> Int {
        (try? database.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM outbox") ?? 0 }) ?? 0
    }

    public func droppedCount() -> Int64 {
        database.int(.droppedReports) ?? 0
    }

    /// Empties the queue (after a re-enrollment as another server: the old identity's
    /// reports must not be filed under the new one). Returns how many were removed.
    public func clear() throws(AgentError) -> Int {
        try database.write { db in
            try db.execute(sql: "DELETE FROM outbox")
            let n = db.changesCount
            try AgentDatabase.set(db, .droppedReports, nil)
            return n
        }
    }
}
