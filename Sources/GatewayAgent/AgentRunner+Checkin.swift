import Foundation
import GatewayAgentAPI
import GatewayCore
import GatewayWire
import Logging

extension AgentRunner {
    enum CheckinEnd { case done, reenrolled }

    /// One check-in: report state, take the answer's schedule, configuration, renewal
    /// time and actions.
    func checkin() -> CheckinEnd {
        let now = Date()
        // Someone ran `enroll --force` while we were running: start over with that identity.
        if let current = try? AgentInfo.load(options.paths), current != info { return .reenrolled }

        // An expired agent certificate cannot authenticate; say what to do, retry slowly
        // (the operator may re-enroll, or the clock may have been wrong).
        if let expired = agentCertificateExpiry(now: now) {
            nextCheckin = now.addingTimeInterval(Self.expiredRetryInterval)
            return expired
        }

        let serverVersion = try? gateway.ping().get().version
        let applied = database.appliedConfigurationVersion
        let lastApply = database.lastApplyReported ? nil : database.lastApply?.clampedToLimits()
        // What auth opens with now: the control plane promotes a new Site key only when every
        // live server reports it.
        let authKeys = try? auth.installTicketKeys(nil).get()
        // This server's new revocations, for the Site (reported once the check-in succeeds).
        let localRevocations = try? auth.ticketRevocations(TicketRevocationsRequest(
            after: database.value(.revocationsLocalCursor).flatMap { UInt64($0) } ?? 0, epoch: database.value(.revocationsLocalEpoch),
            limit: AgentAPILimits.revokedTickets)).get()
        var request = CheckinRequest(agentVersion: AgentVersion.string, serverVersion: serverVersion,
                                     appliedConfigurationVersion: applied, lastApply: lastApply, ticketKeyIds: authKeys?.keyIds,
                                     revokedTickets: localRevocations.map { $0.revoked.map { RevokedTicketEntry(sessionId: $0.sessionId, until: $0.until) } },
                                     revocationsAfter: database.int(.revocationsSiteCursor) ?? 0)
        // One status for the whole check-in: foreign leases, sessions and their limit.
        let status = try? gateway.serverStatus().get()
        request.foreignLeases = foreignLeases(status)
        request.sessions = status?.activeSessions
        request.sessionLimit = status?.maxSessions
        request.imageTag = options.imageTag.map { AgentAPILimits.truncated($0, toBytes: AgentAPILimits.imageTag) }
        request.upgrade = upgradeReport()
        let response: CheckinResponse
        do {
            response = try client.checkin(request)
        } catch {
            checkinFailed(error, now: now)
            return .done
        }

        if checkinProblem != nil {
            logger.info("agent.checkin.recovered", metadata: ["after": "\(checkinBackoff.failures) failed attempts"])
        }
        checkinProblem = nil
        checkinBackoff.reset()
        var state: [StateKey: String?] = [
            .lastCheckinDateTime: GraphDate.string(now), .lastCheckinSuccessDateTime: GraphDate.string(now), .lastCheckinResult: "ok",
        ]
        if lastApply != nil { state[.lastApplyReported] = "1" }
        if let local = localRevocations {
            state[.revocationsLocalEpoch] = local.epoch
            state[.revocationsLocalCursor] = String(local.next)
        }
        try? database.set(state)
        logger.debug("agent.checkin", metadata: ["configuration.version": "\(response.configurationVersion)", "actions": "\(response.actions.count)"])

        if response.serverId != info.serverId {
            logger.warning("agent.checkin.server_mismatch", metadata: ["expected": "\(info.serverId)", "got": "\(response.serverId)"])
        }
        // The control plane is trusted to pick sensible intervals (tests use 1 s); the
        // bounds only guard against a zero or absurd value.
        checkinInterval = Double(min(max(response.checkinIntervalSeconds, 1), 3600))
        reportInterval = Double(min(max(response.reportIntervalSeconds, 1), 3600))
        try? database.set([.checkinIntervalSeconds: String(Int(checkinInterval)), .reportIntervalSeconds: String(Int(reportInterval))])
        checkinBackoff.cap = checkinInterval
        probeURL = response.internalNetworkProbeUrl
        nextCheckin = Date().addingTimeInterval(Jitter.around(checkinInterval))
        // A shorter report interval than the one in use takes effect now, not after the old one.
        nextReport = min(nextReport, Date().addingTimeInterval(Jitter.around(reportInterval)))

        applyConfiguration(from: response)
        if let keys = response.ticketKeys { handOver(keys, authHas: authKeys) }
        takeRevocations(response)
        // An upgrade drains the gateway itself; an administrator's drain waits for it.
        if response.upgrade == nil && !upgradeHoldsDrain { applyDrain(response.drain) }
        confirmUpgradeIfOnItsTag()
        applyUpgrade(response.upgrade)
        renewIfDue(response.renewAfter)
        for action in response.actions where !pendingActions.contains(where: { $0.id == action.id }) {
            if !database.isActionDone(action.id) { pendingActions.append(action) }
        }
        return .done
    }

