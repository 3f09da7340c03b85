import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import PostgresNIO
import Synchronization

/// `SQLDatabase` on PostgreSQL through postgres-nio's pooled `PostgresClient`: the store of
/// several control-plane instances (docs/control-plane.md, "Several instances").
///
/// Write transactions run at SERIALIZABLE and are retried when PostgreSQL reports a
/// serialization failure or a deadlock, so two instances deciding the same thing at once
/// (a Site's first ticket key, a server's pool slice) cannot both win.
public final class PostgresDatabase: SQLDatabase {
    let client: PostgresClient
    let logger: Logger
    let settings: PostgresSettings
    private let runner: Task<Void, Never>
    /// The migrations, run once before the first statement (`open` waits for them).
    private let ready: Task<Void, any Error>
    public var kind: String { "postgres" }
    /// Attempts of one write transaction before a conflict is reported as an error.
    static let attempts = 8

    /// Connects and migrates the schema; an unreachable server or a refused login is an
    /// error here, at start, rather than at the first request.
    public static func open(_ settings: PostgresSettings, logger: Logger) async throws -> PostgresDatabase {
        // The pool retries a refused login or an unreachable server quietly, forever; one
        // connection of its own first turns either into a clear error at start.
        do {
            let connection = try await PostgresConnection.connect(
                on: MultiThreadedEventLoopGroup.singleton.next(), configuration: try settings.connectionConfiguration(),
                id: 0, logger: logger).get()
            try await connection.close().get()
        } catch {
            throw PostgresSettings.describe(error, settings: settings)
        }
        let database = try PostgresDatabase(settings, logger: logger)
        do {
            try await database.ready.value
        } catch {
            database.close()
            throw error
        }
        return database
    }

    /// The pool opens connections on demand; the migrations start at once and every
    /// statement waits for them.
    public init(_ settings: PostgresSettings, logger: Logger) throws {
        let client = PostgresClient(configuration: try settings.clientConfiguration())
        self.client = client
        self.logger = logger
        self.settings = settings
        runner = Task { await client.run() }
        ready = Task {
            do {
                try await PostgresMigrations.migrate(client: client, schema: settings.schema, logger: logger)
            } catch {
                throw PostgresSettings.describe(error, settings: settings)
            }
        }
    }

    /// Closes the pool's connections.
    public func close() { runner.cancel() }

    deinit { runner.cancel() }

    public func read<T: Sendable>(_ body: @escaping @Sendable (any SQLConnection) async throws -> T) async throws -> T {
        try await withDeadline {
            try await self.ready.value
            return try await self.client.withConnection { connection in
                try await body(Connection(connection: connection, logger: self.logger))
            }
        }
    }

    /// The migrations done (waited for up to the usual deadline: they run once, at start),
    /// then `SELECT 1` within `limit`, so a probe learns quickly that the server is away.
    public func ping(within limit: Duration) async throws {
        try await withDeadline(Self.deadline) { try await self.ready.value }
        try await withDeadline(limit) {
            try await self.client.withConnection { connection in
                _ = try await Connection(connection: connection, logger: self.logger).query("SELECT 1")
            }
        }
    }

    /// How long one read or write (with its retries) may wait for PostgreSQL: an
    /// unreachable server makes requests fail (503 from the API) rather than hang.
    static let deadline: Duration = .seconds(15)

