import Foundation
import GatewayAgentAPI

/// A Site's rolling upgrade as the control plane keeps it (JSON in `sites.upgradeState`).
public struct SiteUpgradeState: Sendable, Equatable, Codable {
    public enum Phase: String, Sendable, Codable {
        /// Servers are moved to `target` one at a time.
        case inProgress
        /// A server's upgrade failed (its updater rolled it back) or timed out: nothing more
        /// moves until an administrator asks again (`requestUpgrade`) or the release changes.
        case failed
    }
    public var phase: Phase
    /// The image tag the Site moves to.
    public var target: String
    public var startedAt: Date
    /// The server being upgraded now, the attempt's id (the updater's result carries it
    /// back) and when it was asked.
    public var serverId: String?
    public var attemptId: String?
    public var serverSince: Date?
    /// Servers moved to `target` so far.
    public var upgraded: Int
    /// Why it failed, and when.
    public var message: String?
    public var endedAt: Date?

    public init(phase: Phase, target: String, startedAt: Date, serverId: String? = nil, attemptId: String? = nil,
                serverSince: Date? = nil, upgraded: Int = 0, message: String? = nil, endedAt: Date? = nil) {
        self.phase = phase
        self.target = target
        self.startedAt = startedAt
        self.serverId = serverId
        self.attemptId = attemptId
        self.serverSince = serverSince
        self.upgraded = upgraded
        self.message = message
        self.endedAt = endedAt
    }
}

/// Which server of a Site upgrades next, and when one is done (docs/site.md, "Rolling
/// upgrade"). One server at a time: it is asked (in its check-in answer) to drain, hand its
/// sessions to its siblings and have the host's updater switch its containers to the
/// release's image tag; the next one starts only once it checks in again **on the new tag,
/// with its gateway up, and with the updater's "succeeded"** for this attempt. A "failed"
/// report (the updater rolled the containers back) or no success within `timeout` stops
/// the upgrade: the Site shows `upgradeFailed` until an administrator asks again.
///
/// A new server starts only inside the Site's upgrade window; one already under way
/// finishes. No I/O and no clock (RollingUpgradePolicyTests).
public enum RollingUpgradePolicy {
    /// Drain, hand-over, image pull, restart and health checks of one server.
    public static let timeout: TimeInterval = 900
    /// What the agent is told: hand sessions over after 10 s (time for the balancer's probe
    /// to leave the server out), then wait at most 120 s for them to be gone.
    public static let handOverAfterSeconds = 10
    public static let drainTimeoutSeconds = 120

    /// One server as the policy sees it.
    public struct Server: Sendable, Equatable {
        public var id: String
        public var displayName: String
        /// Checked in lately (the same liveness as for Site keys).
        public var live: Bool
        public var lastCheckin: Date?
        /// nil: not in containers (or an older agent): never upgraded by the Site.
        public var imageTag: String?
        /// The gateway answered the agent at its last check-in.
        public var gatewayUp: Bool
        public var report: UpgradeReport?
        /// Its sessions and `max-sessions` (0: no limit) at its last check-in; nil: unknown.
        public var sessions: Int?
        public var sessionLimit: Int?

        /// How many more sessions it can take (nil: no limit, or not known).
        var room: Int? {
            guard let limit = sessionLimit, limit > 0 else { return nil }
            return max(0, limit - (sessions ?? 0))
        }

        public init(id: String, displayName: String, live: Bool, lastCheckin: Date?, imageTag: String?, gatewayUp: Bool,
                    report: UpgradeReport?, sessions: Int? = nil, sessionLimit: Int? = nil) {
            self.id = id
            self.displayName = displayName
            self.live = live
            self.lastCheckin = lastCheckin
            self.imageTag = imageTag
            self.gatewayUp = gatewayUp
            self.report = report
            self.sessions = sessions
            self.sessionLimit = sessionLimit
        }
    }

