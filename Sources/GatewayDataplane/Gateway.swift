internal import CGatewayShims
import Glibc
import GatewayUDP
import GatewayCore
import GatewayHostNetwork
import GatewayIPC
import GatewaySessionCore
import GatewayTLS
import GatewayTUN
import GatewayWire
import Logging
import GatewaySystem

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
    /// Ask every client for a certificate in the TLS handshake (accepting none), so a
    /// certificate can be the login (`authenticationMode` in auth.json decides whether it is).
    public var requestClientCertificates: Bool = true
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
    /// The TUN, as packets in batches (`TunnelDevice`: the split and merge of TCP offload
    /// happen behind it).
    let tun: any TunnelDevice
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
    let signalFd: Int32
    let timerFd: Int32
    var pool: AddressPool
    /// Each session's IPv6 address, derived from its IPv4 lease; nil without `ipv6Network`
    /// (a restart-only setting, so fixed for the process's life).
    let leases6: IPv6Leases?
    /// Every session, by slot, cookie, session id, user and bound DTLS peer.
    var sessions = SessionDirectory<Session>()
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
    /// Where each client connection's one `recv` per wakeup lands, lent to its
    /// `InboundBuffer` for that read pass only: one area for every connection, instead of
    /// a read-ahead buffer inside each connection's SSL.
    let tlsReceiveArea: UnsafeMutableRawBufferPointer
    /// Where TUN reads land: room before the packet for the CSTP header (8), and with
    /// offload the 10-byte virtio header sits here too.
    static let tunReadOffset = 16
    /// Holds clients' pure ACKs back within a loop turn (`options.ackFilter`).
    var ackFilter = TCPAckFilter()
    /// Holds pure ACKs to clients back within one TUN read batch, with room in front of
    /// each for the CSTP header.
    var ackFilterOut = TCPAckFilter(headroom: 16)
    var running = true
    /// Sessions a previous process left with mstunnel-auth: asked for once, at start or as
    /// soon as auth can be reached (Gateway+Restore).
    var sessionsRestored = false
    var restorePending = false
    /// The auth connection (`AuthChannel.connects`) whose store was last read back; the
    /// cookie digest the next page starts after; what the store held during a reconcile.
    var restoreConnect = 0
    var restoreCursor: String?
    var restoreSeen = Set<CookieKey>()
    var restoreCounts = (restored: 0, forgotten: 0, saved: 0)
    var restoreDropped: [String: Int] = [:]
    /// mstunnel-auth keeps no sessions (`--session-store none`, or a version without the
    /// store): nothing is saved or read back.
    var sessionStoreUnavailable = false
    /// mstunnel-auth seals no tickets (no ticket keys, or an older version): cookies are
    /// this gateway's own, and sessions resume only here (Gateway+Tickets).
    var ticketsUnavailable = false
    /// Forgets not sent while mstunnel-auth was away (Gateway+Restore).
    var pendingForgets: [ForgetSessionRequest] = []
    /// Set while the server drains (Gateway+Drain).
    var drain: DrainState?
    /// New sessions whose tickets are being sealed, by their reserved slot, with the cookie
    /// of this gateway's own to fall back on.
    var sealing: [Int32: (session: Session, ownCookie: String)] = [:]
    var deferredRechecks = 0
    var lastDeferredLog: Int64 = -1000
    var acceptPausedUntil: Int64 = 0
    /// Per source address: login connections and ban score (`SourceGuard`).
    var sourceGuard: SourceGuard<SocketAddress.Key>
    let startedWall = wallSeconds()
    let startedMono = monotonicSeconds()
    let fileLimit: UInt64
    var counters = Counters()
    /// Malformed tunnel input dropped, by class (Gateway+Malformed; `mst-cli server show status`).
    var malformed = MalformedInputCounts()
    /// Malformed input is logged at most once a minute per address.
    var malformedLog = LogThrottle<SocketAddress.Key>()
    /// Session and access events for the agent.
    let events = SessionEventLog()
    var lastTunWriteErrno: Int32 = 0
    var lastTunReadErrno: Int32 = 0
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
        /// Sessions taken back from a ticket this process did not make (Gateway+Tickets).
        var sessionsResumed: UInt64 = 0
        var authFailures = 0
        /// Logins and CONNECTs refused because group policy denies the user a tunnel.
        var policyDenials = 0
        /// Connections closed at accept by `SourceGuard` (per-address limit or ban).
        var connectionsRefused = 0
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
        /// Traffic per channel; the totals above are their sums.
        var tls = ChannelTraffic()
        var dtls = ChannelTraffic()
        var logins = LoginOutcomes()
        var authLatency = LatencyHistogram()
    }

    /// Blocks SIGTERM, SIGINT and SIGHUP so they arrive only through the loop's signalfd.
    /// Must run before any other thread exists (threads inherit the mask; a thread
    /// without it would take the default action and kill the process uncleanly), so
    /// `main` calls it first, and `init` again for safety.
    public static func blockSignals() {
        _ = blockedSignalMask()
    }

    /// Blocks the three signals and returns the mask (for the loop's signalfd).
    static func blockedSignalMask() -> sigset_t {
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
        sourceGuard = SourceGuard(limits: Self.sourceLimits(options.settings.advanced))
        self.logger = logger
        loop = try EventLoop()
        tls = try TLSServerContext(certificate: options.certificate)
        if options.requestClientCertificates { tls.requestClientCertificates() }
        pool = AddressPool(prefix: options.settings.pool)
        leases6 = options.settings.ipv6Pool.flatMap(IPv6Leases.init(prefix:))
        pool.setSlice(options.settings.advanced.poolSlice)
        if let slice = options.settings.advanced.poolSlice {
            logger.info("pool.slice", metadata: ["slice": "\(slice)", "addresses": "\(pool.sliceCapacity)"])
        }
        if !options.settings.advanced.poolReserved.isEmpty {
            pool.setReserved(options.settings.advanced.poolReserved)
            logger.info("pool.reserved", metadata: ["addresses": "\(options.settings.advanced.poolReserved.count)",
                                                    "why": "held by sibling servers for sessions resumed there"])
        }
        io = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536 + 128, alignment: 16)
        tlsReceiveArea = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)

        tun = try LinuxTUN(name: options.tunName, offload: options.tunOffload)
        self.host = host
        let hostResponse = try host.apply(Self.hostState(pool: pool, leases6: leases6, mtu: options.settings.advanced.mtu))
        for warning in hostResponse.warnings {
            logger.warning("gateway.host_warning", metadata: ["hint": "\(warning)"])
        }

        listenFd = try Self.listen(address: settings.listenAddress, port: settings.listenPort)
        udpFd = try Self.bindUDP(address: settings.listenAddress, port: settings.listenPort)
        dtls = try DTLSServerContext(directRecords: options.dtlsDirectRecords)

        var mask = Self.blockedSignalMask()
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
        try loop.add(tun.descriptor, events: UInt32(EPOLLIN.rawValue), token: Token.make(.tun))
        try loop.add(signalFd, events: UInt32(EPOLLIN.rawValue), token: Token.make(.signal))
        try loop.add(timerFd, events: UInt32(EPOLLIN.rawValue), token: Token.make(.timer))
        control = try ControlServer(path: options.controlSocket, policy: options.controlPolicy, loop: loop, logger: logger)
    }

    deinit {
        io.deallocate()
        tlsReceiveArea.deallocate()
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
        requestRestoreIfNeeded(now: monotonicSeconds())
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
            flushTurn()
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

    /// The one place a loop turn's batched work leaves the process, after every event of
    /// the turn was handled: the TUN writes the turn still holds (ACKs the filter kept back,
    /// the merged TCP segment), every DTLS record of the turn in one `sendmmsg`, then one
    /// `send` per connection with TLS output.
    func flushTurn() {
        flushTUNWrites()
        if udpOut.count > 0 { udpOut.flush(fd: udpFd) }
        if dirty.isEmpty { return }
        for c in dirty {
            c.inDirtyList = false
            if c.phase != .closed { flush(c) }
        }
        dirty.removeAll(keepingCapacity: true)
    }

    /// Before anything that may queue DTLS datagrams (a write, a read that may answer, a
    /// handshake step, a retransmission): a nearly full batch leaves now, from the loop,
    /// so what follows finds room. The only send of the batch outside `flushTurn`.
    @inline(__always)
    func makeDatagramRoom() {
        if udpOut.isNearlyFull { udpOut.flush(fd: udpFd) }
    }

    func dispatch(_ token: UInt64, _ events: UInt32) {
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

    func handleSignals() {
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

    func shutdown() {
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
}
