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
import GatewaySystem

/// Client connections: accept, read, the per-turn flush of their TLS output, close; the
/// session event log and log metadata they share.
extension Gateway {
    func acceptClients() {
        let now = monotonicSeconds()
        if now < acceptPausedUntil { return }
        for _ in 0..<64 {
            var ss = sockaddr_storage()
            var len = UInt32(MemoryLayout<sockaddr_storage>.size)
            let fd = CGatewayShims_accept(listenFd, &ss, &len)
            if fd < 0 {
                let e = -fd
                if e == EMFILE || e == ENFILE {
                    logger.error("gateway.fd_exhausted", metadata: ["hint": "open-file limit reached; new connections paused for 1 s"])
                    acceptPausedUntil = now + 1
                    loop.modify(listenFd, events: 0, token: Token.make(.listener))
                }
                return
            }
            let peerKey = SocketAddress.key(of: &ss)
            let source = Self.sourceKey(peerKey)
            // A trusted proxy's connection is admitted once its header names the client:
            // counting the proxy's address would throttle every client behind it.
            let proxied = ProxyHeader.isTrusted(peerKey, proxies: settings.advanced.proxyProtocolFrom)
            if !proxied, case .refuse(let why) = sourceGuard.admit(source, now: now) {
                close(fd)
                counters.connectionsRefused += 1
                if sourceGuard.shouldLogRefusal(source, now: now) {
                    logger.notice("connection.refused", metadata: ["peer.address": "\(peerKey)", "reason": "\(why)", "logged": "once a minute per address"])
                }
                continue
            }
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            let slot: Int32
            if let s = freeConnectionSlots.popLast() { slot = s } else {
                connections.append(nil)
                connectionGenerations.append(0)
                slot = Int32(connections.count - 1)
            }
            connectionGenerations[Int(slot)] &+= 1
            let generation = connectionGenerations[Int(slot)] & 0xFF_FFFF
            let input = InboundBuffer()
            let output = OutboundBuffer(pool: bufferPool)
            guard let conn = try? tls.makeConnection(input: input, output: output) else {
                close(fd)
                freeConnectionSlots.append(slot)
                if !proxied { sourceGuard.loginEnded(source) }
                continue
            }
            let c = ClientConnection(slot: slot, generation: generation, fd: fd, tls: conn, input: input, peer: SocketAddress(storage: ss, length: len).description, now: now)
            c.source = source
            c.countedAsLogin = !proxied
            c.proxyHeaderPending = proxied
            connections[Int(slot)] = c
            do {
                try loop.add(fd, events: UInt32(EPOLLIN.rawValue | EPOLLRDHUP.rawValue), token: c.token)
            } catch {
                connections[Int(slot)] = nil
                freeConnectionSlots.append(slot)
                close(fd)
                leftLogin(c)
            }
        }
    }

    /// `c` reached its tunnel or closed: it no longer counts against its source's limit.
    func leftLogin(_ c: ClientConnection) {
        guard c.countedAsLogin else { return }
        c.countedAsLogin = false
        sourceGuard.loginEnded(c.source)
    }

    func markDirty(_ c: ClientConnection) {
        if !c.inDirtyList {
            c.inDirtyList = true
            dirty.append(c)
        }
    }

    func flush(_ c: ClientConnection) {
        switch c.tls.output.flush(fd: c.fd) {
        case .drained:
            if c.writeBlocked {
                c.writeBlocked = false
                loop.modify(c.fd, events: UInt32(EPOLLIN.rawValue | EPOLLRDHUP.rawValue), token: c.token)
            }
            if c.closesAfterFlush { closeConnection(c, reason: "response sent") }
        case .blocked:
            if !c.writeBlocked {
                c.writeBlocked = true
                loop.modify(c.fd, events: UInt32(EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLRDHUP.rawValue), token: c.token)
            }
        case .failed:
            closeConnection(c, reason: "send failed")
        }
    }

