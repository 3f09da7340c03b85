import Foundation
import GRDB
import GatewayAgentAPI
import GatewayCore
import GatewaySystem

/// `ControlStore` on SQLite through GRDB: a WAL-mode `DatabasePool` for a file (readers
/// never wait for the writer), a `DatabaseQueue` in memory for tests.
public final class SQLiteControlStore: ControlStore {
    let writer: any DatabaseWriter

    /// Opens (creating if needed) the database file and migrates it. The file and its
    /// `-wal`/`-shm` companions are owner-only (0600): they hold user names, device ids and
    /// client addresses. The file is created 0600 before SQLite opens it (SQLite gives the
    /// companions the database file's mode), and existing files are set to 0600.
    public convenience init(path: String) throws {
        try Self.restrictFile(path, create: true)
        var config = Configuration()
        config.busyMode = .timeout(5)
        config.foreignKeysEnabled = true
        let pool = try DatabasePool(path: path, configuration: config)
        try self.init(writer: pool)
        for companion in [path, path + "-wal", path + "-shm", path + "-journal"] {
            try Self.restrictFile(companion, create: false)
        }
    }

    /// Sets `path` to 0600; creates it empty (0600, exclusively, not through a symlink) when
    /// `create` and it does not exist. A missing file is left alone otherwise.
    static func restrictFile(_ path: String, create: Bool) throws {
        if create {
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            if fd >= 0 {
                close(fd)
            } else if errno != EEXIST {
                throw DatabaseFileError(path: path, reason: SystemError.reason(errno))
            }
        }
        if chmod(path, 0o600) != 0, errno != ENOENT {
            throw DatabaseFileError(path: path, reason: SystemError.reason(errno))
        }
    }

    struct DatabaseFileError: Error, CustomStringConvertible {
        var path: String
        var reason: String
        var description: String { "cannot create or restrict \(path): \(reason)" }
    }

    /// An in-memory database (tests).
    public static func inMemory() throws -> SQLiteControlStore {
        var config = Configuration()
        config.foreignKeysEnabled = true
        return try SQLiteControlStore(writer: DatabaseQueue(configuration: config))
    }

    init(writer: any DatabaseWriter) throws {
        self.writer = writer
        try SQLiteMigrations.migrator.migrate(writer)
    }

    // MARK: - JSON columns

