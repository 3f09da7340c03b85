import Foundation
import GatewayAgentAPI
import GatewayWire
import Logging

public struct RunOptions: Sendable {
    public var paths: AgentPaths
    public var runDirectory: String
    public var logDirectory: String
    public var outboxMax: Int
    /// Primary gids accepted for the process listening on `<run-dir>/server.sock`, beyond
    /// root and the agent's own uid (`--gateway-gid`); see `GatewayControl`.
    public var gatewayGIDs: Set<UInt32>
    /// Given each reading of the gateway's status (every `AgentRunner.eventsInterval`), or
    /// nil when the gateway did not answer: the metrics endpoint (`--metrics-listen`).
    public var gatewayStatusObserver: (@Sendable (ServerStatusResponse?) -> Void)?
    /// mstunnel-auth's socket and the uids trusted to listen on it (`--auth-uid`): the Site's
    /// ticket keys from the control plane are handed to it (docs/site.md).
    public var authSocket: String?
    public var authUIDs: Set<UInt32> = [991]
    /// The image tag this stack's containers run (compose hands `MSTUNNEL_TAG` to the agent
    /// as `MSTUNNEL_IMAGE_TAG`); nil outside containers, where the Site never upgrades it.
    public var imageTag: String? = ProcessInfo.processInfo.environment["MSTUNNEL_IMAGE_TAG"].flatMap { $0.isEmpty ? nil : $0 }
    /// The host updater's own directory, read-only here (compose mounts it): its `result` and
    /// `updater.alive`. Root writes there, so it is not the agent's: the agent could otherwise
    /// turn root's writes into links elsewhere (docs/security.md).
    public var updaterDirectory: String = ProcessInfo.processInfo.environment["MSTUNNEL_UPDATER_DIR"].flatMap { $0.isEmpty ? nil : $0 }
        ?? "/var/lib/mstunnel-updater"

    public init(paths: AgentPaths, runDirectory: String = "/run/mstunnel", logDirectory: String = "/var/log/mstunnel", outboxMax: Int = 100_000,
                gatewayGIDs: Set<UInt32> = [], gatewayStatusObserver: (@Sendable (ServerStatusResponse?) -> Void)? = nil) {
        self.paths = paths
        self.runDirectory = runDirectory
        self.logDirectory = logDirectory
        self.outboxMax = outboxMax
        self.gatewayGIDs = gatewayGIDs
        self.gatewayStatusObserver = gatewayStatusObserver
    }
}

/// `mstunnel-agent run`: the poll loop.
///
/// Threading: the agent is one plain thread running one loop. Every step (a check-in, a
/// report batch, a gateway call, a log upload) is blocking I/O done in order; there is no
/// Swift concurrency in the agent at all, so a slow control plane can never starve a
/// cooperative thread pool, and the order of effects (store, then send, then delete) is
/// simply program order. Signals only set a flag (`StopSignal`): the current step
/// finishes, then the loop returns and the process exits 0.
///
/// Schedule (each step has its own next-due time; the loop sleeps until the earliest):
/// - check-in every `checkinIntervalSeconds` ± 10 %, backoff 1 s → interval on failure;
/// - gateway session events every 5 s into the outbox;
/// - a health report into the outbox every `reportIntervalSeconds` ± 10 %;
/// - the outbox drained whenever it has rows, backoff 1 s → 60 s on failure;
/// - pending actions (log collections) one at a time between the other steps.
public final class AgentRunner {
    let options: RunOptions
    var logger: Logger
    let stop: StopSignal

    // Set up per session (a re-enrollment while running starts a new one).
    var info: AgentInfo!
    var database: AgentDatabase!
    var outbox: Outbox!
    var client: ControlPlaneClient!
    let gateway: GatewayControl
    /// mstunnel-auth, for the Site's ticket keys (AgentRunner+Checkin).
    let auth: GatewayControl
    /// The last ticket-key problem logged (one line per change).
    var ticketKeyProblem: String?
    var health: HealthCollector!
    var events: SessionEventPump!
    var applier: ConfigApplier!

    // Schedule.
    var checkinInterval: Double = 60
    var reportInterval: Double = 60
    var nextCheckin = Date()
    var nextEvents = Date()
    var nextReport = Date()
    var nextSend = Date()
    /// End of the current send backoff (set by `sendFailed`): queuing more reports never
    /// brings the next send before it.
    var sendRetryNotBefore = Date.distantPast
    var checkinBackoff = Backoff(initial: 1, cap: 60)
    var sendBackoff = Backoff(initial: 1, cap: 60)
    static let eventsInterval: Double = 5
    /// How often to look again when the agent certificate has expired.
    static let expiredRetryInterval: Double = 300

    // Facts from the last check-in.
    var probeURL: String?
    var pendingActions: [AgentAction] = []
    var batchLimit = ReportBatch.maxItems
    /// After a failure that may pass (gateway timeout, `retryable` host step): the version
    /// and the time before which it is not applied again.
    var applyRetryNotBefore: (version: Int64, at: Date)?
    var agentCertificateNotAfter: Date?

