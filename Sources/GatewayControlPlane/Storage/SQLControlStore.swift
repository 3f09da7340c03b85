import Foundation
import GatewayAgentAPI
import GatewayCore
import GatewaySystem

/// `ControlStore` in SQL: one set of statements for SQLite (`SQLiteDatabase`, the embedded
/// default) and PostgreSQL (`PostgresDatabase`, for several control-plane instances), so
/// the one test suite proves both (`MST_TEST_POSTGRES`, docs/testing.md).
///
/// Graph bodies are kept as JSON text beside the columns queried on, so a property added
/// to the API needs no migration.
public final class SQLControlStore: ControlStore {
    public let database: any SQLDatabase

    public init(database: any SQLDatabase) {
        self.database = database
    }

    /// SQLite in a file (created if needed), migrated. The file and its `-wal`/`-shm`
    /// companions are owner-only (0600): they hold user names, device ids and client
    /// addresses. The file is created 0600 before SQLite opens it (SQLite gives the
    /// companions the database file's mode), and existing files are set to 0600.
    public static func sqlite(path: String) throws -> SQLControlStore {
        try restrictFile(path, create: true)
        let store = SQLControlStore(database: try SQLiteDatabase(path: path))
        for companion in [path, path + "-wal", path + "-shm", path + "-journal"] {
            try restrictFile(companion, create: false)
        }
        return store
    }

    /// SQLite in memory (tests).
    public static func sqliteInMemory() throws -> SQLControlStore {
        SQLControlStore(database: try SQLiteDatabase.inMemory())
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

    // MARK: - JSON columns and times

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
        try await database.read { c in
            try await c.all(String.self, "SELECT body FROM configurations ORDER BY displayName, id").map {
                try Self.decode(AdminSettings.self, $0)
            }
        }
    }

    public func configuration(id: String) async throws -> AdminSettings? {
        try await database.read { c in
            try await c.one(String.self, "SELECT body FROM configurations WHERE id = ?", [id]).map {
                try Self.decode(AdminSettings.self, $0)
            }
        }
    }

    public func insertConfiguration(_ configuration: AdminSettings) async throws {
        let body = try Self.encode(configuration)
        try await database.write { c in
            try await c.query("INSERT INTO configurations (id, displayName, body) VALUES (?, ?, ?)",
                              [configuration.id, configuration.displayName ?? "", body])
        }
    }

    public func updateConfiguration(_ configuration: AdminSettings) async throws -> Bool {
        let body = try Self.encode(configuration)
        return try await database.write { c in
            guard try await c.changes("UPDATE configurations SET displayName = ?, body = ? WHERE id = ? RETURNING 1",
                                      [configuration.displayName ?? "", body, configuration.id]) > 0 else { return false }
            // Every Site using it now has a new configuration version to hand out.
            try await c.query("UPDATE sites SET configurationVersion = configurationVersion + 1 WHERE configurationId = ?",
                              [configuration.id])
            return true
        }
    }

    public func deleteConfiguration(id: String) async throws -> DeleteOutcome {
        try await database.write { c in
            let users = try await c.all(String.self, "SELECT id FROM sites WHERE configurationId = ? ORDER BY id", [id])
            if !users.isEmpty { return .inUse(users) }
            return try await c.changes("DELETE FROM configurations WHERE id = ? RETURNING 1", [id]) > 0 ? .deleted : .notFound
        }
    }

    // MARK: - Sites

    static func site(_ row: SQLRow) throws -> SiteRecord {
        var site = try decode(SiteRecord.self, try row["body"])
        site.configurationId = try row["configurationId"]
        site.configurationVersion = try row["configurationVersion"]
        site.upgradeRequestedDateTime = date(try row["upgradeRequestedAt"])
        let upgrade: String? = try row["upgradeState"]
        site.upgrade = try upgrade.map { try decode(SiteUpgradeState.self, $0) }
        return site
    }

    public func listSites() async throws -> [SiteRecord] {
        try await database.read { c in
            try await c.query("SELECT * FROM sites").map(Self.site).sorted { ($0.displayName, $0.id) < ($1.displayName, $1.id) }
        }
    }

    public func site(id: String) async throws -> SiteRecord? {
        try await database.read { c in
            try await c.query("SELECT * FROM sites WHERE id = ?", [id]).first.map(Self.site)
        }
    }

