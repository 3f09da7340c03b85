import Dispatch
import Foundation
import GatewayIPC
import GatewayWire
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// The plugin's Unix-socket server.
///
/// Threads, not an event loop: the gateway keeps one or two long-lived connections, so
/// one accept thread plus one blocking reader thread per connection is both simplest
/// and enough (never a thread per VPN session: sessions are multiplexed by request id).
/// Each `validateToken` runs in its own Task and is answered on the connection it came
/// from, possibly out of order; the envelope id correlates.
public final class AuthServer: @unchecked Sendable {
    // @unchecked: the immutable configuration is set in init; `listenFD`, `wakePipe`,
    // `connections`, `stopping` and `acceptRunning` are only touched under `lock`.

    public let socketPath: String
    public let socketMode: mode_t
    public let peerPolicy: PeerPolicy
    public let handler: AuthRequestHandler
    /// Frame payload limit. A validateToken request is a token plus a few fields; a
    /// megabyte is far beyond any legitimate frame.
    public let maxFramePayload: Int
    /// Each connection costs a thread. The gateway keeps one or two; a peer opening
    /// dozens is broken, and refusing it protects the plugin.
    public let maxConnections: Int
    /// The sessions that outlive a gateway process; nil: not kept (a gateway restart asks
    /// every client to log in again).
    public let sessionStore: SessionStore?
    /// Who may save, forget and read back sessions: the gateway's uid (`--allow-uid`) and
    /// root — not every peer the socket admits (the agent shares the stack's group, and a
    /// session saved here becomes a tunnel after the next gateway restart).
    public let sessionStorePeers: Set<UInt32>
    /// Peer uids that may hand over the Site's ticket keys (the agent's): not the gateway's,
    /// which must never choose the keys its cookies are sealed with.
    public let ticketKeyPeers: Set<UInt32>
    let logger: Logger

    private let lock = Mutex()
    private var listenFD: Int32 = -1
    private var wakePipe: (read: Int32, write: Int32) = (-1, -1)
    private var connections: [ObjectIdentifier: WireConnection] = [:]
    private var stopping = false
    private var acceptRunning = false
    private let acceptFinished = DispatchSemaphore(value: 0)

    public init(socketPath: String, socketMode: mode_t = 0o660, peerPolicy: PeerPolicy, handler: AuthRequestHandler,
                maxFramePayload: Int = 1 << 20, maxConnections: Int = 64, sessionStore: SessionStore? = nil,
                sessionStorePeers: Set<UInt32> = [0], ticketKeyPeers: Set<UInt32> = [0], logger: Logger) {
        self.sessionStore = sessionStore
        self.sessionStorePeers = sessionStorePeers
        self.ticketKeyPeers = ticketKeyPeers
        self.socketPath = socketPath
        self.socketMode = socketMode
        self.peerPolicy = peerPolicy
        self.handler = handler
        self.maxFramePayload = maxFramePayload
        self.maxConnections = maxConnections
        self.logger = logger
    }

