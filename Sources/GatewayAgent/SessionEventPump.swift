import Foundation
import GatewayAgentAPI
import GatewayWire
import Logging

/// Moves the gateway's session and access events into the outbox.
///
/// The gateway numbers events per boot (`bootId`); the agent remembers the boot and the
/// last sequence it queued, in the same transaction as the queued events, so after any
/// crash an event is queued exactly once. A new `bootId` means the gateway restarted and
/// its numbering started over: the agent then reads the new boot from the beginning.
public final class SessionEventPump {
    let outbox: Outbox
    /// `sessionEvents` on the gateway; a closure so tests can play a gateway.
    let fetch: (_ after: UInt64, _ limit: Int) -> Result<SessionEventsResponse, GatewayCallError>
    let logger: Logger
    public static let pageSize = 500
    private var lastProblem: String?

    public convenience init(outbox: Outbox, gateway: GatewayControl, logger: Logger) {
        self.init(outbox: outbox, logger: logger) { gateway.sessionEvents(after: $0, limit: $1) }
    }

    public init(outbox: Outbox, logger: Logger,
                fetch: @escaping (_ after: UInt64, _ limit: Int) -> Result<SessionEventsResponse, GatewayCallError>) {
        self.outbox = outbox
        self.logger = logger
        self.fetch = fetch
    }

    /// Reads what is new (a few pages at most per call) and returns how many events were queued.
    @discardableResult
    public func poll(maxPages: Int = 10) -> Int {
        var bootId = outbox.database.value(.eventsBootId)
        var after = UInt64(outbox.database.value(.eventsSequence) ?? "0") ?? 0
        var queued = 0
        for _ in 0 ..< maxPages {
            let response: SessionEventsResponse
            switch fetch(after, Self.pageSize) {
            case .success(let r): response = r
            case .failure(let e):
                report(problem: "\(e)", quiet: { if case .notRunning = e { return true } else { return false } }())
                return queued
            }
            if response.bootId != bootId {
                if bootId != nil {
                    logger.info("agent.events.gateway_restarted", metadata: ["boot.previous": "\(bootId ?? "")", "boot": "\(response.bootId)"])
                }
                bootId = response.bootId
                if after != 0 {
                    // The answer skipped sequences ≤ `after` of the new boot; ask again from 0.
                    after = 0
                    continue
                }
            }
            if response.missed > 0 {
                logger.warning("agent.events.missed", metadata: [
                    "count": "\(response.missed)",
                    "detail": "the gateway's event buffer overflowed before the agent read it",
                ])
            }
            let events = response.events.filter { $0.sequence > after }.sorted { $0.sequence < $1.sequence }
            let newAfter = events.last?.sequence ?? after
            let items = events.map { ReportItem(id: UUID().uuidString.lowercased(), createdDateTime: GraphDate.string(Self.date($0.time)),
                                                event: Self.map($0)) }
            do {
                let dropped = try outbox.enqueue(items, alsoSet: [.eventsBootId: response.bootId, .eventsSequence: String(newAfter)])
                if dropped > 0 { logger.warning("agent.outbox.full", metadata: ["dropped": "\(dropped)", "bound": "\(outbox.maxRows)"]) }
            } catch {
                report(problem: error.message, quiet: false)
                return queued
            }
            queued += items.count
            after = newAfter
            lastProblem = nil
            if response.events.count < Self.pageSize { break }
        }
        return queued
    }

    private func report(problem: String, quiet: Bool) {
        guard problem != lastProblem else { return }
        lastProblem = problem
        if quiet {
            logger.debug("agent.events.unavailable", metadata: ["error": "\(problem)"])
        } else {
            logger.warning("agent.events.unavailable", metadata: ["error": "\(problem)"])
        }
    }

    static func date(_ milliseconds: Int64) -> Date {
        Date(timeIntervalSince1970: Double(milliseconds) / 1000)
    }

    /// Gateway event → API event. `rxBytes` (received by the gateway from the client) is
    /// the session's `bytesIn`; `txBytes` (sent to the client) is `bytesOut`.
    public static func map(_ e: GatewaySessionEvent) -> AgentEvent {
        let type: AgentEvent.Kind
        switch e.type {
        case .sessionConnected: type = .sessionConnected
        case .sessionDisconnected: type = .sessionDisconnected
        case .loginRejected: type = .loginRejected
        }
        func clamp(_ v: UInt64?) -> Int64? { v.map { $0 > UInt64(Int64.max) ? Int64.max : Int64($0) } }
        return AgentEvent(type: type, dateTime: GraphDate.string(date(e.time)), userId: e.userId, userName: e.userName,
                          deviceId: e.deviceId, sessionId: e.sessionId, clientAddress: e.clientAddress,
                          assignedAddress: e.assignedAddress, reason: e.reason, bytesIn: clamp(e.rxBytes), bytesOut: clamp(e.txBytes))
    }
}