    public func insertSite(_ site: SiteRecord) async throws {
        let body = try Self.encode(site)
        try await database.write { c in
            try await c.query("INSERT INTO sites (id, body, configurationId, configurationVersion) VALUES (?, ?, ?, ?)",
                              [site.id, body, site.configurationId, site.configurationId == nil ? 0 : 1])
        }
    }

    public func updateSite(_ site: SiteRecord) async throws -> SiteRecord? {
        let body = try Self.encode(site)
        return try await database.write { c in
            guard let old = try await c.query("SELECT * FROM sites WHERE id = ?", [site.id]).first.map(Self.site) else {
                return nil
            }
            let bump: Int64 = old.configurationId == site.configurationId ? 0 : 1
            try await c.query("UPDATE sites SET body = ?, configurationId = ?, configurationVersion = configurationVersion + ? WHERE id = ?",
                              [body, site.configurationId, bump, site.id])
            return try await c.query("SELECT * FROM sites WHERE id = ?", [site.id]).first.map(Self.site)
        }
    }

    public func deleteSite(id: String) async throws -> DeleteOutcome {
        try await database.write { c in
            let servers = try await c.all(String.self, "SELECT id FROM servers WHERE siteId = ? ORDER BY id", [id])
            if !servers.isEmpty { return .inUse(servers) }
            return try await c.changes("DELETE FROM sites WHERE id = ? RETURNING 1", [id]) > 0 ? .deleted : .notFound
        }
    }

    public func recordUpgradeRequest(siteId: String, at: Date) async throws -> Bool {
        try await database.write { c in
            try await c.changes("UPDATE sites SET upgradeRequestedAt = ? WHERE id = ? RETURNING 1", [Self.time(at), siteId]) > 0
        }
    }

    public func upgradeStep(siteId: String, release: String, now: Date, liveSince: Date,
                            newId: @escaping @Sendable () -> String) async throws -> RollingUpgradePolicy.Outcome? {
        // Decided first in a read: most check-ins change nothing (no upgrade asked, or the
        // server in flight not back yet), and a write transaction per check-in of every
        // server would serialize them all on PostgreSQL. Only a change is decided again, and
        // written, in one write transaction (two instances never start two servers).
        let unchanged = try await database.read { c -> RollingUpgradePolicy.Outcome?? in
            guard let (site, outcome) = try await Self.decideUpgrade(c, siteId: siteId, release: release, now: now,
                                                                    liveSince: liveSince, newId: newId) else { return .some(nil) }
            let changes = outcome.state != site.upgrade || outcome.clearRequest || site.upgradeAvailable != outcome.available
            return changes ? nil : .some(outcome)
        }
        if let unchanged { return unchanged }
        return try await database.write { c in
            guard let (decided, outcome) = try await Self.decideUpgrade(c, siteId: siteId, release: release, now: now,
                                                                       liveSince: liveSince, newId: newId) else { return nil }
            var site = decided
            if outcome.state != site.upgrade {
                try await c.query("UPDATE sites SET upgradeState = ? WHERE id = ?", [try outcome.state.map { try Self.encode($0) }, siteId])
            }
            if outcome.clearRequest {
                try await c.query("UPDATE sites SET upgradeRequestedAt = NULL WHERE id = ?", [siteId])
            }
            if site.upgradeAvailable != outcome.available {
                site.upgradeAvailable = outcome.available
                site.upgrade = nil
                site.upgradeRequestedDateTime = nil
                try await c.query("UPDATE sites SET body = ? WHERE id = ?", [try Self.encode(site), siteId])
            }
            return outcome
        }
    }

    /// The Site and what `RollingUpgradePolicy` decides for it now; nil without the Site.
    private static func decideUpgrade(_ c: some SQLConnection, siteId: String, release: String, now: Date, liveSince: Date,
                                      newId: @Sendable () -> String) async throws -> (SiteRecord, RollingUpgradePolicy.Outcome)? {
        guard let site = try await c.query("SELECT * FROM sites WHERE id = ?", [siteId]).first.map(Self.site) else { return nil }
        let servers = try await c.query("SELECT * FROM servers WHERE siteId = ?", [siteId]).map(Self.server).map { s in
            RollingUpgradePolicy.Server(id: s.id, displayName: s.displayName, live: (s.lastCheckinDateTime ?? .distantPast) >= liveSince,
                                        lastCheckin: s.lastCheckinDateTime, imageTag: s.imageTag, gatewayUp: s.serverVersion != nil,
                                        report: s.upgradeReport, sessions: s.sessions, sessionLimit: s.sessionLimit)
        }
        let outcome = RollingUpgradePolicy.decide(
            state: site.upgrade, release: release, requestedAt: site.upgradeRequestedDateTime, automatic: site.upgradeAutomatically ?? false,
            inWindow: RollingUpgradePolicy.inWindow(now: now, start: site.upgradeWindowStartTime, end: site.upgradeWindowEndTime,
                                                    offsetMinutes: site.upgradeWindowUtcOffsetInMinutes),
            servers: servers, now: now, newId: newId)
        return (site, outcome)
    }

