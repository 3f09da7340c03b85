import Foundation
import GRDB

/// The agent's durable state, `<state-dir>/agent/agent.sqlite` (SQLite, WAL so
/// `mstunnel-agent status` can read while the loop writes):
///
/// - `state`: small key → value facts (applied configuration version, last apply result,
///   outbox drop count, the gateway event cursor, last check-in…);
/// - `outbox`: reports waiting for the control plane's acknowledgement (see `Outbox`);
/// - `actions`: control-plane actions already handled, so each runs once across restarts.
public final class AgentDatabase: Sendable {
    let pool: DatabasePool
    public let path: String

    public init(path: String, createDirectory: Bool = true) throws(AgentError) {
        self.path = path
        if createDirectory {
            // 0700: reports name users and addresses; only the agent (root) reads them.
            try AtomicFile.ensureDirectory((path as NSString).deletingLastPathComponent, mode: 0o700)
        }
        // 0600: the outbox names users, devices and client addresses. Created 0600 before
        // SQLite opens it (SQLite gives `-wal`/`-shm` the database file's mode), and an
        // existing file and its companions (an older agent's, or made under a loose umask)
        // are set to 0600 as well.
        // (`status` opens read-only, maybe as another user: it tries, and does not insist.)
        try Self.restrictFile(path, create: createDirectory, strict: createDirectory)
        var configuration = Configuration()
        // The status command may read while the agent writes a batch.
        configuration.busyMode = .timeout(5)
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
            try Self.migrator.migrate(pool)
        } catch {
            throw AgentError("cannot open the agent database \(path): \(error)")
        }
        for companion in [path, path + "-wal", path + "-shm", path + "-journal"] {
            try Self.restrictFile(companion, create: false, strict: createDirectory)
        }
    }

    /// Sets `path` to 0600; creates it empty (0600, exclusively, not through a symlink) when
    /// `create` and it does not exist. A missing file is left alone otherwise. Without
    /// `strict` a failing chmod is not an error.
    static func restrictFile(_ path: String, create: Bool, strict: Bool) throws(AgentError) {
        if create {
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            if fd >= 0 {
                close(fd)
            } else if errno != EEXIST {
                throw AgentError("cannot create the agent database \(path): \(errnoText())")
            }
        }
        if chmod(path, 0o600) != 0, errno != ENOENT, strict {
            throw AgentError("cannot set mode 0600 on \(path): \(errnoText())")
        }
    }

    /// Read-only open for `status`: never creates or migrates anything.
    public static func openExisting(path: String) throws(AgentError) -> AgentDatabase? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        return try AgentDatabase(path: path, createDirectory: false)
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE state (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
                CREATE TABLE outbox (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    id TEXT NOT NULL UNIQUE,
                    kind TEXT NOT NULL,
                    createdDateTime TEXT NOT NULL,
                    payload BLOB NOT NULL
                );
                CREATE TABLE actions (
                    id TEXT PRIMARY KEY NOT NULL,
                    type TEXT NOT NULL,
                    outcome TEXT NOT NULL,
                    dateTime TEXT NOT NULL
                );
                """)
        }
        return m
    }

    // MARK: - state

    public func value(_ key: StateKey) -> String? {
        try? pool.read { db in try String.fetchOne(db, sql: "SELECT value FROM state WHERE key = ?", arguments: [key.rawValue]) }
    }

    public func int(_ key: StateKey) -> Int64? { value(key).flatMap { Int64($0) } }

    public func set(_ key: StateKey, _ value: String?) throws(AgentError) {
        try write { db in try Self.set(db, key, value) }
    }

    public func set(_ values: [StateKey: String?]) throws(AgentError) {
        try write { db in
            for (k, v) in values { try Self.set(db, k, v) }
        }
    }

    static func set(_ db: Database, _ key: StateKey, _ value: String?) throws {
        if let value {
            try db.execute(sql: "INSERT INTO state(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                           arguments: [key.rawValue, value])
        } else {
            try db.execute(sql: "DELETE FROM state WHERE key = ?", arguments: [key.rawValue])
        }
    }

    // MARK: - actions

    public func isActionDone(_ id: String) -> Bool {
        let found: Int?? = try? pool.read { db in try Int.fetchOne(db, sql: "SELECT 1 FROM actions WHERE id = ?", arguments: [id]) }
        return (found ?? nil) != nil
    }

    public func markActionDone(id: String, type: String, outcome: String, at date: Date = Date()) throws(AgentError) {
        try write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO actions(id, type, outcome, dateTime) VALUES(?, ?, ?, ?)",
                           arguments: [id, type, outcome, ISO8601DateFormatter().string(from: date)])
            // Ids are only needed while the control plane may still repeat the action;
            // keep the newest thousand so the table cannot grow without bound.
            try db.execute(sql: "DELETE FROM actions WHERE rowid NOT IN (SELECT rowid FROM actions ORDER BY dateTime DESC, rowid DESC LIMIT 1000)")
        }
    }

    // MARK: - plumbing

    func write<T>(_ body: (Database) throws -> T) throws(AgentError) -> T {
        do {
            return try pool.write(body)
        } catch {
            throw AgentError("agent database \(path): \(error)")
        }
    }

    func read<T>(_ body: (Database) throws -> T) throws(AgentError) -> T {
        do {
            return try pool.read(body)
        } catch {
            throw AgentError("agent database \(path): \(error)")
        }
    }
}

/// Keys of the `state` table.
public enum StateKey: String, Sendable, CaseIterable {
    /// The server id these facts belong to; a re-enrollment as another server resets them.
    case serverId
    case appliedConfigurationVersion
    /// JSON `ConfigurationApplyResult` of the last attempt.
    case lastApply
    /// "1" once a check-in carrying `lastApply` was answered.
    case lastApplyReported
    /// "1" when the last failure will not change by retrying (invalid configuration).
    case lastApplyPermanent
    /// Reports dropped because the outbox was full, not yet acknowledged.
    case droppedReports
    case eventsBootId
    case eventsSequence
    case lastCheckinDateTime
    case lastCheckinSuccessDateTime
    /// "ok" or the error text of the last check-in.
    case lastCheckinResult
    /// The intervals of the last check-in answer, so an agent restarted while the control
    /// plane is unreachable keeps measuring at the same cadence.
    case checkinIntervalSeconds
    case reportIntervalSeconds
    /// Ticket revocations (docs/site.md): how far this server's auth's own were reported
    /// (its numbering and epoch), and how far the Site's were taken (the control plane's).
    case revocationsLocalEpoch
    case revocationsLocalCursor
    case revocationsSiteCursor
    /// "1" while a drain this agent started for the control plane is on.
    case drainedByControlPlane
    /// The `pool-slice` merged into the configuration in force ("" for none).
    case appliedPoolSlice
    /// The `pool-reserved` merged into it ("" for none).
    case appliedPoolReserved
    /// The upgrade attempt the control plane asked of this server last (AgentRunner+Upgrade):
    /// its id, tag, stage (`UpgradeReport.State`), when the stage began, and a local failure.
    case upgradeAttempt
    case upgradeTag
    case upgradeStage
    case upgradeSince
    case upgradeMessage
    /// "1" when the upgrade's drain is the agent's own (the gateway was not draining before).
    case upgradeDrainOurs
}
