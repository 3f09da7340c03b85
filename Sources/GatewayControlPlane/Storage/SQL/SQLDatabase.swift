import Foundation

/// A value bound to or read from a statement: the few types the control plane stores.
/// Times are seconds since 1970 as `double`, booleans are `integer` 0/1 on both databases,
/// so one set of statements serves SQLite and PostgreSQL.
public enum SQLValue: Sendable, Equatable {
    case null
    case integer(Int64)
    case double(Double)
    case text(String)
    case blob([UInt8])
}

/// One result row; column names are compared in lower case (PostgreSQL folds unquoted
/// names to lower case, SQLite keeps them as written).
public struct SQLRow: Sendable {
    private let values: [String: SQLValue]
    /// The first column's value (for single-column queries).
    let firstColumn: SQLValue?

    public init(_ columns: [(String, SQLValue)]) {
        // A name seen twice (`SELECT rowid AS r, *`) keeps its first value.
        values = Dictionary(columns.map { ($0.0.lowercased(), $0.1) }, uniquingKeysWith: { first, _ in first })
        firstColumn = columns.first?.1
    }

    public func value(_ column: String) -> SQLValue { values[column.lowercased()] ?? .null }

    /// The column decoded as `T`; a missing column reads as NULL. Throws when the stored
    /// value cannot be `T` (NULL into a non-optional, text into a number).
    public subscript<T: SQLDecodable>(_ column: String) -> T {
        get throws {
            guard let decoded = T(sqlValue: value(column)) else {
                throw SQLStoreError("column \(column): cannot read \(value(column)) as \(T.self)")
            }
            return decoded
        }
    }
}

public struct SQLStoreError: Error, CustomStringConvertible, Sendable {
    public let description: String
    /// PostgreSQL's SQLSTATE, when the server refused a statement.
    public let sqlState: String?
    public init(_ description: String, sqlState: String? = nil) {
        self.description = description
        self.sqlState = sqlState
    }

    /// The database did not answer (no connection, a deadline passed, the server shutting
    /// down), as opposed to refusing a statement: worth a retry.
    public var isUnavailable: Bool {
        guard let state = sqlState else { return false }
        return state == "timeout" || state == "connection" || state.hasPrefix("08") || state == "57P01" || state == "57P03"
    }
}

/// Types a column can be read as.
public protocol SQLDecodable {
    init?(sqlValue: SQLValue)
}

extension String: SQLDecodable {
    public init?(sqlValue: SQLValue) {
        guard case .text(let s) = sqlValue else { return nil }
        self = s
    }
}

extension Int64: SQLDecodable {
    public init?(sqlValue: SQLValue) {
        switch sqlValue {
        case .integer(let i): self = i
        case .double(let d) where d.rounded() == d && abs(d) < 9.0e18: self = Int64(d)
        default: return nil
        }
    }
}

extension Int: SQLDecodable {
    public init?(sqlValue: SQLValue) {
        guard let i = Int64(sqlValue: sqlValue) else { return nil }
        self = Int(i)
    }
}

extension Double: SQLDecodable {
    public init?(sqlValue: SQLValue) {
        switch sqlValue {
        case .double(let d): self = d
        case .integer(let i): self = Double(i)
        default: return nil
        }
    }
}

extension Bool: SQLDecodable {
    public init?(sqlValue: SQLValue) {
        guard let i = Int64(sqlValue: sqlValue) else { return nil }
        self = i != 0
    }
}

extension Optional: SQLDecodable where Wrapped: SQLDecodable {
    public init?(sqlValue: SQLValue) {
        if case .null = sqlValue {
            self = .none
            return
        }
        guard let w = Wrapped(sqlValue: sqlValue) else { return nil }
        self = .some(w)
    }
}

/// Types that bind as statement arguments.
public protocol SQLEncodable: Sendable {
    var sqlValue: SQLValue { get }
}

extension String: SQLEncodable { public var sqlValue: SQLValue { .text(self) } }
extension Int64: SQLEncodable { public var sqlValue: SQLValue { .integer(self) } }
extension Int: SQLEncodable { public var sqlValue: SQLValue { .integer(Int64(self)) } }
extension Double: SQLEncodable { public var sqlValue: SQLValue { .double(self) } }
extension Bool: SQLEncodable { public var sqlValue: SQLValue { .integer(self ? 1 : 0) } }
extension SQLValue: SQLEncodable { public var sqlValue: SQLValue { self } }
extension Optional: SQLEncodable where Wrapped: SQLEncodable {
    public var sqlValue: SQLValue { self?.sqlValue ?? .null }
}

/// A connection inside `SQLDatabase.read` or `.write`. Statements use `?` placeholders
/// (rewritten to `$n` for PostgreSQL) and the SQL both databases share: `RETURNING` to
/// count changed rows, `ON CONFLICT … DO NOTHING/UPDATE`, no `rowid` magic (tables that
/// need an insertion order have a `rowid` column of their own on PostgreSQL).
public protocol SQLConnection: Sendable {
    @discardableResult
    func query(_ sql: String, _ arguments: [any SQLEncodable]) async throws -> [SQLRow]
}

extension SQLConnection {
    @discardableResult
    public func query(_ sql: String) async throws -> [SQLRow] { try await query(sql, []) }

    /// The number of rows a statement ending in `RETURNING 1` changed.
    public func changes(_ sql: String, _ arguments: [any SQLEncodable]) async throws -> Int {
        try await query(sql, arguments).count
    }

    public func one<T: SQLDecodable>(_ type: T.Type, _ sql: String, _ arguments: [any SQLEncodable] = []) async throws -> T? {
        guard let row = try await query(sql, arguments).first, let first = row.firstColumn else { return nil }
        guard let value = T(sqlValue: first) else { throw SQLStoreError("cannot read \(first) as \(T.self)") }
        return value
    }

    public func all<T: SQLDecodable>(_ type: T.Type, _ sql: String, _ arguments: [any SQLEncodable] = []) async throws -> [T] {
        try await query(sql, arguments).map { row in
            let first = row.firstColumn ?? .null
            guard let value = T(sqlValue: first) else { throw SQLStoreError("cannot read \(first) as \(T.self)") }
            return value
        }
    }
}

/// A database the control plane's store runs its statements on: SQLite through GRDB
/// (`SQLiteDatabase`) or PostgreSQL through postgres-nio (`PostgresDatabase`).
public protocol SQLDatabase: Sendable {
    /// Runs `body` with statements that only read; each may see the latest committed state.
    func read<T: Sendable>(_ body: @escaping @Sendable (any SQLConnection) async throws -> T) async throws -> T
    /// Runs `body` in one serializable transaction: all of it commits or none of it does.
    /// `body` may run more than once (PostgreSQL retries a transaction that lost a
    /// serialization conflict with another control-plane instance), so it must not have
    /// effects outside the database.
    @discardableResult
    func write<T: Sendable>(_ body: @escaping @Sendable (any SQLConnection) async throws -> T) async throws -> T
    /// "sqlite" or "postgres", for logs and the readiness page.
    var kind: String { get }
    /// `SELECT 1` answered within `limit` (liveness).
    func ping(within limit: Duration) async throws
}
