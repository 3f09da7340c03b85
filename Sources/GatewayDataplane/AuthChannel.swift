internal import CGatewayShims
import Glibc
import Foundation
import GatewayCore
import GatewayIPC
import GatewayWire
import Logging
import GatewaySystem

/// The gateway's connection to `mstunnel-auth`: non-blocking, inside the event loop,
/// many requests in flight, correlated by id. Reconnects on demand; while auth is
/// unreachable, logins get a clear 503 instead of hanging.
final class AuthChannel {
    struct Pending {
        let connectionSlot: Int32
        let connectionGeneration: UInt32
        let sentAt: Int64
        /// For the latency histogram (`sentAt` is whole seconds, for timeouts).
        var sentNanos: UInt64 = monotonicNanos()
        /// Set for a session's re-check at its deadline (`Recheck`), not a login: the
        /// session's slot and handle (a slot is reused; the handle tells sessions apart).
        var recheck: (slot: Int32, handle: String)? = nil
        /// The one `restoreSessions` request of this process.
        var restore = false
        /// A new session's ticket being sealed: the session's (reserved) slot.
        var sealing: Int32? = nil
        /// A CONNECT's ticket being opened (for the connection).
        var ticket = false
    }

    let socketPath: String
    private(set) var fd: Int32 = -1
    private var decoder = WireFrameDecoder()
    private var outbound: [UInt8] = []
    private var nextId: UInt64 = 1
    private(set) var pending: [UInt64: Pending] = [:]
    private var lastConnectAttempt: Int64 = -1000
    /// The unreachable warning is logged when auth goes away and then once a minute, not
    /// at every attempt (the 1 s timer tries too, to reconcile sessions when auth returns).
    private var lastUnreachableLog: Int64 = -1000
    private let loop: EventLoop
    private let logger: Logger
    var connected: Bool { fd >= 0 }
    /// Successful connects since start: a new value means auth may have restarted and lost
    /// what it was told while away (Gateway+Restore reconciles).
    private(set) var connects = 0

    init(socketPath: String, loop: EventLoop, logger: Logger) {
        self.socketPath = socketPath
        self.loop = loop
        self.logger = logger
    }

    /// Connects if not connected (at most once a second). False if auth is unreachable.
    func ensureConnected(now: Int64) -> Bool {
        if fd >= 0 { return true }
        guard now - lastConnectAttempt >= 1 else { return false }
        lastConnectAttempt = now
        do {
            let newFd = try UnixSocket.connect(path: socketPath, nonBlocking: true)
            do {
                try loop.add(newFd, events: UInt32(EPOLLIN.rawValue | EPOLLRDHUP.rawValue), token: Token.make(.auth))
            } catch {
                close(newFd)
                throw error
            }
            fd = newFd
            connects += 1
            decoder = WireFrameDecoder()
            lastUnreachableLog = -1000
            logger.info("auth.connected", metadata: ["socket": "\(socketPath)"])
            return true
        } catch {
            if now - lastUnreachableLog >= 60 {
                lastUnreachableLog = now
                logger.warning("auth.unreachable", metadata: ["socket": "\(socketPath)", "error": "\(error)", "logged": "once a minute while it lasts"])
            }
            return false
        }
    }

    /// Queues a validation request. Nil when auth is unreachable.
    /// What the answer is for lives in the connection's `LoginConversation`.
    func validate(token: String, transport: TokenTransport, peer: String, connection: ClientConnection, now: Int64) -> UInt64? {
        enqueue(ValidateTokenRequest(token: token, transport: transport, peerAddress: peer, clientCertificateChain: connection.clientCertificateChain),
             Pending(connectionSlot: connection.slot, connectionGeneration: connection.generation, sentAt: now), now: now)
    }

    /// Asks for a session's certificate to be verified again (its re-check at the deadline).
    func recheck(certificateChain: [Data], peer: String?, sessionSlot: Int32, handle: String, now: Int64) -> UInt64? {
        enqueue(ValidateTokenRequest(token: "", transport: .certificate, peerAddress: peer, clientCertificateChain: certificateChain, recheck: true),
             Pending(connectionSlot: -1, connectionGeneration: 0, sentAt: now, recheck: (sessionSlot, handle)), now: now)
    }

    private func enqueue(_ request: ValidateTokenRequest, _ p: Pending, now: Int64) -> UInt64? {
        enqueue(.validateToken(request), p, now: now)
    }

    /// Asks for a page of the sessions mstunnel-auth keeps.
    func requestRestore(after: String?, now: Int64) -> Bool {
        enqueue(.restoreSessions(RestoreSessionsRequest(after: after)),
                Pending(connectionSlot: -1, connectionGeneration: 0, sentAt: now, restore: true), now: now) != nil
    }

