/// Tunnel traffic of one channel since the gateway started (`ServerStatusResponse.tls`, `.dtls`;
/// added in 0.1.8). Payload bytes and IP packets, each way.
public struct ChannelTraffic: Codable, Sendable, Equatable {
    public var packetsFromClients: UInt64 = 0
    public var packetsToClients: UInt64 = 0
    public var bytesFromClients: UInt64 = 0
    public var bytesToClients: UInt64 = 0

    public init() {}
}

/// Logins since the gateway started, by outcome (added in 0.1.8). Succeeded logins are
/// `totalSessions`, rejected ones `authFailures`, those refused by group policy
/// `policyDenials`, those refused for want of an address `poolExhaustedCount`.
public struct LoginOutcomes: Codable, Sendable, Equatable {
    /// Refused by `max-sessions` or `max-sessions-per-user`.
    public var sessionLimit: UInt64 = 0
    /// Answered 503 because mstunnel-auth could not be asked or did not answer.
    public var authUnavailable: UInt64 = 0

    public init() {}
}

/// A latency distribution kept as counts per bucket (not cumulative), with the sum and count:
/// what a Prometheus histogram needs, recorded with no allocation.
public struct LatencyHistogram: Codable, Sendable, Equatable {
    /// Upper bounds of the buckets, seconds; a last bucket without bound (+Inf) follows.
    public static let bounds: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    /// `bounds.count + 1` counts; the last is the +Inf bucket.
    public var counts: [UInt64]
    public var sumNanos: UInt64 = 0
    public var count: UInt64 = 0

    public init() { counts = Array(repeating: 0, count: Self.bounds.count + 1) }

    public mutating func record(nanos: UInt64) {
        let seconds = Double(nanos) / 1e9
        var i = 0
        while i < Self.bounds.count, seconds > Self.bounds[i] { i += 1 }
        counts[i] &+= 1
        sumNanos &+= nanos
        count &+= 1
    }
}