    func checkinFailed(_ error: ControlPlaneError, now: Date) {
        let delay = checkinBackoff.next()
        nextCheckin = now.addingTimeInterval(delay)
        let text = "\(error)"
        try? database.set([.lastCheckinDateTime: GraphDate.string(now), .lastCheckinResult: text])
        // One line per change of state, not one per retry.
        guard text != checkinProblem else { return }
        checkinProblem = text
        var metadata: Logger.Metadata = ["error": "\(text)", "retry": "backoff from 1 s up to \(Int(checkinBackoff.cap)) s"]
        if error.status == 401 || error.status == 403 {
            metadata["hint"] = "the control plane does not accept this agent's certificate (server deleted or certificate revoked?); enroll again: mstunnel-agent enroll --force --control-url \(info.controlPlaneUrl) --join-token-file FILE"
        }
        logger.error("agent.checkin.failed", metadata: metadata)
    }

    /// Reads the agent certificate's expiry; logs and returns `.done` when it has expired.
    func agentCertificateExpiry(now: Date) -> CheckinEnd? {
        guard let data = AtomicFile.read(options.paths.agentCertificate),
              let cert = try? AgentCertificateInfo.load(certificatePEM: String(decoding: data, as: UTF8.self)) else {
            let text = "cannot read the agent certificate \(options.paths.agentCertificate); enroll again: mstunnel-agent enroll --force --control-url \(info.controlPlaneUrl) --join-token-file FILE"
            if identityProblem != text { identityProblem = text; logger.error("agent.certificate.unreadable", metadata: ["error": "\(text)"]) }
            agentCertificateNotAfter = nil
            return .done
        }
        agentCertificateNotAfter = cert.notAfter
        guard now > cert.notAfter else {
            identityProblem = nil
            return nil
        }
        let text = "agent certificate expired at \(GraphDate.string(cert.notAfter)); enroll again with a new join token: mstunnel-agent enroll --force --control-url \(info.controlPlaneUrl) --join-token-file FILE"
        if identityProblem != text {
            identityProblem = text
            logger.error("agent.certificate.expired", metadata: ["error": "\(text)", "retry": "every \(Int(Self.expiredRetryInterval)) s"])
        }
        return .done
    }

    /// The addresses the gateway holds for sessions resumed here from siblings (outside its
    /// slice), for the control plane; nil when the gateway has no slice or does not answer.
    func foreignLeases(_ status: ServerStatusResponse?) -> [String]? {
        guard let leases = status?.foreignLeases else { return nil }
        if leases.count > AgentAPILimits.foreignLeases {
            logger.warning("agent.foreign_leases.truncated", metadata: [
                "held": "\(leases.count)", "reported": "\(AgentAPILimits.foreignLeases)",
                "effect": "a sibling may give one of the unreported addresses to a new login (a conflict its gateway logs)",
            ])
        }
        return Array(leases.prefix(AgentAPILimits.foreignLeases))
    }

