import Foundation
import GatewayAgentAPI
import GatewayCore
import Hummingbird
import Logging
import NIOCore
import X509

/// The agent API's logic, apart from HTTP: enrollment, renewal, check-in, reports, log
/// uploads. Callers pass the server the mTLS layer authenticated.
extension ControlPlane {
    // MARK: - Enrollment

    public func enroll(_ request: EnrollmentRequest) async throws(GraphError) -> EnrollmentResponse {
        try Self.checkLimits { () throws(FieldLimitError) in try request.checkLimits() }
        let token: JoinToken
        do {
            token = try JoinToken(parsing: request.joinToken)
        } catch {
            throw GraphError(.badRequest, code: error.code, error.message)
        }
        let log = ["tokenId": "\(token.tokenId)", "hostname": "\(request.hostname.prefix(200))"] as [String: Logger.MetadataValue]
        func refuse(_ status: HTTPResponse.Status, _ code: String, _ message: String) -> GraphError {
            logger.notice("agent.enroll.refused", metadata: log.merging(["reason": "\(message)"]) { a, _ in a })
            return GraphError(status, code: code, message)
        }
        guard token.caSHA256 == ca.sha256Hex else {
            throw refuse(.unauthorized, "invalidJoinToken", "the join token was issued by another control plane (its CA hash does not match this one's)")
        }
        let hostname = request.hostname.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !hostname.isEmpty, hostname.count <= 200, !hostname.contains(where: { $0.isNewline }) else {
            throw refuse(.badRequest, "invalidHostname", "hostname must be 1 to 200 characters on one line")
        }
        // The token is checked (constant-time secret compare, unused, unexpired, Site
        // present) before any signing work; `store.enroll` checks it again as it spends it
        // in the same transaction that creates the server.
        let secretDigest = Secrets.sha256Hex(Data(token.secret.utf8))
        let now = self.now()
        let check: JoinTokenCheck
        do {
            check = try await store.checkJoinToken(tokenId: token.tokenId, secretSHA256: secretDigest, now: now)
        } catch {
            logger.error("agent.enroll.store_failed", metadata: log.merging(["error": "\(error)"]) { a, _ in a })
            throw GraphError.internalError("enrollment could not be checked")
        }
        let siteId: String
        switch check {
        case .valid(let site): siteId = site
        case .refused(let outcome): throw Self.enrollmentRefusal(outcome, refuse)
        }
        let serverId = Secrets.newId()
        let cert: Certificate
        do {
            cert = try ca.issueAgentCertificate(csrPEM: request.csrPEM, serverId: serverId, lifetime: options.agentCertificateLifetime, now: now)
        } catch {
            throw refuse(.badRequest, "invalidCSR", error.message)
        }
        let server = ServerRecord(id: serverId, siteId: siteId, displayName: hostname, createdDateTime: now, agentVersion: String(request.agentVersion.prefix(64)))
        let issued = IssuedCertificate(serial: cert.serialHex, serverId: serverId, notBefore: cert.notValidBefore, notAfter: cert.notValidAfter)
        let outcome: EnrollmentOutcome
        do {
            outcome = try await store.enroll(tokenId: token.tokenId, secretSHA256: secretDigest, now: now,
                                             server: server, certificate: issued)
        } catch {
            logger.error("agent.enroll.store_failed", metadata: log.merging(["error": "\(error)"]) { a, _ in a })
            throw GraphError.internalError("enrollment could not be stored")
        }
        if outcome != .enrolled { throw Self.enrollmentRefusal(outcome, refuse) }
        logger.info("agent.enrolled", metadata: log.merging(["server": "\(serverId)", "site": "\(siteId)",
                                                              "notAfter": "\(GraphDate.string(cert.notValidAfter))"]) { a, _ in a })
        return EnrollmentResponse(serverId: serverId, siteId: siteId, certificateChainPEM: cert.pemString + "\n" + ca.certificatePEM + "\n",
                                  caCertificatePEM: ca.certificatePEM, notAfter: GraphDate.string(cert.notValidAfter))
    }

