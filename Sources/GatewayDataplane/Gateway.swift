import CGatewayShims
import Glibc
import GatewayCore
import GatewayHostNetwork
import GatewayIPC
import GatewaySessionCore
import GatewayTLS
import GatewayTUN
import GatewayWire
import Logging

/// Everything the gateway needs to start, decided by the executable.
public struct GatewayOptions: Sendable {
    public var settings: GatewaySettings
    public var certificate: TLSServerContext.CertificateSource
    public var authSocket: String
    public var controlSocket: String
    public var controlPolicy: PeerPolicy
    public var tunName: String
    /// Ask the kernel for TCP segmentation/checksum offload on the TUN (GSO/GRO).
    public var tunOffload: Bool = true
    /// Drop pure TCP ACKs that a later ACK of the same flow in the same batch makes
    /// redundant, both ways through the tunnel (`TCPAckFilter`).
    public var ackFilter: Bool = true
    /// Seal DTLS application records with the gateway's own `DTLSRecordSealer` (the same
    /// OpenSSL cipher without libssl's per-record overhead) once a channel is proven up.
    public var dtlsDirectRecords: Bool = true
    /// Microseconds the loop pauses after a busy turn before it polls again (0: never).
    /// Under load, the next turn then finds several times more packets waiting, and every
    /// per-turn cost shrinks per byte: fewer wakeups and context switches, larger
    /// recvmmsg batches, larger merged TUN writes, fewer ACKs that survive the filter. It
    /// is what NICs do with interrupt moderation (`ethtool -C … rx-usecs`). Light
    /// traffic never waits: the pause only follows turns with `busyTurn` items of work.
    /// Measured in docs/performance.md, latency included.
    public var coalesceMicros: UInt32 = 200
    public var version: String
    /// Re-reads `admin-settings.json` (SIGHUP). Throws a `ConfigurationError` when invalid.
    public var reload: @Sendable () throws -> GatewaySettings
    /// Re-reads the TLS certificate (SIGHUP); nil keeps the one loaded at start.
    public var reloadCertificate: (@Sendable () throws -> TLSServerContext.CertificateSource)?

    public init(settings: GatewaySettings, certificate: TLSServerContext.CertificateSource, authSocket: String,
                controlSocket: String, controlPolicy: PeerPolicy, tunName: String, version: String,
                reload: @escaping @Sendable () throws -> GatewaySettings) {
        self.settings = settings
        self.certificate = certificate
        self.authSocket = authSocket
        self.controlSocket = controlSocket
        self.controlPolicy = controlPolicy
        self.tunName = tunName
        self.version = version
        self.reload = reload
    }
}

