internal import CGatewayShims
import Glibc
import GatewayIPC
import GatewayWire
import Logging

/// The gateway's control socket (`/run/mstunnel/server.sock`): status and the session
/// table for `mst-cli` and the agent, over the shared wire module. Peers are checked
/// with SO_PEERCRED on accept.
final class ControlServer {
    final class Peer {
        let fd: Int32
        let slot: Int32
        var decoder = WireFrameDecoder(maxPayload: 1024 * 1024)
        var outbound: [UInt8] = []
        init(fd: Int32, slot: Int32) {
            self.fd = fd
            self.slot = slot
        }
    }

    let listenFd: Int32
    let path: String
    let policy: PeerPolicy
    private var peers: [Int32: Peer] = [:]
    private var nextSlot: Int32 = 0
    private let loop: EventLoop
    private let logger: Logger

    init(path: String, policy: PeerPolicy, loop: EventLoop, logger: Logger) throws {
        self.path = path
        self.policy = policy
        self.loop = loop
        self.logger = logger
        listenFd = try UnixSocket.listen(path: path, mode: 0o660, nonBlocking: true)
        try loop.add(listenFd, events: UInt32(EPOLLIN.rawValue), token: Token.make(.controlListener))
    }

    func shutdown() {
        for p in peers.values { close(p.fd) }
        peers.removeAll()
        close(listenFd)
        unlink(path)
    }

    private var pausedUntil: Int64 = 0

    func accept() {
        while true {
            let fd = CGatewayShims_accept(listenFd, nil, nil)
            if fd < 0 {
                if -fd == EMFILE || -fd == ENFILE {
                    // Level-triggered: without a pause the loop would spin on this fd.
                    logger.error("control.fd_exhausted", metadata: ["hint": "open-file limit reached; control socket paused for 1 s"])
                    loop.modify(listenFd, events: 0, token: Token.make(.controlListener))
                    pausedUntil = monotonicSeconds() + 1
                }
                return
            }
            guard let cred = try? PeerCredentials.of(fd: fd), policy.allows(cred) else {
                let who = (try? PeerCredentials.of(fd: fd))?.description ?? "unknown"
                logger.warning("control.peer_refused", metadata: ["peer": "\(who)"])
                close(fd)
                continue
            }
            let slot = nextSlot
            nextSlot &+= 1
            let peer = Peer(fd: fd, slot: slot)
            peers[slot] = peer
            do {
                try loop.add(fd, events: UInt32(EPOLLIN.rawValue | EPOLLRDHUP.rawValue), token: Token.make(.control, slot: slot))
            } catch {
                drop(peer)
            }
        }
    }

    func resumeAcceptingIfPaused(now: Int64) {
        if pausedUntil != 0, now >= pausedUntil {
            pausedUntil = 0
            loop.modify(listenFd, events: UInt32(EPOLLIN.rawValue), token: Token.make(.controlListener))
        }
    }

    func handle(slot: Int32, events: UInt32, buffer: UnsafeMutableRawBufferPointer, respond: (WireRequest) -> WireResponse) {
        guard let peer = peers[slot] else { return }
        if events & UInt32(EPOLLOUT.rawValue) != 0 {
            flush(peer)
            if peers[slot] == nil { return }
        }
        guard events & UInt32(EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLHUP.rawValue) != 0 else { return }
        while true {
            let n = recv(peer.fd, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT))
            if n > 0 {
                peer.decoder.append(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                do {
                    while let env = try peer.decoder.next() {
                        let reply: WireResponse
                        switch env.message {
                        case .request(let r): reply = respond(r)
                        case .response: reply = .error(WireErrorResponse(code: WireErrorResponse.malformed, message: "expected a request"))
                        }
                        if let bytes = try? WireCodec.encode(WireEnvelope(id: env.id, .response(reply))) {
                            peer.outbound.append(contentsOf: bytes)
                        }
                    }
                } catch {
                    logger.warning("control.bad_stream", metadata: ["error": "\(error)"])
                    if let bytes = try? WireCodec.encode(WireEnvelope(id: 0, .response(.error(WireErrorResponse(code: WireErrorResponse.malformed, message: "\(error)"))))) {
                        _ = bytes.withUnsafeBytes { send(peer.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
                    }
                    drop(peer)
                    return
                }
                continue
            }
            if n < 0, errno == EINTR { continue }
            if n < 0, errno == EAGAIN { break }
            drop(peer)
            return
        }
        flush(peer)
    }

    private func flush(_ peer: Peer) {
        var sent = 0
        while sent < peer.outbound.count {
            let n = peer.outbound.withUnsafeBytes { send(peer.fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            if n > 0 { sent += n; continue }
            if n < 0, errno == EINTR { continue }
            if n < 0, errno == EAGAIN { break }
            drop(peer)
            return
        }
        peer.outbound.removeFirst(sent)
        let mask = peer.outbound.isEmpty ? UInt32(EPOLLIN.rawValue | EPOLLRDHUP.rawValue)
            : UInt32(EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLRDHUP.rawValue)
        loop.modify(peer.fd, events: mask, token: Token.make(.control, slot: peer.slot))
    }

    private func drop(_ peer: Peer) {
        loop.remove(peer.fd)
        close(peer.fd)
        peers[peer.slot] = nil
    }
}