    func applyConfiguration(from response: CheckinResponse, now: Date = Date()) {
        let decision = ApplyDecision.decide(response: response, appliedVersion: database.appliedConfigurationVersion,
                                            lastApply: database.lastApply, lastApplyPermanent: database.lastApplyPermanent)
        let slice = Self.sliceSetting(response.poolSlice)
        let reserved = (response.reservedAddresses ?? []).joined(separator: ",")
        switch decision {
        case .nothing, .alreadyRejected:
            // The slice or the addresses siblings hold changed (a first check-in after an
            // upgrade, a slice given later, a failover): the configuration in force again, with them.
            let applied = database.appliedConfigurationVersion
            guard case .nothing = decision, applied > 0,
                  slice != (database.value(.appliedPoolSlice) ?? "") || reserved != (database.value(.appliedPoolReserved) ?? ""),
                  let data = FileManager.default.contents(atPath: options.paths.adminSettings),
                  let current = try? AdminSettings.decode(data) else { return }
            logger.info("agent.pool_slice", metadata: ["slice": "\(slice.isEmpty ? "the whole pool" : slice)",
                                                       "reserved": "\(response.reservedAddresses?.count ?? 0)"])
            let outcome = applier.apply(version: applied, settings: Self.withPoolSlice(current, slice, reserved: reserved), now: now)
            if outcome.inForce {
                try? database.set(.appliedPoolSlice, slice)
                try? database.set(.appliedPoolReserved, reserved)
            }
        case .missingBody(let version):
            logger.warning("agent.config.missing", metadata: ["version": "\(version)", "detail": "check-in announced a new configuration version without the configuration"])
        case .apply(let version, let settings):
            // A retryable failure of this version is tried again at the next regular
            // check-in, not at the one that follows 1 s later only to report it.
            if let retry = applyRetryNotBefore, retry.version == version, now < retry.at { return }
            applyRetryNotBefore = nil
            logger.info("agent.config.applying", metadata: ["version": "\(version)", "from": "\(database.appliedConfigurationVersion)"])
            let outcome = applier.apply(version: version, settings: Self.withPoolSlice(settings, slice, reserved: reserved), now: now)
            if outcome.inForce {
                try? database.set(.appliedPoolSlice, slice)
                try? database.set(.appliedPoolReserved, reserved)
            }
            do {
                try database.recordApply(outcome)
            } catch {
                logger.error("agent.config.record_failed", metadata: ["error": "\(error.message)"])
            }
            if !outcome.inForce && !outcome.permanent {
                // Half an interval: past the 1 s follow-up, before the next regular
                // check-in whatever its jitter (± 10 %).
                applyRetryNotBefore = (version, now.addingTimeInterval(checkinInterval / 2))
            }
            // Tell the control plane the outcome now rather than one interval later.
            nextCheckin = min(nextCheckin, now.addingTimeInterval(1))
        }
    }

    /// Renews the agent certificate once the control plane's `renewAfter` has passed.
    func renewIfDue(_ renewAfter: String?) {
        guard let text = renewAfter, let due = GraphDate.parse(text), Date() >= due else { return }
        logger.info("agent.renew.starting", metadata: ["renew_after": "\(text)"])
        do throws(AgentError) {
            let keyAndCSR = try AgentKeyAndCSR.generate(commonName: HostName.current())
            let response: EnrollmentResponse
            do {
                response = try client.renew(RenewalRequest(csrPEM: keyAndCSR.csrPEM))
            } catch {
                throw AgentError("renewal request failed: \(error)")
            }
            let issued = try Enrollment.checkIssued(response, publicKeyDER: keyAndCSR.publicKeyDER)
            try AgentFiles.installRenewed(options.paths, keyPEM: keyAndCSR.privateKeyPEM, chainPEM: response.certificateChainPEM)
            agentCertificateNotAfter = issued.notAfter
            logger.info("agent.renewed", metadata: ["not_after": "\(GraphDate.string(issued.notAfter))"])
        } catch {
            // The old certificate is untouched; the next check-in tries again.
            logger.error("agent.renew.failed", metadata: ["error": "\(error.message)", "retry": "at the next check-in"])
        }
    }
}

extension AgentRunner {
    /// The Site's ticket keys, handed to mstunnel-auth when it does not seal and open with
    /// exactly them yet. The agent keeps no copy (only auth holds secrets); auth keeps them in
    /// its own directory. Logged by key id only.
    func handOver(_ keys: SiteTicketKeys, authHas: TicketKeysResponse?) {
        let wanted = Set(keys.keys.map(\.id))
        if let has = authHas, has.source == "site", has.sealing == keys.sealing, wanted.isSubset(of: Set(has.keyIds)),
           Set(has.keyIds).subtracting(wanted).allSatisfy({ $0.hasPrefix("local-") }) {
            return
        }
        let file = TicketKeyFile(sealing: keys.sealing, keys: keys.keys.map { TicketKeyFile.Entry(id: $0.id, key: $0.key) },
                                 lifetimeSeconds: keys.lifetimeSeconds)
        switch auth.installTicketKeys(file) {
        case .success(let r):
            ticketKeyProblem = nil
            logger.info("agent.ticket_keys.installed", metadata: ["sealing": "\(r.sealing)", "keys": "\(r.keyIds.joined(separator: ","))"])
        case .failure(let error):
            let text = "\(error)"
            guard text != ticketKeyProblem else { return }
            ticketKeyProblem = text
            logger.warning("agent.ticket_keys.not_installed", metadata: [
                "error": "\(text)", "effect": "sessions of this server may not resume on its siblings (and theirs not here) until it is", "retry": "at the next check-in"])
        }
    }
}

