internal import CGatewayShims
import Glibc
import GatewayCore
import GatewayHostNetwork
import GatewayIPC
import GatewaySandbox
import GatewaySessionCore
import GatewayTLS
import GatewayTUN
import GatewayWire
import Logging

/// The two Unix sockets the loop serves besides clients: answers from mstunnel-auth, and
/// requests on the control socket (mst-cli, the agent).
extension Gateway {
    // MARK: auth channel

    func handleAuthEvent(_ events: UInt32) {
        if events & UInt32(EPOLLOUT.rawValue) != 0 { auth.flush() }
        if events & UInt32(EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 {
            let orphaned = auth.handleReadable(buffer: io, deliver: { pending, response in
                authCompleted(pending, response)
            }, restored: { restoreSessions($0, refused: $1) }, tickets: { ticketAnswered($0, $1) })
            for p in orphaned { failAuth(p, reason: "authentication service went away") }
        }
    }

    func connection(for p: AuthChannel.Pending) -> ClientConnection? {
        let slot = Int(p.connectionSlot)
        guard p.recheck == nil, slot >= 0, slot < connections.count, let c = connections[slot], c.generation == p.connectionGeneration,
              c.phase == .waitingAuth else { return nil }
        return c
    }

    func failAuth(_ p: AuthChannel.Pending, reason: String) {
        if p.restore {
            // No answer: the next tick starts the pass over.
            restorePending = false
            restoreCursor = nil
            restoreConnect = 0
        }
        if p.sealing != nil || p.ticket { return ticketAnswered(p, nil) }
        guard let c = connection(for: p) else { return }
        authUnavailable(c, reason: reason)
    }

    // MARK: control socket

    func respond(to request: WireRequest) -> WireResponse {
        switch request {
        case .ping:
            return .ping(PingResponse(process: "mstunnel-server", version: options.version))
        case .serverStatus:
            var status = ServerStatusResponse(
                version: options.version, startedAt: startedWall, listenPort: settings.listenPort, tunDevice: tun.name,
                activeSessions: sessions.count, connectedSessions: sessions.all.filter { $0.connection != nil }.count,
                totalSessions: counters.totalSessions, authFailures: counters.authFailures, poolSize: pool.capacity,
                poolInUse: pool.inUse, poolExhaustedCount: pool.exhaustedCount, rxBytes: counters.rxBytes,
                txBytes: counters.txBytes, authAvailable: auth.connected)
            status.sessionsResumed = counters.sessionsResumed
            if pool.slice != nil {
                status.foreignLeases = sessions.all.compactMap { s in pool.isInSlice(s.address) ? nil : "\(s.address)" }.sorted()
            }
            if !pool.quarantined.isEmpty { status.poolQuarantined = pool.quarantined.count }
            status.maxSessions = settings.advanced.maxSessions
            status.drain = drain?.status
            status.drops = PacketDrops(noSession: counters.dropsNoSession, queueFull: counters.dropsQueueFull + udpOut.dropped,
                                       spoofed: counters.dropsSpoofed, unsupported: counters.dropsUnsupported + counters.dropsTunWrite,
                                       unknownDatagram: counters.dropsUnknownDatagram)
            status.acksCoalesced = ackFilter.superseded + ackFilterOut.superseded
            let overDTLS = sessions.all.filter { $0.connection != nil && ($0.dtls.map { $0.established && $0.preferred } ?? false) }
            status.dtlsSessions = overDTLS.count
            status.dtlsDirectSessions = overDTLS.filter { $0.dtls?.connection.sealsDirectly ?? false }.count
            status.transitPackets = transit.packets
            status.transitNanos = transit.weightedNanos
            let own = ProcessSecurity.current()
            status.confinement = ProcessConfinement(uid: own.uids.dropFirst().first ?? 0, gid: own.gids.dropFirst().first ?? 0,
                                                    effectiveCapabilities: own.effectiveCapabilities,
                                                    noNewPrivileges: own.noNewPrivileges, seccompMode: own.seccompMode)
            status.connectionsRefused = counters.connectionsRefused
            status.bansSinceStart = sourceGuard.bans
            status.malformed = malformed
            status.policyDenials = counters.policyDenials
            status.tls = counters.tls
            status.dtls = counters.dtls
            status.logins = counters.logins
            status.authLatency = counters.authLatency
            return .serverStatus(status)
        case .listSessions(let q):
            let now = monotonicSeconds()
            let wallNow = wallSeconds()
            let list = sessions.all.filter { s in
                q.user.map { $0 == s.identity.userId || $0 == s.identity.userName } ?? true
            }.map { s in
                var info = SessionInfo(id: s.handle, userId: s.identity.userId, userName: s.identity.userName, deviceId: s.identity.deviceId,
                            address: s.address.description, remoteAddress: s.remoteAddress, connected: s.connection != nil,
                            channel: s.connection == nil ? "none" : (s.dtls.map { $0.established && $0.preferred } ?? false) ? "dtls" : "tls", connectedAt: s.createdWall,
                            expiresAt: s.deadline > 0 ? wallNow + (s.deadline - now) : 0, rxBytes: s.rxBytes, txBytes: s.txBytes,
                            userAgent: s.userAgent, hostname: s.hostname)
                info.address6 = s.address6?.description
                info.groups = s.identity.groups
                info.roles = s.identity.roles
                info.organizationalUnits = s.identity.organizationalUnits
                info.groupsOverage = s.identity.groupsOverage
                info.policy = s.policy.info
                return info
            }
            return .listSessions(ListSessionsResponse(sessions: list))
        case .applySettings(let r):
            return .applySettings(applySettings(r))
        case .sessionEvents(let r):
            return .sessionEvents(events.after(r.after, limit: r.limit))
        case .validateToken:
            return .error(WireErrorResponse(code: WireErrorResponse.unknownRequest, message: "mstunnel-server does not validate tokens"))
        case .drain(let r):
            return .drain(drainRequested(r))
        case .endSessions(let r):
            return .endSessions(endSessions(r))
        case .saveSession, .forgetSession, .restoreSessions, .sealSession, .openTicket, .installTicketKeys, .ticketRevocations:
            return .error(WireErrorResponse(code: WireErrorResponse.unknownRequest, message: "mstunnel-server does not keep sessions for others; mstunnel-auth does"))
        case .hostNetwork:
            // Only the gateway's own helper, over its private socket pair, changes the host.
            return .error(WireErrorResponse(code: WireErrorResponse.notAllowed, message: "host changes are not taken on the control socket"))
        }
    }
}