    static func enrollmentRefusal(_ outcome: EnrollmentOutcome,
                                  _ refuse: (HTTPResponse.Status, String, String) -> GraphError) -> GraphError {
        switch outcome {
        case .enrolled, .unknownToken: return refuse(.unauthorized, "invalidJoinToken", "unknown join token (it was never issued here, or its Site was deleted)")
        case .wrongSecret: return refuse(.unauthorized, "invalidJoinToken", "the join token's secret is wrong")
        case .alreadyUsed: return refuse(.unauthorized, "joinTokenUsed", "the join token was already used (tokens are one-time; create a new one)")
        case .expired: return refuse(.unauthorized, "joinTokenExpired", "the join token expired; create a new one")
        case .siteMissing: return refuse(.unauthorized, "invalidJoinToken", "the join token's Site no longer exists")
        }
    }

    // MARK: - Renewal

    public func renew(server: ServerRecord, request: RenewalRequest) async throws -> EnrollmentResponse {
        try Self.checkLimits { () throws(FieldLimitError) in try request.checkLimits() }
        let cert: Certificate
        do {
            cert = try ca.issueAgentCertificate(csrPEM: request.csrPEM, serverId: server.id, lifetime: options.agentCertificateLifetime, now: now())
        } catch {
            logger.notice("agent.renew.refused", metadata: ["server": "\(server.id)", "reason": "\(error.message)"])
            throw GraphError(.badRequest, code: "invalidCSR", error.message)
        }
        try await store.insertCertificate(IssuedCertificate(serial: cert.serialHex, serverId: server.id, notBefore: cert.notValidBefore, notAfter: cert.notValidAfter))
        logger.info("agent.renewed", metadata: ["server": "\(server.id)", "not_after": "\(GraphDate.string(cert.notValidAfter))"])
        return EnrollmentResponse(serverId: server.id, siteId: server.siteId, certificateChainPEM: cert.pemString + "\n" + ca.certificatePEM + "\n",
                                  caCertificatePEM: ca.certificatePEM, notAfter: GraphDate.string(cert.notValidAfter))
    }

    // MARK: - Check-in

