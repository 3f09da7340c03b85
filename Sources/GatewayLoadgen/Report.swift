import Foundation

/// Nearest-rank percentiles (the value below which p % of the samples fall, always one
/// of the samples, no interpolation).
public struct Percentiles: Sendable, Equatable, Codable {
    public var count: Int
    public var min: Double
    public var p50: Double
    public var p90: Double
    public var p99: Double
    public var max: Double
    public var mean: Double

    /// nil for no samples.
    public init?(_ samples: [Double]) {
        guard !samples.isEmpty else { return nil }
        let sorted = samples.sorted()
        count = sorted.count
        min = sorted[0]
        max = sorted[sorted.count - 1]
        p50 = Self.nearestRank(sorted, 50)
        p90 = Self.nearestRank(sorted, 90)
        p99 = Self.nearestRank(sorted, 99)
        mean = sorted.reduce(0, +) / Double(sorted.count)
    }

    /// The sample at rank ⌈p/100 · n⌉ (1-based) of ascending `sorted`; p is clamped to
    /// 0…100 (p 0 is the minimum). NaN for no samples.
    public static func nearestRank(_ sorted: [Double], _ p: Double) -> Double {
        guard !sorted.isEmpty, !p.isNaN else { return .nan }
        let clamped = Swift.min(Swift.max(p, 0), 100)
        let rank = Int((clamped / 100 * Double(sorted.count)).rounded(.up))
        return sorted[Swift.min(Swift.max(rank, 1), sorted.count) - 1]
    }
}

/// Counts by reason, with the first detailed message seen for each.
public struct Tally: Sendable, Equatable, Codable {
    public struct Entry: Sendable, Equatable, Codable {
        public var count: Int
        public var example: String?
    }

    public private(set) var entries: [String: Entry] = [:]

    public init() {}

    public mutating func add(_ reason: String, detail: String? = nil) {
        if var e = entries[reason] {
            e.count += 1
            entries[reason] = e
        } else {
            entries[reason] = Entry(count: 1, example: detail.map { String($0.prefix(300)) })
        }
    }

    public var total: Int { entries.values.reduce(0) { $0 + $1.count } }

    /// Most frequent first, then by name.
    public var sorted: [(reason: String, entry: Entry)] {
        entries.map { ($0.key, $0.value) }.sorted { $0.1.count != $1.1.count ? $0.1.count > $1.1.count : $0.0 < $1.0 }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(entries)
    }

    public init(from decoder: any Decoder) throws {
        entries = try decoder.singleValueContainer().decode([String: Entry].self)
    }
}

/// The result of one run. Every number in it was measured in that run.
public struct LoadReport: Sendable, Codable {
    public struct Sessions: Sendable, Codable {
        public var requested: Int
        public var attempted: Int
        public var established: Int
        public var failed: Int
        /// Established, then lost before the hold began (during the connect phase).
        public var droppedBeforeHold: Int
        public var droppedDuringHold: Int
        public var openAtEndOfHold: Int
        /// Sessions that got an address another open session already had.
        public var duplicateAddresses: Int
    }

    public struct ConnectPhase: Sendable, Codable {
        public var seconds: Double
        public var establishedPerSecond: Double
        public var concurrency: Int
        public var rateLimit: Double?
        public var latencyMs: Percentiles?
    }

    public struct Hold: Sendable, Codable {
        public var requestedSeconds: Double
        public var actualSeconds: Double
    }

    public struct CSTPCounters: Sendable, Codable {
        public var keepalivesSent = 0
        public var dpdRequestsSent = 0
        public var dpdResponsesReceived = 0
        /// DPD requests from the gateway that we answered.
        public var dpdRequestsAnswered = 0
        public var keepalivesReceived = 0
        public var dataFramesReceived = 0
        public var logoffsSent = 0
        /// After the logoff: connections the gateway closed before the loadgen gave up waiting.
        public var closedByGatewayAfterLogoff = 0
    }