    // MARK: - Servers

    static func server(_ row: SQLRow) throws -> ServerRecord {
        let lastApply: String? = try row["lastApply"]
        var record = ServerRecord(
            id: try row["id"], siteId: try row["siteId"], displayName: try row["displayName"], deploymentMode: try row["deploymentMode"],
            createdDateTime: date(try row["createdAt"]) ?? Date(timeIntervalSince1970: 0),
            lastCheckinDateTime: date(try row["lastCheckinAt"]), agentVersion: try row["agentVersion"], serverVersion: try row["serverVersion"],
            appliedConfigurationVersion: try row["appliedConfigurationVersion"],
            lastApply: try lastApply.map { try decode(ConfigurationApplyResult.self, $0) })
        record.drainHandOverAfter = try row["drainHandOverAfter"]
        record.imageTag = try row["imageTag"]
        record.sessions = try row["sessions"]
        record.sessionLimit = try row["sessionLimit"]
        let report: String? = try row["upgradeReport"]
        record.upgradeReport = try report.map { try decode(UpgradeReport.self, $0) }
        return record
    }

    public func poolSlice(serverId: String, siteId: String, count: Int) async throws -> Int? {
        try await database.write { c in
            if let index = try await c.one(Int?.self, "SELECT poolSliceIndex FROM servers WHERE id = ?", [serverId]) ?? nil {
                return index
            }
            let taken = Set(try await c.all(Int.self, "SELECT poolSliceIndex FROM servers WHERE siteId = ? AND poolSliceIndex IS NOT NULL", [siteId]))
            guard let free = (0..<count).first(where: { !taken.contains($0) }) else { return nil }
            try await c.query("UPDATE servers SET poolSliceIndex = ? WHERE id = ?", [free, serverId])
            return free
        }
    }

    public func setDrain(serverId: String, handOverAfter: Int64?) async throws -> Bool {
        try await database.write { c in
            try await c.changes("UPDATE servers SET drainHandOverAfter = ? WHERE id = ? RETURNING 1", [handOverAfter, serverId]) > 0
        }
    }

    public func listServers(siteId: String?) async throws -> [ServerRecord] {
        try await database.read { c in
            if let siteId {
                return try await c.query("SELECT * FROM servers WHERE siteId = ? ORDER BY displayName, id", [siteId]).map(Self.server)
            }
            return try await c.query("SELECT * FROM servers ORDER BY displayName, id").map(Self.server)
        }
    }

    public func server(id: String) async throws -> ServerRecord? {
        try await database.read { c in
            try await c.query("SELECT * FROM servers WHERE id = ?", [id]).first.map(Self.server)
        }
    }

    public func renameServer(id: String, displayName: String) async throws -> Bool {
        try await database.write { c in
            try await c.changes("UPDATE servers SET displayName = ? WHERE id = ? RETURNING 1", [displayName, id]) > 0
        }
    }

    public func deleteServer(id: String) async throws -> [String]? {
        try await database.write { c in
            let deleted = try await c.changes("DELETE FROM servers WHERE id = ? RETURNING 1", [id]) > 0
            try await c.query("UPDATE issued_certificates SET revoked = 1 WHERE serverId = ?", [id])
            let blobs = try await c.all(String.self, "SELECT blobPath FROM log_collections WHERE serverId = ? AND blobPath IS NOT NULL", [id])
            try await c.query("DELETE FROM log_collections WHERE serverId = ?", [id])
            return deleted ? blobs : nil
        }
    }

