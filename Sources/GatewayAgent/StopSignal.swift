import Dispatch
import Foundation
import Glibc

/// SIGTERM/SIGINT → "finish the current step and exit". The loop checks `isStopped`
/// between steps and sleeps with `wait(seconds:)`, which returns early when a signal comes.
public final class StopSignal: @unchecked Sendable {
    // @unchecked: `stopped` is only touched under `condition`'s lock.
    private let condition = NSCondition()
    private var stopped = false
    private var sources: [any DispatchSourceSignal] = []

    public init() {}

    /// Routes SIGTERM and SIGINT here (through Dispatch, so no work happens in a signal
    /// handler) and ignores SIGPIPE (a gateway closing its socket mid-write must not kill us).
    public func install() {
        signal(SIGPIPE, SIG_IGN)
        for sig in [SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { [weak self] in self?.stop() }
            source.resume()
            sources.append(source)
        }
    }

    public func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    public var isStopped: Bool {
        condition.lock()
        defer { condition.unlock() }
        return stopped
    }

    /// Sleeps up to `seconds`; returns true when stopped.
    @discardableResult
    public func wait(seconds: Double) -> Bool {
        let deadline = Date(timeIntervalSinceNow: max(0, seconds))
        condition.lock()
        defer { condition.unlock() }
        while !stopped {
            if !condition.wait(until: deadline) { break }
        }
        return stopped
    }
}
