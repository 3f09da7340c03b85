import Foundation
import NIOCore
import Synchronization

/// The key under which connections and failed admin logins are counted per client:
/// an IPv4 address (also when it arrives IPv4-mapped on an IPv6 socket), or the /64 of an
/// IPv6 address (one host usually holds a whole /64, so counting single IPv6 addresses
/// would let it walk around every limit). No port.
enum SourceAddress {
    static func key(_ address: SocketAddress?) -> String {
        switch address {
        case .v4?:
            return address?.ipAddress ?? "unknown"
        case .v6(let v6)?:
            let bytes = withUnsafeBytes(of: v6.address.sin6_addr) { Array($0) }
            guard bytes.count == 16 else { return address?.ipAddress ?? "unknown" }
            if bytes[0 ..< 10].allSatisfy({ $0 == 0 }), bytes[10] == 0xFF, bytes[11] == 0xFF {
                return bytes[12 ..< 16].map(String.init).joined(separator: ".")
            }
            let groups = stride(from: 0, to: 8, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }
            return groups.joined(separator: ":") + "::/64"
        case .unixDomainSocket?:
            return "unix"
        case nil:
            return "unknown"
        }
    }
}

/// At most one line per second per event name, so a flood of refused connections or
/// throttled logins cannot flood the log; the next line that is written carries how many
/// were left out (`suppressed`).
final class LogGate: Sendable {
    private struct State {
        var last: [String: ContinuousClock.Instant] = [:]
        var suppressed: [String: Int] = [:]
    }
    private let state = Mutex(State())
    private let interval: Duration

    init(interval: Duration = .seconds(1)) {
        self.interval = interval
    }

    /// nil: leave this line out; else the number left out since the last one written.
    func pass(_ event: String) -> Int? {
        let now = ContinuousClock.now
        return state.withLock { s in
            if let last = s.last[event], now - last < interval {
                s.suppressed[event, default: 0] += 1
                return nil
            }
            s.last[event] = now
            return s.suppressed.removeValue(forKey: event) ?? 0
        }
    }
}