    public func recordCheckin(serverId: String, at: Date, request: CheckinRequest) async throws {
        let lastApply = try request.lastApply.map { try Self.encode($0) }
        let keyIds = try request.ticketKeyIds.map { try Self.encode($0) }
        let leases = try request.foreignLeases.map { try Self.encode($0) }
        let upgrade = try request.upgrade.map { try Self.encode($0) }
        // Counts kept to what a gateway can have (max-sessions is at most 1,000,000), so no
        // agent can overflow a 32-bit column or the sum of a Site's room.
        let sessions = request.sessions.map { min(max($0, 0), 10_000_000) }
        let sessionLimit = request.sessionLimit.map { min(max($0, 0), 10_000_000) }
        try await database.write { c in
            try await c.query("""
                UPDATE servers SET lastCheckinAt = ?, agentVersion = ?, serverVersion = ?, appliedConfigurationVersion = ?,
                    lastApply = COALESCE(?, lastApply), ticketKeyIds = ?, foreignLeases = ?, imageTag = ?, upgradeReport = ?,
                    sessions = ?, sessionLimit = ?
                WHERE id = ?
                """, [Self.time(at), request.agentVersion, request.serverVersion, request.appliedConfigurationVersion, lastApply,
                      keyIds, leases, request.imageTag, upgrade, sessions, sessionLimit, serverId])
        }
    }

    public func siblingForeignLeases(siteId: String, excluding serverId: String, liveSince: Date) async throws -> Set<String> {
        try await database.read { c in
            var all = Set<String>()
            for json in try await c.all(String?.self, "SELECT foreignLeases FROM servers WHERE siteId = ? AND id <> ? AND lastCheckinAt >= ?",
                                        [siteId, serverId, Self.time(liveSince)]) {
                guard let json else { continue }
                all.formUnion(try Self.decode([String].self, json))
            }
            return all
        }
    }

    // MARK: - Site ticket keys

    public func ticketKeys(siteId: String, now: Date, liveSince: Date) async throws -> SiteTicketKeyPolicy.Outcome {
        try await database.write { c in
            var keys = try await c.query("SELECT id, key, createdAt, sealingSince FROM site_ticket_keys WHERE siteId = ? ORDER BY createdAt, rowid",
                                         [siteId]).map { row in
                TicketKeyRecord(id: try row["id"], key: try row["key"], createdAt: Date(timeIntervalSince1970: try row["createdAt"]),
                                sealingSince: Self.date(try row["sealingSince"]))
            }
            if keys.isEmpty {
                let first = TicketKeyRecord.generate(now: now, sealing: true)
                try await c.query("INSERT INTO site_ticket_keys (siteId, id, key, createdAt, sealingSince) VALUES (?, ?, ?, ?, ?)",
                                  [siteId, first.id, first.key, Self.time(now), Self.time(now)])
                keys = [first]
            }
            let reported = try await c.all(String?.self, "SELECT ticketKeyIds FROM servers WHERE siteId = ? AND lastCheckinAt >= ?",
                                           [siteId, Self.time(liveSince)])
            let acknowledged = try reported.compactMap { $0 }.map { Set(try Self.decode([String].self, $0)) }
            let outcome = SiteTicketKeyPolicy.decide(keys: keys, acknowledged: acknowledged, now: now)
            for k in outcome.keys where keys.first(where: { $0.id == k.id })?.sealingSince != k.sealingSince {
                try await c.query("UPDATE site_ticket_keys SET sealingSince = ? WHERE siteId = ? AND id = ?",
                                  [k.sealingSince.map(Self.time), siteId, k.id])
            }
            for id in outcome.retired {
                try await c.query("DELETE FROM site_ticket_keys WHERE siteId = ? AND id = ?", [siteId, id])
            }
            return outcome
        }
    }

    public func exchangeRevocations(siteId: String, serverId: String, add: [RevokedTicketEntry], after: Int64, limit: Int,
                                    now: Date) async throws -> (revoked: [RevokedTicketEntry], cursor: Int64) {
        let pair = try await database.write { c in
            let t = Self.time(now)
            try await c.query("DELETE FROM site_ticket_revocations WHERE siteId = ? AND until <= ?", [siteId, t])
            for r in add where Double(r.until) > t {
                try await c.query("INSERT INTO site_ticket_revocations (siteId, sessionId, until, serverId) VALUES (?, ?, ?, ?)",
                                  [siteId, r.sessionId, Double(r.until), serverId])
            }
            // Its own rows are passed over (its auth has them), but move the cursor.
            let rows = try await c.query("""
                SELECT seq, sessionId, until, serverId FROM site_ticket_revocations WHERE siteId = ? AND seq > ? ORDER BY seq LIMIT ?
                """, [siteId, after, limit])
            var revoked: [RevokedTicketEntry] = []
            for row in rows where try row["serverId"] as String != serverId {
                revoked.append(RevokedTicketEntry(sessionId: try row["sessionId"], until: Int64((try row["until"] as Double).rounded(.up))))
            }
            let cursor: Int64 = try rows.last?["seq"] ?? max(after, 0)
            return RevocationPage(revoked: revoked, cursor: cursor)
        }
        return (pair.revoked, pair.cursor)
    }