    public enum Event: Sendable, Equatable {
        case started(target: String)
        case serverStarted(serverId: String, target: String)
        case serverUpgraded(serverId: String, target: String)
        case failed(serverId: String, message: String)
        case completed(target: String, servers: Int)
        /// The release changed while an upgrade was under way or had failed: it is dropped.
        case superseded(old: String, new: String)
        /// The next server waits: its siblings have no room for its sessions (logged once).
        case waiting(serverId: String, message: String)
    }

    public struct Outcome: Sendable, Equatable {
        public var state: SiteUpgradeState?
        /// A live server runs another tag than the release (Graph's `upgradeAvailable`).
        public var available: Bool
        /// The administrator's request is fulfilled (or superseded): forget it.
        public var clearRequest: Bool
        public var events: [Event]

        /// What to tell `serverId` in its check-in answer.
        public func instruction(for serverId: String) -> UpgradeInstruction? {
            guard let s = state, s.phase == .inProgress, s.serverId == serverId, let attempt = s.attemptId else { return nil }
            return UpgradeInstruction(id: attempt, tag: s.target, handOverAfterSeconds: RollingUpgradePolicy.handOverAfterSeconds,
                                      drainTimeoutSeconds: RollingUpgradePolicy.drainTimeoutSeconds)
        }
    }

    /// - Parameters:
    ///   - release: the image tag servers should run (the control plane's `--gateway-release`).
    ///   - requestedAt: the administrator's last `requestUpgrade` not yet fulfilled.
    ///   - automatic: the Site's `upgradeAutomatically`.
    ///   - inWindow: now is inside the Site's upgrade window (or it has none).
    ///   - newId: the id of a new attempt.
    public static func decide(state: SiteUpgradeState?, release: String, requestedAt: Date?, automatic: Bool, inWindow: Bool,
                              servers: [Server], now: Date, timeout: TimeInterval = RollingUpgradePolicy.timeout,
                              newId: () -> String) -> Outcome {
        let available = servers.contains { $0.live && $0.imageTag != nil && $0.imageTag != release }
        var out = Outcome(state: state, available: available, clearRequest: false, events: [])
        // A new release drops an upgrade to the old one — once no server is in flight: its
        // host's updater is switching it now, and a second server must not start beside it.
        if let s = out.state, s.target != release, s.serverId == nil || s.phase == .failed {
            out.events.append(.superseded(old: s.target, new: release))
            out.state = nil
        }
        if let s = out.state, s.phase == .failed {
            // Stays failed until asked again after the failure.
            guard let asked = requestedAt, asked > (s.endedAt ?? s.startedAt) else { return out }
            out.state = nil
        }
        if var s = out.state, let current = s.serverId {
            if let server = servers.first(where: { $0.id == current }) {
                let report = server.report.flatMap { $0.id == s.attemptId ? $0 : nil }
                if report?.state == .failed {
                    return fail(&out, &s, server: current, now: now,
                                message: "the updater on \(server.displayName) could not move it to \(s.target): \(report?.message ?? "no reason given")")
                }
                let since = s.serverSince ?? s.startedAt
                if report?.state == .succeeded, server.imageTag == s.target, server.gatewayUp, (server.lastCheckin ?? .distantPast) > since {
                    out.events.append(.serverUpgraded(serverId: current, target: s.target))
                    s.upgraded += 1
                    s.serverId = nil
                    s.attemptId = nil
                    s.serverSince = nil
                    out.state = s
                } else if now.timeIntervalSince(since) > timeout {
                    let seen = server.imageTag.map { "it runs \($0)" } ?? "its image tag is unknown"
                    return fail(&out, &s, server: current, now: now,
                                message: "\(server.displayName) did not check in on \(s.target) with its gateway up within \(Int(timeout)) s (\(seen), last report: \(report?.state.rawValue ?? "none"))")
                } else {
                    return out
                }
            } else {
                // Deleted while it was upgraded: go on with the others.
                s.serverId = nil
                s.attemptId = nil
                s.serverSince = nil
                out.state = s
            }
        }
        // No server under way: start one, if an upgrade is wanted and the window is open.
        // The release changed while the last one was in flight: that upgrade is over.
        if let s = out.state, s.target != release {
            out.events.append(.superseded(old: s.target, new: release))
            out.state = nil
        }
        let candidates = servers.filter { $0.live && $0.imageTag != nil && $0.imageTag != release }
            .sorted { ($0.displayName, $0.id) < ($1.displayName, $1.id) }
        if out.state == nil {
            guard available, requestedAt != nil || automatic else {
                if requestedAt != nil && !available { out.clearRequest = true }
                return out
            }
            guard inWindow else { return out }
            out.state = SiteUpgradeState(phase: .inProgress, target: release, startedAt: now)
            out.events.append(.started(target: release))
        }
        guard var s = out.state else { return out }
        guard let next = candidates.first else {
            out.events.append(.completed(target: s.target, servers: s.upgraded))
            out.state = nil
            out.clearRequest = true
            return out
        }
        guard inWindow else { return out }
        // Its sessions move to its siblings (each resumes on one of them with its ticket):
        // wait while their max-sessions leave less room than it has sessions. A server with
        // no live sibling goes anyway — its sessions wait for it and come back after its
        // restart — as does one whose siblings set no limit.
        let siblings = servers.filter { $0.live && $0.gatewayUp && $0.id != next.id }
        if !siblings.isEmpty, let needed = next.sessions, needed > 0,
           siblings.allSatisfy({ $0.room != nil }) {
            let room = siblings.reduce(0) { $0 + ($1.room ?? 0) }
            if room < needed {
                // Without the counts, which change at every check-in: the state (and so the
                // store) changes only when the wait starts; the log line has them, once.
                let message = "waiting for room: the siblings of \(next.displayName) can take fewer sessions (max-sessions) than it has"
                if s.message != message {
                    out.events.append(.waiting(serverId: next.id, message: "\(next.displayName) has \(needed) sessions, its siblings room for \(room)"))
                }
                s.message = message
                out.state = s
                return out
            }
        }
        s.message = nil
        s.serverId = next.id
        s.attemptId = newId()
        s.serverSince = now
        out.state = s
        out.events.append(.serverStarted(serverId: next.id, target: s.target))
        return out
    }