    /// `body`'s result, or a timeout error once `limit` has passed — without waiting for
    /// `body` then: postgres-nio's queries do not heed cancellation, so a server that stopped
    /// answering (a network partition, not a refused connection) would otherwise hold the
    /// request until TCP gives up, minutes later. The abandoned `body` is cancelled and ends
    /// in the background; the server drops its transaction (`idle_in_transaction_session_
    /// timeout`, `PostgresSettings`). A write that timed out may still have committed.
    func withDeadline<T: Sendable>(_ limit: Duration = PostgresDatabase.deadline,
                                   _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let once = Once()
        let settings = self.settings
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let work = Task {
                do {
                    let value = try await body()
                    if once.settle() { continuation.resume(returning: value) }
                } catch let error as PSQLError {
                    // Not a refused statement (those are SQLStoreErrors already): the pool
                    // could not lease or keep a connection.
                    let state = error.serverInfo?[.sqlState] ?? "connection"
                    if once.settle() {
                        continuation.resume(throwing: SQLStoreError(PostgresSettings.describe(error, settings: settings).description, sqlState: state))
                    }
                } catch {
                    if once.settle() { continuation.resume(throwing: error) }
                }
            }
            Task {
                try? await Task.sleep(for: limit)
                if once.settle() {
                    work.cancel()
                    continuation.resume(throwing: SQLStoreError("PostgreSQL \(settings) did not answer within \(limit)", sqlState: "timeout"))
                }
            }
        }
    }

    /// Who resumes a continuation first: the work or its deadline.
    final class Once: Sendable {
        private let done = Mutex(false)
        /// True for the first caller only.
        func settle() -> Bool { done.withLock { d in defer { d = true }; return !d } }
    }

    public func write<T: Sendable>(_ body: @escaping @Sendable (any SQLConnection) async throws -> T) async throws -> T {
        try await withDeadline { try await self.transaction(body) }
    }

    private func transaction<T: Sendable>(_ body: @escaping @Sendable (any SQLConnection) async throws -> T) async throws -> T {
        try await ready.value
        var attempt = 1
        while true {
            do {
                return try await client.withConnection { connection in
                    let c = Connection(connection: connection, logger: logger)
                    do {
                        try await c.query("BEGIN ISOLATION LEVEL SERIALIZABLE")
                        let result = try await body(c)
                        try await c.query("COMMIT")
                        return result
                    } catch {
                        _ = try? await c.query("ROLLBACK")
                        throw error
                    }
                }
            } catch let error as SQLStoreError where Self.isRetryable(error) && attempt < Self.attempts {
                attempt += 1
                // A little random backoff so the instances that collided do not collide again.
                try await Task.sleep(for: .milliseconds(Int.random(in: 1...(5 * attempt))))
            }
        }
    }

    /// 40001 serialization_failure, 40P01 deadlock_detected.
    static func isRetryable(_ error: SQLStoreError) -> Bool {
        error.sqlState == "40001" || error.sqlState == "40P01"
    }

    struct Connection: SQLConnection {
        let connection: PostgresConnection
        let logger: Logger

        @discardableResult
        func query(_ sql: String, _ arguments: [any SQLEncodable]) async throws -> [SQLRow] {
            var binds = PostgresBindings(capacity: arguments.count)
            for argument in arguments {
                switch argument.sqlValue {
                case .null: binds.appendNull()
                case .integer(let i): binds.append(i)
                case .double(let d): binds.append(d)
                case .text(let s): binds.append(s)
                case .blob(let b): binds.append(ByteBuffer(bytes: b))
                }
            }
            let query = PostgresQuery(unsafeSQL: Self.numberedPlaceholders(sql), binds: binds)
            var rows: [SQLRow] = []
            do {
                for try await row in try await connection.query(query, logger: logger) {
                    rows.append(SQLRow(try row.map { cell in (cell.columnName, try Self.value(cell)) }))
                }
            } catch let error as PSQLError {
                // PSQLError describes itself generically; the server's message and SQLSTATE
                // say what went wrong without the bound values.
                let state = error.serverInfo?[.sqlState]
                let message = error.serverInfo?[.message] ?? "\(error.code)"
                throw SQLStoreError("PostgreSQL: \(message)" + (state.map { " (SQLSTATE \($0))" } ?? ""), sqlState: state)
            }
            return rows
        }

        /// `?` → `$1`, `$2`, …, outside quoted text and identifiers.
        static func numberedPlaceholders(_ sql: String) -> String {
            var out = ""
            out.reserveCapacity(sql.utf8.count + 16)
            var n = 0
            var quote: Character?
            for ch in sql {
                if let q = quote {
                    if ch == q { quote = nil }
                    out.append(ch)
                } else if ch == "'" || ch == "\"" {
                    quote = ch
                    out.append(ch)
                } else if ch == "?" {
                    n += 1
                    out += "$\(n)"
                } else {
                    out.append(ch)
                }
            }
            return out
        }

        static func value(_ cell: PostgresCell) throws -> SQLValue {
            guard cell.bytes != nil else { return .null }
            switch cell.dataType {
            case .int2: return .integer(Int64(try cell.decode(Int16.self)))
            case .int4: return .integer(Int64(try cell.decode(Int32.self)))
            case .int8: return .integer(try cell.decode(Int64.self))
            case .bool: return .integer(try cell.decode(Bool.self) ? 1 : 0)
            case .float4: return .double(Double(try cell.decode(Float.self)))
            case .float8: return .double(try cell.decode(Double.self))
            case .numeric:
                // Binary numeric is not a string; no statement of the store returns one
                // (cast to float8 or bigint in the SQL).
                throw SQLStoreError("column \(cell.columnName): numeric results are not read; cast to float8 or bigint")
            case .bytea:
                let buffer = try cell.decode(ByteBuffer.self)
                return .blob(Array(buffer.readableBytesView))
            default: return .text(try cell.decode(String.self))
            }
        }
    }
}