    struct RevocationPage: Sendable {
        var revoked: [RevokedTicketEntry]
        var cursor: Int64
    }

    public func addTicketKey(siteId: String, now: Date) async throws -> AddTicketKeyOutcome {
        try await database.write { c in
            guard try await c.one(Int.self, "SELECT 1 FROM sites WHERE id = ?", [siteId]) != nil else { return .siteNotFound }
            if let pending = try await c.one(String.self, "SELECT id FROM site_ticket_keys WHERE siteId = ? AND sealingSince IS NULL", [siteId]) {
                return .rotationInProgress(pending)
            }
            // A Site that never had a key gets its first one sealing at once.
            let first = try await c.one(Int.self, "SELECT COUNT(*) FROM site_ticket_keys WHERE siteId = ?", [siteId]) == 0
            let key = TicketKeyRecord.generate(now: now, sealing: first)
            try await c.query("INSERT INTO site_ticket_keys (siteId, id, key, createdAt, sealingSince) VALUES (?, ?, ?, ?, ?)",
                              [siteId, key.id, key.key, Self.time(now), key.sealingSince.map(Self.time)])
            return .added(key.id)
        }
    }

    // MARK: - Join tokens and enrollment

    public func insertJoinToken(_ token: JoinTokenRecord) async throws {
        try await database.write { c in
            try await c.query("INSERT INTO join_tokens (id, siteId, secretSHA256, createdAt, expiresAt, maxUses) VALUES (?, ?, ?, ?, ?, ?)",
                              [token.id, token.siteId, token.secretSHA256, Self.time(token.createdDateTime), Self.time(token.expirationDateTime),
                               token.maxUses])
        }
    }

    public func checkJoinToken(tokenId: String, secretSHA256: String, now: Date) async throws -> JoinTokenCheck {
        try await database.read { c in try await Self.checkJoinToken(c, tokenId: tokenId, secretSHA256: secretSHA256, now: now) }
    }

    /// The token checks, shared by the pre-check and the spending transaction.
    static func checkJoinToken(_ c: any SQLConnection, tokenId: String, secretSHA256: String, now: Date) async throws -> JoinTokenCheck {
        guard let row = try await c.query("SELECT * FROM join_tokens WHERE id = ?", [tokenId]).first else {
            return .refused(.unknownToken)
        }
        let stored: String = try row["secretSHA256"]
        guard ConstantTime.equal(Array(stored.utf8), Array(secretSHA256.utf8)) else { return .refused(.wrongSecret) }
        if try row["usedAt"] as Double? != nil { return .refused(.alreadyUsed) }
        if let expires = date(try row["expiresAt"]), expires <= now { return .refused(.expired) }
        let siteId: String = try row["siteId"]
        guard try await c.one(Int.self, "SELECT 1 FROM sites WHERE id = ?", [siteId]) != nil else { return .refused(.siteMissing) }
        return .valid(siteId: siteId)
    }

    public func enroll(tokenId: String, secretSHA256: String, now: Date, server: ServerRecord, certificate: IssuedCertificate) async throws -> EnrollmentOutcome {
        try await database.write { c in
            switch try await Self.checkJoinToken(c, tokenId: tokenId, secretSHA256: secretSHA256, now: now) {
            case .refused(let outcome): return outcome
            case .valid(let siteId): guard server.siteId == siteId else { return .siteMissing }
            }
            // Spend first, conditionally: a concurrent enrollment with the same token that
            // got here too finds usedAt set (or its uses gone) and changes nothing. The last
            // use sets usedAt; usedByServerId names the server enrolled last.
            guard try await c.changes("""
                UPDATE join_tokens SET uses = uses + 1, usedByServerId = ?,
                    usedAt = CASE WHEN uses + 1 >= maxUses THEN ? ELSE usedAt END
                WHERE id = ? AND usedAt IS NULL AND uses < maxUses RETURNING 1
                """, [server.id, Self.time(now), tokenId]) == 1 else { return .alreadyUsed }
            try await c.query("""
                INSERT INTO servers (id, siteId, displayName, deploymentMode, createdAt, agentVersion, appliedConfigurationVersion)
                VALUES (?, ?, ?, ?, ?, ?, 0)
                """, [server.id, server.siteId, server.displayName, server.deploymentMode, Self.time(server.createdDateTime), server.agentVersion])
            try await Self.insertCertificate(certificate, c)
            return .enrolled
        }
    }

