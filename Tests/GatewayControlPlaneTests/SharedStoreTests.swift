import Foundation
import GatewayAgentAPI
@testable import GatewayControlPlane
import Testing

/// Two control-plane instances on one store decide the same things at the same moment:
/// each decision must come out once (one first ticket key, one slice per server, one CA).
/// With SQLite the two share a file; with `MST_TEST_POSTGRES` a PostgreSQL schema, where the
/// serializable transactions and their retries are what keeps the answers single.
@Suite struct SharedStoreTests {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    func enrollServers(_ store: SQLControlStore, site: String, count: Int, first: Int = 0) async throws -> [String] {
        if first == 0 { try await store.insertSite(SiteRecord(id: site, displayName: site)) }
        var ids: [String] = []
        for i in first..<(first + count) {
            let id = "\(site)-srv\(i)"
            try await store.insertJoinToken(JoinTokenRecord(id: "tok-\(id)", siteId: site, secretSHA256: "h", createdDateTime: t0,
                                                            expirationDateTime: t0.addingTimeInterval(600)))
            let outcome = try await store.enroll(tokenId: "tok-\(id)", secretSHA256: "h", now: t0,
                                                 server: ServerRecord(id: id, siteId: site, displayName: id, createdDateTime: t0),
                                                 certificate: IssuedCertificate(serial: "serial-\(id)", serverId: id, notBefore: t0,
                                                                                notAfter: t0.addingTimeInterval(3600)))
            #expect(outcome == .enrolled)
            ids.append(id)
        }
        return ids
    }

    @Test func twoInstancesMakeOneFirstKeyOneSliceEachAndOneSecret() async throws {
        let dir = try temporaryDirectory("mstc-shared")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (a, b) = try TestStore.pair(directory: dir)
        let servers = try await enrollServers(a, site: "site1", count: 8)
        let now = t0
        // Every server of the Site checks in on one instance or the other, all at once.
        let keyIds = try await withThrowingTaskGroup(of: [String].self) { group in
            for i in 0..<16 {
                let store = i.isMultiple(of: 2) ? a : b
                group.addTask {
                    try await store.ticketKeys(siteId: "site1", now: now, liveSince: now.addingTimeInterval(-300)).keys
                        .filter { $0.sealingSince != nil }.map(\.id)
                }
            }
            return try await group.reduce(into: [[String]]()) { $0.append($1) }
        }
        let distinct = Set(keyIds.flatMap { $0 })
        #expect(distinct.count == 1, "one first key for the Site, not one per instance: \(distinct)")
        #expect(keyIds.allSatisfy { $0.count == 1 })

        let slices = try await withThrowingTaskGroup(of: Int?.self) { group in
            for (i, server) in servers.enumerated() {
                let store = i.isMultiple(of: 2) ? a : b
                group.addTask { try await store.poolSlice(serverId: server, siteId: "site1", count: 8) }
            }
            return try await group.reduce(into: [Int?]()) { $0.append($1) }
        }
        #expect(Set(slices.compactMap { $0 }) == Set(0..<8), "each server its own slice: \(slices)")
        // A ninth server finds none free; another Site's first server gets the first slice.
        let ninth = try await enrollServers(b, site: "site1", count: 1, first: 8)
        #expect(try await a.poolSlice(serverId: ninth[0], siteId: "site1", count: 8) == nil)
        let other = try await enrollServers(b, site: "site2", count: 1)
        #expect(try await a.poolSlice(serverId: other[0], siteId: "site2", count: 8) == 0)

        let secrets = try await withThrowingTaskGroup(of: String.self) { group in
            for i in 0..<8 {
                let store = i.isMultiple(of: 2) ? a : b
                group.addTask { try await store.sharedSecret(name: "ca", create: { "made-by-\(i)" }, now: now) }
            }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(Set(secrets).count == 1, "every instance gets the one stored secret: \(Set(secrets))")
        #expect(try await b.sharedSecret(name: "ca", create: { "later" }, now: now) == secrets[0])
    }

    @Test func aJoinTokenIsSpentOnceAcrossInstances() async throws {
        let dir = try temporaryDirectory("mstc-shared-token")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (a, b) = try TestStore.pair(directory: dir)
        try await a.insertSite(SiteRecord(id: "s", displayName: "S"))
        try await a.insertJoinToken(JoinTokenRecord(id: "once", siteId: "s", secretSHA256: "h", createdDateTime: t0,
                                                    expirationDateTime: t0.addingTimeInterval(600)))
        let t0 = self.t0
        let outcomes = try await withThrowingTaskGroup(of: EnrollmentOutcome.self) { group in
            for i in 0..<6 {
                let store = i.isMultiple(of: 2) ? a : b
                group.addTask {
                    try await store.enroll(tokenId: "once", secretSHA256: "h", now: t0,
                                           server: ServerRecord(id: "v\(i)", siteId: "s", displayName: "v\(i)", createdDateTime: t0),
                                           certificate: IssuedCertificate(serial: "c\(i)", serverId: "v\(i)", notBefore: t0,
                                                                          notAfter: t0.addingTimeInterval(60)))
                }
            }
            return try await group.reduce(into: [EnrollmentOutcome]()) { $0.append($1) }
        }
        #expect(outcomes.filter { $0 == .enrolled }.count == 1, "\(outcomes)")
        #expect(outcomes.filter { $0 == .alreadyUsed }.count == 5)
        #expect(try await b.listServers(siteId: "s").count == 1)
    }
}

@Suite struct PostgresSettingsTests {
    @Test func addressesParseAndBadOnesSayWhy() throws {
        let s = try PostgresSettings(url: "postgres://mst:p%40ss%2550@db.example:6432/control?sslmode=require")
        #expect(s.user == "mst" && s.password == "p@ss%50" && s.host == "db.example" && s.port == 6432 && s.database == "control",
                "decoded once: %25 is a percent sign")
        #expect(s.tls == .require)
        #expect(!s.description.contains("p@ss") && !s.description.contains("p%40ss"), "never the password in a description")
        #expect(s.startupParameters.contains { $0 == ("statement_timeout", "15s") })
        #expect(try PostgresSettings(url: "postgresql://mst@db.example/control").tls == .verifyFull, "off loopback: verify by default")
        #expect(try PostgresSettings(url: "postgres://mst@127.0.0.1/control").tls == .prefer)
        let socket = try PostgresSettings(url: "postgres://mst@/control?host=/run/postgresql")
        #expect(socket.socketDirectory == "/run/postgresql")
        for bad in ["postgres://db.example/control", "postgres://mst@db.example/", "postgres://mst@db.example/c?sslmode=maybe",
                    "postgres://mst@db.example/c?foo=1", "mysql://mst@db/c"] {
            #expect(throws: SQLStoreError.self, "\(bad)") { try PostgresSettings(url: bad) }
        }
    }