/// Where the PostgreSQL store is: `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` with
/// `?sslmode=disable|require|verify-full` (default `prefer` on loopback, `verify-full`
/// elsewhere), `sslrootcert=PATH` and `host=/unix/socket/dir`; the password may come from
/// a file instead (`--database-password-file`), which keeps it out of `ps` and compose files.
public struct PostgresSettings: Sendable, CustomStringConvertible {
    public enum TLSMode: String, Sendable { case disable, prefer, require, verifyFull = "verify-full" }

    public var host: String
    public var port: Int
    public var socketDirectory: String?
    public var user: String
    public var password: String?
    public var database: String
    public var tls: TLSMode
    public var rootCertificatePath: String?
    /// A schema of its own (created if missing, made the search path): tests give each
    /// control plane a fresh one in one database.
    public var schema: String?
    public var maximumConnections = 16

    /// True for `postgres://` and `postgresql://` addresses.
    public static func isPostgresURL(_ text: String) -> Bool {
        text.hasPrefix("postgres://") || text.hasPrefix("postgresql://")
    }

    public init(url text: String, passwordFile: String? = nil) throws {
        guard Self.isPostgresURL(text), let components = URLComponents(string: text) else {
            throw SQLStoreError("--database: expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE, got something else")
        }
        // URLComponents decodes user, password and path already: decoding again would turn a
        // password's "%25" into "%" and then fail.
        guard let user = components.user, !user.isEmpty else {
            throw SQLStoreError("--database: the PostgreSQL address names no user (postgres://USER@HOST/DATABASE)")
        }
        let name = String(components.path.drop(while: { $0 == "/" }))
        guard !name.isEmpty, !name.contains("/") else {
            throw SQLStoreError("--database: the PostgreSQL address names no database (postgres://USER@HOST/DATABASE)")
        }
        self.user = user
        self.database = name
        self.host = components.host ?? ""
        self.port = components.port ?? 5432
        password = components.password
        var mode: TLSMode?
        for item in components.queryItems ?? [] {
            switch item.name {
            case "sslmode":
                guard let v = item.value, let m = TLSMode(rawValue: v) else {
                    throw SQLStoreError("--database: sslmode must be disable, prefer, require or verify-full")
                }
                mode = m
            case "sslrootcert": rootCertificatePath = item.value
            case "host": socketDirectory = item.value
            default: throw SQLStoreError("--database: unknown parameter '\(item.name)' (sslmode, sslrootcert, host)")
            }
        }
        if host.isEmpty, socketDirectory == nil {
            throw SQLStoreError("--database: the PostgreSQL address names no host (postgres://USER@HOST/DATABASE or ?host=/run/postgresql)")
        }
        let loopback = ["localhost", "127.0.0.1", "::1"].contains(host) || socketDirectory != nil
        tls = mode ?? (loopback ? .prefer : .verifyFull)
        if let passwordFile {
            guard let text = try? String(contentsOfFile: passwordFile, encoding: .utf8) else {
                throw SQLStoreError("--database-password-file \(passwordFile): cannot read it")
            }
            password = text.trimmingCharacters(in: .newlines)
        }
    }

