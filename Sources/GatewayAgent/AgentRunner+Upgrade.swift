import Foundation
import GatewayAgentAPI
import GatewayCore
import GatewayWire

/// The agent's part in a rolling upgrade (docs/site.md, "Rolling upgrade"). The agent holds
/// no capability and no container-engine socket, so it never switches images itself: it
/// drains its gateway, hands the sessions to the Site's other servers, and then asks the
/// host's updater (deploy/mstunnel-updater, root on the host) through a file in
/// `<state-dir>/upgrade`. The updater recreates the containers on the new tag — this agent
/// among them — checks their health, rolls back on failure and writes its result, which the
/// agent (new or rolled back) reports at its next check-in.
///
/// Stages, kept in the agent's database so a restart anywhere in between continues:
/// `draining` → `requested` → the updater's `succeeded` / `failed` (or `failed` here, before
/// anything was asked of the updater: not in containers, no updater running, no answer).
extension AgentRunner {
    var upgradeStage: UpgradeReport.State? { database.value(.upgradeStage).flatMap(UpgradeReport.State.init) }

    /// True while this agent's upgrade is draining or waiting for the updater: an
    /// administrator's drain instruction is not applied (nor ended) meanwhile.
    var upgradeHoldsDrain: Bool { upgradeStage == .draining || upgradeStage == .requested }

    /// The agent's own request files, and the updater's (root's, read-only here).
    func upgradeFile(_ name: String) -> String { options.paths.upgradeDirectory + "/" + name }
    func updaterFile(_ name: String) -> String { options.updaterDirectory + "/" + name }

    /// The updater's result for the current attempt, if it wrote one.
    func upgradeResult() -> UpgradeReport? {
        guard let attempt = database.value(.upgradeAttempt), let data = AtomicFile.read(updaterFile(UpgradeFiles.result)),
              let result = UpgradeFiles.result(from: String(decoding: data, as: UTF8.self)), result.id == attempt else { return nil }
        return result
    }

    /// For the check-in: the current attempt's state (the updater's result once there is one).
    func upgradeReport() -> UpgradeReport? {
        if let result = upgradeResult() { return result }
        guard let attempt = database.value(.upgradeAttempt), let tag = database.value(.upgradeTag), let stage = upgradeStage else { return nil }
        return UpgradeReport(id: attempt, tag: tag, state: stage, message: database.value(.upgradeMessage),
                             dateTime: database.value(.upgradeSince) ?? GraphDate.string(Date()))
    }

    /// An updater is running on the host: its heartbeat file is recent.
    func updaterAlive(now: Date) -> Bool {
        var st = stat()
        guard stat(updaterFile(UpgradeFiles.alive), &st) == 0 else { return false }
        let mtime = Date(timeIntervalSince1970: TimeInterval(st.st_mtim.tv_sec))
        return abs(now.timeIntervalSince(mtime)) <= UpgradeFiles.aliveWithin
    }

    /// After a successful check-in: the agent on the attempt's tag tells the updater it is up
    /// and reaches the control plane — the updater's last check before "succeeded", so a
    /// release whose agent cannot check in is rolled back too.
    func confirmUpgradeIfOnItsTag() {
        guard upgradeStage == .requested, let attempt = database.value(.upgradeAttempt), let tag = database.value(.upgradeTag),
              options.imageTag == tag else { return }
        let path = upgradeFile(UpgradeFiles.confirmed)
        if let data = AtomicFile.read(path), UpgradeFiles.parse(String(decoding: data, as: UTF8.self))["id"] == attempt { return }
        do {
            try AtomicFile.write(Data("id=\(attempt)\n".utf8), to: path, mode: 0o644)
            logger.notice("agent.upgrade.confirmed", metadata: ["attempt": "\(attempt)", "tag": "\(tag)", "next": "the updater's health check ends"])
        } catch {
            logger.warning("agent.upgrade.confirm_failed", metadata: ["error": "\(error.message)", "retry": "at the next check-in"])
        }
    }