    // MARK: - Certificates

    static func insertCertificate(_ cert: IssuedCertificate, _ c: any SQLConnection) async throws {
        try await c.query("INSERT INTO issued_certificates (serial, serverId, notBefore, notAfter, revoked) VALUES (?, ?, ?, ?, ?)",
                          [cert.serial, cert.serverId, time(cert.notBefore), time(cert.notAfter), cert.revoked])
    }

    static func certificate(_ row: SQLRow) throws -> IssuedCertificate {
        IssuedCertificate(serial: try row["serial"], serverId: try row["serverId"],
                          notBefore: date(try row["notBefore"]) ?? .distantPast, notAfter: date(try row["notAfter"]) ?? .distantPast,
                          revoked: try row["revoked"])
    }

    public func insertCertificate(_ certificate: IssuedCertificate) async throws {
        try await database.write { c in try await Self.insertCertificate(certificate, c) }
    }

    public func certificate(serial: String) async throws -> IssuedCertificate? {
        try await database.read { c in
            try await c.query("SELECT * FROM issued_certificates WHERE serial = ?", [serial]).first.map(Self.certificate)
        }
    }

    public func latestCertificate(serverId: String) async throws -> IssuedCertificate? {
        try await database.read { c in
            try await c.query("SELECT * FROM issued_certificates WHERE serverId = ? ORDER BY notBefore DESC, rowid DESC LIMIT 1",
                              [serverId]).first.map(Self.certificate)
        }
    }

    // MARK: - Thresholds

    public func thresholdOverrides() async throws -> [ThresholdOverride] {
        try await database.read { c in
            try await c.query("SELECT * FROM health_thresholds ORDER BY id").map {
                ThresholdOverride(id: try $0["id"], healthyThreshold: try $0["healthyThreshold"], unhealthyThreshold: try $0["unhealthyThreshold"])
            }
        }
    }

    public func setThresholdOverride(_ value: ThresholdOverride) async throws {
        try await database.write { c in
            try await c.query("""
                INSERT INTO health_thresholds (id, healthyThreshold, unhealthyThreshold) VALUES (?, ?, ?)
                ON CONFLICT(id) DO UPDATE SET healthyThreshold = excluded.healthyThreshold, unhealthyThreshold = excluded.unhealthyThreshold
                """, [value.id, value.healthyThreshold, value.unhealthyThreshold])
        }
    }

    // MARK: - Reports

    struct EncodedReport: Sendable {
        var item: ReportItem
        var body: String?
        var when: Double
    }

    public func storeReports(serverId: String, items: [ReportItem], receivedAt: Date) async throws -> ReportAck {
        // Encode outside the transaction; the write lock is held only for the inserts.
        var encoded: [EncodedReport] = []
        for item in items {
            // The agent's clock is trusted only up to now: a time in the future is clamped.
            let when = min(GraphDateParsing.parse(item.createdDateTime) ?? receivedAt, receivedAt).timeIntervalSince1970
            switch item.kind {
            case .health: encoded.append(EncodedReport(item: item, body: try item.health.map { try Self.encode($0) }, when: when))
            case .event: encoded.append(EncodedReport(item: item, body: try item.event.map { try Self.encode($0) }, when: when))
            }
        }
        let rows = encoded
        return try await database.write { c in
            var acknowledged: [String] = []
            var duplicates = 0
            for r in rows {
                let new = try await c.changes("INSERT INTO report_ids (serverId, id, receivedAt) VALUES (?, ?, ?) ON CONFLICT DO NOTHING RETURNING 1",
                                              [serverId, r.item.id, Self.time(receivedAt)]) == 1
                acknowledged.append(r.item.id)
                guard new else {
                    duplicates += 1
                    continue
                }
                guard let body = r.body else { continue }
                switch r.item.kind {
                case .health:
                    try await c.query("INSERT INTO health_reports (serverId, dateTime, reportId, body, receivedAt) VALUES (?, ?, ?, ?, ?)",
                                      [serverId, r.when, r.item.id, body, Self.time(receivedAt)])
                case .event:
                    try await c.query("INSERT INTO events (serverId, dateTime, type, reportId, body) VALUES (?, ?, ?, ?, ?)",
                                      [serverId, r.when, r.item.event?.type.rawValue ?? "", r.item.id, body])
                }
            }
            return ReportAck(acknowledged: acknowledged, duplicates: duplicates)
        }
    }

