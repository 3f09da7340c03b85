/// Running totals of the time tunnel packets spend inside the gateway (no I/O, no clock:
/// the loop measures, this adds). Wrapping arithmetic: at 10 ms per packet the sum wraps
/// after ~1.8e9 packets, and readers take differences, which survive one wrap.
public struct TransitTime: Sendable, Equatable {
    public private(set) var packets: UInt64 = 0
    /// Σ over packets of their transit time, ns.
    public private(set) var weightedNanos: UInt64 = 0

    public init() {}

    /// One loop turn: `packets` packets that each spent at most `nanos` inside the gateway.
    @inline(__always)
    public mutating func add(nanos: UInt64, packets n: UInt64) {
        packets &+= n
        weightedNanos &+= nanos &* n
    }

    /// Average transit in milliseconds between two readings of the totals; nil when no
    /// packet moved in between (or the gateway restarted: counters went backwards).
    public static func averageMilliseconds(fromPackets p0: UInt64, nanos n0: UInt64, toPackets p1: UInt64, nanos n1: UInt64) -> Double? {
        guard p1 > p0 else { return nil }
        return Double(n1 &- n0) / Double(p1 - p0) / 1_000_000
    }
}
