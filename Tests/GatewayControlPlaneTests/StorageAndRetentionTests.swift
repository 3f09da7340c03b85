import Foundation
import GatewayAgentAPI
import GatewayCore
@testable import GatewayControlPlane
import GRDB
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Testing

func posixMode(_ path: String) throws -> Int {
    let attributes = try FileManager.default.attributesOfItem(atPath: path)
    return ((attributes[.posixPermissions] as? NSNumber)?.intValue ?? -1) & 0o777
}

func temporaryDirectory(_ prefix: String) throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
    return dir
}

@Suite struct FilePermissionTests {
    @Test func databaseAndCompanionsAreOwnerOnly() async throws {
        let dir = try temporaryDirectory("mstc-db")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/control.sqlite"
        let store = try SQLControlStore.sqlite(path: path)
        try await store.insertSite(SiteRecord(id: "s1", displayName: "S"))
        for file in [path, path + "-wal", path + "-shm"] {
            #expect(FileManager.default.fileExists(atPath: file), "\(file)")
            #expect(try posixMode(file) == 0o600, "\(file)")
        }
    }

    @Test func existingDatabaseFilesAreTightened() async throws {
        let dir = try temporaryDirectory("mstc-db-old")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/control.sqlite"
        do {
            _ = try SQLControlStore.sqlite(path: path)
        }
        for file in [path, path + "-wal", path + "-shm"] where FileManager.default.fileExists(atPath: file) {
            #expect(chmod(file, 0o644) == 0)
        }
        let reopened = try SQLControlStore.sqlite(path: path)
        try await reopened.insertSite(SiteRecord(id: "s1", displayName: "S"))
        for file in [path, path + "-wal", path + "-shm"] where FileManager.default.fileExists(atPath: file) {
            #expect(try posixMode(file) == 0o600, "\(file)")
        }
    }

    @Test func stateAndLogDirectoriesAre0700EvenWhenTheyExist() async throws {
        let dir = try temporaryDirectory("mstc-state")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/logs", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        #expect(try posixMode(dir) == 0o755)
        var config = ServeConfiguration()
        config.stateDirectory = dir
        config.listenPort = 0
        let prepared = try await ControlPlaneServer.prepare(config, logger: quietLogger)
        #expect(try posixMode(dir) == 0o700)
        #expect(try posixMode(dir + "/logs") == 0o700)
        #expect(try posixMode(dir + "/control.sqlite") == 0o600)
        #expect(prepared.controlPlane.options.retention == 30 * 24 * 3600)
    }

    @Test func stateFileWritesDoNotCollide() async throws {
        let dir = try temporaryDirectory("mstc-write")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/blob"
        let payloads = (0..<24).map { i in Data(repeating: UInt8(i), count: 256 * 1024) }
        let failures = await withTaskGroup(of: Bool.self) { group in
            for payload in payloads {
                group.addTask { (try? StateFiles.write(payload, to: path, mode: 0o600)) == nil }
            }
            var failed = 0
            for await f in group where f { failed += 1 }
            return failed
        }
        #expect(failures == 0)
        let final = try #require(FileManager.default.contents(atPath: path))
        #expect(payloads.contains(final), "the file is one whole payload, not a mix")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["blob"], "no temp files left")
        #expect(try posixMode(path) == 0o600)
        try StateFiles.write(Data("x".utf8), to: dir + "/public", mode: 0o644)
        #expect(try posixMode(dir + "/public") == 0o644)
    }
}

@Suite struct ReportStorageTests {
    func event(_ type: AgentEvent.Kind, _ date: Date, user: String) -> AgentEvent {
        AgentEvent(type: type, dateTime: GraphDate.string(date), userId: user)
    }

