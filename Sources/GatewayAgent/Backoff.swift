import Foundation

/// Retry spacing: exponential from `initial` doubling up to `cap`, reset on success.
public struct Backoff: Sendable, Equatable {
    public var initial: Double
    public var cap: Double
    public private(set) var failures = 0

    public init(initial: Double = 1, cap: Double) {
        self.initial = initial
        self.cap = max(initial, cap)
    }

    /// Records a failure and returns the delay before the next attempt.
    public mutating func next() -> Double {
        failures += 1
        let exponent = min(failures - 1, 30)
        return min(cap, initial * pow(2, Double(exponent)))
    }

    public mutating func reset() { failures = 0 }
}

public enum Jitter {
    /// `seconds` ± 10 %, so many gateways started together do not check in in lockstep.
    public static func around(_ seconds: Double, random: Double = Double.random(in: -1 ... 1)) -> Double {
        max(1, seconds * (1 + 0.1 * min(1, max(-1, random))))
    }
}
