import Foundation
import GRDB

/// `SQLDatabase` on SQLite through GRDB: a WAL-mode `DatabasePool` for a file (readers
/// never wait for the writer), a `DatabaseQueue` in memory for tests.
///
/// The store's transactions are async (PostgreSQL's driver is), GRDB's are closures run on
/// its own queue; so a write transaction here is `BEGIN IMMEDIATE`, then each statement as
/// its own GRDB access, then `COMMIT`, with `allowsUnsafeTransactions` letting the
/// transaction stay open between accesses and `WriteGate` keeping every other writer out
/// until it ends.
public final class SQLiteDatabase: SQLDatabase {
    let writer: any DatabaseWriter
    /// Pool readers have their own connections and see only committed state; a queue has
    /// one connection, so its reads wait for the open transaction like writes do.
    private let readsShareTheWriter: Bool
    private let gate = WriteGate()
    public var kind: String { "sqlite" }

    /// The configuration every connection gets.
    static func configuration() -> Configuration {
        var config = Configuration()
        config.busyMode = .timeout(5)
        config.foreignKeysEnabled = true
        config.allowsUnsafeTransactions = true
        return config
    }

    /// A database file (created if needed), migrated.
    public convenience init(path: String) throws {
        try self.init(writer: DatabasePool(path: path, configuration: Self.configuration()), readsShareTheWriter: false)
    }

    /// A database in memory (tests), migrated.
    public static func inMemory() throws -> SQLiteDatabase {
        try SQLiteDatabase(writer: DatabaseQueue(configuration: configuration()), readsShareTheWriter: true)
    }

    /// `writer` must have been opened with `configuration()`; it is migrated here.
    init(writer: any DatabaseWriter, readsShareTheWriter: Bool) throws {
        self.writer = writer
        self.readsShareTheWriter = readsShareTheWriter
        try SQLiteMigrations.migrator.migrate(writer)
    }

    public func read<T: Sendable>(_ body: @escaping @Sendable (any SQLConnection) async throws -> T) async throws -> T {
        if readsShareTheWriter {
            await gate.enter()
            do {
                let result = try await body(Connection(writer: writer, reading: false))
                await gate.leave()
                return result
            } catch {
                await gate.leave()
                throw error
            }
        }
        return try await body(Connection(writer: writer, reading: true))
    }

    /// A file on this host: it answers or the process has bigger problems.
    public func ping(within limit: Duration) async throws {
        try await read { c in _ = try await c.query("SELECT 1") }
    }

    public func write<T: Sendable>(_ body: @escaping @Sendable (any SQLConnection) async throws -> T) async throws -> T {
        await gate.enter()
        let connection = Connection(writer: writer, reading: false)
        do {
            try await writer.writeWithoutTransaction { db in
                // A transaction a cancelled writer could not roll back (GRDB runs nothing for
                // a cancelled task) ends here, before this one begins.
                if db.isInsideTransaction { try db.execute(sql: "ROLLBACK TRANSACTION") }
                try db.execute(sql: "BEGIN IMMEDIATE TRANSACTION")
            }
            let result = try await body(connection)
            try await connection.query("COMMIT TRANSACTION")
            await gate.leave()
            return result
        } catch {
            // A failed COMMIT or a statement error: nothing of the transaction stays.
            _ = try? await writer.writeWithoutTransaction { db in
                if db.isInsideTransaction { try db.execute(sql: "ROLLBACK TRANSACTION") }
            }
            await gate.leave()
            throw error
        }
    }

    struct Connection: SQLConnection {
        let writer: any DatabaseWriter
        let reading: Bool

        @discardableResult
        func query(_ sql: String, _ arguments: [any SQLEncodable]) async throws -> [SQLRow] {
            let bound = StatementArguments(arguments.map { Self.databaseValue($0.sqlValue) })
            if reading {
                return try await writer.read { db in try Self.rows(db, sql, bound) }
            }
            return try await writer.writeWithoutTransaction { db in try Self.rows(db, sql, bound) }
        }

        static func rows(_ db: Database, _ sql: String, _ arguments: StatementArguments) throws -> [SQLRow] {
            try Row.fetchAll(db, sql: sql, arguments: arguments).map { row in
                SQLRow(row.map { column, dbValue in (column, value(dbValue)) })
            }
        }

        static func databaseValue(_ value: SQLValue) -> DatabaseValue {
            switch value {
            case .null: return .null
            case .integer(let i): return i.databaseValue
            case .double(let d): return d.databaseValue
            case .text(let s): return s.databaseValue
            case .blob(let b): return Data(b).databaseValue
            }
        }

        static func value(_ value: DatabaseValue) -> SQLValue {
            switch value.storage {
            case .null: return .null
            case .int64(let i): return .integer(i)
            case .double(let d): return .double(d)
            case .string(let s): return .text(s)
            case .blob(let d): return .blob(Array(d))
            }
        }
    }
}

/// One writer at a time, waiting without blocking a thread (an async mutex).
actor WriteGate {
    private var busy = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    func enter() async {
        guard busy else {
            busy = true
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    func leave() {
        if waiting.isEmpty {
            busy = false
        } else {
            waiting.removeFirst().resume()
        }
    }
}
