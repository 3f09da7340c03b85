internal import CGatewayShims
import Glibc
import GatewaySystem

/// A thin epoll wrapper. The gateway is one event loop on one thread: no thread or
/// process per session, one file descriptor per session. SwiftNIO is not used here
/// because the data path needs things NIO does not give cheaply: a shared TUN fd read
/// in batches into one reusable buffer with headroom for the CSTP header, and OpenSSL
/// driving the socket directly (no extra copy through a channel pipeline).
final class EventLoop {
    let epfd: Int32
    private var events: [epoll_event]

    init(maxEvents: Int = 256) throws {
        epfd = epoll_create1(Int32(EPOLL_CLOEXEC))
        if epfd < 0 { throw DataplaneError("epoll_create1", errno: errno) }
        events = [epoll_event](repeating: epoll_event(), count: maxEvents)
    }

    deinit { close(epfd) }

    func add(_ fd: Int32, events mask: UInt32, token: UInt64) throws {
        var ev = epoll_event(events: mask, data: epoll_data_t(u64: token))
        if epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0 { throw DataplaneError("epoll_ctl(ADD)", errno: errno) }
    }

    func modify(_ fd: Int32, events mask: UInt32, token: UInt64) {
        var ev = epoll_event(events: mask, data: epoll_data_t(u64: token))
        _ = epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev)
    }

    func remove(_ fd: Int32) {
        _ = epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nil)
    }

    /// Waits and calls `body(token, events)` for each ready fd.
    func poll(timeoutMs: Int32, _ body: (UInt64, UInt32) -> Void) {
        let n = events.withUnsafeMutableBufferPointer { epoll_wait(epfd, $0.baseAddress, Int32($0.count), timeoutMs) }
        if n <= 0 { return }
        for i in 0..<Int(n) {
            body(events[i].data.u64, events[i].events)
        }
    }
}

/// Epoll tokens: the kind in the top byte, a generation in the next 24 bits (so an
/// event for a slot that was closed and reused in the same batch is recognised as
/// stale), the slot in the low 32.
enum Token {
    enum Kind: UInt8 {
        case listener = 1, tun, signal, timer, auth, controlListener, control, client, udp
    }

    static func make(_ kind: Kind, slot: Int32 = 0, generation: UInt32 = 0) -> UInt64 {
        UInt64(kind.rawValue) << 56 | UInt64(generation & 0xFF_FFFF) << 32 | UInt64(UInt32(bitPattern: slot))
    }

    static func kind(_ t: UInt64) -> Kind? { Kind(rawValue: UInt8(t >> 56)) }
    static func slot(_ t: UInt64) -> Int32 { Int32(bitPattern: UInt32(truncatingIfNeeded: t)) }
    static func generation(_ t: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: t >> 32) & 0xFF_FFFF }
}

public struct DataplaneError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String, errno: Int32? = nil) {
        if let e = errno { self.message = "\(message): \(SystemError.reason(e))" } else { self.message = message }
    }
    public var description: String { message }
}

/// Seconds on the monotonic clock: timeouts never jump with wall-clock changes.
@inline(__always)
func monotonicSeconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec)
}

/// Nanoseconds on the monotonic clock (the transit-time measurement: two reads per loop turn).
@inline(__always)
func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

func wallSeconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec)
}

func wallMilliseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

func hex(_ bytes: [UInt8]) -> String {
    let digits: [Character] = Array("0123456789abcdef")
    var s = ""
    s.reserveCapacity(bytes.count * 2)
    for b in bytes {
        s.append(digits[Int(b >> 4)])
        s.append(digits[Int(b & 0xF)])
    }
    return s
}
