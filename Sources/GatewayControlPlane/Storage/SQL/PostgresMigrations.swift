import Foundation
import Logging
import PostgresNIO

/// The PostgreSQL schema, as numbered migrations like `SQLiteMigrations` (a migration that
/// shipped is never edited). It starts where SQLite's v1–v3 ended, with the same tables
/// and columns, so one set of statements (`SQLControlStore`) serves both; the differences
/// are in types only: `DOUBLE PRECISION` for SQLite's REAL times, `BIGINT` for INTEGER,
/// text compared byte-wise (`COLLATE "C"`, as SQLite's default), and a `rowid` identity
/// column where the store orders by insertion (SQLite has one implicitly).
///
/// Instances starting at once take an advisory lock, so one migrates and the others find
/// it done. The lock is taken in a READ COMMITTED transaction: a serializable one would
/// keep the snapshot from before the lock was granted.
enum PostgresMigrations {
    /// "mstc" as a number: the advisory lock of the control plane's migrations.
    static let lockKey: Int64 = 0x6D73_7463

    /// The lock of one schema's migrations (FNV-1a of its name over `lockKey`), so stores in
    /// different schemas of one database (the tests') do not wait for each other.
    static func lockKey(schema: String?) -> Int64 {
        guard let schema else { return lockKey }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in schema.utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
        }
        return Int64(bitPattern: hash) ^ lockKey
    }

    static let migrations: [(name: String, sql: [String])] = [
        ("v3", [
            """
            CREATE TABLE configurations (
                id TEXT COLLATE "C" PRIMARY KEY,
                displayName TEXT COLLATE "C" NOT NULL,
                body TEXT NOT NULL
            )
            """,
            """
            CREATE TABLE sites (
                id TEXT COLLATE "C" PRIMARY KEY,
                body TEXT NOT NULL,
                configurationId TEXT COLLATE "C" REFERENCES configurations(id) ON DELETE RESTRICT,
                configurationVersion BIGINT NOT NULL DEFAULT 0,
                upgradeRequestedAt DOUBLE PRECISION
            )
            """,
            "CREATE INDEX sites_configuration ON sites(configurationId)",
            """
            CREATE TABLE servers (
                id TEXT COLLATE "C" PRIMARY KEY,
                siteId TEXT COLLATE "C" NOT NULL REFERENCES sites(id) ON DELETE RESTRICT,
                displayName TEXT COLLATE "C" NOT NULL,
                deploymentMode TEXT NOT NULL,
                createdAt DOUBLE PRECISION NOT NULL,
                lastCheckinAt DOUBLE PRECISION,
                agentVersion TEXT,
                serverVersion TEXT,
                appliedConfigurationVersion BIGINT NOT NULL DEFAULT 0,
                lastApply TEXT,
                ticketKeyIds TEXT,
                drainHandOverAfter BIGINT,
                poolSliceIndex BIGINT
            )
            """,
            "CREATE INDEX servers_site ON servers(siteId)",
            """
            CREATE TABLE join_tokens (
                id TEXT COLLATE "C" PRIMARY KEY,
                siteId TEXT COLLATE "C" NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
                secretSHA256 TEXT NOT NULL,
                createdAt DOUBLE PRECISION NOT NULL,
                expiresAt DOUBLE PRECISION NOT NULL,
                usedAt DOUBLE PRECISION,
                usedByServerId TEXT
            )
            """,
            """
            CREATE TABLE issued_certificates (
                rowid BIGINT GENERATED ALWAYS AS IDENTITY,
                serial TEXT COLLATE "C" PRIMARY KEY,
                serverId TEXT COLLATE "C" NOT NULL,
                notBefore DOUBLE PRECISION NOT NULL,
                notAfter DOUBLE PRECISION NOT NULL,
                revoked BIGINT NOT NULL DEFAULT 0
            )
            """,
            "CREATE INDEX issued_certificates_server ON issued_certificates(serverId, notBefore)",
            """
            CREATE TABLE health_thresholds (
                id TEXT COLLATE "C" PRIMARY KEY,
                healthyThreshold BIGINT NOT NULL,
                unhealthyThreshold BIGINT NOT NULL
            )
            """,
            """
            CREATE TABLE health_reports (
                rowid BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                serverId TEXT COLLATE "C" NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
                dateTime DOUBLE PRECISION NOT NULL,
                reportId TEXT NOT NULL,
                body TEXT NOT NULL,
                receivedAt DOUBLE PRECISION NOT NULL DEFAULT 0
            )
            """,
            "CREATE INDEX health_reports_server_time ON health_reports(serverId, dateTime)",
            "CREATE INDEX health_reports_server_received ON health_reports(serverId, receivedAt)",
            "CREATE INDEX health_reports_time ON health_reports(dateTime)",
            """
            CREATE TABLE events (
                rowid BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                serverId TEXT COLLATE "C" NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
                dateTime DOUBLE PRECISION NOT NULL,
                type TEXT NOT NULL,
                reportId TEXT NOT NULL,
                body TEXT NOT NULL
            )
            """,
            "CREATE INDEX events_server_time ON events(serverId, dateTime)",
            "CREATE INDEX events_time ON events(dateTime)",
            """
            CREATE TABLE report_ids (
                serverId TEXT COLLATE "C" NOT NULL,
                id TEXT COLLATE "C" NOT NULL,
                receivedAt DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (serverId, id)
            )
            """,
            "CREATE INDEX report_ids_received ON report_ids(receivedAt)",
            """
            CREATE TABLE log_collections (
                id TEXT COLLATE "C" PRIMARY KEY,
                serverId TEXT COLLATE "C" NOT NULL,
                siteId TEXT COLLATE "C" NOT NULL,
                status TEXT NOT NULL,
                startDateTime DOUBLE PRECISION NOT NULL,
                endDateTime DOUBLE PRECISION NOT NULL,
                sizeInBytes BIGINT NOT NULL DEFAULT 0,
                requestDateTime DOUBLE PRECISION NOT NULL,
                expiryDateTime DOUBLE PRECISION NOT NULL,
                failureMessage TEXT,
                blobPath TEXT,
                finishedAt DOUBLE PRECISION
            )
            """,
            "CREATE INDEX log_collections_server ON log_collections(serverId, status)",
            "CREATE INDEX log_collections_expiry ON log_collections(expiryDateTime)",
            """
            CREATE TABLE site_ticket_keys (
                rowid BIGINT GENERATED ALWAYS AS IDENTITY,
                siteId TEXT COLLATE "C" NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
                id TEXT COLLATE "C" NOT NULL,
                key TEXT NOT NULL,
                createdAt DOUBLE PRECISION NOT NULL,
                sealingSince DOUBLE PRECISION,
                PRIMARY KEY (siteId, id)
            )
            """,
            """
            CREATE TABLE site_ticket_revocations (
                seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                siteId TEXT COLLATE "C" NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
                sessionId TEXT NOT NULL,
                until DOUBLE PRECISION NOT NULL,
                serverId TEXT COLLATE "C" NOT NULL
            )
            """,
            "CREATE INDEX site_ticket_revocations_site ON site_ticket_revocations(siteId, seq)",
        ]),
        ("v4", [
            // Keys every instance must share (docs/control-plane.md, "Several instances").
            """
            CREATE TABLE control_secrets (
                name TEXT COLLATE "C" PRIMARY KEY,
                value TEXT NOT NULL,
                createdAt DOUBLE PRECISION NOT NULL
            )
            """,
        ]),
        ("v5", [
            // Uploaded log files, as on SQLite's v5.
            """
            CREATE TABLE log_blobs (
                collectionId TEXT COLLATE "C" PRIMARY KEY REFERENCES log_collections(id) ON DELETE CASCADE,
                data BYTEA NOT NULL
            )
            """,
        ]),
        ("v6", ["ALTER TABLE servers ADD COLUMN foreignLeases TEXT"]),
        ("v7", ["ALTER TABLE sites ADD COLUMN upgradeState TEXT", "ALTER TABLE servers ADD COLUMN imageTag TEXT",
                "ALTER TABLE servers ADD COLUMN upgradeReport TEXT"]),
        ("v8", ["ALTER TABLE join_tokens ADD COLUMN maxUses INTEGER NOT NULL DEFAULT 1",
                "ALTER TABLE join_tokens ADD COLUMN uses INTEGER NOT NULL DEFAULT 0"]),
        ("v9", ["ALTER TABLE servers ADD COLUMN sessions INTEGER", "ALTER TABLE servers ADD COLUMN sessionLimit INTEGER"]),
    ]

    static func migrate(client: PostgresClient, schema: String?, logger: Logger) async throws {
        try await client.withConnection { connection in
            let c = PostgresDatabase.Connection(connection: connection, logger: logger)
            do {
                try await c.query("BEGIN")
                try await c.query("SELECT pg_advisory_xact_lock(?)", [lockKey(schema: schema)])
                if let schema {
                    // Quoted: a name of letters, digits and underscores only (tests make it).
                    guard schema.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) else {
                        throw SQLStoreError("schema name \(schema): letters, digits and _ only")
                    }
                    try await c.query("CREATE SCHEMA IF NOT EXISTS \"\(schema)\"")
                }
                try await c.query("CREATE TABLE IF NOT EXISTS mst_migrations (name TEXT PRIMARY KEY, appliedAt DOUBLE PRECISION NOT NULL)")
                let applied = Set(try await c.all(String.self, "SELECT name FROM mst_migrations"))
                for migration in migrations where !applied.contains(migration.name) {
                    for statement in migration.sql {
                        try await c.query(statement)
                    }
                    try await c.query("INSERT INTO mst_migrations (name, appliedAt) VALUES (?, ?)",
                                      [migration.name, Date().timeIntervalSince1970])
                    logger.info("store.migrated", metadata: ["migration": "\(migration.name)", "database": "postgres"])
                }
                try await c.query("COMMIT")
            } catch {
                _ = try? await c.query("ROLLBACK")
                throw error
            }
        }
    }
}
