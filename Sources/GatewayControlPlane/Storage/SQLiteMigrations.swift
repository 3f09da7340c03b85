import GRDB

/// The SQLite schema, as numbered migrations: a migration that shipped is never edited,
/// a change is a new migration appended here.
enum SQLiteMigrations {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            // Graph bodies are kept as JSON text beside the columns we query on, so a
            // property added to the API needs no migration.
            try db.execute(sql: """
                CREATE TABLE configurations (
                    id TEXT PRIMARY KEY NOT NULL,
                    displayName TEXT NOT NULL,
                    body TEXT NOT NULL
                );
                CREATE TABLE sites (
                    id TEXT PRIMARY KEY NOT NULL,
                    body TEXT NOT NULL,
                    configurationId TEXT REFERENCES configurations(id) ON DELETE RESTRICT,
                    configurationVersion INTEGER NOT NULL DEFAULT 0,
                    upgradeRequestedAt REAL
                );
                CREATE INDEX sites_configuration ON sites(configurationId);
                CREATE TABLE servers (
                    id TEXT PRIMARY KEY NOT NULL,
                    siteId TEXT NOT NULL REFERENCES sites(id) ON DELETE RESTRICT,
                    displayName TEXT NOT NULL,
                    deploymentMode TEXT NOT NULL,
                    createdAt REAL NOT NULL,
                    lastCheckinAt REAL,
                    agentVersion TEXT,
                    serverVersion TEXT,
                    appliedConfigurationVersion INTEGER NOT NULL DEFAULT 0,
                    lastApply TEXT
                );
                CREATE INDEX servers_site ON servers(siteId);
                CREATE TABLE join_tokens (
                    id TEXT PRIMARY KEY NOT NULL,
                    siteId TEXT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
                    secretSHA256 TEXT NOT NULL,
                    createdAt REAL NOT NULL,
                    expiresAt REAL NOT NULL,
                    usedAt REAL,
                    usedByServerId TEXT
                );
                CREATE TABLE issued_certificates (
                    serial TEXT PRIMARY KEY NOT NULL,
                    serverId TEXT NOT NULL,
                    notBefore REAL NOT NULL,
                    notAfter REAL NOT NULL,
                    revoked INTEGER NOT NULL DEFAULT 0
                );
                CREATE INDEX issued_certificates_server ON issued_certificates(serverId, notBefore);
                CREATE TABLE health_thresholds (
                    id TEXT PRIMARY KEY NOT NULL,
                    healthyThreshold INTEGER NOT NULL,
                    unhealthyThreshold INTEGER NOT NULL
                );
                CREATE TABLE health_reports (
                    serverId TEXT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
                    dateTime REAL NOT NULL,
                    reportId TEXT NOT NULL,
                    body TEXT NOT NULL
                );
                CREATE INDEX health_reports_server_time ON health_reports(serverId, dateTime);
                CREATE TABLE events (
                    serverId TEXT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
                    dateTime REAL NOT NULL,
                    type TEXT NOT NULL,
                    reportId TEXT NOT NULL,
                    body TEXT NOT NULL
                );
                CREATE INDEX events_server_time ON events(serverId, dateTime);
                CREATE TABLE report_ids (
                    id TEXT PRIMARY KEY NOT NULL,
                    serverId TEXT NOT NULL,
                    receivedAt REAL NOT NULL
                );
                CREATE TABLE log_collections (
                    id TEXT PRIMARY KEY NOT NULL,
                    serverId TEXT NOT NULL,
                    siteId TEXT NOT NULL,
                    status TEXT NOT NULL,
                    startDateTime REAL NOT NULL,
                    endDateTime REAL NOT NULL,
                    sizeInBytes INTEGER NOT NULL DEFAULT 0,
                    requestDateTime REAL NOT NULL,
                    expiryDateTime REAL NOT NULL,
                    failureMessage TEXT,
                    blobPath TEXT,
                    finishedAt REAL
                );
                CREATE INDEX log_collections_server ON log_collections(serverId, status);
                """)
        }
        migrator.registerMigration("v2") { db in
            // Report ids are unique per server, not globally: one server's ids must never
            // make another's reports look like duplicates. SQLite cannot change a primary
            // key in place, so the table is rebuilt.
            try db.execute(sql: """
                CREATE TABLE report_ids_v2 (
                    serverId TEXT NOT NULL,
                    id TEXT NOT NULL,
                    receivedAt REAL NOT NULL,
                    PRIMARY KEY (serverId, id)
                );
                INSERT OR IGNORE INTO report_ids_v2 (serverId, id, receivedAt) SELECT serverId, id, receivedAt FROM report_ids;
                DROP TABLE report_ids;
                ALTER TABLE report_ids_v2 RENAME TO report_ids;
                CREATE INDEX report_ids_received ON report_ids(receivedAt);
                """)
            // Health reports are ordered by when they arrived, not by the agent's clock
            // (a report dated in the future must not stay "latest" forever); the agent's
            // time is kept, clamped to the receive time. Rows from v1 get their own time,
            // clamped to the migration's time, as their receive time.
            try db.execute(sql: """
                ALTER TABLE health_reports ADD COLUMN receivedAt REAL NOT NULL DEFAULT 0;
                UPDATE health_reports SET receivedAt = MIN(dateTime, CAST(strftime('%s', 'now') AS REAL));
                UPDATE health_reports SET dateTime = receivedAt WHERE dateTime > receivedAt;
                CREATE INDEX health_reports_server_received ON health_reports(serverId, receivedAt);
                CREATE INDEX health_reports_time ON health_reports(dateTime);
                UPDATE events SET dateTime = CAST(strftime('%s', 'now') AS REAL) WHERE dateTime > CAST(strftime('%s', 'now') AS REAL);
                CREATE INDEX events_time ON events(dateTime);
                CREATE INDEX log_collections_expiry ON log_collections(expiryDateTime);
                """)
        }
        migrator.registerMigration("v3") { db in
            // A Site's ticket keys (docs/site.md, "Site keys") and the key ids each server's
            // mstunnel-auth reported at its last check-in (JSON array; NULL: never reported).
            try db.execute(sql: """
                CREATE TABLE site_ticket_keys (
                    siteId TEXT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
                    id TEXT NOT NULL,
                    key TEXT NOT NULL,
                    createdAt REAL NOT NULL,
                    sealingSince REAL,
                    PRIMARY KEY (siteId, id)
                );
                ALTER TABLE servers ADD COLUMN ticketKeyIds TEXT;
                -- An administrator's drain (docs/site.md, "Drain"): NULL not drained, else the
                -- seconds before the sessions are handed over, -1 to wait for them to end.
                ALTER TABLE servers ADD COLUMN drainHandOverAfter INTEGER;
                -- This server's slice of the Site's pool (one of SitePool.slices).
                ALTER TABLE servers ADD COLUMN poolSliceIndex INTEGER;
                CREATE TABLE site_ticket_revocations (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    siteId TEXT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
                    sessionId TEXT NOT NULL,
                    until REAL NOT NULL,
                    serverId TEXT NOT NULL
                );
                CREATE INDEX site_ticket_revocations_site ON site_ticket_revocations(siteId, seq);
                """)
        }
        migrator.registerMigration("v4") { db in
            // Keys every control-plane instance must share (docs/control-plane.md,
            // "Several instances"): the download-link key here; with PostgreSQL also the CA.
            try db.execute(sql: """
                CREATE TABLE control_secrets (
                    name TEXT PRIMARY KEY NOT NULL,
                    value TEXT NOT NULL,
                    createdAt REAL NOT NULL
                );
                """)
        }
        migrator.registerMigration("v5") { db in
            // Uploaded log files in the database, not the state directory, so every instance
            // serves every download (docs/control-plane.md, "Several instances"). Rows from
            // before keep their file (log_collections.blobPath) until they expire.
            try db.execute(sql: """
                CREATE TABLE log_blobs (
                    collectionId TEXT PRIMARY KEY NOT NULL REFERENCES log_collections(id) ON DELETE CASCADE,
                    data BLOB NOT NULL
                );
                """)
        }
        migrator.registerMigration("v6") { db in
            // The addresses each server reported holding for sessions resumed from a sibling
            // (JSON array; docs/site.md, "Foreign leases").
            try db.execute(sql: "ALTER TABLE servers ADD COLUMN foreignLeases TEXT")
        }
        migrator.registerMigration("v7") { db in
            // The rolling upgrade (docs/site.md, "Rolling upgrade"): the Site's state (JSON
            // SiteUpgradeState), each server's image tag and its last upgrade report (JSON).
            try db.execute(sql: "ALTER TABLE sites ADD COLUMN upgradeState TEXT")
            try db.execute(sql: "ALTER TABLE servers ADD COLUMN imageTag TEXT")
            try db.execute(sql: "ALTER TABLE servers ADD COLUMN upgradeReport TEXT")
        }
        migrator.registerMigration("v8") { db in
            // A join token may enroll up to maxUses servers (an orchestrator's pods share one:
            // deploy/kubernetes); it is spent (usedAt) with its last use.
            try db.execute(sql: "ALTER TABLE join_tokens ADD COLUMN maxUses INTEGER NOT NULL DEFAULT 1")
            try db.execute(sql: "ALTER TABLE join_tokens ADD COLUMN uses INTEGER NOT NULL DEFAULT 0")
        }
        migrator.registerMigration("v9") { db in
            // Each server's sessions and max-sessions at its last check-in: a rolling upgrade
            // drains a server only when its siblings have room for its sessions.
            try db.execute(sql: "ALTER TABLE servers ADD COLUMN sessions INTEGER")
            try db.execute(sql: "ALTER TABLE servers ADD COLUMN sessionLimit INTEGER")
        }
        return migrator
    }
}