    @Test func reportIdsArePerServer() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let (_, siteId) = try await Fixtures.siteWithConfiguration(client)
            let a = try await env.enroll(client: client, siteId: siteId, hostname: "a")
            let b = try await env.enroll(client: client, siteId: siteId, hostname: "b")
            let now = GraphDate.string(env.clock.now())
            let batch = ReportBatch(items: [
                ReportItem(id: "same-id", createdDateTime: now, event: AgentEvent(type: .sessionConnected, dateTime: now, userId: "u")),
            ])
            #expect(try await env.controlPlane.receiveReports(server: a.server, batch: batch).duplicates == 0)
            let second = try await env.controlPlane.receiveReports(server: b.server, batch: batch)
            #expect(second.duplicates == 0, "another server's id must not shadow this one's")
            #expect(try await env.store.eventCount(serverId: b.server.id) == 1)
            #expect(try await env.controlPlane.receiveReports(server: b.server, batch: batch).duplicates == 1)
        }
    }

    @Test func migrationV2KeepsV1DataAndChangesTheKey() async throws {
        let queue = try DatabaseQueue(configuration: SQLiteDatabase.configuration())
        try SQLiteMigrations.migrator.migrate(queue, upTo: "v1")
        try await queue.write { db in
            try db.execute(sql: "INSERT INTO sites (id, body) VALUES ('s', '{\"id\":\"s\",\"displayName\":\"S\",\"configurationVersion\":0}')")
            try db.execute(sql: "INSERT INTO servers (id, siteId, displayName, deploymentMode, createdAt) VALUES ('v', 's', 'gw', 'standaloneRootful', 0)")
            try db.execute(sql: "INSERT INTO report_ids (id, serverId, receivedAt) VALUES ('r1', 'v', 100)")
            try db.execute(sql: "INSERT INTO health_reports (serverId, dateTime, reportId, body) VALUES ('v', 100, 'r1', ?)",
                           arguments: [try SQLControlStore.encode(Fixtures.healthReport())])
        }
        let store = SQLControlStore(database: try SQLiteDatabase(writer: queue, readsShareTheWriter: true))
        let applied = try await queue.read { db in try SQLiteMigrations.migrator.appliedMigrations(db) }
        #expect(applied == ["v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9"])
        let latest = try await store.latestHealth(serverId: "v")
        #expect(latest?.receivedDateTime == Date(timeIntervalSince1970: 100))
        // The old id is still known for its server, and the same id is new for another.
        let ack = try await store.storeReports(serverId: "v", items: [ReportItem(id: "r1", createdDateTime: "2027-01-01T00:00:00Z", health: Fixtures.healthReport())],
                                               receivedAt: Date(timeIntervalSince1970: 200))
        #expect(ack.duplicates == 1)
        try await queue.write { db in
            try db.execute(sql: "INSERT INTO servers (id, siteId, displayName, deploymentMode, createdAt) VALUES ('w', 's', 'gw2', 'standaloneRootful', 0)")
        }
        let other = try await store.storeReports(serverId: "w", items: [ReportItem(id: "r1", createdDateTime: "2027-01-01T00:00:00Z", health: Fixtures.healthReport())],
                                                 receivedAt: Date(timeIntervalSince1970: 200))
        #expect(other.duplicates == 0)
    }

    @Test func futureDatedReportDoesNotStayLatest() async throws {
        let store = try TestStore.make()
        try await store.insertSite(SiteRecord(id: "s", displayName: "S"))
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)
        let token = JoinTokenRecord(id: "t", siteId: "s", secretSHA256: "x", createdDateTime: t0, expirationDateTime: t0.addingTimeInterval(60))
        try await store.insertJoinToken(token)
        let server = ServerRecord(id: "v", siteId: "s", displayName: "gw", createdDateTime: t0)
        #expect(try await store.enroll(tokenId: "t", secretSHA256: "x", now: t0, server: server,
                                       certificate: IssuedCertificate(serial: "01", serverId: "v", notBefore: t0, notAfter: t0.addingTimeInterval(3600))) == .enrolled)
        let future = GraphDate.string(t0.addingTimeInterval(365 * 86400))
        _ = try await store.storeReports(serverId: "v", items: [ReportItem(id: "f", createdDateTime: future, health: Fixtures.healthReport(cpu: 99))], receivedAt: t0)
        let first = try #require(try await store.latestHealth(serverId: "v"))
        #expect(first.dateTime == t0, "a future time is clamped to the receive time")
        let later = t0.addingTimeInterval(60)
        _ = try await store.storeReports(serverId: "v", items: [ReportItem(id: "n", createdDateTime: GraphDate.string(later), health: Fixtures.healthReport(cpu: 5))],
                                         receivedAt: later)
        let latest = try #require(try await store.latestHealth(serverId: "v"))
        #expect(latest.report.cpuUsagePercent == 5)
        #expect(latest.receivedDateTime == later)
    }

    @Test func sessionEventsAreTheNewestAndFilterInTheQuery() async throws {
        let env = try TestEnv { $0.maxSessionEvents = 10 }
        try await env.app().test(.router) { client in
            let (_, siteId) = try await Fixtures.siteWithConfiguration(client)
            let e = try await env.enroll(client: client, siteId: siteId)
            let start = env.clock.now().addingTimeInterval(-3600)
            // 30 events, one a minute; every third a disconnect.
            let items = (0..<30).map { i in
                ReportItem(id: "e\(i)", createdDateTime: GraphDate.string(start.addingTimeInterval(Double(i) * 60)),
                           event: event(i % 3 == 2 ? .sessionDisconnected : .sessionConnected, start.addingTimeInterval(Double(i) * 60), user: "u\(i)"))
            }
            _ = try await env.controlPlane.receiveReports(server: e.server, batch: ReportBatch(items: items))
            let base = ControlPlane.sitesPath + "/\(siteId)/microsoftTunnelServers/\(e.server.id)/sessionEvents"
            func ids(_ query: String) async throws -> [String] {
                let (status, body) = try await client.admin(.get, base + query)
                #expect(status == .ok, "\(query): \(body?.errorMessage ?? "")")
                return body?["value"]?.array.compactMap { $0["id"]?.string } ?? []
            }
            #expect(try await ids("") == (20..<30).map { "e\($0)" }, "the newest 10, oldest first")
            // The type filter narrows the query itself: 10 disconnects exist, all newest 10 come back.
            #expect(try await ids("?$filter=type+eq+'sessionDisconnected'") == stride(from: 2, to: 30, by: 3).suffix(10).map { "e\($0)" })
            #expect(try await ids("?$filter=type%20eq%20'SESSIONDISCONNECTED'&$top=2") == ["e26", "e29"])
            #expect(try await ids("?$top=3") == ["e27", "e28", "e29"])
            // From a start time: the first ones from it (paging forward).
            let from = GraphDate.string(start.addingTimeInterval(5 * 60))
            #expect(try await ids("?startDateTime=\(from)&$top=2") == ["e5", "e6"])
            #expect(try await ids("?startDateTime=\(from)") == (5..<15).map { "e\($0)" })
            // A filter not pushed down still works on the newest window.
            #expect(try await ids("?$filter=userId+eq+'u29'+or+userId+eq+'u0'") == ["e29"])
        }
    }

    @Test func retentionPrunesOldRowsAndExpiredLogCollections() async throws {
        let env = try TestEnv { $0.retention = 86400 }
        try await env.app().test(.router) { client in
            let (_, siteId) = try await Fixtures.siteWithConfiguration(client)
            let e = try await env.enroll(client: client, siteId: siteId)
            let serverPath = ControlPlane.sitesPath + "/\(siteId)/microsoftTunnelServers/\(e.server.id)"
            let old = GraphDate.string(env.clock.now())
            _ = try await env.controlPlane.receiveReports(server: e.server, batch: ReportBatch(items: [
                ReportItem(id: "h-old", createdDateTime: old, health: Fixtures.healthReport()),
                ReportItem(id: "e-old", createdDateTime: old, event: AgentEvent(type: .sessionConnected, dateTime: old, userId: "u")),
            ]))
            let (_, created) = try await client.admin(.post, serverPath + "/createServerLogCollectionRequest",
                                                      #"{"startDateTime":"2027-01-15T07:00:00Z","endDateTime":"2027-01-15T08:00:00Z"}"#)
            let collectionId = try #require(created?["id"]?.string)
            try await env.controlPlane.storeLogUpload(server: e.server, collectionId: collectionId, bytes: Data("logs\n".utf8))
            #expect(try await env.store.logCollectionBytes(id: collectionId) == Array("logs\n".utf8))

            // Nothing is old yet.
            #expect(try await env.controlPlane.pruneOnce() == PruneOutcome())

            env.clock.advance(86400 + 1)
            let fresh = GraphDate.string(env.clock.now())
            _ = try await env.controlPlane.receiveReports(server: e.server, batch: ReportBatch(items: [
                ReportItem(id: "h-new", createdDateTime: fresh, health: Fixtures.healthReport()),
                ReportItem(id: "e-new", createdDateTime: fresh, event: AgentEvent(type: .sessionDisconnected, dateTime: fresh, userId: "u")),
            ]))
            let pruned = try await env.controlPlane.pruneOnce()
            #expect(pruned.healthReports == 1)
            #expect(pruned.events == 1)
            #expect(pruned.reportIds == 2)
            #expect(pruned.logCollections == 0, "the collection expires after 7 days, not 1")
            #expect(try await env.store.eventCount(serverId: e.server.id) == 1)
            #expect(try await env.store.healthSamples(serverId: e.server.id, from: nil, to: nil, limit: 10).count == 1)

            env.clock.advance(7 * 86400)
            let later = try await env.controlPlane.pruneOnce()
            #expect(later.logCollections == 1)
            #expect(try await env.store.logCollection(id: collectionId) == nil)
            #expect(try await env.store.logCollectionBytes(id: collectionId) == nil, "the bytes go with their collection")
        }
    }

    @Test func deletingAServerDeletesItsLogCollections() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let (_, siteId) = try await Fixtures.siteWithConfiguration(client)
            let e = try await env.enroll(client: client, siteId: siteId)
            let serverPath = ControlPlane.sitesPath + "/\(siteId)/microsoftTunnelServers/\(e.server.id)"
            let (_, created) = try await client.admin(.post, serverPath + "/createServerLogCollectionRequest",
                                                      #"{"startDateTime":"2027-01-15T07:00:00Z","endDateTime":"2027-01-15T08:00:00Z"}"#)
            let collectionId = try #require(created?["id"]?.string)
            try await env.controlPlane.storeLogUpload(server: e.server, collectionId: collectionId, bytes: Data("logs\n".utf8))
            #expect(try await env.store.logCollectionBytes(id: collectionId) != nil)
            let (status, _) = try await client.admin(.delete, serverPath)
            #expect(status == .noContent)
            #expect(try await env.store.logCollection(id: collectionId) == nil)
            #expect(try await env.store.logCollectionBytes(id: collectionId) == nil)
            let (_, list) = try await client.admin(.get, ControlPlane.logCollectionsPath)
            #expect(list?["value"]?.array.isEmpty == true)
        }
    }
}

