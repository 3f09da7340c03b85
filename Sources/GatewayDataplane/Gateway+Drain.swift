import GatewayCore
import GatewaySessionCore
import GatewaySystem
import GatewayWire
import Logging

/// Drain (docs/site.md, "Drain"): before a server is stopped for an upgrade, or taken out of a
/// Site, it stops taking clients and hands the ones it has to its siblings. Its liveness page
/// answers 503, so the balancer's probe leaves it out; it makes no new session (a login, or a
/// ticket from a sibling, gets 503 and the client tries again, through the balancer, elsewhere);
/// at the hand-over time it closes every tunnel without a DISCONNECT — the stock client then
/// reconnects by itself, lands on a sibling, and resumes its session there with its ticket,
/// keeping its address. Its tickets are not revoked: the sessions live on elsewhere.
extension Gateway {
    struct DrainState {
        var sinceWall: Int64
        /// Monotonic seconds at which the sessions are handed over; nil: waited for.
        var handOverAt: Int64?
        var handOverAtWall: Int64?
        var handedOver = 0

        var status: DrainStatus { DrainStatus(since: sinceWall, handOverAt: handOverAtWall, handedOver: handedOver) }
    }

    static let drainReason = "handed over to a sibling (drain)"
    static let drainRefusal = "this server is draining; connect again to reach another server of the Site"

    func drainRequested(_ r: DrainRequest) -> DrainResponse {
        if r.drain {
            let now = monotonicSeconds(), wall = wallSeconds()
            let after = r.handOverAfterSeconds.map { Int64(max(0, min($0, 86_400))) }
            var state = drain ?? DrainState(sinceWall: wall)
            state.handOverAt = after.map { now + $0 }
            state.handOverAtWall = after.map { wall + $0 }
            drain = state
            logger.notice("gateway.draining", metadata: [
                "sessions": "\(sessions.count)",
                "hand_over": "\(after.map { "in \($0) s" } ?? "never: waiting for the sessions to end")"])
            handOverIfDue(now: now)
        } else if let state = drain {
            drain = nil
            logger.notice("gateway.drain_ended", metadata: ["handed_over": "\(state.handedOver)", "sessions": "\(sessions.count)"])
        }
        return DrainResponse(drain: drain?.status, sessions: sessions.count)
    }

    /// From the 1 s timer and when a drain begins; again at every tick after the hand-over
    /// time, for a login or resume that was already under way when the drain began.
    func handOverIfDue(now: Int64) {
        guard var state = drain, let at = state.handOverAt, now >= at, sessions.count > 0 else { return }
        var n = 0
        for s in sessions.all where !s.life.isEnded {
            endSession(s, reason: Self.drainReason, tellClient: false)
            n += 1
        }
        state.handedOver += n
        drain = state
        logger.notice("gateway.handed_over", metadata: ["sessions": "\(n)", "why": "drain: each client resumes on a sibling with its ticket"])
    }
}