/// The gateway dataplane: one event loop owning the TLS listener, every client
/// connection, the TUN, the auth channel and the control socket.
///
/// Data path, client → network: socket → `SSL_read` into the loop's one read buffer →
/// CSTP frames parsed in place → source address checked against the session's lease →
/// `write` to the TUN. Network → client: TUN `read` (drained in batches) into one
/// buffer with 8 bytes of headroom → destination looked up in the pool's owner array
/// (O(1)) → CSTP header written into the headroom → `SSL_write` into the connection's
/// outbound buffer → one `send` per connection per loop turn. No allocation per packet.
public final class Gateway {
    var settings: GatewaySettings
    let options: GatewayOptions
    let logger: Logger
    let loop: EventLoop
    /// Replaced on SIGHUP when the certificate files changed (`mst-cli import_cert`): new
    /// connections get the new one; each open connection's SSL keeps its own reference to
    /// the context it was made from, so no session is dropped.
    var tls: TLSServerContext
    let tun: TUNDevice
    /// Addresses, MTU and NAT for the TUN, made by the privileged helper (the gateway
    /// itself may hold no capability once it runs; see docs/architecture.md).
    let host: any HostNetworkControl
    let listenFd: Int32
    /// The one UDP socket every session's DTLS shares (same port as TLS).
    let udpFd: Int32
    let dtls: DTLSServerContext
    /// Outgoing DTLS records of this loop turn, sent with one sendmmsg.
    let udpOut = DatagramBatch()
    /// Receive slots for recvmmsg.
    let udpIn = DatagramSlots(capacity: 64)
    var sessionsByPeer: [PeerKey: Int32] = [:]
    let signalFd: Int32
    let timerFd: Int32
    var pool: AddressPool
    var sessions = SessionTable()
    var connections: [ClientConnection?] = []
    var connectionGenerations: [UInt32] = []
    var freeConnectionSlots: [Int32] = []
    var dirty: [ClientConnection] = []
    /// Connections whose read was cut short by `recordsPerWakeup` with bytes still
    /// inside OpenSSL (which epoll cannot see).
    var readAgain: [ClientConnection] = []
    let bufferPool = BufferPool()
    let auth: AuthChannel
    var control: ControlServer?
    /// One buffer for every read: 8 bytes of CSTP headroom + the largest packet/record.
    let io: UnsafeMutableRawBufferPointer
    /// Where TUN reads land: room before the packet for the CSTP header (8), and with
    /// offload the 10-byte virtio header sits here too.
    static let tunReadOffset = 16
    /// Merges TCP segments on their way into the TUN (offload only).
    var coalescer = TCPCoalescer()
    /// Holds clients' pure ACKs back within a loop turn (`options.ackFilter`).
    var ackFilter = TCPAckFilter()
    /// Holds pure ACKs to clients back within one TUN read batch, with room in front of
    /// each for the CSTP header.
    var ackFilterOut = TCPAckFilter(headroom: 16)
    /// An all-zero virtio header (no offload) for packets written alone.
    let zeroVirtioHeader: UnsafeMutableRawPointer = {
        let p = UnsafeMutableRawPointer.allocate(byteCount: VirtioNetHeader.size, alignment: 8)
        p.initializeMemory(as: UInt8.self, repeating: 0, count: VirtioNetHeader.size)
        return p
    }()
    var running = true
    var acceptPausedUntil: Int64 = 0
    let startedWall = wallSeconds()
    let fileLimit: UInt64
    var counters = Counters()
    /// Session and access events for the agent.
    let events = SessionEventLog()
    var lastTunWriteErrno: Int32 = 0
    /// Tunnel packets, datagrams and TUN reads handled in this loop turn.
    var turnWork = 0
    /// Transit time, the gateway's `latency` health metric: how long packets spend inside
    /// the gateway, measured per loop turn that moved tunnel packets, from poll's return
    /// (plus the coalescing pause before it, when there was one: packets that arrived then
    /// waited that long) to the end of the turn's flush — an upper bound for every packet of
    /// the turn, weighted by their number. Two clock reads per turn, none per packet.
    var transit = TransitTime()
    /// A turn with at least this much tunnel work counts as busy (and is followed by the
    /// coalescing pause). A ping, a keepalive or a login never is.
    static let busyTurn = 8

    struct Counters {
        var totalSessions = 0
        var authFailures = 0
        var rxBytes: UInt64 = 0  // from clients
        var txBytes: UInt64 = 0
        var dropsNoSession: UInt64 = 0
        var dropsQueueFull: UInt64 = 0
        var dropsSpoofed: UInt64 = 0
        var dropsUnsupported: UInt64 = 0
        var dropsUnknownDatagram: UInt64 = 0
        var dropsTunWrite: UInt64 = 0
        var dtlsHandshakes = 0
        var dtlsFailures = 0
    }

    /// Blocks SIGTERM, SIGINT and SIGHUP so they arrive only through the loop's signalfd.
    /// Must run before any other thread exists (threads inherit the mask; a thread
    /// without it would take the default action and kill the process uncleanly), so
    /// `main` calls it first, and `init` again for safety.
    @discardableResult
    public static func blockSignals() -> sigset_t {
        var mask = sigset_t()
        sigemptyset(&mask)
        sigaddset(&mask, SIGTERM)
        sigaddset(&mask, SIGINT)
        sigaddset(&mask, SIGHUP)
        pthread_sigmask(SIG_BLOCK, &mask, nil)
        return mask
    }