    /// `certificate` is the one the agent authenticated with; renewAfter is 2/3 into its life.
    public func checkin(server: ServerRecord, certificate: IssuedCertificate?, request: CheckinRequest) async throws -> CheckinResponse {
        try Self.checkLimits { () throws(FieldLimitError) in try request.checkLimits() }
        // Counts, as the API describes them (the store also clamps what it keeps).
        for (name, value) in [("sessions", request.sessions), ("sessionLimit", request.sessionLimit)] {
            if let value, value < 0 { throw GraphError.badRequest("\(name): \(value) is negative") }
        }
        let now = self.now()
        var request = request
        request.agentVersion = String(request.agentVersion.prefix(64))
        request.serverVersion = request.serverVersion.map { String($0.prefix(64)) }
        if let apply = request.lastApply, !apply.success {
            logger.notice("agent.configuration.apply_failed", metadata: [
                "server": "\(server.id)", "version": "\(apply.version)", "reason": "\(apply.message ?? "none given")",
            ])
        }
        try await store.recordCheckin(serverId: server.id, at: now, request: request)
        ControlPlaneMetrics.checkin()
        let site = try await store.site(id: server.siteId)
        let version = site?.effectiveConfigurationVersion ?? 0
        var configuration: AdminSettings?
        if version != request.appliedConfigurationVersion, let id = site?.configurationId {
            configuration = try await store.configuration(id: id)
        }
        let actions = try await store.pendingLogCollections(serverId: server.id).map {
            AgentAction(id: $0.id, type: .collectLogs, startDateTime: GraphDate.string($0.startDateTime), endDateTime: GraphDate.string($0.endDateTime))
        }
        let renewAfter = certificate.map { GraphDate.string($0.notAfter.addingTimeInterval(-options.agentCertificateLifetime / 3)) }
        // The Site's ticket keys, every check-in (a few keys: small). Live servers are those
        // that checked in within three intervals; only they hold a rotation back.
        let keys = try await store.ticketKeys(siteId: server.siteId, now: now, liveSince: now.addingTimeInterval(-3 * options.checkinInterval))
        if let promoted = keys.promoted {
            logger.info("site.ticket_key.sealing", metadata: ["site": "\(server.siteId)", "key": "\(promoted)", "why": "every live server of the Site has it"])
        }
        for id in keys.retired {
            logger.info("site.ticket_key.retired", metadata: ["site": "\(server.siteId)", "key": "\(id)", "why": "every ticket it sealed has expired"])
        }
        let ticketKeys = SiteTicketKeys(sealing: keys.sealing, keys: keys.keys.map { SiteTicketKeys.Key(id: $0.id, key: $0.key) },
                                        lifetimeSeconds: Int64(SiteTicketKeyPolicy.lifetime))
        // Revocations: this server's new ones in, the Site's others' out (docs/site.md).
        // Malformed ids are dropped, not stored.
        let incoming = (request.revokedTickets ?? []).filter { Self.isSessionId($0.sessionId) }
        let (revoked, cursor) = try await store.exchangeRevocations(siteId: server.siteId, serverId: server.id, add: incoming,
                                                                    after: max(0, request.revocationsAfter ?? 0), limit: AgentAPILimits.revokedTickets, now: now)
        if !incoming.isEmpty {
            logger.info("site.tickets_revoked", metadata: ["site": "\(server.siteId)", "server": "\(server.id)", "count": "\(incoming.count)"])
        }
        var response = CheckinResponse(serverId: server.id, siteId: server.siteId, configurationVersion: version, configuration: configuration,
                               internalNetworkProbeUrl: site?.internalNetworkProbeUrl, checkinIntervalSeconds: Int(options.checkinInterval),
                               reportIntervalSeconds: Int(options.reportInterval), actions: actions, renewAfter: renewAfter, ticketKeys: ticketKeys,
                               revokedTickets: revoked, revocationsCursor: cursor)
        // Slices of the Site's pool: one per server, so servers never hand out the same
        // address (docs/site.md); eight, as Microsoft sizes a Site at up to eight servers.
        if let index = try await store.poolSlice(serverId: server.id, siteId: server.siteId, count: Self.poolSlices) {
            response.poolSlice = PoolSliceAssignment(index: index, count: Self.poolSlices)
            // Addresses of this slice that live siblings hold for sessions resumed there: not
            // for this server's new logins (docs/site.md, "Foreign leases").
            if let network = try await siteNetwork(site), let slice = PoolSlice(index: index, count: Self.poolSlices) {
                let held = try await store.siblingForeignLeases(siteId: server.siteId, excluding: server.id,
                                                                liveSince: now.addingTimeInterval(-3 * options.checkinInterval))
                response.reservedAddresses = Self.inSlice(held, network: network, slice: slice)
            }
        } else {
            logger.warning("site.pool_slices_exhausted", metadata: ["site": "\(server.siteId)", "server": "\(server.id)", "slices": "\(Self.poolSlices)",
                                                                  "effect": "this server hands out addresses from the whole pool"])
        }
        if let after = server.drainHandOverAfter {
            response.drain = DrainInstruction(handOverAfterSeconds: after < 0 ? nil : Int(after))
        }
        // The Site's rolling upgrade, one step per check-in of any of its servers. Live here
        // means not offline: a server being upgraded is away for a while by design.
        if let release = options.gatewayRelease,
           let outcome = try await store.upgradeStep(siteId: server.siteId, release: release, now: now,
                                                     liveSince: now.addingTimeInterval(-options.offlineAfter), newId: { Secrets.newId() }) {
            logUpgrade(outcome.events, siteId: server.siteId)
            response.upgrade = outcome.instruction(for: server.id)
        }
        return response
    }