    @Test func thePasswordFileWinsOverTheAddress() throws {
        let dir = try temporaryDirectory("mstc-pgpass")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "from-file\n".write(toFile: dir + "/pw", atomically: true, encoding: .utf8)
        #expect(try PostgresSettings(url: "postgres://mst:inline@h/c", passwordFile: dir + "/pw").password == "from-file")
        #expect(throws: SQLStoreError.self) { try PostgresSettings(url: "postgres://mst@h/c", passwordFile: dir + "/missing") }
    }

    @Test func placeholdersAreNumberedOutsideQuotes() {
        #expect(PostgresDatabase.Connection.numberedPlaceholders("SELECT '?' FROM t WHERE a = ? AND \"b?\" = ? LIMIT ?")
                == "SELECT '?' FROM t WHERE a = $1 AND \"b?\" = $2 LIMIT $3")
    }
}

@Suite struct StoreEdgeTests {
    @Test func aNULCharacterIsRefusedAtTheAPIAsOneStoreWouldRefuseIt() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let (status, error) = try await client.admin(.post, ControlPlane.sitesPath, #"{"displayName":"a\u0000b"}"#)
            #expect(status == .badRequest)
            #expect(error?.errorMessage.contains("NUL") == true)
            let (ok, _) = try await client.admin(.post, ControlPlane.sitesPath, #"{"displayName":"a\\u0000b is text"}"#)
            #expect(ok == .badRequest, "an escaped backslash before u0000 is refused too (rare, and safe)")
        }
        #expect(throws: GraphError.self) { try HTTP.refuseNUL(Data(#"{"id":"x\u0000"}"#.utf8)) }
        try HTTP.refuseNUL(Data(#"{"id":"x\u0001"}"#.utf8))
    }

    @Test func retentionCountsWithoutFetchingTheRows() async throws {
        let store = try TestStore.make()
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)
        try await store.insertSite(SiteRecord(id: "s", displayName: "S"))
        try await store.insertJoinToken(JoinTokenRecord(id: "t", siteId: "s", secretSHA256: "h", createdDateTime: t0, expirationDateTime: t0 + 60))
        _ = try await store.enroll(tokenId: "t", secretSHA256: "h", now: t0, server: ServerRecord(id: "v", siteId: "s", displayName: "v", createdDateTime: t0),
                                   certificate: IssuedCertificate(serial: "1", serverId: "v", notBefore: t0, notAfter: t0 + 3600))
        let items = (0..<250).map { i in
            ReportItem(id: "e\(i)", createdDateTime: GraphDate.string(t0), event: AgentEvent(type: .sessionConnected, dateTime: GraphDate.string(t0), userId: "u"))
        }
        _ = try await store.storeReports(serverId: "v", items: items, receivedAt: t0)
        let pruned = try await store.prune(olderThan: t0 + 1, expiredBefore: t0)
        #expect(pruned.events == 250 && pruned.reportIds == 250)
        #expect(try await store.eventCount(serverId: "v") == 0)
        #expect(try await store.prune(olderThan: t0 + 1, expiredBefore: t0) == PruneOutcome())
    }
}

@Suite struct PostgresDeadlineTests {
    /// postgres-nio's queries ignore cancellation: the deadline must answer without waiting
    /// for the work to end. The work here ignores cancellation the same way (a continuation
    /// resumed only after the deadline answered).
    @Test func theDeadlineAnswersWithoutWaitingForWorkThatIgnoresCancellation() async throws {
        let database = try PostgresDatabase(try PostgresSettings(url: "postgres://nobody@127.0.0.1:9/none?sslmode=disable"), logger: quietLogger)
        defer { database.close() }
        let gate = Gate()
        do {
            _ = try await database.withDeadline(.milliseconds(50)) { () async throws -> Int in
                await gate.wait()
                return 1
            }
            Issue.record("the work's result came back, though it never finished")
        } catch let error as SQLStoreError {
            #expect(error.sqlState == "timeout" && error.isUnavailable)
            #expect(!error.description.contains("nobody:"), "the address without a password")
        }
        await gate.open()
        // Work that finishes first wins, and its error is its own.
        let value = try await database.withDeadline(.seconds(60)) { 7 }
        #expect(value == 7)
        await #expect(throws: CancellationError.self) {
            _ = try await database.withDeadline(.seconds(60)) { () async throws -> Int in throw CancellationError() }
        }
    }

    actor Gate {
        var waiters: [CheckedContinuation<Void, Never>] = []
        var isOpen = false
        func wait() async {
            if isOpen { return }
            await withCheckedContinuation { waiters.append($0) }
        }
        func open() {
            isOpen = true
            for w in waiters { w.resume() }
            waiters = []
        }
    }
}