    static func sample(_ row: SQLRow) throws -> HealthSample {
        HealthSample(serverId: try row["serverId"], dateTime: date(try row["dateTime"]) ?? .distantPast,
                     receivedDateTime: date(try row["receivedAt"]), report: try decode(HealthReport.self, try row["body"]))
    }

    public func latestHealth(serverId: String) async throws -> HealthSample? {
        try await database.read { c in
            try await c.query("SELECT * FROM health_reports WHERE serverId = ? ORDER BY receivedAt DESC, rowid DESC LIMIT 1",
                              [serverId]).first.map(Self.sample)
        }
    }

    public func healthSamples(serverId: String, from: Date?, to: Date?, limit: Int) async throws -> [HealthSample] {
        let lower = from.map(Self.time) ?? -Double.greatestFiniteMagnitude
        let upper = to.map(Self.time) ?? Double.greatestFiniteMagnitude
        return try await database.read { c in
            // The newest `limit` samples in the range, returned oldest first.
            try await c.query("""
                SELECT * FROM (SELECT rowid AS r, serverId, dateTime, receivedAt, body FROM health_reports
                               WHERE serverId = ? AND dateTime >= ? AND dateTime <= ?
                               ORDER BY dateTime DESC, r DESC LIMIT ?) AS newest ORDER BY dateTime, r
                """, [serverId, lower, upper, limit]).map(Self.sample)
        }
    }

    public func eventCount(serverId: String) async throws -> Int {
        try await database.read { c in
            try await c.one(Int.self, "SELECT COUNT(*) FROM events WHERE serverId = ?", [serverId]) ?? 0
        }
    }

    public func events(serverId: String, from: Date?, to: Date?, type: String?, newest: Bool, limit: Int) async throws -> [StoredEvent] {
        var sql = "SELECT rowid AS r, reportId, dateTime, body FROM events WHERE serverId = ? AND dateTime >= ? AND dateTime <= ?"
        var arguments: [any SQLEncodable] = [serverId, from.map(Self.time) ?? -Double.greatestFiniteMagnitude,
                                             to.map(Self.time) ?? Double.greatestFiniteMagnitude]
        if let type {
            sql += " AND lower(type) = lower(?)"
            arguments.append(type)
        }
        let direction = newest ? "DESC" : "ASC"
        sql += " ORDER BY dateTime \(direction), r \(direction) LIMIT ?"
        arguments.append(max(0, limit))
        let query = sql
        let args = arguments
        return try await database.read { c in
            let rows = try await c.query(query, args)
            let ordered = newest ? Array(rows.reversed()) : rows
            return try ordered.compactMap { row -> StoredEvent? in
                let body: String = try row["body"]
                // A row that no longer decodes (written by a future version) is skipped, not fatal.
                guard let event = try? JSONDecoder().decode(AgentEvent.self, from: Data(body.utf8)) else { return nil }
                return StoredEvent(id: try row["reportId"], serverId: serverId, event: event)
            }
        }
    }

    // MARK: - Log collections

    static func logCollection(_ row: SQLRow) throws -> LogCollectionRecord {
        let status: String = try row["status"]
        return LogCollectionRecord(
            id: try row["id"], serverId: try row["serverId"], siteId: try row["siteId"],
            status: LogCollectionRecord.Status(rawValue: status) ?? .failed,
            startDateTime: date(try row["startDateTime"]) ?? .distantPast, endDateTime: date(try row["endDateTime"]) ?? .distantPast,
            sizeInBytes: try row["sizeInBytes"], requestDateTime: date(try row["requestDateTime"]) ?? .distantPast,
            expiryDateTime: date(try row["expiryDateTime"]) ?? .distantPast, failureMessage: try row["failureMessage"],
            blobPath: try row["blobPath"])
    }