    private static func fail(_ out: inout Outcome, _ s: inout SiteUpgradeState, server: String, now: Date, message: String) -> Outcome {
        s.phase = .failed
        s.message = message
        s.endedAt = now
        out.state = s
        out.events.append(.failed(serverId: server, message: message))
        return out
    }

    /// An image tag the agents and updaters accept (`UpgradeReport.isValidTag`).
    public static func isValidRelease(_ tag: String) -> Bool { UpgradeReport.isValidTag(tag) }

    /// Whether `now` is inside the window `start`–`end` ("HH:MM[:SS]" at UTC offset
    /// `offsetMinutes`). No window (either end missing, or both equal): always. A window whose
    /// end is before its start spans midnight.
    public static func inWindow(now: Date, start: String?, end: String?, offsetMinutes: Int?) -> Bool {
        guard let start, let end, let a = secondsOfDay(start), let b = secondsOfDay(end), a != b else { return true }
        let local = now.timeIntervalSince1970 + Double((offsetMinutes ?? 0) * 60)
        let t = Int(local.truncatingRemainder(dividingBy: 86_400) + 86_400) % 86_400
        return a < b ? (a <= t && t < b) : (t >= a || t < b)
    }

    static func secondsOfDay(_ text: String) -> Int? {
        let parts = text.split(separator: ".", maxSplits: 1)[0].split(separator: ":").map { Int($0) }
        guard (2...3).contains(parts.count), parts.allSatisfy({ $0 != nil }) else { return nil }
        let h = parts[0]!, m = parts[1]!, s = parts.count == 3 ? parts[2]! : 0
        guard (0..<24).contains(h), (0..<60).contains(m), (0..<60).contains(s) else { return nil }
        return h * 3600 + m * 60 + s
    }
}