    func handleClient(_ c: ClientConnection, _ events: UInt32) {
        if events & UInt32(EPOLLOUT.rawValue) != 0 {
            flush(c)
            if c.phase == .closed { return }
        }
        guard events & UInt32(EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 else { return }
        readClient(c)
    }

    /// Most TLS records read from one connection per wakeup: one busy (or hostile)
    /// client must not keep the loop from everyone else. The rest is read on the next
    /// turn (level-triggered epoll, or the `readAgain` list for bytes the connection holds
    /// that epoll cannot see).
    static let recordsPerWakeup = 64

    /// One read pass: `recv` into the loop's shared area (lent to the connection's
    /// `InboundBuffer` until the pass ends), then the handshake or `SSL_read` record by
    /// record. A pass that starts with bytes the connection kept from the last one reads
    /// those first and leaves the socket to the next wakeup.
    func readClient(_ c: ClientConnection) {
        if c.proxyHeaderPending {
            guard takeProxyHeader(c) else { return }
        }
        let input = c.input
        // The area is shared: whatever this pass leaves unread is copied out before the
        // next connection's pass uses it.
        defer { input.settle() }
        let buf = io.baseAddress!
        let cap = io.count
        let now = monotonicSeconds()
        var mayReceive = input.isEmpty
        var records = 0
        while c.phase != .closed {
            if input.isEmpty, !input.endOfStream {
                guard mayReceive else { return }
                switch input.receive(fd: c.fd, into: tlsReceiveArea) {
                case .received(let n):
                    // A full area means more may be waiting: receive again when it is read.
                    mayReceive = n == tlsReceiveArea.count
                case .wouldBlock:
                    return
                case .endOfStream:
                    break  // OpenSSL reads the end of stream below and says how it ended.
                case .failed(let e):
                    logger.debug("tls.receive_failed", metadata: ["peer.address": "\(c.peer)", "error": "\(SystemError.reason(e))"])
                    closeConnection(c, reason: "receive failed")
                    return
                }
            }
            if c.phase == .handshake {
                switch c.tls.handshake() {
                case .done:
                    c.handshakeDone()
                    markDirty(c)
                    continue
                case .wantRead, .wantWrite:
                    markDirty(c)
                    continue
                case .closed:
                    closeConnection(c, reason: "closed during handshake")
                case .failed(let why):
                    malformedInput(.tlsHandshake, on: c, detail: why)
                    closeConnection(c, reason: "handshake failed")
                }
                return
            }
            if records == Self.recordsPerWakeup {
                if c.tls.hasPending, !c.inReadAgainList {
                    c.inReadAgainList = true
                    readAgain.append(c)
                }
                return
            }
            records += 1
            if c.phase == .tunnel { turnWork &+= 1 }
            switch c.tls.read(buf, cap) {
            case .done(let n):
                c.lastReceive = now
                if c.phase == .tunnel {
                    receiveCSTP(c, UnsafeRawBufferPointer(start: buf, count: n), now: now)
                } else {
                    loginInput(c, UnsafeRawBufferPointer(start: buf, count: n))
                }
            case .wantRead, .wantWrite:
                // Everything given was read (a partial record waits inside OpenSSL);
                // the loop above receives more if the last receive filled the area.
                continue
            case .closed:
                closeConnection(c, reason: "peer closed")
                return
            case .failed(let why):
                malformedInput(.tlsRecord, on: c, detail: why)
                closeConnection(c, reason: "TLS error")
                return
            }
        }
    }

    /// Closes a connection. A session on it stays alive, detached, for the reconnect
    /// window unless `detach` is false (the session ends elsewhere).
    func closeConnection(_ c: ClientConnection, reason: String, detach: Bool = true) {
        guard c.phase != .closed else { return }
        let carried = c.session
        leftLogin(c)
        c.state = .closed
        c.input.discard()
        c.tls.shutdown()
        _ = c.tls.output.flush(fd: c.fd)
        c.tls.output.release()
        loop.remove(c.fd)
        close(c.fd)
        connections[Int(c.slot)] = nil
        freeConnectionSlots.append(c.slot)
        // `detach: false`: the caller ends the session or hands it to another connection.
        if detach, let s = carried, s.life.detach(c, now: monotonicSeconds()) {
            // The client tears DTLS down with the TLS connection and brings both back
            // on reconnect (with a new key), so the old channel is useless now.
            dropAllDTLS(s)
            logger.info("session.detached", metadata: sessionMetadata(s, ["reason": "\(reason)"]))
        }
    }

    func recordEvent(_ type: GatewaySessionEvent.Kind, _ s: Session, reason: String? = nil) {
        events.record(type, time: wallMilliseconds()) { e in
            e.userId = s.identity.userId
            e.userName = s.identity.userName
            e.deviceId = s.identity.deviceId
            e.sessionId = s.handle
            e.clientAddress = s.remoteAddress
            e.assignedAddress = s.address.description
            e.reason = reason
            if type == .sessionDisconnected {
                e.rxBytes = s.rxBytes
                e.txBytes = s.txBytes
            }
        }
    }

    func sessionMetadata(_ s: Session, _ extra: Logger.Metadata = [:]) -> Logger.Metadata {
        var m: Logger.Metadata = ["session.id": "\(s.handle)", "user.id": "\(s.identity.userId)", "user.name": "\(s.identity.userName)",
                                  "client.address": "\(s.address)"]
        if let a = s.address6 { m["client.address6"] = "\(a)" }
        if let d = s.identity.deviceId { m["device.id"] = "\(d)" }
        if let r = s.remoteAddress { m["peer.address"] = "\(r)" }
        m.merge(extra) { _, n in n }
        return m
    }

    /// Ends a session for good: its cookie stops working and its address is freed.
    /// `tellClient` false: no DISCONNECT (it makes the stock client exit rather than
    /// reconnect), for a session that goes on elsewhere (a drain's hand-over).
    func endSession(_ s: Session, reason: String, clientReason: String? = nil, tellClient: Bool = true) {
        let wasConnected = s.connection != nil
        if let c = s.life.end(reason: reason) {
            if reason != "logoff", tellClient { writeRecord(c, CSTP.frame(.disconnect)) }
            closeConnection(c, reason: reason, detach: false)
        }
        dropAllDTLS(s)
        if let emptied = pool.release(s.address, owner: s.slot) { retiredPrefixEmptied(emptied) }
        // Restored here but never reconnected, in a Site (a slice of its pool), its ticket good
        // at the siblings: its client may have resumed at one of them with this address while
        // this server was down.
        if let until = s.quarantineUntil, pool.slice != nil, until > wallSeconds() {
            pool.quarantine(s.address, until: until)
            logger.info("pool.quarantined", metadata: sessionMetadata(s, ["until": "\(until)",
                "why": "restored after a restart, ended without coming back here: it may live on at a sibling"]))
        }
        sessions.remove(s)
        var meta: Logger.Metadata = ["reason": "\(reason)", "duration_s": "\(monotonicSeconds() - s.createdMono)",
                                     "rx.bytes": "\(s.rxBytes)", "tx.bytes": "\(s.txBytes)"]
        if let clientReason, !clientReason.isEmpty { meta["client.reason"] = "\(clientReason)" }
        logger.info("session.ended", metadata: sessionMetadata(s, meta))
        forget(s, reason: reason, wasConnected: wasConnected)
        recordEvent(.sessionDisconnected, s, reason: reason)
    }
}