    func logUpgrade(_ events: [RollingUpgradePolicy.Event], siteId: String) {
        for event in events {
            switch event {
            case .started(let target):
                logger.notice("site.upgrade.started", metadata: ["site": "\(siteId)", "target": "\(target)", "order": "one server at a time"])
            case .serverStarted(let id, let target):
                logger.notice("site.upgrade.server_started", metadata: ["site": "\(siteId)", "server": "\(id)", "target": "\(target)"])
            case .serverUpgraded(let id, let target):
                logger.notice("site.upgrade.server_upgraded", metadata: ["site": "\(siteId)", "server": "\(id)", "target": "\(target)"])
            case .failed(let id, let message):
                logger.error("site.upgrade.failed", metadata: ["site": "\(siteId)", "server": "\(id)", "error": "\(message)",
                                                             "next": "nothing moves until requestUpgrade is called again"])
            case .completed(let target, let servers):
                logger.notice("site.upgrade.completed", metadata: ["site": "\(siteId)", "target": "\(target)", "servers": "\(servers)"])
            case .superseded(let old, let new):
                logger.notice("site.upgrade.superseded", metadata: ["site": "\(siteId)", "old": "\(old)", "new": "\(new)"])
            case .waiting(let id, let message):
                logger.notice("site.upgrade.waiting", metadata: ["site": "\(siteId)", "server": "\(id)", "reason": "\(message)"])
            }
        }
    }

    // MARK: - Reports

    public func receiveReports(server: ServerRecord, batch: ReportBatch) async throws -> ReportAck {
        guard batch.items.count <= ReportBatch.maxItems else {
            throw GraphError(.contentTooLarge, code: "batchTooLarge", "a batch holds at most \(ReportBatch.maxItems) items, got \(batch.items.count)")
        }
        for (i, item) in batch.items.enumerated() {
            guard !item.id.isEmpty, item.id.count <= 128 else {
                throw GraphError.badRequest("items[\(i)].id must be 1 to 128 characters")
            }
            // Every stored string and array within its bound (AgentAPILimits): a 400 naming
            // the field, which the agent answers by isolating and dropping that one report.
            try Self.checkLimits { () throws(FieldLimitError) in try item.checkLimits("items[\(i)]") }
            // Dates the admin API answers as date-times must be dates: the API prober stored
            // an event whose dateTime was three random characters, and sessionEvents then
            // answered it as its dateTime. (Within the 64-byte limit checked just above.)
            guard GraphDate.parse(item.createdDateTime) != nil else {
                throw GraphError.badRequest("items[\(i)].createdDateTime: '\(item.createdDateTime)' is not an ISO 8601 date-time")
            }
            if let event = item.event, GraphDate.parse(event.dateTime) == nil {
                throw GraphError.badRequest("items[\(i)].event.dateTime: '\(event.dateTime)' is not an ISO 8601 date-time")
            }
            switch item.kind {
            case .health where item.health == nil: throw GraphError.badRequest("items[\(i)] is kind 'health' without 'health'")
            case .event where item.event == nil: throw GraphError.badRequest("items[\(i)] is kind 'event' without 'event'")
            default: break
            }
        }
        if batch.droppedSinceLastAck > 0 {
            logger.warning("agent.reports.dropped", metadata: ["server": "\(server.id)", "dropped": "\(batch.droppedSinceLastAck)"])
        }
        let ack = try await store.storeReports(serverId: server.id, items: batch.items, receivedAt: now())
        ControlPlaneMetrics.reports(health: batch.items.count { $0.kind == .health }, events: batch.items.count { $0.kind == .event },
                                    duplicates: ack.duplicates)
        // A retry after a lost answer: worth a line, since it shows the dedupe at work.
        let level: Logger.Level = ack.duplicates > 0 ? .info : .debug
        logger.log(level: level, "agent.reports.stored", metadata: [
            "server": "\(server.id)", "items": "\(batch.items.count)", "new": "\(batch.items.count - ack.duplicates)", "duplicates": "\(ack.duplicates)",
        ])
        return ack
    }

