import Foundation
import Synchronization

/// Failed admin authentications per source address (`SourceAddress.key`).
///
/// A source with `maxFailures` failed attempts within `window` is locked out for `lockout`,
/// doubled for each further lockout (up to `maxLockout`) until it has gone `forgetAfter`
/// without a failure. During a lockout **every** admin request from that source is answered
/// 429 with `Retry-After`, a correct credential included: otherwise the lockout would not
/// slow guessing at all (the one right guess would still get through at full speed). Other
/// sources are not affected. Only a presented credential that fails counts (no
/// `Authorization` header, or a valid JWT without the admin role, does not).
///
/// The table is bounded (`maxSources`): past it, entries that hold nothing any more go
/// first, then the one whose last failure is oldest among those not locked out, then the
/// lockout that ends soonest.
public final class AdminAuthThrottle: Sendable {
    public struct Settings: Sendable, Equatable {
        public var maxFailures = 10
        public var window: TimeInterval = 60
        public var lockout: TimeInterval = 30
        public var maxLockout: TimeInterval = 900
        public var forgetAfter: TimeInterval = 3600
        public var maxSources = 10_000

        public init() {}
    }

    struct Entry {
        var windowStart: Date
        var failures = 0
        var lockedUntil = Date.distantPast
        var strikes = 0
        var lastFailure: Date
    }

    let settings: Settings
    private let table = Mutex([String: Entry]())

    init(settings: Settings) {
        var s = settings
        s.maxFailures = max(1, s.maxFailures)
        s.maxSources = max(1, s.maxSources)
        self.settings = s
    }

    /// Whole seconds until `source` may try again, nil when it is not locked out.
    func retryAfter(_ source: String, now: Date) -> Int? {
        table.withLock { t in
            guard let e = t[source], e.lockedUntil > now else { return nil }
            return max(1, Int(e.lockedUntil.timeIntervalSince(now).rounded(.up)))
        }
    }

    /// Counts a failure; returns the lockout in whole seconds when this failure started one.
    func recordFailure(_ source: String, now: Date) -> Int? {
        let s = settings
        return table.withLock { t in
            var e: Entry
            if let existing = t[source] {
                e = existing
                if now.timeIntervalSince(e.lastFailure) > s.forgetAfter { e = Entry(windowStart: now, lastFailure: now) }
            } else {
                if t.count >= s.maxSources { Self.makeRoom(&t, now: now, settings: s) }
                e = Entry(windowStart: now, lastFailure: now)
            }
            if now.timeIntervalSince(e.windowStart) > s.window {
                e.windowStart = now
                e.failures = 0
            }
            e.failures += 1
            e.lastFailure = now
            var started: Int?
            if e.failures >= s.maxFailures {
                e.strikes += 1
                let seconds = min(s.maxLockout, s.lockout * pow(2, Double(min(e.strikes - 1, 30))))
                e.lockedUntil = now.addingTimeInterval(seconds)
                e.failures = 0
                e.windowStart = e.lockedUntil
                started = Int(seconds.rounded(.up))
            }
            t[source] = e
            return started
        }
    }

    var trackedSources: Int { table.withLock { $0.count } }

    private static func makeRoom(_ t: inout [String: Entry], now: Date, settings s: Settings) {
        // Entries that hold nothing: not locked, and either forgotten or with no strike and
        // an expired window.
        t = t.filter { _, e in
            e.lockedUntil > now
                || (now.timeIntervalSince(e.lastFailure) <= s.forgetAfter
                    && (e.strikes > 0 || now.timeIntervalSince(e.windowStart) <= s.window))
        }
        guard t.count >= s.maxSources else { return }
        if let oldest = t.filter({ $0.value.lockedUntil <= now }).min(by: { $0.value.lastFailure < $1.value.lastFailure }) {
            t.removeValue(forKey: oldest.key)
        } else if let soonest = t.min(by: { $0.value.lockedUntil < $1.value.lockedUntil }) {
            t.removeValue(forKey: soonest.key)
        }
    }
}