extension AgentRunner {
    /// The Site's other servers' revocations from the check-in answer, handed to auth; the
    /// control plane's cursor moves only once auth has them.
    func takeRevocations(_ response: CheckinResponse) {
        guard let cursor = response.revocationsCursor else { return }
        let add = (response.revokedTickets ?? []).map { RevokedTicket(sessionId: $0.sessionId, until: $0.until) }
        if !add.isEmpty {
            switch auth.ticketRevocations(TicketRevocationsRequest(add: add)) {
            case .success(let r):
                // A copy of such a session on this gateway ends too (a logoff anywhere in the
                // Site ends the session everywhere). The gateway may be down: its restored
                // copies then meet the revoked ticket only if they were never reattached.
                var ended = 0
                switch gateway.endSessions(EndSessionsRequest(sessionIds: add.map(\.sessionId), reason: "revoked in the Site")) {
                case .success(let e): ended = e.ended
                case .failure(.notRunning):
                    break  // its copies come back from auth's store, which dropped these
                case .failure(let error):
                    // Its copies would live on: ask again at the next check-in (the cursor stays).
                    logger.warning("agent.tickets_revoked_failed", metadata: ["error": "\(error)", "retry": "at the next check-in"])
                    return
                }
                logger.info("agent.tickets_revoked", metadata: ["from_site": "\(add.count)", "new_here": "\(r.added)", "sessions_ended": "\(ended)"])
            case .failure(let error):
                logger.warning("agent.tickets_revoked_failed", metadata: ["error": "\(error)", "retry": "at the next check-in"])
                return
            }
        }
        try? database.set(.revocationsSiteCursor, String(cursor))
    }
}

extension AgentRunner {
    /// An administrator's drain, as the check-in answer says it now (docs/site.md, "Drain"):
    /// started on the gateway when asked and not on (again after a gateway restart), ended
    /// when no longer asked — only a drain this agent started, never one an operator started
    /// with `mst-cli server drain`.
    func applyDrain(_ instruction: DrainInstruction?) {
        let ours = database.value(.drainedByControlPlane) == "1"
        guard instruction != nil || ours, let status = try? gateway.serverStatus().get() else { return }
        let draining = status.drain != nil
        if let instruction {
            guard !draining else { return }
            switch gateway.drain(DrainRequest(drain: true, handOverAfterSeconds: instruction.handOverAfterSeconds)) {
            case .success(let r):
                try? database.set(.drainedByControlPlane, "1")
                logger.notice("agent.drain.started", metadata: ["sessions": "\(r.sessions)",
                                                               "hand_over": "\(instruction.handOverAfterSeconds.map { "in \($0) s" } ?? "never (wait)")"])
            case .failure(let error):
                logger.warning("agent.drain.failed", metadata: ["error": "\(error)", "retry": "at the next check-in"])
            }
        } else {
            if draining, case .failure(let error) = gateway.drain(DrainRequest(drain: false)) {
                logger.warning("agent.drain.end_failed", metadata: ["error": "\(error)", "retry": "at the next check-in"])
                return
            }
            try? database.set(.drainedByControlPlane, nil)
            logger.notice("agent.drain.ended", metadata: ["why": "the control plane no longer asks for it"])
        }
    }
}

extension AgentRunner {
    /// The `pool-slice` setting for `assignment` ("" for none).
    static func sliceSetting(_ assignment: PoolSliceAssignment?) -> String {
        assignment?.setting ?? ""
    }

    /// The Site's configuration with this server's slice of the pool in its advanced
    /// settings (replacing any given there), and the addresses of the slice its siblings
    /// hold (`pool-reserved`, comma-separated; only those inside the pool). A slice the pool
    /// is too small for is left out: the server then hands out addresses from the whole
    /// pool, as before slices.
    static func withPoolSlice(_ settings: AdminSettings, _ slice: String, reserved: String = "") -> AdminSettings {
        var s = settings
        var advanced = (s.advancedSettings ?? []).filter { !["pool-slice", "pool-reserved"].contains($0.name.lowercased()) }
        let network = s.network.flatMap({ try? IPv4Prefix.parse($0).get() })
        if !slice.isEmpty, let p = PoolSlice(slice), let network, p.range(poolSize: Int(network.size)) != nil {
            advanced.append(AdminSettings.KeyValuePair(name: "pool-slice", value: slice))
            let inPool = reserved.split(separator: ",").filter { IPv4Address($0).map(network.contains) ?? false }
            if !inPool.isEmpty {
                advanced.append(AdminSettings.KeyValuePair(name: "pool-reserved", value: inPool.joined(separator: ",")))
            }
        }
        s.advancedSettings = advanced.isEmpty ? nil : advanced
        return s
    }
}

