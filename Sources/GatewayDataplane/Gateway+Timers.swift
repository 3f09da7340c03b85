internal import CGatewayShims
import Glibc
import GatewayCore
import GatewayHostNetwork
import GatewayIPC
import GatewaySessionCore
import GatewayTLS
import GatewayTUN
import GatewayWire
import Logging

/// The 1 s timer: `Expiry` (GatewaySessionCore) decides what is over, this acts on it.
extension Gateway {
    func tick() {
        var expirations: UInt64 = 0
        _ = read(timerFd, &expirations, 8)
        let now = monotonicSeconds()
        if now >= acceptPausedUntil, acceptPausedUntil != 0 {
            acceptPausedUntil = 0
            loop.modify(listenFd, events: UInt32(EPOLLIN.rawValue), token: Token.make(.listener))
        }
        control?.resumeAcceptingIfPaused(now: now)
        if !pool.quarantined.isEmpty {
            let ended = pool.endQuarantines(now: wallSeconds())
            if ended > 0 { logger.info("pool.quarantine_ended", metadata: ["addresses": "\(ended)", "still_quarantined": "\(pool.quarantined.count)"]) }
        }
        let timeouts = Expiry.Timeouts(settings.advanced)
        for c in connections {
            guard let c else { continue }
            let stage: Expiry.Stage
            switch c.phase {
            case .handshake: stage = .handshake
            case .http, .waitingAuth: stage = .login
            case .tunnel: stage = .tunnel
            case .closed: continue
            }
            if let reason = Expiry.connection(stage: stage, acceptedAt: c.acceptedAt, lastReceive: c.lastReceive, now: now, timeouts) {
                closeConnection(c, reason: reason)
            } else if now - c.lastReceive >= 1, c.tls.output.isEmpty {
                // Idle for a second: libssl's record buffers (~34 KB) go back until the
                // next record (thousands of idle sessions).
                c.tls.releaseIdleBuffers()
            }
        }
        for s in sessions.all {
            for ch in s.handshakes {
                switch Expiry.dtls(established: false, startedAt: ch.startedAt, lastReceive: ch.lastReceive, now: now, timeouts) {
                case .retransmit:
                    makeDatagramRoom()
                    ch.connection.handleTimeout()
                case .handshakeTimedOut:
                    // Also where a replayed ClientHello ends: the channel the session has
                    // was never touched.
                    counters.dtlsFailures += 1
                    logger.info("dtls.handshake_timeout", metadata: sessionMetadata(s, ["udp.peer": "\(ch.peer)"]))
                    endHandshake(s, ch)
                case .keep, .dead:
                    break
                }
            }
            guard let ch = s.dtls else { continue }
            if case .dead(let idle) = Expiry.dtls(established: true, startedAt: ch.startedAt, lastReceive: ch.lastReceive, now: now, timeouts) {
                logger.info("dtls.dead", metadata: sessionMetadata(s, ["idle_s": "\(idle)"]))
                dropDTLS(s)
            }
        }
        for s in sessions.all where s.deadline > 0 && now >= s.deadline && !s.life.isEnded {
            recheck(s, now: now)
        }
        for s in sessions.all {
            if let reason = s.life.expiry(now: now, lastTraffic: s.lastTraffic, timeouts) { endSession(s, reason: reason) }
        }
        // Reconnect to auth on our own too (at most once a second), so sessions are given
        // back to it as soon as it returns, not at the next login.
        if !auth.connected { _ = auth.ensureConnected(now: now) }
        requestRestoreIfNeeded(now: now)
        handOverIfDue(now: now)
        for p in auth.expire(now: now, timeout: 10) {
            failAuth(p, reason: "authentication service did not answer in time")
        }
    }

    /// A session at its deadline: `Recheck` says whether it goes on, ends, or waits for
    /// mstunnel-auth to verify its certificate again.
    func recheck(_ s: Session, now: Int64) {
        let policy = settings.effectivePolicy(for: s.identity.policySubject)
        let decision = Recheck.atDeadline(s.identity, hasCertificateChain: s.certificateChain != nil,
                                          policyDenied: policy.denied ? (policy.policyName ?? "") : nil,
                                          now: now, wallNow: wallSeconds(), sessionTimeout: settings.advanced.sessionTimeout)
        act(on: decision, s, now: now)
    }

    func recheckAnswered(_ target: (slot: Int32, handle: String), _ response: ValidateTokenResponse) {
        // The whole id, not the 8-digit handle: a slot is reused, and 32 bits could collide.
        guard let s = sessions.session(at: target.slot), hex(s.id) == target.handle, !s.life.isEnded else { return }
        let now = monotonicSeconds()
        act(on: Recheck.afterAuth(response, session: s.identity, now: now, wallNow: wallSeconds(),
                                  sessionTimeout: settings.advanced.sessionTimeout), s, now: now)
    }

    private func act(on decision: Recheck.Decision, _ s: Session, now: Int64) {
        switch decision {
        case .extend(let until):
            s.life.renew(until: until)
            keep(s)
            logger.info("session.rechecked", metadata: sessionMetadata(s, ["next_check_s": "\(until - now)"]))
        case .askAuth(let grace):
            // Kept for the grace period either way: the answer, or the next ask, comes in it.
            s.life.renew(until: now + grace)
            if let chain = s.certificateChain,
               auth.recheck(certificateChain: chain, peer: s.remoteAddress, sessionSlot: s.slot, handle: hex(s.id), now: now) == nil {
                // Unreachable right now: try again soon rather than at the end of the grace.
                // One line a minute for all sessions (thousands may be due while auth is away).
                s.life.renew(until: now + Recheck.unreachableRetry)
                deferredRechecks += 1
                if now - lastDeferredLog >= 60 {
                    lastDeferredLog = now
                    logger.warning("session.recheck_deferred", metadata: sessionMetadata(s, [
                        "reason": "authentication service unreachable", "retry_s": "\(Recheck.unreachableRetry)",
                        "deferred_since_start": "\(deferredRechecks)", "logged": "once a minute"]))
                }
            }
        case .end(let reason):
            endSession(s, reason: reason)
        }
    }
}