    public func insertLogCollection(_ r: LogCollectionRecord) async throws {
        try await database.write { c in
            try await c.query("""
                INSERT INTO log_collections (id, serverId, siteId, status, startDateTime, endDateTime, sizeInBytes, requestDateTime, expiryDateTime)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, [r.id, r.serverId, r.siteId, r.status.rawValue, Self.time(r.startDateTime), Self.time(r.endDateTime),
                      r.sizeInBytes, Self.time(r.requestDateTime), Self.time(r.expiryDateTime)])
        }
    }

    public func logCollection(id: String) async throws -> LogCollectionRecord? {
        try await database.read { c in
            try await c.query("SELECT * FROM log_collections WHERE id = ?", [id]).first.map(Self.logCollection)
        }
    }

    public func listLogCollections() async throws -> [LogCollectionRecord] {
        try await database.read { c in
            try await c.query("SELECT * FROM log_collections ORDER BY requestDateTime DESC, id").map(Self.logCollection)
        }
    }

    public func pendingLogCollections(serverId: String) async throws -> [LogCollectionRecord] {
        try await database.read { c in
            try await c.query("SELECT * FROM log_collections WHERE serverId = ? AND status = 'pending' ORDER BY requestDateTime",
                              [serverId]).map(Self.logCollection)
        }
    }

    public func completeLogCollection(id: String, bytes: [UInt8], at: Date) async throws -> Bool {
        try await database.write { c in
            guard try await c.changes("""
                UPDATE log_collections SET status = 'completed', sizeInBytes = ?, finishedAt = ?
                WHERE id = ? AND status = 'pending' RETURNING 1
                """, [bytes.count, Self.time(at), id]) > 0 else { return false }
            try await c.query("INSERT INTO log_blobs (collectionId, data) VALUES (?, ?)", [id, SQLValue.blob(bytes)])
            return true
        }
    }

    public func logCollectionBytes(id: String) async throws -> [UInt8]? {
        try await database.read { c in
            guard let row = try await c.query("SELECT data FROM log_blobs WHERE collectionId = ?", [id]).first else { return nil }
            guard case .blob(let bytes) = row.value("data") else { throw SQLStoreError("log_blobs.data of \(id) is not a blob") }
            return bytes
        }
    }

    public func failLogCollection(id: String, message: String, at: Date) async throws -> Bool {
        try await database.write { c in
            try await c.changes("""
                UPDATE log_collections SET status = 'failed', failureMessage = ?, finishedAt = ? WHERE id = ? AND status = 'pending' RETURNING 1
                """, [message, Self.time(at), id]) > 0
        }
    }

    // MARK: - Liveness

    public func ping(within limit: Duration) async throws {
        try await database.ping(within: limit)
    }

    public var databaseKind: String { database.kind }

    // MARK: - Shared secrets

    public func sharedSecret(name: String, create: @escaping @Sendable () throws -> String, now: Date) async throws -> String {
        try await database.write { c in
            if let existing = try await c.one(String.self, "SELECT value FROM control_secrets WHERE name = ?", [name]) {
                return existing
            }
            let value = try create()
            try await c.query("INSERT INTO control_secrets (name, value, createdAt) VALUES (?, ?, ?)", [name, value, Self.time(now)])
            return value
        }
    }

    // MARK: - Retention

    public func prune(olderThan: Date, expiredBefore: Date) async throws -> PruneOutcome {
        let cutoff = Self.time(olderThan)
        let expiry = Self.time(expiredBefore)
        return try await database.write { c in
            // Counted, then deleted, in the one transaction: thousands of rows are not sent
            // back just to be counted (`RETURNING`), and CAST keeps PostgreSQL's count an integer.
            func delete(_ table: String, _ condition: String, _ bound: Double) async throws -> Int {
                let n = try await c.one(Int.self, "SELECT CAST(COUNT(*) AS BIGINT) FROM \(table) WHERE \(condition)", [bound]) ?? 0
                if n > 0 { try await c.query("DELETE FROM \(table) WHERE \(condition)", [bound]) }
                return n
            }
            var outcome = PruneOutcome()
            outcome.healthReports = try await delete("health_reports", "dateTime < ?", cutoff)
            outcome.events = try await delete("events", "dateTime < ?", cutoff)
            outcome.reportIds = try await delete("report_ids", "receivedAt < ?", cutoff)
            outcome.blobPaths = try await c.all(String.self, "SELECT blobPath FROM log_collections WHERE expiryDateTime < ? AND blobPath IS NOT NULL",
                                                [expiry])
            outcome.logCollections = try await delete("log_collections", "expiryDateTime < ?", expiry)
            return outcome
        }
    }
}