@Suite struct LogUploadTests {
    /// A body that delivers some bytes, then fails as a client disconnect would.
    func brokenBody() -> RequestBody {
        let stream = AsyncThrowingStream<ByteBuffer, any Error> { continuation in
            continuation.yield(ByteBuffer(string: "partial"))
            continuation.finish(throwing: CancellationError())
        }
        return RequestBody(asyncSequence: stream)
    }

    func collection(_ env: TestEnv, _ client: some TestClientProtocol) async throws -> (Enrolled, String) {
        let (_, siteId) = try await Fixtures.siteWithConfiguration(client)
        let e = try await env.enroll(client: client, siteId: siteId)
        let (_, created) = try await client.admin(.post, ControlPlane.sitesPath + "/\(siteId)/microsoftTunnelServers/\(e.server.id)/createServerLogCollectionRequest",
                                                  #"{"startDateTime":"2027-01-15T07:00:00Z","endDateTime":"2027-01-15T08:00:00Z"}"#)
        return (e, try #require(created?["id"]?.string))
    }

    @Test func interruptedUploadLeavesTheCollectionPending() async throws {
        let env = try TestEnv { $0.maxLogUploadBytes = 16 }
        try await env.app().test(.router) { client in
            let (e, id) = try await collection(env, client)
            do {
                try await env.controlPlane.receiveLogUpload(server: e.server, collectionId: id, body: brokenBody())
                Issue.record("an interrupted upload must not succeed")
            } catch let error as GraphError {
                #expect(error.status == .badRequest)
                #expect(error.message.contains("pending"))
            }
            #expect(try await env.store.logCollection(id: id)?.status == .pending)
            // The retry goes through.
            try await env.controlPlane.receiveLogUpload(server: e.server, collectionId: id, body: RequestBody(buffer: ByteBuffer(string: "0123456789abcdef")))
            let done = try await env.store.logCollection(id: id)
            #expect(done?.status == .completed)
            #expect(done?.sizeInBytes == 16, "exactly the limit is accepted")
        }
    }

    @Test func tooLargeUploadFailsTheCollection() async throws {
        let env = try TestEnv { $0.maxLogUploadBytes = 16 }
        try await env.app().test(.router) { client in
            let (e, id) = try await collection(env, client)
            do {
                try await env.controlPlane.receiveLogUpload(server: e.server, collectionId: id, body: RequestBody(buffer: ByteBuffer(string: "0123456789abcdefX")))
                Issue.record("an upload over the limit must be refused")
            } catch let error as GraphError {
                #expect(error.status == .contentTooLarge)
            }
            let record = try await env.store.logCollection(id: id)
            #expect(record?.status == .failed)
            #expect(record?.failureMessage?.contains("16 bytes") == true)
        }
    }

    @Test func bodyErrorsAreClassified() {
        #expect(HTTP.isTooLarge(NIOTooManyBytesError(maxBytes: 1)))
        #expect(HTTP.isTooLarge(HTTPError(.contentTooLarge)))
        #expect(!HTTP.isTooLarge(CancellationError()))
        #expect(!HTTP.isTooLarge(HTTPError(.requestTimeout)))
        #expect(HTTP.bodyError(CancellationError(), limit: 10).status == .badRequest)
    }
}