    static func encode<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
        try JSONDecoder().decode(type, from: Data(text.utf8))
    }

    static func time(_ date: Date) -> Double { date.timeIntervalSince1970 }
    static func date(_ value: Double?) -> Date? { value.map { Date(timeIntervalSince1970: $0) } }

    // MARK: - Configurations

    public func listConfigurations() async throws -> [AdminSettings] {
        try await writer.read { db in
            try String.fetchAll(db, sql: "SELECT body FROM configurations ORDER BY displayName, id").map {
                try Self.decode(AdminSettings.self, $0)
            }
        }
    }

    public func configuration(id: String) async throws -> AdminSettings? {
        try await writer.read { db in
            try String.fetchOne(db, sql: "SELECT body FROM configurations WHERE id = ?", arguments: [id]).map {
                try Self.decode(AdminSettings.self, $0)
            }
        }
    }

    public func insertConfiguration(_ configuration: AdminSettings) async throws {
        let body = try Self.encode(configuration)
        try await writer.write { db in
            try db.execute(sql: "INSERT INTO configurations (id, displayName, body) VALUES (?, ?, ?)",
                           arguments: [configuration.id, configuration.displayName ?? "", body])
        }
    }

    public func updateConfiguration(_ configuration: AdminSettings) async throws -> Bool {
        let body = try Self.encode(configuration)
        return try await writer.write { db in
            try db.execute(sql: "UPDATE configurations SET displayName = ?, body = ? WHERE id = ?",
                           arguments: [configuration.displayName ?? "", body, configuration.id])
            guard db.changesCount > 0 else { return false }
            // Every Site using it now has a new configuration version to hand out.
            try db.execute(sql: "UPDATE sites SET configurationVersion = configurationVersion + 1 WHERE configurationId = ?",
                           arguments: [configuration.id])
            return true
        }
    }

    public func deleteConfiguration(id: String) async throws -> DeleteOutcome {
        try await writer.write { db in
            let users = try String.fetchAll(db, sql: "SELECT id FROM sites WHERE configurationId = ? ORDER BY id", arguments: [id])
            if !users.isEmpty { return .inUse(users) }
            try db.execute(sql: "DELETE FROM configurations WHERE id = ?", arguments: [id])
            return db.changesCount > 0 ? .deleted : .notFound
        }
    }

    // MARK: - Sites

    static func site(_ row: Row) throws -> SiteRecord {
        var site = try decode(SiteRecord.self, row["body"])
        site.configurationId = row["configurationId"]
        site.configurationVersion = row["configurationVersion"]
        site.upgradeRequestedDateTime = date(row["upgradeRequestedAt"])
        return site
    }

    public func listSites() async throws -> [SiteRecord] {
        try await writer.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM sites").map(Self.site).sorted { ($0.displayName, $0.id) < ($1.displayName, $1.id) }
        }
    }

    public func site(id: String) async throws -> SiteRecord? {
        try await writer.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM sites WHERE id = ?", arguments: [id]).map(Self.site)
        }
    }

    public func insertSite(_ site: SiteRecord) async throws {
        let body = try Self.encode(site)
        try await writer.write { db in
            try db.execute(sql: "INSERT INTO sites (id, body, configurationId, configurationVersion) VALUES (?, ?, ?, ?)",
                           arguments: [site.id, body, site.configurationId, site.configurationId == nil ? 0 : 1])
        }
    }

    public func updateSite(_ site: SiteRecord) async throws -> SiteRecord? {
        let body = try Self.encode(site)
        return try await writer.write { db in
            guard let old = try Row.fetchOne(db, sql: "SELECT * FROM sites WHERE id = ?", arguments: [site.id]).map(Self.site) else {
                return nil
            }
            let bump: Int64 = old.configurationId == site.configurationId ? 0 : 1
            try db.execute(sql: "UPDATE sites SET body = ?, configurationId = ?, configurationVersion = configurationVersion + ? WHERE id = ?",
                           arguments: [body, site.configurationId, bump, site.id])
            return try Row.fetchOne(db, sql: "SELECT * FROM sites WHERE id = ?", arguments: [site.id]).map(Self.site)
        }
    }

    public func deleteSite(id: String) async throws -> DeleteOutcome {
        try await writer.write { db in
            let servers = try String.fetchAll(db, sql: "SELECT id FROM servers WHERE siteId = ? ORDER BY id", arguments: [id])
            if !servers.isEmpty { return .inUse(servers) }
            try db.execute(sql: "DELETE FROM sites WHERE id = ?", arguments: [id])
            return db.changesCount > 0 ? .deleted : .notFound
        }
    }

    public func recordUpgradeRequest(siteId: String, at: Date) async throws -> Bool {
        try await writer.write { db in
            try db.execute(sql: "UPDATE sites SET upgradeRequestedAt = ? WHERE id = ?", arguments: [Self.time(at), siteId])
            return db.changesCount > 0
        }
    }

    // MARK: - Servers

    static func server(_ row: Row) throws -> ServerRecord {
        let lastApply: String? = row["lastApply"]
        var record = ServerRecord(
            id: row["id"], siteId: row["siteId"], displayName: row["displayName"], deploymentMode: row["deploymentMode"],
            createdDateTime: date(row["createdAt"]) ?? Date(timeIntervalSince1970: 0),
            lastCheckinDateTime: date(row["lastCheckinAt"]), agentVersion: row["agentVersion"], serverVersion: row["serverVersion"],
            appliedConfigurationVersion: row["appliedConfigurationVersion"],
            lastApply: try lastApply.map { try decode(ConfigurationApplyResult.self, $0) })
        record.drainHandOverAfter = row["drainHandOverAfter"]
        return record
    }

    public func poolSlice(serverId: String, siteId: String, count: Int) async throws -> Int? {
        try await writer.write { db in
            if let index = try Int?.fetchOne(db, sql: "SELECT poolSliceIndex FROM servers WHERE id = ?", arguments: [serverId]) ?? nil {
                return index
            }
            let taken = Set(try Int.fetchAll(db, sql: "SELECT poolSliceIndex FROM servers WHERE siteId = ? AND poolSliceIndex IS NOT NULL", arguments: [siteId]))
            guard let free = (0..<count).first(where: { !taken.contains($0) }) else { return nil }
            try db.execute(sql: "UPDATE servers SET poolSliceIndex = ? WHERE id = ?", arguments: [free, serverId])
            return free
        }
    }

    public func setDrain(serverId: String, handOverAfter: Int64?) async throws -> Bool {
        try await writer.write { db in
            try db.execute(sql: "UPDATE servers SET drainHandOverAfter = ? WHERE id = ?", arguments: [handOverAfter, serverId])
            return db.changesCount > 0
        }
    }

    public func listServers(siteId: String?) async throws -> [ServerRecord] {
        try await writer.read { db in
            if let siteId {
                return try Row.fetchAll(db, sql: "SELECT * FROM servers WHERE siteId = ? ORDER BY displayName, id", arguments: [siteId]).map(Self.server)
            }
            return try Row.fetchAll(db, sql: "SELECT * FROM servers ORDER BY displayName, id").map(Self.server)
        }
    }

    public func server(id: String) async throws -> ServerRecord? {
        try await writer.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM servers WHERE id = ?", arguments: [id]).map(Self.server)
        }
    }

    public func renameServer(id: String, displayName: String) async throws -> Bool {
        try await writer.write { db in
            try db.execute(sql: "UPDATE servers SET displayName = ? WHERE id = ?", arguments: [displayName, id])
            return db.changesCount > 0
        }
    }

    public func deleteServer(id: String) async throws -> [String]? {
        try await writer.write { db in
            try db.execute(sql: "DELETE FROM servers WHERE id = ?", arguments: [id])
            let deleted = db.changesCount > 0
            try db.execute(sql: "UPDATE issued_certificates SET revoked = 1 WHERE serverId = ?", arguments: [id])
            let blobs = try String.fetchAll(db, sql: "SELECT blobPath FROM log_collections WHERE serverId = ? AND blobPath IS NOT NULL", arguments: [id])
            try db.execute(sql: "DELETE FROM log_collections WHERE serverId = ?", arguments: [id])
            return deleted ? blobs : nil
        }
    }

    public func recordCheckin(serverId: String, at: Date, request: CheckinRequest) async throws {
        let lastApply = try request.lastApply.map { try Self.encode($0) }
        try await writer.write { db in
            try db.execute(sql: """
                UPDATE servers SET lastCheckinAt = ?, agentVersion = ?, serverVersion = ?, appliedConfigurationVersion = ?,
                    lastApply = COALESCE(?, lastApply), ticketKeyIds = ?
                WHERE id = ?
                """, arguments: [Self.time(at), request.agentVersion, request.serverVersion, request.appliedConfigurationVersion, lastApply,
                                 try request.ticketKeyIds.map { try Self.encode($0) }, serverId])
        }
    }

    // MARK: - Site ticket keys

    public func ticketKeys(siteId: String, now: Date, liveSince: Date) async throws -> SiteTicketKeyPolicy.Outcome {
        try await writer.write { db in
            var keys = try Row.fetchAll(db, sql: "SELECT id, key, createdAt, sealingSince FROM site_ticket_keys WHERE siteId = ? ORDER BY createdAt, rowid", arguments: [siteId]).map { row in
                TicketKeyRecord(id: row["id"], key: row["key"], createdAt: Date(timeIntervalSince1970: row["createdAt"]),
                                sealingSince: Self.date(row["sealingSince"]))
            }
            if keys.isEmpty {
                let first = TicketKeyRecord.generate(now: now, sealing: true)
                try db.execute(sql: "INSERT INTO site_ticket_keys (siteId, id, key, createdAt, sealingSince) VALUES (?, ?, ?, ?, ?)",
                               arguments: [siteId, first.id, first.key, Self.time(now), Self.time(now)])
                keys = [first]
            }
            let reported = try String?.fetchAll(db, sql: "SELECT ticketKeyIds FROM servers WHERE siteId = ? AND lastCheckinAt >= ?",
                                                arguments: [siteId, Self.time(liveSince)])
            let acknowledged = try reported.compactMap { $0 }.map { Set(try Self.decode([String].self, $0)) }
            let outcome = SiteTicketKeyPolicy.decide(keys: keys, acknowledged: acknowledged, now: now)
            for k in outcome.keys where keys.first(where: { $0.id == k.id })?.sealingSince != k.sealingSince {
                try db.execute(sql: "UPDATE site_ticket_keys SET sealingSince = ? WHERE siteId = ? AND id = ?",
                               arguments: [k.sealingSince.map(Self.time), siteId, k.id])
            }
            for id in outcome.retired {
                try db.execute(sql: "DELETE FROM site_ticket_keys WHERE siteId = ? AND id = ?", arguments: [siteId, id])
            }
            return outcome
        }
    }

    public func exchangeRevocations(siteId: String, serverId: String, add: [RevokedTicketEntry], after: Int64, limit: Int,
                                    now: Date) async throws -> (revoked: [RevokedTicketEntry], cursor: Int64) {
        try await writer.write { db in
            let t = Self.time(now)
            try db.execute(sql: "DELETE FROM site_ticket_revocations WHERE siteId = ? AND until <= ?", arguments: [siteId, t])
            for r in add where Double(r.until) > t {
                try db.execute(sql: "INSERT INTO site_ticket_revocations (siteId, sessionId, until, serverId) VALUES (?, ?, ?, ?)",
                               arguments: [siteId, r.sessionId, Double(r.until), serverId])
            }
            // Its own rows are passed over (its auth has them), but move the cursor.
            let rows = try Row.fetchAll(db, sql: """
                SELECT seq, sessionId, until, serverId FROM site_ticket_revocations WHERE siteId = ? AND seq > ? ORDER BY seq LIMIT ?
                """, arguments: [siteId, after, limit])
            let revoked = rows.filter { ($0["serverId"] as String) != serverId }.map {
                RevokedTicketEntry(sessionId: $0["sessionId"], until: Int64(($0["until"] as Double).rounded(.up)))
            }
            let cursor: Int64 = rows.last?["seq"] ?? max(after, 0)
            return (revoked, cursor)
        }
    }

    public func addTicketKey(siteId: String, now: Date) async throws -> AddTicketKeyOutcome {
        try await writer.write { db in
            guard try Bool.fetchOne(db, sql: "SELECT 1 FROM sites WHERE id = ?", arguments: [siteId]) != nil else { return .siteNotFound }
            if let pending = try String.fetchOne(db, sql: "SELECT id FROM site_ticket_keys WHERE siteId = ? AND sealingSince IS NULL", arguments: [siteId]) {
                return .rotationInProgress(pending)
            }
            // A Site that never had a key gets its first one sealing at once.
            let first = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM site_ticket_keys WHERE siteId = ?", arguments: [siteId]) == 0
            let key = TicketKeyRecord.generate(now: now, sealing: first)
            try db.execute(sql: "INSERT INTO site_ticket_keys (siteId, id, key, createdAt, sealingSince) VALUES (?, ?, ?, ?, ?)",
                           arguments: [siteId, key.id, key.key, Self.time(now), key.sealingSince.map(Self.time)])
            return .added(key.id)
        }
    }

    // MARK: - Join tokens and enrollment

    public func insertJoinToken(_ token: JoinTokenRecord) async throws {
        try await writer.write { db in
            try db.execute(sql: "INSERT INTO join_tokens (id, siteId, secretSHA256, createdAt, expiresAt) VALUES (?, ?, ?, ?, ?)",
                           arguments: [token.id, token.siteId, token.secretSHA256, Self.time(token.createdDateTime), Self.time(token.expirationDateTime)])
        }
    }

    public func checkJoinToken(tokenId: String, secretSHA256: String, now: Date) async throws -> JoinTokenCheck {
        try await writer.read { db in try Self.checkJoinToken(db, tokenId: tokenId, secretSHA256: secretSHA256, now: now) }
    }

    /// The token checks, shared by the pre-check and the spending transaction.
    static func checkJoinToken(_ db: Database, tokenId: String, secretSHA256: String, now: Date) throws -> JoinTokenCheck {
        guard let row = try Row.fetchOne(db, sql: "SELECT * FROM join_tokens WHERE id = ?", arguments: [tokenId]) else {
            return .refused(.unknownToken)
        }
        let stored: String = row["secretSHA256"]
        guard ConstantTime.equal(Array(stored.utf8), Array(secretSHA256.utf8)) else { return .refused(.wrongSecret) }
        if (row["usedAt"] as Double?) != nil { return .refused(.alreadyUsed) }
        if let expires = date(row["expiresAt"]), expires <= now { return .refused(.expired) }
        let siteId: String = row["siteId"]
        guard try Bool.fetchOne(db, sql: "SELECT 1 FROM sites WHERE id = ?", arguments: [siteId]) != nil else { return .refused(.siteMissing) }
        return .valid(siteId: siteId)
    }

    public func enroll(tokenId: String, secretSHA256: String, now: Date, server: ServerRecord, certificate: IssuedCertificate) async throws -> EnrollmentOutcome {
        try await writer.write { db in
            switch try Self.checkJoinToken(db, tokenId: tokenId, secretSHA256: secretSHA256, now: now) {
            case .refused(let outcome): return outcome
            case .valid(let siteId): guard server.siteId == siteId else { return .siteMissing }
            }
            // Spend first, conditionally: a concurrent enrollment with the same token that
            // got here too finds usedAt set and changes nothing.
            try db.execute(sql: "UPDATE join_tokens SET usedAt = ?, usedByServerId = ? WHERE id = ? AND usedAt IS NULL",
                           arguments: [Self.time(now), server.id, tokenId])
            guard db.changesCount == 1 else { return .alreadyUsed }
            try db.execute(sql: """
                INSERT INTO servers (id, siteId, displayName, deploymentMode, createdAt, agentVersion, appliedConfigurationVersion)
                VALUES (?, ?, ?, ?, ?, ?, 0)
                """, arguments: [server.id, server.siteId, server.displayName, server.deploymentMode, Self.time(server.createdDateTime), server.agentVersion])
            try Self.insertCertificate(certificate, db)
            return .enrolled
        }
    }

    // MARK: - Certificates

    static func insertCertificate(_ c: IssuedCertificate, _ db: Database) throws {
        try db.execute(sql: "INSERT INTO issued_certificates (serial, serverId, notBefore, notAfter, revoked) VALUES (?, ?, ?, ?, ?)",
                       arguments: [c.serial, c.serverId, time(c.notBefore), time(c.notAfter), c.revoked])
    }

    static func certificate(_ row: Row) -> IssuedCertificate {
        IssuedCertificate(serial: row["serial"], serverId: row["serverId"],
                          notBefore: date(row["notBefore"]) ?? .distantPast, notAfter: date(row["notAfter"]) ?? .distantPast,
                          revoked: row["revoked"])
    }

    public func insertCertificate(_ certificate: IssuedCertificate) async throws {
        try await writer.write { db in try Self.insertCertificate(certificate, db) }
    }

    public func certificate(serial: String) async throws -> IssuedCertificate? {
        try await writer.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM issued_certificates WHERE serial = ?", arguments: [serial]).map(Self.certificate)
        }
    }

    public func latestCertificate(serverId: String) async throws -> IssuedCertificate? {
        try await writer.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM issued_certificates WHERE serverId = ? ORDER BY notBefore DESC, rowid DESC LIMIT 1",
                             arguments: [serverId]).map(Self.certificate)
        }
    }

    // MARK: - Thresholds

    public func thresholdOverrides() async throws -> [ThresholdOverride] {
        try await writer.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM health_thresholds ORDER BY id").map {
                ThresholdOverride(id: $0["id"], healthyThreshold: $0["healthyThreshold"], unhealthyThreshold: $0["unhealthyThreshold"])
            }
        }
    }

    public func setThresholdOverride(_ value: ThresholdOverride) async throws {
        try await writer.write { db in
            try db.execute(sql: """
                INSERT INTO health_thresholds (id, healthyThreshold, unhealthyThreshold) VALUES (?, ?, ?)
                ON CONFLICT(id) DO UPDATE SET healthyThreshold = excluded.healthyThreshold, unhealthyThreshold = excluded.unhealthyThreshold
                """, arguments: [value.id, value.healthyThreshold, value.unhealthyThreshold])
        }
    }

    // MARK: - Reports

    public func storeReports(serverId: String, items: [ReportItem], receivedAt: Date) async throws -> ReportAck {
        // Encode outside the transaction; the write lock is held only for the inserts.
        var encoded: [(ReportItem, String?, Double)] = []
        for item in items {
            // The agent's clock is trusted only up to now: a time in the future is clamped.
            let when = min(GraphDateParsing.parse(item.createdDateTime) ?? receivedAt, receivedAt).timeIntervalSince1970
            switch item.kind {
            case .health: encoded.append((item, try item.health.map { try Self.encode($0) }, when))
            case .event: encoded.append((item, try item.event.map { try Self.encode($0) }, when))
            }
        }
        let rows = encoded
        return try await writer.write { db in
            var acknowledged: [String] = []
            var duplicates = 0
            for (item, body, when) in rows {
                try db.execute(sql: "INSERT OR IGNORE INTO report_ids (serverId, id, receivedAt) VALUES (?, ?, ?)",
                               arguments: [serverId, item.id, Self.time(receivedAt)])
                acknowledged.append(item.id)
                guard db.changesCount == 1 else {
                    duplicates += 1
                    continue
                }
                guard let body else { continue }
                switch item.kind {
                case .health:
                    try db.execute(sql: "INSERT INTO health_reports (serverId, dateTime, reportId, body, receivedAt) VALUES (?, ?, ?, ?, ?)",
                                   arguments: [serverId, when, item.id, body, Self.time(receivedAt)])
                case .event:
                    try db.execute(sql: "INSERT INTO events (serverId, dateTime, type, reportId, body) VALUES (?, ?, ?, ?, ?)",
                                   arguments: [serverId, when, item.event?.type.rawValue ?? "", item.id, body])
                }
            }
            return ReportAck(acknowledged: acknowledged, duplicates: duplicates)
        }
    }

    static func sample(_ row: Row) throws -> HealthSample {
        HealthSample(serverId: row["serverId"], dateTime: date(row["dateTime"]) ?? .distantPast,
                     receivedDateTime: date(row["receivedAt"]), report: try decode(HealthReport.self, row["body"]))
    }

    public func latestHealth(serverId: String) async throws -> HealthSample? {
        try await writer.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM health_reports WHERE serverId = ? ORDER BY receivedAt DESC, rowid DESC LIMIT 1",
                             arguments: [serverId]).map(Self.sample)
        }
    }

    public func healthSamples(serverId: String, from: Date?, to: Date?, limit: Int) async throws -> [HealthSample] {
        let lower = from.map(Self.time) ?? -Double.greatestFiniteMagnitude
        let upper = to.map(Self.time) ?? Double.greatestFiniteMagnitude
        return try await writer.read { db in
            // The newest `limit` samples in the range, returned oldest first.
            try Row.fetchAll(db, sql: """
                SELECT * FROM (SELECT rowid AS r, * FROM health_reports WHERE serverId = ? AND dateTime >= ? AND dateTime <= ?
                               ORDER BY dateTime DESC, r DESC LIMIT ?) ORDER BY dateTime, r
                """, arguments: [serverId, lower, upper, limit]).map(Self.sample)
        }
    }

    public func eventCount(serverId: String) async throws -> Int {
        try await writer.read { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM events WHERE serverId = ?", arguments: [serverId]) ?? 0
        }
    }

    public func events(serverId: String, from: Date?, to: Date?, type: String?, newest: Bool, limit: Int) async throws -> [StoredEvent] {
        var sql = "SELECT rowid AS r, reportId, dateTime, body FROM events WHERE serverId = ? AND dateTime >= ? AND dateTime <= ?"
        var arguments: StatementArguments = [serverId, from.map(Self.time) ?? -Double.greatestFiniteMagnitude,
                                             to.map(Self.time) ?? Double.greatestFiniteMagnitude]
        if let type {
            sql += " AND type = ? COLLATE NOCASE"
            _ = arguments.append(contentsOf: [type])
        }
        let direction = newest ? "DESC" : "ASC"
        sql += " ORDER BY dateTime \(direction), r \(direction) LIMIT ?"
        _ = arguments.append(contentsOf: [max(0, limit)])
        let query = sql
        let args = arguments
        return try await writer.read { db in
            let rows = try Row.fetchAll(db, sql: query, arguments: args)
            let ordered = newest ? Array(rows.reversed()) : rows
            return ordered.compactMap { row -> StoredEvent? in
                let body: String = row["body"]
                // A row that no longer decodes (written by a future version) is skipped, not fatal.
                guard let event = try? JSONDecoder().decode(AgentEvent.self, from: Data(body.utf8)) else { return nil }
                return StoredEvent(id: row["reportId"], serverId: serverId, event: event)
            }
        }
    }

    // MARK: - Log collections

    static func logCollection(_ row: Row) -> LogCollectionRecord {
        let status: String = row["status"]
        return LogCollectionRecord(
            id: row["id"], serverId: row["serverId"], siteId: row["siteId"], status: LogCollectionRecord.Status(rawValue: status) ?? .failed,
            startDateTime: date(row["startDateTime"]) ?? .distantPast, endDateTime: date(row["endDateTime"]) ?? .distantPast,
            sizeInBytes: row["sizeInBytes"], requestDateTime: date(row["requestDateTime"]) ?? .distantPast,
            expiryDateTime: date(row["expiryDateTime"]) ?? .distantPast, failureMessage: row["failureMessage"], blobPath: row["blobPath"])
    }

    public func insertLogCollection(_ r: LogCollectionRecord) async throws {
        try await writer.write { db in
            try db.execute(sql: """
                INSERT INTO log_collections (id, serverId, siteId, status, startDateTime, endDateTime, sizeInBytes, requestDateTime, expiryDateTime)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [r.id, r.serverId, r.siteId, r.status.rawValue, Self.time(r.startDateTime), Self.time(r.endDateTime),
                                 r.sizeInBytes, Self.time(r.requestDateTime), Self.time(r.expiryDateTime)])
        }
    }

    public func logCollection(id: String) async throws -> LogCollectionRecord? {
        try await writer.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM log_collections WHERE id = ?", arguments: [id]).map(Self.logCollection)
        }
    }

    public func listLogCollections() async throws -> [LogCollectionRecord] {
        try await writer.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM log_collections ORDER BY requestDateTime DESC, id").map(Self.logCollection)
        }
    }

    public func pendingLogCollections(serverId: String) async throws -> [LogCollectionRecord] {
        try await writer.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM log_collections WHERE serverId = ? AND status = 'pending' ORDER BY requestDateTime",
                             arguments: [serverId]).map(Self.logCollection)
        }
    }

    public func completeLogCollection(id: String, sizeInBytes: Int64, blobPath: String, at: Date) async throws -> Bool {
        try await writer.write { db in
            try db.execute(sql: "UPDATE log_collections SET status = 'completed', sizeInBytes = ?, blobPath = ?, finishedAt = ? WHERE id = ? AND status = 'pending'",
                           arguments: [sizeInBytes, blobPath, Self.time(at), id])
            return db.changesCount > 0
        }
    }

    public func failLogCollection(id: String, message: String, at: Date) async throws -> Bool {
        try await writer.write { db in
            try db.execute(sql: "UPDATE log_collections SET status = 'failed', failureMessage = ?, finishedAt = ? WHERE id = ? AND status = 'pending'",
                           arguments: [message, Self.time(at), id])
            return db.changesCount > 0
        }
    }

    // MARK: - Retention

    public func prune(olderThan: Date, expiredBefore: Date) async throws -> PruneOutcome {
        let cutoff = Self.time(olderThan)
        let expiry = Self.time(expiredBefore)
        return try await writer.write { db in
            var outcome = PruneOutcome()
            try db.execute(sql: "DELETE FROM health_reports WHERE dateTime < ?", arguments: [cutoff])
            outcome.healthReports = db.changesCount
            try db.execute(sql: "DELETE FROM events WHERE dateTime < ?", arguments: [cutoff])
            outcome.events = db.changesCount
            try db.execute(sql: "DELETE FROM report_ids WHERE receivedAt < ?", arguments: [cutoff])
            outcome.reportIds = db.changesCount
            outcome.blobPaths = try String.fetchAll(db, sql: "SELECT blobPath FROM log_collections WHERE expiryDateTime < ? AND blobPath IS NOT NULL",
                                                    arguments: [expiry])
            try db.execute(sql: "DELETE FROM log_collections WHERE expiryDateTime < ?", arguments: [expiry])
            outcome.logCollections = db.changesCount
            return outcome
        }
    }
}