    // Log-once-per-state-change memory.
    var checkinProblem: String?
    var sendProblem: String?
    var identityProblem: String?
    var lastCertificateNote: String?

    public init(options: RunOptions, logger: Logger, stop: StopSignal) {
        self.options = options
        self.logger = logger
        self.stop = stop
        self.gateway = GatewayControl(runDirectory: options.runDirectory, allowedGIDs: options.gatewayGIDs, logger: logger)
        self.auth = GatewayControl(authSocket: options.authSocket ?? options.runDirectory + "/auth.sock", authUIDs: options.authUIDs, logger: logger)
    }

    enum SessionEnd { case stopped, reenrolled }

    /// Runs until SIGTERM/SIGINT. Throws only for what needs an operator before the loop
    /// can start at all (not enrolled, unreadable database).
    public func run() throws(AgentError) {
        while !stop.isStopped {
            try startSession()
            switch loop() {
            case .stopped: break
            case .reenrolled:
                logger.info("agent.reenrolled", metadata: ["detail": "agent-info.json changed; starting over with the new identity"])
                continue
            }
        }
        logger.info("agent.stopped")
    }

    func startSession() throws(AgentError) {
        let paths = options.paths
        guard let info = try AgentInfo.load(paths) else {
            throw AgentError("not enrolled: \(paths.agentInfo) does not exist; run: mstunnel-agent enroll --control-url https://HOST:PORT --join-token-file FILE")
        }
        self.info = info
        // Earlier agents wrote it 0644: owner-only now (this only ever takes bits away).
        if !AtomicFile.restrict(paths.agentInfo, to: 0o600) {
            logger.warning("agent.files.mode_not_restricted", metadata: ["path": "\(paths.agentInfo)", "error": "\(errnoText())"])
        }
        if let note = AgentFiles.recoverPendingRenewal(paths) {
            logger.warning("agent.renew.recovered", metadata: ["detail": "\(note)"])
        }
        database = try AgentDatabase(path: paths.database)
        outbox = Outbox(database: database, maxRows: options.outboxMax)
        if let discarded = try database.adopt(serverId: info.serverId, outbox: outbox), discarded > 0 {
            logger.warning("agent.outbox.discarded", metadata: ["count": "\(discarded)", "reason": "re-enrolled as server \(info.serverId)"])
        }
        client = ControlPlaneClient(baseURL: info.controlPlaneUrl, trust: .caFile(paths.controlCA),
                                    clientCertificateFile: paths.agentCertificate, clientKeyFile: paths.agentKey, logger: logger)
        health = HealthCollector(paths: paths, gateway: gateway)
        events = SessionEventPump(outbox: outbox, gateway: gateway, logger: logger)
        let gateway = self.gateway
        applier = ConfigApplier(paths: paths, logger: logger, sendToGateway: { gateway.applySettings($0) })
        logger[metadataKey: "serverId"] = "\(info.serverId)"
        // Until the control plane answers, the intervals it gave last time (if any).
        if let c = database.int(.checkinIntervalSeconds), (1...3600).contains(c) { checkinInterval = Double(c) }
        if let r = database.int(.reportIntervalSeconds), (1...3600).contains(r) { reportInterval = Double(r) }
        let now = Date()
        nextCheckin = now
        nextEvents = now
        // The first report waits for a CPU sample interval (at most 10 s).
        nextReport = now.addingTimeInterval(min(10, reportInterval))
        nextSend = now
        sendRetryNotBefore = .distantPast
        applyRetryNotBefore = nil
        pendingActions = []
        checkinBackoff.reset()
        sendBackoff.reset()
        logger.info("agent.started", metadata: [
            "version": "\(AgentVersion.string)", "site.id": "\(info.siteId)", "control_plane": "\(info.controlPlaneUrl)",
            "state_dir": "\(paths.stateDirectory)", "run_dir": "\(options.runDirectory)", "log_dir": "\(options.logDirectory)",
            "configuration.applied_version": "\(database.appliedConfigurationVersion)", "outbox.depth": "\(outbox.depth())",
        ])
    }

    func loop() -> SessionEnd {
        while !stop.isStopped {
            var now = Date()
            if now >= nextCheckin {
                if checkin() == .reenrolled { return .reenrolled }
            }
            if stop.isStopped { break }
            now = Date()
            if now >= nextEvents {
                if events.poll() > 0 { reportsQueued(now: now) }
                if let observe = options.gatewayStatusObserver {
                    observe(try? gateway.serverStatus().get())
                }
                nextEvents = now.addingTimeInterval(Self.eventsInterval)
            }
            if stop.isStopped { break }
            now = Date()
            if now >= nextReport {
                queueHealthReport()
                nextReport = Date().addingTimeInterval(Jitter.around(reportInterval))
            }
            if stop.isStopped { break }
            if Date() >= nextSend { drainOutbox() }
            if stop.isStopped { break }
            if !pendingActions.isEmpty {
                handleAction(pendingActions.removeFirst())
                continue
            }
            let wake = [nextCheckin, nextEvents, nextReport, nextSend].min()!
            stop.wait(seconds: wake.timeIntervalSinceNow)
        }
        return .stopped
    }
}