    /// Asks for a new session to be kept and sealed into its ticket.
    func seal(_ session: StoredSession, sessionSlot: Int32, connection: ClientConnection, now: Int64) -> UInt64? {
        enqueue(.sealSession(SealSessionRequest(session: session)),
                Pending(connectionSlot: connection.slot, connectionGeneration: connection.generation, sentAt: now, sealing: sessionSlot), now: now)
    }

    /// Asks for a CONNECT's ticket to be opened.
    func openTicket(_ ticket: String, connection: ClientConnection, now: Int64) -> UInt64? {
        enqueue(.openTicket(OpenTicketRequest(ticket: ticket)),
                Pending(connectionSlot: connection.slot, connectionGeneration: connection.generation, sentAt: now, ticket: true), now: now)
    }

    /// A request whose answer nobody waits for (saving or forgetting a session): sent if
    /// auth is connected, dropped if not. False when dropped.
    @discardableResult
    func notify(_ request: WireRequest, now: Int64) -> Bool {
        guard fd >= 0 || ensureConnected(now: now) else { return false }
        let id = nextId
        nextId += 1
        guard let bytes = try? WireCodec.encode(WireEnvelope(id: id, .request(request))) else { return false }
        outbound.append(contentsOf: bytes)
        flush()
        return fd >= 0
    }

    private func enqueue(_ request: WireRequest, _ p: Pending, now: Int64) -> UInt64? {
        guard ensureConnected(now: now) else { return nil }
        let id = nextId
        nextId += 1
        guard let bytes = try? WireCodec.encode(WireEnvelope(id: id, .request(request))) else { return nil }
        outbound.append(contentsOf: bytes)
        pending[id] = p
        flush()
        return fd >= 0 ? id : nil
    }

    func flush() {
        guard fd >= 0 else { return }
        var sent = 0
        while sent < outbound.count {
            let n = outbound.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            if n > 0 { sent += n; continue }
            if n < 0, errno == EINTR { continue }
            if n < 0, errno == EAGAIN {
                loop.modify(fd, events: UInt32(EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLRDHUP.rawValue), token: Token.make(.auth))
                break
            }
            logger.warning("auth.send_failed", metadata: ["error": "\(SystemError.reason(errno))"])
            outbound.removeAll()
            return
        }
        outbound.removeFirst(sent)
        if outbound.isEmpty {
            loop.modify(fd, events: UInt32(EPOLLIN.rawValue | EPOLLRDHUP.rawValue), token: Token.make(.auth))
        }
    }

    /// Reads responses; calls `deliver` for each. Returns the pendings orphaned by a
    /// disconnect (to be failed by the caller).
    /// `tickets` gets the answers to `seal` and `openTicket` (nil: not a response).
    func handleReadable(buffer: UnsafeMutableRawBufferPointer, deliver: (Pending, ValidateTokenResponse) -> Void,
                        restored: (RestoreSessionsResponse?, WireErrorResponse?) -> Void,
                        tickets: (Pending, WireResponse?) -> Void) -> [Pending] {
        while fd >= 0 {
            let n = recv(fd, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT))
            if n > 0 {
                decoder.append(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                do {
                    while let env = try decoder.next() {
                        guard let p = pending.removeValue(forKey: env.id) else { continue }
                        if p.restore {
                            switch env.message {
                            case .response(.restoreSessions(let r)): restored(r, nil)
                            case .response(.error(let e)): restored(nil, e)
                            default: restored(nil, nil)
                            }
                            continue
                        }
                        if p.sealing != nil || p.ticket {
                            if case .response(let r) = env.message { tickets(p, r) } else { tickets(p, nil) }
                            continue
                        }
                        switch env.message {
                        case .response(.validateToken(let r)): deliver(p, r)
                        case .response(.error(let e)):
                            deliver(p, .rejected(.issuerUnavailable, "auth service error \(e.code): \(e.message)"))
                        default:
                            deliver(p, .rejected(.issuerUnavailable, "unexpected reply from auth service"))
                        }
                    }
                } catch {
                    logger.error("auth.bad_stream", metadata: ["error": "\(error)"])
                    return disconnect()
                }
                continue
            }
            if n < 0, errno == EINTR { continue }
            if n < 0, errno == EAGAIN { return [] }
            logger.warning("auth.disconnected", metadata: ["socket": "\(socketPath)"])
            return disconnect()
        }
        return []
    }

    func disconnect() -> [Pending] {
        if fd >= 0 {
            loop.remove(fd)
            close(fd)
            fd = -1
        }
        outbound.removeAll()
        let orphaned = Array(pending.values)
        pending.removeAll()
        return orphaned
    }

    /// Requests older than `timeout` seconds, removed from the table.
    func expire(now: Int64, timeout: Int64) -> [Pending] {
        let old = pending.filter { now - $0.value.sentAt >= timeout }
        for k in old.keys { pending[k] = nil }
        return Array(old.values)
    }
}