    // MARK: - Log collections

    /// The collection, if it is this server's and still pending.
    func pendingCollection(_ id: String, server: ServerRecord) async throws -> LogCollectionRecord {
        guard let record = try await store.logCollection(id: id), record.serverId == server.id else {
            throw GraphError.notFound("no log collection '\(id)' for this server")
        }
        guard record.status == .pending else {
            throw GraphError.conflict("log collection '\(id)' is already \(record.status.rawValue)")
        }
        return record
    }

    /// Collects an upload body (at most `maxLogUploadBytes`, exactly) and stores it. Only a
    /// body over the limit marks the collection failed; a body cut short (client gone,
    /// timeout) leaves it pending so the agent's retry can still complete it.
    func receiveLogUpload(server: ServerRecord, collectionId: String, body: RequestBody) async throws {
        _ = try await pendingCollection(collectionId, server: server)
        let limit = options.maxLogUploadBytes
        let buffer: ByteBuffer
        do {
            buffer = try await body.collect(upTo: limit)
        } catch let error where HTTP.isTooLarge(error) {
            let message = "log upload larger than \(limit) bytes"
            try? await recordLogFailure(server: server, collectionId: collectionId, message: message)
            throw GraphError(.contentTooLarge, code: "RequestEntityTooLarge", message)
        } catch {
            logger.notice("agent.logs.interrupted", metadata: ["server": "\(server.id)", "collection": "\(collectionId)", "error": "\(error)"])
            throw GraphError(.badRequest, code: "IncompleteBody",
                             "the log upload was not received completely; log collection '\(collectionId)' stays pending, send it again")
        }
        try await storeLogUpload(server: server, collectionId: collectionId, bytes: Data(buffer: buffer))
    }

    public func storeLogUpload(server: ServerRecord, collectionId: String, bytes: Data) async throws {
        let record = try await pendingCollection(collectionId, server: server)
        // In the store, not a file: every instance of the control plane serves the download.
        guard try await store.completeLogCollection(id: record.id, bytes: Array(bytes), at: now()) else {
            throw GraphError.conflict("log collection '\(collectionId)' is no longer pending")
        }
        logger.info("agent.logs.uploaded", metadata: ["server": "\(server.id)", "collection": "\(record.id)", "bytes": "\(bytes.count)"])
    }

    public func recordLogFailure(server: ServerRecord, collectionId: String, message: String) async throws {
        let record = try await pendingCollection(collectionId, server: server)
        let text = String(message.prefix(1000))
        _ = try await store.failLogCollection(id: record.id, message: text, at: now())
        logger.notice("agent.logs.failed", metadata: ["server": "\(server.id)", "collection": "\(record.id)", "reason": "\(text)"])
    }

    static let poolSlices = 8

    /// The Site's pool, from its configuration.
    func siteNetwork(_ site: SiteRecord?) async throws -> IPv4Prefix? {
        guard let id = site?.configurationId, let network = try await store.configuration(id: id)?.network else { return nil }
        return try? IPv4Prefix.parse(network).get()
    }

    /// Those of `addresses` inside `slice` of `network`, sorted.
    static func inSlice(_ addresses: Set<String>, network: IPv4Prefix, slice: PoolSlice) -> [String] {
        guard let range = slice.range(poolSize: Int(network.size)) else { return [] }
        return addresses.compactMap { text -> IPv4Address? in
            guard let a = IPv4Address(text), network.contains(a) else { return nil }
            return range.contains(Int(a.value - network.network.value)) ? a : nil
        }.sorted().map { "\($0)" }
    }

    static func isSessionId(_ s: String) -> Bool {
        s.utf8.count == 64 && s.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }
}