    /// The address without its password, for logs and errors.
    public var description: String {
        let where_ = socketDirectory.map { "?host=\($0)" } ?? "\(host):\(port)"
        return "postgres://\(user)@\(where_)/\(database) (sslmode=\(tls.rawValue))"
    }

    /// nil for `sslmode=disable`; `prefer` and `require` encrypt without checking the
    /// server's certificate (as libpq's modes of those names), `verify-full` checks it and
    /// its name against the system's or `sslrootcert`'s CAs.
    func tlsConfiguration() -> TLSConfiguration? {
        guard tls != .disable else { return nil }
        var config = TLSConfiguration.makeClientConfiguration()
        if let rootCertificatePath {
            config.trustRoots = .file(rootCertificatePath)
        }
        if tls != .verifyFull {
            config.certificateVerification = .none
        }
        return config
    }

    func clientConfiguration() throws -> PostgresClient.Configuration {
        var config: PostgresClient.Configuration
        if let socketDirectory {
            config = .init(unixSocketPath: socketDirectory + "/.s.PGSQL.\(port)", username: user, password: password, database: database)
        } else {
            let tls: PostgresClient.Configuration.TLS
            switch (self.tls, tlsConfiguration()) {
            case (.prefer, let c?): tls = .prefer(c)
            case (_, let c?): tls = .require(c)
            case (_, nil): tls = .disable
            }
            config = .init(host: host, port: port, username: user, password: password, database: database, tls: tls)
        }
        config.options.maximumConnections = maximumConnections
        config.options.additionalStartupParameters = startupParameters
        config.options.connectTimeout = .seconds(10)
        return config
    }

    /// Sent at every connection's start: the server ends a statement that runs past the
    /// client's own deadline, and a transaction its client abandoned (`withDeadline`).
    var startupParameters: [(String, String)] {
        var p = [("statement_timeout", "15s"), ("idle_in_transaction_session_timeout", "60s")]
        if let schema { p.append(("search_path", schema)) }
        return p
    }

    /// The same place as one connection (the check at start).
    func connectionConfiguration() throws -> PostgresConnection.Configuration {
        if let socketDirectory {
            return .init(unixSocketPath: socketDirectory + "/.s.PGSQL.\(port)", username: user, password: password, database: database)
        }
        let tls: PostgresConnection.Configuration.TLS
        switch (self.tls, tlsConfiguration()) {
        case (.prefer, let c?): tls = .prefer(try NIOSSLContext(configuration: c))
        case (_, let c?): tls = .require(try NIOSSLContext(configuration: c))
        case (_, nil): tls = .disable
        }
        var config = PostgresConnection.Configuration(host: host, port: port, username: user, password: password, database: database, tls: tls)
        config.options.connectTimeout = .seconds(10)
        return config
    }

    /// A connection or migration error with the address (never the password) and the
    /// server's message when there is one.
    static func describe(_ error: any Error, settings: PostgresSettings) -> SQLStoreError {
        if let e = error as? SQLStoreError {
            return SQLStoreError("\(settings): \(e.description)", sqlState: e.sqlState)
        }
        if let e = error as? PSQLError {
            let message = e.serverInfo?[.message].map { ": \($0)" } ?? e.underlying.map { ": \($0)" } ?? ""
            let state = e.serverInfo?[.sqlState].map { " (SQLSTATE \($0))" } ?? ""
            return SQLStoreError("PostgreSQL \(settings): \(e.code)\(message)\(state)")
        }
        return SQLStoreError("PostgreSQL \(settings): \(error)")
    }
}