    func applyUpgrade(_ instruction: UpgradeInstruction?, now: Date = Date()) {
        if let instruction, database.value(.upgradeAttempt) != instruction.id {
            startUpgrade(instruction, now: now)
            return
        }
        // The updater answered (possibly before it restarted us): a failure it met before
        // touching the containers leaves this gateway draining — end that.
        if let result = upgradeResult() {
            if upgradeHoldsDrain {
                if result.state == .failed { endUpgradeDrain(why: "the upgrade to \(result.tag) failed: \(result.message ?? "no reason given")") }
                try? database.set([.upgradeStage: result.state.rawValue, .upgradeMessage: result.message, .upgradeDrainOurs: nil])
                logger.notice("agent.upgrade.result", metadata: ["attempt": "\(result.id)", "tag": "\(result.tag)", "state": "\(result.state.rawValue)",
                                                                "message": "\(result.message ?? "")"])
            }
            return
        }
        guard let instruction else {
            // No longer asked, and no answer from the updater: the control plane gave this
            // attempt up (failed, timed out, superseded). Withdraw the request, so an updater
            // that comes back later does not act on it, and take clients again.
            guard upgradeHoldsDrain else { return }
            unlink(upgradeFile(UpgradeFiles.desired))
            endUpgradeDrain(why: "the control plane no longer asks for the upgrade")
            try? database.set([.upgradeStage: nil, .upgradeDrainOurs: nil])
            logger.notice("agent.upgrade.withdrawn", metadata: ["attempt": "\(database.value(.upgradeAttempt) ?? "")",
                                                               "why": "the control plane no longer asks for it"])
            return
        }
        guard upgradeStage == .draining else { return }
        // Draining: ask the updater once the tunnels are gone, or at the drain's deadline.
        let since = database.value(.upgradeSince).flatMap(GraphDate.parse) ?? now
        let deadline = since.addingTimeInterval(TimeInterval(instruction.handOverAfterSeconds + instruction.drainTimeoutSeconds))
        let connected = try? gateway.serverStatus().get().connectedSessions
        guard connected == 0 || now >= deadline else { return }
        unlink(upgradeFile(UpgradeFiles.confirmed))
        let text = UpgradeFiles.desiredText(id: instruction.id, tag: instruction.tag, requested: GraphDate.string(now))
        do {
            try AtomicFile.write(Data(text.utf8), to: upgradeFile(UpgradeFiles.desired), mode: 0o644)
        } catch {
            return failUpgrade("cannot write \(upgradeFile(UpgradeFiles.desired)): \(error.message)", now: now)
        }
        try? database.set([.upgradeStage: UpgradeReport.State.requested.rawValue, .upgradeSince: GraphDate.string(now)])
        logger.notice("agent.upgrade.requested", metadata: [
            "attempt": "\(instruction.id)", "tag": "\(instruction.tag)",
            "connected": connected.map { "\($0)" } ?? "unknown (the gateway does not answer)",
            "next": "the host's updater recreates the containers on the new tag",
        ])
    }

    func startUpgrade(_ instruction: UpgradeInstruction, now: Date) {
        try? database.set([.upgradeAttempt: instruction.id, .upgradeTag: instruction.tag, .upgradeStage: UpgradeReport.State.draining.rawValue,
                           .upgradeSince: GraphDate.string(now), .upgradeMessage: nil, .upgradeDrainOurs: nil])
        guard UpgradeReport.isValidTag(instruction.tag), UpgradeFiles.isAttemptId(instruction.id) else {
            return failUpgrade("the control plane asked for an image tag or attempt id this agent does not take", now: now)
        }
        guard let current = options.imageTag else {
            return failUpgrade("this server does not run in containers (MSTUNNEL_IMAGE_TAG is unset): upgrade it by hand", now: now)
        }
        guard updaterAlive(now: now) else {
            return failUpgrade("no updater runs on this host (\(updaterFile(UpgradeFiles.alive)) missing or older than \(Int(UpgradeFiles.aliveWithin)) s): start deploy/mstunnel-updater", now: now)
        }
        // A drain already on (an operator's, or the control plane's) is kept as it is: its
        // sessions leave as that drain says, and it is not ours to end.
        if let status = try? gateway.serverStatus().get(), status.drain != nil {
            logger.notice("agent.upgrade.started", metadata: [
                "attempt": "\(instruction.id)", "from": "\(current)", "to": "\(instruction.tag)", "sessions": "\(status.connectedSessions)",
                "hand_over": "as the drain already on says",
            ])
            return
        }
        switch gateway.drain(DrainRequest(drain: true, handOverAfterSeconds: instruction.handOverAfterSeconds)) {
        case .success(let r):
            try? database.set(.upgradeDrainOurs, "1")
            logger.notice("agent.upgrade.started", metadata: [
                "attempt": "\(instruction.id)", "from": "\(current)", "to": "\(instruction.tag)", "sessions": "\(r.sessions)",
                "hand_over": "in \(instruction.handOverAfterSeconds) s",
            ])
        case .failure(let error):
            // A gateway that does not answer has no tunnels to hand over: the upgrade may
            // well be what brings it back.
            logger.warning("agent.upgrade.drain_failed", metadata: ["error": "\(error)", "effect": "the updater is asked without a drain"])
        }
    }

    func failUpgrade(_ message: String, now: Date) {
        endUpgradeDrain(why: message)
        try? database.set([.upgradeStage: UpgradeReport.State.failed.rawValue, .upgradeSince: GraphDate.string(now), .upgradeMessage: message,
                           .upgradeDrainOurs: nil])
        logger.error("agent.upgrade.failed", metadata: ["attempt": "\(database.value(.upgradeAttempt) ?? "")", "error": "\(message)"])
    }

    /// Ends the drain only if this upgrade started it.
    func endUpgradeDrain(why: String) {
        guard database.value(.upgradeDrainOurs) == "1", let status = try? gateway.serverStatus().get(), status.drain != nil else { return }
        if case .failure(let error) = gateway.drain(DrainRequest(drain: false)) {
            logger.warning("agent.drain.end_failed", metadata: ["error": "\(error)", "retry": "at the next check-in"])
        } else {
            logger.notice("agent.drain.ended", metadata: ["why": "\(why)"])
        }
    }
}