    /// Raises the open-file soft limit to the hard limit: one descriptor per session,
    /// and the default soft limit (1024) would cap the gateway far below its design.
    @discardableResult
    public static func raiseFileLimit() -> UInt64 {
        var lim = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim) == 0 else { return 0 }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim)
        }
        return UInt64(lim.rlim_cur)
    }

    public init(options: GatewayOptions, host: any HostNetworkControl, logger: Logger) throws {
        Self.blockSignals()
        fileLimit = Self.raiseFileLimit()
        self.options = options
        self.settings = options.settings
        self.logger = logger
        loop = try EventLoop()
        tls = try TLSServerContext(certificate: options.certificate)
        pool = AddressPool(prefix: options.settings.pool)
        io = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536 + 128, alignment: 16)

        tun = try TUNDevice(name: options.tunName, offload: options.tunOffload)
        self.host = host
        let hostResponse = try host.apply(Self.hostState(pool: pool, mtu: options.settings.advanced.mtu))
        for warning in hostResponse.warnings {
            logger.warning("gateway.host_warning", metadata: ["hint": "\(warning)"])
        }

        listenFd = try Self.listen(address: settings.listenAddress, port: settings.listenPort)
        udpFd = try Self.bindUDP(address: settings.listenAddress, port: settings.listenPort)
        dtls = try DTLSServerContext(directRecords: options.dtlsDirectRecords)

        var mask = Self.blockSignals()
        signalFd = signalfd(-1, &mask, Int32(SFD_NONBLOCK | SFD_CLOEXEC))
        if signalFd < 0 { throw DataplaneError("signalfd", errno: errno) }
        signal(SIGPIPE, SIG_IGN)

        timerFd = timerfd_create(CLOCK_MONOTONIC, Int32(TFD_NONBLOCK | TFD_CLOEXEC))
        if timerFd < 0 { throw DataplaneError("timerfd_create", errno: errno) }
        var spec = itimerspec(it_interval: timespec(tv_sec: 1, tv_nsec: 0), it_value: timespec(tv_sec: 1, tv_nsec: 0))
        timerfd_settime(timerFd, 0, &spec, nil)

        auth = AuthChannel(socketPath: options.authSocket, loop: loop, logger: logger)

        try loop.add(listenFd, events: UInt32(EPOLLIN.rawValue), token: Token.make(.listener))
        try loop.add(udpFd, events: UInt32(EPOLLIN.rawValue), token: Token.make(.udp))
        let udp = udpFd
        let out = udpOut
        udpOut.flushWhenFull = { out.flush(fd: udp) }
        try loop.add(tun.fd, events: UInt32(EPOLLIN.rawValue), token: Token.make(.tun))
        try loop.add(signalFd, events: UInt32(EPOLLIN.rawValue), token: Token.make(.signal))
        try loop.add(timerFd, events: UInt32(EPOLLIN.rawValue), token: Token.make(.timer))
        control = try ControlServer(path: options.controlSocket, policy: options.controlPolicy, loop: loop, logger: logger)
    }

    deinit {
        io.deallocate()
        zeroVirtioHeader.deallocate()
    }

    /// A TCP listener on `address`:`port` (`::` is dual-stack).
    static func listen(address: String, port: Int) throws -> Int32 {
        let fd = try bound(address: address, port: port, type: SOCK_STREAM) { fd in
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, 4)
        }
        if Glibc.listen(fd, 4096) < 0 {
            let e = errno
            close(fd)
            throw DataplaneError("listen", errno: e)
        }
        return fd
    }

    /// The UDP socket for DTLS on the same address and port.
    static func bindUDP(address: String, port: Int) throws -> Int32 {
        try bound(address: address, port: port, type: SOCK_DGRAM) { fd in
            // Room for bursts: a few MB each way (FORCE variants need CAP_NET_ADMIN, which
            // the gateway has; the plain ones are the fallback, capped by the sysctls).
            var size: Int32 = 4 * 1024 * 1024
            if setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, 4) != 0 { setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, 4) }
            if setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, 4) != 0 { setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, 4) }
        }
    }

    /// A non-blocking socket bound to `address`:`port`; `configure` runs before bind.
    private static func bound(address: String, port: Int, type: __socket_type, configure: (Int32) -> Void) throws -> Int32 {
        let v6 = address.contains(":")
        let fd = socket(v6 ? AF_INET6 : AF_INET, Int32(type.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { throw DataplaneError("socket", errno: errno) }
        configure(fd)
        var rc: Int32
        if v6 {
            var zero: Int32 = 0
            setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &zero, 4)
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            sa.sin6_port = in_port_t(UInt16(port).bigEndian)
            _ = address.withCString { inet_pton(AF_INET6, $0, &sa.sin6_addr) }
            rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        } else {
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = in_port_t(UInt16(port).bigEndian)
            _ = address.withCString { inet_pton(AF_INET, $0, &sa.sin_addr) }
            rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        }
        if rc < 0 {
            let e = errno
            close(fd)
            throw DataplaneError("cannot bind \(type == SOCK_DGRAM ? "UDP" : "TCP") [\(address)]:\(port)", errno: e)
        }
        return fd
    }

    public var publicKeyPin: String? { tls.publicKeyPin }
    public var tunName: String { tun.name }

    /// Runs until SIGTERM or SIGINT.
    public func run() {
        logger.info("gateway.started", metadata: [
            "open_files.limit": "\(fileLimit)",
            "listen": "[\(settings.listenAddress)]:\(settings.listenPort)", "tun": "\(tun.name)",
            "pool": "\(settings.pool)", "pin": "\(tls.publicKeyPin ?? "?")", "version": "\(options.version)",
            "tun.offload": "\(tun.offload)", "ack_filter": "\(options.ackFilter)",
            "coalesce_us": "\(options.coalesceMicros)", "dtls_direct_records": "\(options.dtlsDirectRecords)",
        ])
        _ = auth.ensureConnected(now: monotonicSeconds())
        var pausedNanos: UInt64 = 0
        while running {
            loop.poll(timeoutMs: readAgain.isEmpty ? 1000 : 0) { token, events in dispatch(token, events) }
            let turnStart = monotonicNanos()
            if !readAgain.isEmpty {
                let again = readAgain
                readAgain.removeAll(keepingCapacity: true)
                for c in again {
                    c.inReadAgainList = false
                    if c.phase != .closed { readClient(c) }
                }
            }
            flushDirty()
            if turnWork > 0 { transit.add(nanos: monotonicNanos() &- turnStart &+ pausedNanos, packets: UInt64(turnWork)) }
            // Coalescing, as a NIC moderates its interrupts: after a busy turn, let the
            // next batch gather before polling again (see `GatewayOptions.coalesceMicros`).
            if turnWork >= Self.busyTurn, options.coalesceMicros > 0 {
                usleep(options.coalesceMicros)
                pausedNanos = UInt64(options.coalesceMicros) * 1000
            } else {
                pausedNanos = 0
            }
            turnWork = 0
        }
        shutdown()
    }

    private func dispatch(_ token: UInt64, _ events: UInt32) {
        guard let kind = Token.kind(token) else { return }
        switch kind {
        case .listener: acceptClients()
        case .udp: readUDP()
        case .tun: readTUN()
        case .signal: handleSignals()
        case .timer: tick()
        case .auth: handleAuthEvent(events)
        case .controlListener: control?.accept()
        case .control:
            control?.handle(slot: Token.slot(token), events: events, buffer: io) { respond(to: $0) }
        case .client:
            let slot = Int(Token.slot(token))
            guard slot < connections.count, let c = connections[slot], c.generation == Token.generation(token) else { return }
            handleClient(c, events)
        }
    }

    private func handleSignals() {
        var info = signalfd_siginfo()
        while read(signalFd, &info, MemoryLayout<signalfd_siginfo>.size) == MemoryLayout<signalfd_siginfo>.size {
            switch Int32(info.ssi_signo) {
            case SIGHUP:
                reloadCertificate()
                reloadSettings()
            default:
                logger.info("gateway.stopping", metadata: ["signal": "\(info.ssi_signo)"])
                running = false
            }
        }
    }

    private func shutdown() {
        let active = sessions.count
        for c in connections.compactMap({ $0 }) { closeConnection(c, reason: "shutdown", detach: false) }
        control?.shutdown()
        _ = auth.disconnect()
        close(listenFd)
        close(udpFd)
        close(signalFd)
        close(timerFd)
        do {
            try host.apply(nil)
        } catch {
            logger.error("gateway.host_teardown_failed", metadata: ["error": "\(error)"])
        }
        logger.info("gateway.stopped", metadata: ["sessions.dropped": "\(active)"])
    }

    // MARK: connections

    private func acceptClients() {
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
            let output = OutboundBuffer(pool: bufferPool)
            guard let conn = try? tls.makeConnection(fd: fd, output: output) else {
                close(fd)
                freeConnectionSlots.append(slot)
                continue
            }
            let c = ClientConnection(slot: slot, generation: generation, fd: fd, tls: conn, peer: Self.describe(&ss), now: now)
            connections[Int(slot)] = c
            do {
                try loop.add(fd, events: UInt32(EPOLLIN.rawValue | EPOLLRDHUP.rawValue), token: c.token)
            } catch {
                connections[Int(slot)] = nil
                freeConnectionSlots.append(slot)
                close(fd)
            }
        }
    }

    static func describe(_ ss: inout sockaddr_storage) -> String {
        var host = [CChar](repeating: 0, count: 64)
        var port: UInt16 = 0
        if ss.ss_family == sa_family_t(AF_INET) {
            withUnsafePointer(to: &ss) { $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { p in
                var a = p.pointee.sin_addr
                inet_ntop(AF_INET, &a, &host, 64)
                port = UInt16(bigEndian: p.pointee.sin_port)
            } }
        } else {
            withUnsafePointer(to: &ss) { $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { p in
                var a = p.pointee.sin6_addr
                inet_ntop(AF_INET6, &a, &host, 64)
                port = UInt16(bigEndian: p.pointee.sin6_port)
            } }
        }
        var h = String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if h.hasPrefix("::ffff:"), h.contains(".") { h.removeFirst(7) }
        return h.contains(":") ? "[\(h)]:\(port)" : "\(h):\(port)"
    }

    func markDirty(_ c: ClientConnection) {
        if !c.inDirtyList {
            c.inDirtyList = true
            dirty.append(c)
        }
    }

    private func flushDirty() {
        flushTUNWrites()
        if udpOut.count > 0 { udpOut.flush(fd: udpFd) }
        if dirty.isEmpty { return }
        for c in dirty {
            c.inDirtyList = false
            if c.phase != .closed { flush(c) }
        }
        dirty.removeAll(keepingCapacity: true)
    }

    private func flush(_ c: ClientConnection) {
        switch c.tls.output.flush(fd: c.fd) {
        case .drained:
            if c.writeBlocked {
                c.writeBlocked = false
                loop.modify(c.fd, events: UInt32(EPOLLIN.rawValue | EPOLLRDHUP.rawValue), token: c.token)
            }
            if c.closeAfterFlush { closeConnection(c, reason: "response sent") }
        case .blocked:
            if !c.writeBlocked {
                c.writeBlocked = true
                loop.modify(c.fd, events: UInt32(EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLRDHUP.rawValue), token: c.token)
            }
        case .failed:
            closeConnection(c, reason: "send failed")
        }
    }

    private func handleClient(_ c: ClientConnection, _ events: UInt32) {
        if events & UInt32(EPOLLOUT.rawValue) != 0 {
            flush(c)
            if c.phase == .closed { return }
        }
        guard events & UInt32(EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 else { return }
        if c.phase == .handshake {
            switch c.tls.handshake() {
            case .done:
                c.phase = .http
                markDirty(c)
            case .wantRead, .wantWrite:
                markDirty(c)
                return
            case .closed:
                closeConnection(c, reason: "closed during handshake")
                return
            case .failed(let why):
                logger.info("tls.handshake_failed", metadata: ["peer.address": "\(c.peer)", "error": "\(why)"])
                closeConnection(c, reason: "handshake failed")
                return
            }
        }
        readClient(c)
    }

    /// Most TLS records read from one connection per wakeup: one busy (or hostile)
    /// client must not keep the loop from everyone else. The rest is read on the next
    /// turn (level-triggered epoll, or the `readAgain` list for bytes OpenSSL holds).
    static let recordsPerWakeup = 64

    func readClient(_ c: ClientConnection) {
        let buf = io.baseAddress!
        let cap = io.count
        let now = monotonicSeconds()
        var records = 0
        while c.phase != .closed {
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
                } else if c.closeAfterFlush {
                    // A final response is on its way; whatever else the client sends is moot.
                    continue
                } else {
                    c.parser.append(UnsafeRawBufferPointer(start: buf, count: n))
                    if c.phase == .http {
                        processRequests(c)
                    } else if c.parser.buffered > HTTPRequestParser.maxHeaderBytes + HTTPRequestParser.maxBodyBytes {
                        // Pipelining this much while a login is being checked is abuse.
                        logger.info("http.flood", metadata: ["peer.address": "\(c.peer)"])
                        closeConnection(c, reason: "request flood while waiting for auth")
                    }
                }
            case .wantRead, .wantWrite:
                return
            case .closed:
                closeConnection(c, reason: "peer closed")
                return
            case .failed(let why):
                logger.debug("tls.read_failed", metadata: ["peer.address": "\(c.peer)", "error": "\(why)"])
                closeConnection(c, reason: "TLS error")
                return
            }
        }
    }

    /// Closes a connection. A session on it stays alive, detached, for the reconnect
    /// window unless `detach` is false (the session ends elsewhere).
    func closeConnection(_ c: ClientConnection, reason: String, detach: Bool = true) {
        guard c.phase != .closed else { return }
        let wasTunnel = c.phase == .tunnel
        c.phase = .closed
        c.tls.shutdown()
        _ = c.tls.output.flush(fd: c.fd)
        c.tls.output.release()
        loop.remove(c.fd)
        close(c.fd)
        connections[Int(c.slot)] = nil
        freeConnectionSlots.append(c.slot)
        if let s = c.session, s.connection === c {
            s.connection = nil
            s.detachedAt = monotonicSeconds()
            // The client tears DTLS down with the TLS connection and brings both back
            // on reconnect (with a new key), so the old channel is useless now.
            dropDTLS(s)
            if wasTunnel && detach {
                logger.info("session.detached", metadata: sessionMetadata(s, ["reason": "\(reason)"]))
            }
        }
        c.session = nil
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
        if let d = s.identity.deviceId { m["device.id"] = "\(d)" }
        if let r = s.remoteAddress { m["peer.address"] = "\(r)" }
        m.merge(extra) { _, n in n }
        return m
    }

    // MARK: timers

    private func tick() {
        var expirations: UInt64 = 0
        _ = read(timerFd, &expirations, 8)
        let now = monotonicSeconds()
        if now >= acceptPausedUntil, acceptPausedUntil != 0 {
            acceptPausedUntil = 0
            loop.modify(listenFd, events: UInt32(EPOLLIN.rawValue), token: Token.make(.listener))
        }
        control?.resumeAcceptingIfPaused(now: now)
        let timeouts = Expiry.Timeouts(settings.advanced)
        for c in connections {
            guard let c else { continue }
            let stage: Expiry.Stage
            switch c.phase {
            case .handshake, .http, .waitingAuth: stage = .login
            case .tunnel: stage = .tunnel
            case .closed: continue
            }
            if let reason = Expiry.connection(stage: stage, acceptedAt: c.acceptedAt, lastReceive: c.lastReceive, now: now, timeouts) {
                closeConnection(c, reason: reason)
            }
        }
        for s in sessions.all {
            guard let ch = s.dtls else { continue }
            switch Expiry.dtls(established: ch.established, startedAt: ch.startedAt, lastReceive: ch.lastReceive, now: now, timeouts) {
            case .keep: break
            case .retransmit: ch.connection.handleTimeout()
            case .handshakeTimedOut:
                counters.dtlsFailures += 1
                logger.info("dtls.handshake_timeout", metadata: sessionMetadata(s))
                dropDTLS(s)
            case .dead(let idle):
                logger.info("dtls.dead", metadata: sessionMetadata(s, ["idle_s": "\(idle)"]))
                dropDTLS(s)
            }
        }
        for s in sessions.all {
            let times = Expiry.SessionTimes(deadline: s.deadline, connected: s.connection != nil, everConnected: s.everConnected,
                                            detachedAt: s.detachedAt, lastTraffic: s.lastTraffic)
            if let reason = Expiry.session(times, now: now, timeouts) { endSession(s, reason: reason) }
        }
        for p in auth.expire(now: now, timeout: 10) {
            failAuth(p, reason: "authentication service did not answer in time")
        }
    }

    // MARK: auth channel

    private func handleAuthEvent(_ events: UInt32) {
        if events & UInt32(EPOLLOUT.rawValue) != 0 { auth.flush() }
        if events & UInt32(EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 {
            let orphaned = auth.handleReadable(buffer: io) { pending, response in
                authCompleted(pending, response)
            }
            for p in orphaned { failAuth(p, reason: "authentication service went away") }
        }
    }

    func connection(for p: AuthChannel.Pending) -> ClientConnection? {
        let slot = Int(p.connectionSlot)
        guard slot < connections.count, let c = connections[slot], c.generation == p.connectionGeneration,
              c.phase == .waitingAuth else { return nil }
        return c
    }

    private func failAuth(_ p: AuthChannel.Pending, reason: String) {
        guard let c = connection(for: p) else { return }
        logger.warning("login.unavailable", metadata: ["peer.address": "\(c.peer)", "reason": "\(reason)"])
        c.phase = .http
        reply(c, .unavailable(reason))
    }

    // MARK: control socket

    private func respond(to request: WireRequest) -> WireResponse {
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
            status.drops = PacketDrops(noSession: counters.dropsNoSession, queueFull: counters.dropsQueueFull + udpOut.dropped,
                                       spoofed: counters.dropsSpoofed, unsupported: counters.dropsUnsupported + counters.dropsTunWrite,
                                       unknownDatagram: counters.dropsUnknownDatagram)
            status.acksCoalesced = ackFilter.superseded + ackFilterOut.superseded
            let overDTLS = sessions.all.filter { $0.connection != nil && ($0.dtls.map { $0.established && $0.preferred } ?? false) }
            status.dtlsSessions = overDTLS.count
            status.dtlsDirectSessions = overDTLS.filter { $0.dtls?.connection.sealsDirectly ?? false }.count
            status.transitPackets = transit.packets
            status.transitNanos = transit.weightedNanos
            return .serverStatus(status)
        case .listSessions(let q):
            let now = monotonicSeconds()
            let wallNow = wallSeconds()
            let list = sessions.all.filter { s in
                q.user.map { $0 == s.identity.userId || $0 == s.identity.userName } ?? true
            }.map { s in
                SessionInfo(id: s.handle, userId: s.identity.userId, userName: s.identity.userName, deviceId: s.identity.deviceId,
                            address: s.address.description, remoteAddress: s.remoteAddress, connected: s.connection != nil,
                            channel: s.connection == nil ? "none" : (s.dtls.map { $0.established && $0.preferred } ?? false) ? "dtls" : "tls", connectedAt: s.createdWall,
                            expiresAt: s.deadline > 0 ? wallNow + (s.deadline - now) : 0, rxBytes: s.rxBytes, txBytes: s.txBytes,
                            userAgent: s.userAgent, hostname: s.hostname)
            }
            return .listSessions(ListSessionsResponse(sessions: list))
        case .applySettings(let r):
            return .applySettings(applySettings(r))
        case .sessionEvents(let r):
            return .sessionEvents(events.after(r.after, limit: r.limit))
        case .validateToken:
            return .error(WireErrorResponse(code: WireErrorResponse.unknownRequest, message: "mstunnel-server does not validate tokens"))
        case .hostNetwork:
            // Only the gateway's own helper, over its private socket pair, changes the host.
            return .error(WireErrorResponse(code: WireErrorResponse.notAllowed, message: "host changes are not taken on the control socket"))
        }
    }
}