    public struct MemorySample: Sendable, Codable {
        public var pssKB: Int?
        /// The anonymous part of the PSS (heap, stacks): per-session cost without the noise
        /// of shared libraries, whose PSS share changes as other processes come and go.
        public var pssAnonKB: Int?
        public var processes: Int
        public var error: String?
    }

    public struct GatewayMemory: Sendable, Codable {
        public var pids: [Int32]
        public var before: MemorySample
        public var allUp: MemorySample
        public var endOfHold: MemorySample
        /// (allUp − before) / sessions open when measured.
        public var perSessionKBAllUp: Double?
        public var perSessionKBEndOfHold: Double?
        /// The same from Pss_Anon.
        public var perSessionAnonKBAllUp: Double?
        public var perSessionAnonKBEndOfHold: Double?
    }

    public struct ServerParameters: Sendable, Codable {
        public var tlsVersion: String
        public var cipher: String
        public var dpdSeconds: Int
        public var keepaliveSeconds: Int
        public var mtu: Int?
    }

    /// --resume: tunnels the gateway closed during the hold and what came of them.
    public struct Resume: Sendable, Codable {
        /// Tunnels closed under their session (not by DISCONNECT) during the hold.
        public var lost: Int
        /// Sessions among them (a session may lose its tunnel more than once).
        public var sessionsLost: Int
        /// Back with their cookie: no new login.
        public var resumed: Int
        /// The cookie refused (an HTTP error on CONNECT): the client would log in again.
        public var refused: Int
        /// Neither by the deadline or the end of the hold.
        public var gaveUp: Int
        public var attempts: Int
        /// Back with another tunnel address (the stock client gives up on those).
        public var addressesChanged: Int
        /// From losing the tunnel to having it back.
        public var latencyMs: Percentiles?
        /// From the first loss to the last resume, when every lost tunnel came back.
        public var allBackSeconds: Double?
        public var failures: Tally
    }

    public struct CPU: Sendable, Codable {
        public var userSeconds: Double
        public var systemSeconds: Double
    }

    public struct Loadgen: Sendable, Codable {
        public var cpuConnectPhase: CPU
        public var cpuTotal: CPU
        public var maxRSSKB: Int
        public var fdLimit: Int
    }

    public var target: String
    public var login: String
    public var distinctTokens: Int?
    public var sessions: Sessions
    public var failures: Tally
    public var drops: Tally
    public var connectPhase: ConnectPhase
    public var hold: Hold
    public var cstp: CSTPCounters
    public var server: ServerParameters?
    public var gatewayMemory: GatewayMemory?
    public var resume: Resume?
    public var loadgen: Loadgen
    public var interrupted: Bool