    /// Binds the socket (replacing a stale file) and starts accepting.
    public func start() throws {
        guard lock.withLock({ listenFD < 0 && !acceptRunning && !stopping }) else {
            throw IPCError("auth server on \(socketPath) already started or stopped")
        }
        // The wake pipe lets stop() interrupt the accept thread's poll portably.
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw IPCError("pipe", errno: errno) }
        for p in fds { _ = fcntl(p, F_SETFD, FD_CLOEXEC) }
        let wakeRead = fds[0], wakeWrite = fds[1]
        let fd: Int32
        do {
            fd = try UnixSocket.listen(path: socketPath, mode: socketMode)
        } catch {
            close(wakeRead)
            close(wakeWrite)
            throw error
        }
        lock.withLock {
            listenFD = fd
            wakePipe = (wakeRead, wakeWrite)
            acceptRunning = true
        }
        let thread = Thread { [self] in acceptLoop(listenFD: fd, wakeFD: wakeRead) }
        thread.name = "mst-auth-accept"
        thread.start()
        logger.info("auth.listening", metadata: ["socket": "\(socketPath)", "mode": "\(String(socketMode, radix: 8))"])
    }

    /// Stops accepting, closes every connection and removes the socket file. Validations
    /// still running finish but their answers have nowhere to go.
    public func stop() {
        let (wakeWrite, running, open) = lock.withLock { () -> (Int32, Bool, [WireConnection]) in
            stopping = true
            return (wakePipe.write, acceptRunning, Array(connections.values))
        }
        if wakeWrite >= 0 {
            var byte: UInt8 = 1
            _ = write(wakeWrite, &byte, 1)
        }
        for connection in open { _ = shutdown(connection.fd, Int32(SHUT_RDWR)) }
        if running { acceptFinished.wait() }
        lock.withLock {
            if wakePipe.write >= 0 {
                close(wakePipe.write)
                close(wakePipe.read)
                wakePipe = (-1, -1)
            }
        }
        unlink(socketPath)
        logger.info("auth.stopped", metadata: ["socket": "\(socketPath)"])
    }

    /// Connections currently open (for status and tests).
    public var connectionCount: Int { lock.withLock { connections.count } }

    private func acceptLoop(listenFD: Int32, wakeFD: Int32) {
        defer {
            close(listenFD)
            lock.withLock {
                self.listenFD = -1
                acceptRunning = false
            }
            acceptFinished.signal()
        }
        var pfds = [pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0), pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)]
        while true {
            pfds[0].revents = 0
            pfds[1].revents = 0
            let n = poll(&pfds, 2, -1)
            if n < 0 {
                if errno == EINTR { continue }
                logger.error("auth.accept.failed", metadata: ["error": "\(IPCError("poll", errno: errno))"])
                return
            }
            if pfds[1].revents != 0 || lock.withLock({ stopping }) { return }
            guard pfds[0].revents != 0 else { continue }
            // accept4 is a GNU extension Swift's Glibc module does not import.
            let fd = accept(listenFD, nil, nil)
            if fd < 0 {
                let e = errno
                switch e {
                case EINTR, EAGAIN, ECONNABORTED, EPROTO:
                    continue
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    // Out of descriptors or memory: back off instead of spinning; the
                    // pending connection stays queued until something frees up.
                    logger.warning("auth.accept.failed", metadata: ["error": "\(IPCError("accept", errno: e))"])
                    usleep(100_000)
                    continue
                default:
                    logger.error("auth.accept.failed", metadata: ["error": "\(IPCError("accept", errno: e))"])
                    return
                }
            }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            admit(fd)
        }
    }

    /// SO_PEERCRED check, then a reader thread for an allowed peer.
    private func admit(_ fd: Int32) {
        let peer: PeerCredentials
        do {
            peer = try PeerCredentials.of(fd: fd)
        } catch {
            logger.warning("auth.peer.refused", metadata: ["error": "\(error)"])
            close(fd)
            return
        }
        let peerMeta: Logger.Metadata = ["peer.pid": "\(peer.pid)", "peer.uid": "\(peer.uid)", "peer.gid": "\(peer.gid)"]
        guard peerPolicy.allows(peer) else {
            logger.warning("auth.peer.refused", metadata: peerMeta.merging(["reason": "uid/gid not allowed"]) { $1 })
            close(fd)
            return
        }
        let connection = WireConnection(fd: fd, maxPayload: maxFramePayload)
        enum Admission { case admitted, stopping, full }
        let admission = lock.withLock { () -> Admission in
            if stopping { return .stopping }
            if connections.count >= maxConnections { return .full }
            connections[ObjectIdentifier(connection)] = connection
            return .admitted
        }
        // Not admitted: dropping the last reference closes the fd.
        switch admission {
        case .admitted: break
        case .stopping: return
        case .full:
            logger.warning("auth.peer.refused", metadata: peerMeta.merging(["reason": "too many connections (\(maxConnections))"]) { $1 })
            return
        }
        logger.info("auth.peer.connected", metadata: peerMeta)
        let thread = Thread { [self] in readLoop(connection, peer: peer, peerMeta: peerMeta) }
        thread.name = "mst-auth-conn"
        thread.start()
    }

    private func readLoop(_ connection: WireConnection, peer: PeerCredentials, peerMeta: Logger.Metadata) {
        defer {
            // Shut down rather than close: Tasks still answering hold the connection and
            // the fd must not be reused under them; the last reference closes it.
            _ = shutdown(connection.fd, Int32(SHUT_RDWR))
            lock.withLock { _ = connections.removeValue(forKey: ObjectIdentifier(connection)) }
        }
        while true {
            let envelope: WireEnvelope?
            do {
                envelope = try connection.receive()
            } catch let error as WireFrameError {
                logger.warning("auth.ipc.bad_frame", metadata: peerMeta.merging([
                    "error": "\(error.description)", "code": "\(error.code.rawValue)", "action": "connection closed",
                ]) { $1 })
                return
            } catch {
                if !lock.withLock({ stopping }) {
                    logger.warning("auth.ipc.read_failed", metadata: peerMeta.merging(["error": "\(error)", "action": "connection closed"]) { $1 })
                }
                return
            }
            guard let envelope else {
                logger.info("auth.peer.disconnected", metadata: peerMeta)
                return
            }
            switch envelope.message {
            case .response(let response):
                // Nobody here sent a request; a stray response is a confused peer, not fatal.
                logger.warning("auth.ipc.unexpected", metadata: peerMeta.merging([
                    "type": "\(response.typeName)", "id": "\(envelope.id)",
                ]) { $1 })
            case .request(.validateToken(let request)):
                let handler = self.handler
                let id = envelope.id
                Task { [self] in
                    let answer = await handler.validate(request, id: id)
                    send(answer, on: connection, peerMeta: peerMeta)
                }
            case .request(.ticketRevocations(let r)):
                let answer: WireResponse
                if !ticketKeyPeers.contains(peer.uid) {
                    answer = .error(WireErrorResponse(code: WireErrorResponse.notAllowed, message: "uid \(peer.uid) may not exchange ticket revocations"))
                } else if let store = sessionStore {
                    answer = .ticketRevocations(store.exchangeRevocations(r))
                } else {
                    answer = .error(WireErrorResponse(code: WireErrorResponse.unavailable, message: "this mstunnel-auth keeps no sessions"))
                }
                send(WireEnvelope(id: envelope.id, .response(answer)), on: connection, peerMeta: peerMeta)
            case .request(.installTicketKeys(let r)):
                send(WireEnvelope(id: envelope.id, .response(installTicketKeys(r, peer: peer, peerMeta: peerMeta))), on: connection, peerMeta: peerMeta)
            case .request(let request):
                if let store = sessionStore, SessionStore.serves(request) {
                    guard sessionStorePeers.contains(peer.uid) else {
                        logger.warning("auth.sessions.refused", metadata: peerMeta.merging(["type": "\(request.typeName)", "reason": "only the gateway's uid may use the session store"]) { $1 })
                        send(WireEnvelope(id: envelope.id, .response(.error(WireErrorResponse(
                            code: WireErrorResponse.notAllowed, message: "uid \(peer.uid) may not use the session store")))), on: connection, peerMeta: peerMeta)
                        continue
                    }
                    if let answer = store.respond(to: request) {
                        send(WireEnvelope(id: envelope.id, .response(answer)), on: connection, peerMeta: peerMeta)
                    }
                } else if let answer = handler.immediateResponse(to: request, id: envelope.id) {
                    send(answer, on: connection, peerMeta: peerMeta)
                }
            }
        }
    }

    /// The Site's ticket keys from the agent (or, without keys, what is loaded).
    func installTicketKeys(_ r: InstallTicketKeysRequest, peer: PeerCredentials, peerMeta: Logger.Metadata) -> WireResponse {
        guard ticketKeyPeers.contains(peer.uid) else {
            logger.warning("auth.tickets.refused", metadata: peerMeta.merging(["reason": "only the agent's uid may hand over ticket keys"]) { $1 })
            return .error(WireErrorResponse(code: WireErrorResponse.notAllowed, message: "uid \(peer.uid) may not hand over ticket keys"))
        }
        guard let keyring = sessionStore?.keyring else {
            return .error(WireErrorResponse(code: WireErrorResponse.unavailable, message: "this mstunnel-auth keeps no sessions and seals no tickets"))
        }
        guard let keys = r.keys else { return .ticketKeys(keyring.summary) }
        do {
            return .ticketKeys(try keyring.install(keys))
        } catch {
            logger.error("auth.tickets.install_failed", metadata: peerMeta.merging(["error": "\(error)"]) { $1 })
            return .error(WireErrorResponse(code: WireErrorResponse.malformed, message: "\(error)"))
        }
    }

    private func send(_ envelope: WireEnvelope, on connection: WireConnection, peerMeta: Logger.Metadata) {
        do {
            try connection.send(envelope)
        } catch {
            logger.notice("auth.ipc.send_failed", metadata: peerMeta.merging([
                "error": "\(error)", "id": "\(envelope.id)",
            ]) { $1 })
        }
    }
}
