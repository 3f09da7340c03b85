/// Per source address: how many of its connections are in their login phase, and its ban
/// score (failed logins and malformed requests). The gateway asks at every accept and
/// closes the connection at once when refused, before any TLS work; a slow-loris or a
/// password-guessing client from one address then costs a socket for a moment, not a slot
/// for a minute. Pure: the caller gives the time.
///
/// The table is bounded: past `capacity` addresses, those with no open login connection
/// and no live score go first, then the least recently seen without a login connection.
/// Addresses with connections still logging in are never forgotten (their count is what
/// frees the slot later); those are bounded by the open-file limit.
public struct SourceGuard<Source: Hashable & Sendable>: Sendable {
    public typealias Limits = SourceGuardLimits
    public typealias Decision = SourceGuardDecision


    struct Entry: Sendable {
        var loginConnections = 0
        var score = 0
        var lastScored: Int64 = 0
        var lastSeen: Int64 = 0
    }

    public var limits: Limits
    public let capacity: Int
    private var entries: [Source: Entry] = [:]
    /// Connections refused since start, for status.
    public private(set) var refusedConnections = 0
    /// Addresses whose score reached the limit since start.
    public private(set) var bans = 0
    /// Connections in their login phase, from every address together.
    public private(set) var loginConnections = 0
    private var lastEvictionScan: Int64 = .min
    /// Refusals logged once a minute per address (bounded on its own: `LogThrottle`).
    private var refusalLog = LogThrottle<Source>()

    public init(limits: Limits, capacity: Int = 65_536) {
        self.limits = limits
        self.capacity = capacity
    }

    public var trackedSources: Int { entries.count }

    /// A new connection from `source` (an address without its port). On `.admit` the caller
    /// must later call `loginEnded` once for it.
    public mutating func admit(_ source: Source, now: Int64) -> Decision {
        var e = entries[source] ?? Entry()
        expire(&e, now: now)
        if limits.maxBanScore > 0, e.score >= limits.maxBanScore {
            refusedConnections += 1
            entries[source] = e
            return .refuse("banned: ban score \(e.score) ≥ max-ban-score \(limits.maxBanScore) (failed logins), for \(e.lastScored + limits.banResetSeconds - now) s more")
        }
        if limits.maxLoginConnections > 0, loginConnections >= limits.maxLoginConnections {
            refusedConnections += 1
            entries[source] = e
            return .refuse("\(loginConnections) connections are already logging in (max-login-connections \(limits.maxLoginConnections))")
        }
        if limits.maxLoginConnectionsPerSource > 0, e.loginConnections >= limits.maxLoginConnectionsPerSource {
            refusedConnections += 1
            entries[source] = e
            return .refuse("\(e.loginConnections) connections from this address are already logging in (max-login-connections-per-ip \(limits.maxLoginConnectionsPerSource))")
        }
        e.loginConnections += 1
        loginConnections += 1
        e.lastSeen = now
        store(source, e, now: now)
        return .admit
    }

    /// One admitted connection of `source` left its login phase (tunnel, or closed). Called
    /// exactly once per `.admit` (the gateway's `countedAsLogin`): the global count goes down
    /// even for an address the full table did not track, or it would fill up for good.
    public mutating func loginEnded(_ source: Source) {
        loginConnections = max(0, loginConnections - 1)
        guard var e = entries[source], e.loginConnections > 0 else { return }
        e.loginConnections -= 1
        entries[source] = e
    }

    /// A failed login or a malformed request from `source`. True when this made it banned.
    @discardableResult
    public mutating func penalize(_ source: Source, points: Int = SourceGuardPoints.failedLogin, now: Int64) -> Bool {
        guard limits.maxBanScore > 0 else { return false }
        var e = entries[source] ?? Entry()
        expire(&e, now: now)
        let wasBanned = e.score >= limits.maxBanScore
        e.score += points
        e.lastScored = now
        e.lastSeen = now
        store(source, e, now: now)
        let banned = !wasBanned && e.score >= limits.maxBanScore
        if banned { bans += 1 }
        return banned
    }

    public func score(of source: Source, now: Int64) -> Int {
        guard var e = entries[source] else { return 0 }
        expire(&e, now: now)
        return e.score
    }

    /// Whether a refusal for `source` should be logged now (once a minute per address).
    public mutating func shouldLogRefusal(_ source: Source, now: Int64) -> Bool {
        refusalLog.admit(source, now: now) != .suppress
    }

    /// The score is forgotten `banResetSeconds` after it last grew.
    private func expire(_ e: inout Entry, now: Int64) {
        if e.score > 0, now - e.lastScored >= limits.banResetSeconds { e.score = 0 }
    }

    /// Past `capacity`, a new address is tracked only if an eviction pass frees room, and
    /// such a pass runs at most once a second: a stream of new addresses against a full
    /// table of live scores costs one scan a second, not one per connection. Until then new
    /// addresses are admitted untracked (their count is approximate, never stuck).
    private mutating func store(_ source: Source, _ e: Entry, now: Int64) {
        if entries[source] == nil, entries.count >= capacity {
            guard now > lastEvictionScan else { return }
            lastEvictionScan = now
            evict(now: now)
            guard entries.count < capacity else { return }
        }
        entries[source] = e
    }

    /// Forgets addresses that hold nothing: no login connection and no live score; if none,
    /// the least recently seen without a login connection.
    private mutating func evict(now: Int64) {
        let idle = entries.filter { $0.value.loginConnections == 0 && ($0.value.score == 0 || now - $0.value.lastScored >= limits.banResetSeconds) }
        if !idle.isEmpty {
            for key in idle.keys { entries[key] = nil }
            return
        }
        // Nothing idle: forget the least recently seen address holding no connection and no
        // ban, never a banned one (churning new addresses must not lift bans).
        let unbanned = entries.filter { $0.value.loginConnections == 0 && (limits.maxBanScore == 0 || $0.value.score < limits.maxBanScore) }
        if let oldest = unbanned.min(by: { $0.value.lastSeen < $1.value.lastSeen }) {
            entries[oldest.key] = nil
        }
    }
}

/// ocserv's weights: a wrong password is 10, and 80 bans.
public enum SourceGuardPoints {
    public static let failedLogin = 10
}

public enum SourceGuardDecision: Equatable, Sendable {
    case admit
    /// Refused, and why (for the log, once per address per minute).
    case refuse(String)
}

public struct SourceGuardLimits: Equatable, Sendable {
    /// 0: no limit.
    public var maxLoginConnectionsPerSource: Int
    /// 0: no banning.
    public var maxBanScore: Int
    public var banResetSeconds: Int64
    /// Connections in their login phase from all addresses together; 0: no limit. Bounds
    /// what many addresses (a botnet's slow-loris) can hold at once; tunnels do not count.
    public var maxLoginConnections: Int

    public init(maxLoginConnectionsPerSource: Int, maxBanScore: Int, banResetSeconds: Int64, maxLoginConnections: Int = 0) {
        self.maxLoginConnections = maxLoginConnections
        self.maxLoginConnectionsPerSource = maxLoginConnectionsPerSource
        self.maxBanScore = maxBanScore
        self.banResetSeconds = banResetSeconds
    }
}