    public func json() -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // Every field is a plain number, string or nested struct: encoding cannot fail.
        guard let data = try? enc.encode(self) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    public func text() -> String {
        var out: [String] = []
        func line(_ s: String) { out.append(s) }
        func f(_ v: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", v) }
        line("mst-loadgen: \(target), \(login) login" + (distinctTokens.map { " (\($0) distinct token\($0 == 1 ? "" : "s"))" } ?? ""))
        if interrupted { line("INTERRUPTED (signal): figures cover the run until then") }
        let s = sessions
        line("sessions: requested \(s.requested), attempted \(s.attempted), established \(s.established), failed \(s.failed)")
        for (reason, e) in failures.sorted {
            line("  failed \(e.count) × \(reason)" + (e.example.map { ": \($0)" } ?? ""))
        }
        let rate = connectPhase.rateLimit.map { ", rate limit \(f($0))/s" } ?? ""
        line("connect phase: \(f(connectPhase.seconds, 3)) s, \(f(connectPhase.establishedPerSecond)) established/s (concurrency \(connectPhase.concurrency)\(rate))")
        if let l = connectPhase.latencyMs {
            line("connect latency (TCP connect → 200 CONNECTED), ms: p50 \(f(l.p50)), p90 \(f(l.p90)), p99 \(f(l.p99)), max \(f(l.max)) (min \(f(l.min)), mean \(f(l.mean)), n=\(l.count))")
        }
        if let sv = server {
            line("gateway granted: \(sv.tlsVersion) \(sv.cipher), DPD \(sv.dpdSeconds) s, keepalive \(sv.keepaliveSeconds) s" + (sv.mtu.map { ", MTU \($0)" } ?? ""))
        }
        line("hold: \(f(hold.actualSeconds)) s (asked \(f(hold.requestedSeconds)) s); dropped before hold \(s.droppedBeforeHold), during hold \(s.droppedDuringHold); open at end \(s.openAtEndOfHold)")
        for (reason, e) in drops.sorted {
            line("  dropped \(e.count) × \(reason)" + (e.example.map { ": \($0)" } ?? ""))
        }
        if s.duplicateAddresses > 0 { line("WARNING: \(s.duplicateAddresses) sessions got an address already held by another open session") }
        let c = cstp
        line("cstp: keepalives sent \(c.keepalivesSent), DPD sent \(c.dpdRequestsSent) / answered \(c.dpdResponsesReceived), gateway DPD answered \(c.dpdRequestsAnswered), keepalives received \(c.keepalivesReceived), data frames received \(c.dataFramesReceived)"
             + (c.logoffsSent > 0 ? ", logoffs sent \(c.logoffsSent) (gateway closed \(c.closedByGatewayAfterLogoff))" : ""))
        if let m = gatewayMemory {
            func sample(_ x: MemorySample) -> String {
                if let kb = x.pssKB { return "\(kb) KB" + (x.pssAnonKB.map { " (anon \($0) KB)" } ?? "") + " in \(x.processes) proc" }
                return "n/a (\(x.error ?? "unknown"))"
            }
            func kb(_ v: Double?) -> String { v.map { "\(f($0)) KB" } ?? "n/a" }
            line("gateway PSS (pids \(m.pids.map(String.init).joined(separator: ",")) + descendants): before \(sample(m.before)); all up \(sample(m.allUp)); end of hold \(sample(m.endOfHold))")
            line("gateway PSS per session: \(kb(m.perSessionKBAllUp)) when all up, \(kb(m.perSessionKBEndOfHold)) at end of hold; anon only: \(kb(m.perSessionAnonKBAllUp)), \(kb(m.perSessionAnonKBEndOfHold))")
        }
        if let r = resume {
            line("resume: \(r.lost) tunnels lost during the hold (\(r.sessionsLost) sessions); \(r.resumed) back with their cookie, \(r.refused) refused (a new login), \(r.gaveUp) not back; \(r.attempts) attempts; \(r.addressesChanged) with another address")
            if let l = r.latencyMs {
                line("resume time (tunnel lost → 200 CONNECTED again), ms: p50 \(f(l.p50)), p90 \(f(l.p90)), p99 \(f(l.p99)), max \(f(l.max)) (n=\(l.count))"
                     + (r.allBackSeconds.map { "; all back \(f($0, 2)) s after the first loss" } ?? ""))
            }
            for (reason, e) in r.failures.sorted {
                line("  \(e.count) × \(reason)" + (e.example.map { ": \($0)" } ?? ""))
            }
        }
        let lg = loadgen
        line("loadgen CPU: connect phase \(f(lg.cpuConnectPhase.userSeconds, 2)) s user + \(f(lg.cpuConnectPhase.systemSeconds, 2)) s sys; whole run \(f(lg.cpuTotal.userSeconds, 2)) s user + \(f(lg.cpuTotal.systemSeconds, 2)) s sys; max RSS \(lg.maxRSSKB) KB; fd limit \(lg.fdLimit)")
        return out.joined(separator: "\n")
    }
}
