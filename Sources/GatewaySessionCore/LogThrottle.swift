/// At most one log line per key (a peer address) per `interval` seconds, for events an
/// attacker can repeat at will: refusals at accept (`SourceGuard`), malformed tunnel input.
/// A flood then costs a counter increment per event, not a line per event. Pure: the caller
/// gives the time.
///
/// Bounded and allocation-free after `init`: a fixed open-addressed table of `capacity`
/// slots (a power of two), each key probed in a window of `probes` slots from its hash
/// (Swift's per-process seeded hash, so a sender cannot aim its addresses at another's
/// window). A slot whose key last logged `interval` or more ago is as good as empty and
/// is reused. When a key's whole window holds keys that logged within the interval, the
/// event is not logged (`unlogged` counts these): the table then caps the log at about
/// `capacity` lines per interval in all, however many addresses send.
public struct LogThrottle<Key: Hashable & Sendable>: Sendable {
    public enum Verdict: Equatable, Sendable {
        /// Log it; `suppressed` events of this key were not logged since its previous line
        /// (0 when it had none, or its slot had been reused meanwhile).
        case log(suppressed: Int)
        /// Do not log (count it elsewhere).
        case suppress
    }

    struct Slot: Sendable {
        var key: Key
        var lastLogged: Int64
        var suppressed: Int
    }

    public let interval: Int64
    public let capacity: Int
    /// How many slots from a key's hash may hold it.
    public static var probes: Int { 8 }
    private var slots: [Slot?]
    /// Events not logged because their key found no room (not counting the ones a key's
    /// own interval suppressed).
    public private(set) var unlogged: UInt64 = 0

    /// `capacity` is rounded up to a power of two (at least `probes`).
    public init(capacity: Int = 1024, interval: Int64 = 60) {
        var n = Self.probes
        while n < capacity { n <<= 1 }
        self.capacity = n
        self.interval = interval
        slots = Array(repeating: nil, count: n)
    }

    /// Whether an event of `key` at `now` is logged.
    public mutating func admit(_ key: Key, now: Int64) -> Verdict {
        let mask = capacity - 1
        let start = key.hashValue & mask
        var free = -1
        for i in 0..<Self.probes {
            let j = (start &+ i) & mask
            guard let s = slots[j] else {
                if free < 0 { free = j }
                continue
            }
            if s.key == key {
                if now - s.lastLogged < interval {
                    slots[j]!.suppressed &+= 1
                    return .suppress
                }
                slots[j] = Slot(key: key, lastLogged: now, suppressed: 0)
                return .log(suppressed: s.suppressed)
            }
            if free < 0, now - s.lastLogged >= interval { free = j }
        }
        guard free >= 0 else {
            unlogged &+= 1
            return .suppress
        }
        slots[free] = Slot(key: key, lastLogged: now, suppressed: 0)
        return .log(suppressed: 0)
    }

    /// Keys that logged within the interval before `now` (for tests and status).
    public func live(now: Int64) -> Int {
        slots.reduce(0) { n, s in n + (s.map { now - $0.lastLogged < interval ? 1 : 0 } ?? 0) }
    }
}
