internal import CGatewayShims
import GatewayCore
import GatewayTLS
import Glibc
import GatewaySystem

/// Opens many VPN sessions from one thread: one epoll set, one non-blocking socket per
/// session, OpenSSL driving each socket. Sockets are registered edge-triggered for
/// reading and writing once, so the loop never calls epoll_ctl again; every handler
/// therefore reads until WANT_READ and flushes until EAGAIN.
public final class LoadGenerator {
    let config: LoadgenConfiguration
    let tlsContext: TLSClientContext
    let pool: BufferPool
    let epfd: Int32
    let signalFd: Int32
    var events: [epoll_event]
    var sessions: [Session]
    var inFlight: [Int] = []
    let peer: SocketAddress
    let bindAddresses: [SocketAddress]
    let serverName: String?
    let fdLimit: Int
    let tokens: [String]

    // One read buffer and one frame buffer for all sessions: the hold path allocates nothing.
    static let readCapacity = 32 * 1024
    let readBuffer: UnsafeMutableRawPointer
    let frameBuffer: UnsafeMutableRawPointer
    let logoffPayload: [UInt8] = [CSTP.logoffReason] + Array("loadgen done".utf8)

    enum Phase { case connecting, holding, closing }
    var phase = Phase.connecting
    var interrupted = false
    /// Signals received; one during the wait for the gateway after a logoff cuts it short.
    var signals = 0

    // Figures.
    var attempted = 0
    var established = 0
    var failed = 0
    var openTunnels = 0
    var droppedBeforeHold = 0
    var droppedDuringHold = 0
    var duplicateAddresses = 0
    var addressesInUse: [UInt32: Int] = [:]
    var failures = Tally()
    var drops = Tally()
    var latenciesMs: [Double] = []
    var cstp = LoadReport.CSTPCounters()
    var server: LoadReport.ServerParameters?
    var tlsVersion = ""
    var tlsCipher = ""

    static let signalToken = UInt64.max
    static let inFlightSweepNs: UInt64 = 50_000_000
    static let tunnelSweepNs: UInt64 = 250_000_000
    /// Most the loop waits for the gateway to close after a logoff.
    static let closingWaitNs: UInt64 = 10_000_000_000
    /// Connections one session may open when the gateway closes them mid-login.
    static let maxConnectionsPerSession = 4

    /// Sets up everything that can fail before the first connect: fd limit, address
    /// resolution, TLS context, epoll, signals.
    public init(config: LoadgenConfiguration) throws {
        self.config = config
        fdLimit = try Self.raiseFileLimit()
        // Sockets, plus epoll, signalfd, stdio and what OpenSSL and /proc reads open.
        let needed = config.sessions + 64
        guard needed <= fdLimit else {
            throw LoadgenError("\(config.sessions) sessions need \(needed) file descriptors; RLIMIT_NOFILE allows \(fdLimit) (raise the hard limit, e.g. ulimit -Hn)")
        }
        bindAddresses = try config.bindAddresses.map { b in
            guard let a = SocketAddress(literal: b, port: 0) else { throw LoadgenError("--bind-address \(b) is not an IP address") }
            return a
        }
        do {
            peer = try SocketAddress.resolve(host: config.target.host, port: config.target.port, family: bindAddresses.first?.family)
        } catch {
            throw LoadgenError(bindAddresses.isEmpty ? error.description : "\(error.description) (--bind-address is \(config.bindAddresses[0]))")
        }
        serverName = SocketAddress(literal: config.target.host, port: 0)?.family == nil ? config.target.host : nil
        switch config.login {
        case .bearer(let t): tokens = t
        case .password: tokens = []
        }
        tlsContext = try TLSClientContext()
        // Requests and handshake flights are a few KB; 64 KiB chunks are plenty.
        pool = BufferPool(chunkSize: 64 * 1024, maxFree: 256)
        epfd = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epfd >= 0 else { throw LoadgenError("epoll_create1: \(SystemError.reason(errno))") }
        events = [epoll_event](repeating: epoll_event(), count: 1024)
        // SIGINT/SIGTERM end the run early but still print the report.
        var mask = sigset_t()
        sigemptyset(&mask)
        sigaddset(&mask, SIGINT)
        sigaddset(&mask, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &mask, nil)
        signal(SIGPIPE, SIG_IGN)
        signalFd = signalfd(-1, &mask, Int32(SFD_NONBLOCK | SFD_CLOEXEC))
        guard signalFd >= 0 else { throw LoadgenError("signalfd: \(SystemError.reason(errno))") }
        var ev = epoll_event(events: UInt32(EPOLLIN.rawValue), data: epoll_data_t(u64: Self.signalToken))
        guard epoll_ctl(epfd, EPOLL_CTL_ADD, signalFd, &ev) == 0 else { throw LoadgenError("epoll_ctl: \(SystemError.reason(errno))") }
        sessions = (0..<config.sessions).map { Session(index: $0) }
        inFlight.reserveCapacity(min(config.concurrency, config.sessions))
        latenciesMs.reserveCapacity(config.sessions)
        readBuffer = UnsafeMutableRawPointer.allocate(byteCount: Self.readCapacity, alignment: 16)
        frameBuffer = UnsafeMutableRawPointer.allocate(byteCount: CSTP.headerSize + CSTP.maxPayload, alignment: 16)
    }

    deinit {
        for s in sessions where s.fd >= 0 { close(s.fd) }
        close(signalFd)
        close(epfd)
        readBuffer.deallocate()
        frameBuffer.deallocate()
    }

    /// Soft limit up to the hard limit; returns the new soft limit.
    static func raiseFileLimit() throws -> Int {
        var rl = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl) == 0 else { throw LoadgenError("getrlimit: \(SystemError.reason(errno))") }
        if rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max
            guard setrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl) == 0 else { throw LoadgenError("setrlimit: \(SystemError.reason(errno))") }
        }
        return rl.rlim_cur > rlim_t(Int.max) ? Int.max : Int(rl.rlim_cur)
    }

    // MARK: - The run

    public func run() -> LoadReport {
        let pids = config.gatewayPids
        let memBefore = pids.isEmpty ? nil : ProcessMemory.measure(roots: pids)
        // After the /proc scan: the CPU figures are the protocol work only.
        let cpuStart = Self.cpuTime()

        let connectStart = Self.now()
        var nextInFlightSweep = connectStart
        var nextTunnelSweep = connectStart
        while !interrupted {
            var now = Self.now()
            startMore(now: now, since: connectStart)
            if attempted == config.sessions && inFlight.isEmpty { break }
            poll(timeoutMs: waitMs(now: now, nextInFlightSweep, nextTunnelSweep, nextRateSlot(since: connectStart)))
            now = Self.now()
            if now >= nextInFlightSweep {
                sweepInFlight(now: now)
                nextInFlightSweep = now + Self.inFlightSweepNs
            }
            if now >= nextTunnelSweep {
                sweepTunnels(now: now)
                nextTunnelSweep = now + Self.tunnelSweepNs
            }
        }
        if interrupted {
            for i in inFlight.reversed() { fail(sessions[i], "interrupted before the tunnel was up") }
        }
        let connectEnd = Self.now()
        let cpuConnect = Self.cpuTime()
        let openAllUp = openTunnels
        let memAllUp = pids.isEmpty ? nil : ProcessMemory.measure(roots: pids)

        phase = .holding
        let holdStart = Self.now()
        let holdEnd = holdStart + UInt64(config.hold * 1e9)
        var nextTunnelSweepHold = holdStart
        // Nothing left to hold (all failed or dropped, none resuming): the hold ends early.
        while !interrupted, openTunnels > 0 || resumingCount > 0 {
            let now = Self.now()
            if now >= holdEnd { break }
            if now >= nextTunnelSweepHold {
                sweepTunnels(now: now)
                if !inFlight.isEmpty { sweepInFlight(now: now) }
                nextTunnelSweepHold = now + Self.tunnelSweepNs
            }
            let nextRetry = startDueResumes(now: now)
            poll(timeoutMs: waitMs(now: now, nextTunnelSweepHold, holdEnd, nextRetry))
        }
        let holdActual = Double(Self.now() - holdStart) / 1e9
        // Still trying at the end of the hold: not back.
        for s in sessions where s.resuming {
            removeInFlight(s)
            closeSocket(s)
            endResume(s, gaveUp: true, reason: "not back by the end of the hold (last: \(s.phaseName))")
        }
        let openAtEnd = openTunnels
        let memEnd = pids.isEmpty ? nil : ProcessMemory.measure(roots: pids)

        closeAll()
        let cpuEnd = Self.cpuTime()

        let connectSeconds = Double(connectEnd - connectStart) / 1e9
        var memory: LoadReport.GatewayMemory?
        if let memBefore, let memAllUp, let memEnd {
            func perSession(_ now: Int?, _ then: Int?, _ open: Int) -> Double? {
                guard let now, let then, open > 0 else { return nil }
                return Double(now - then) / Double(open)
            }
            memory = .init(pids: pids, before: memBefore, allUp: memAllUp, endOfHold: memEnd,
                           perSessionKBAllUp: perSession(memAllUp.pssKB, memBefore.pssKB, openAllUp),
                           perSessionKBEndOfHold: perSession(memEnd.pssKB, memBefore.pssKB, openAtEnd),
                           perSessionAnonKBAllUp: perSession(memAllUp.pssAnonKB, memBefore.pssAnonKB, openAllUp),
                           perSessionAnonKBEndOfHold: perSession(memEnd.pssAnonKB, memBefore.pssAnonKB, openAtEnd))
        }
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let distinct: Int? = tokens.isEmpty ? nil : Set(tokens.prefix(config.sessions)).count
        return LoadReport(
            target: config.target.description, login: config.login.name, distinctTokens: distinct,
            sessions: .init(requested: config.sessions, attempted: attempted, established: established, failed: failed,
                            droppedBeforeHold: droppedBeforeHold, droppedDuringHold: droppedDuringHold,
                            openAtEndOfHold: openAtEnd, duplicateAddresses: duplicateAddresses),
            failures: failures, drops: drops,
            connectPhase: .init(seconds: connectSeconds,
                                establishedPerSecond: connectSeconds > 0 ? Double(established) / connectSeconds : 0,
                                concurrency: config.concurrency, rateLimit: config.rate, latencyMs: Percentiles(latenciesMs)),
            hold: .init(requestedSeconds: config.hold, actualSeconds: holdActual),
            cstp: cstp, server: server, gatewayMemory: memory, resume: config.resume ? resumeReport() : nil,
            loadgen: .init(cpuConnectPhase: .init(userSeconds: cpuConnect.user - cpuStart.user, systemSeconds: cpuConnect.system - cpuStart.system),
                           cpuTotal: .init(userSeconds: cpuEnd.user - cpuStart.user, systemSeconds: cpuEnd.system - cpuStart.system),
                           maxRSSKB: Int(usage.ru_maxrss), fdLimit: fdLimit),
            interrupted: interrupted)
    }

    // MARK: - Loop plumbing

    @inline(__always)
    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    static func cpuTime() -> (user: Double, system: Double) {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        return (Double(u.ru_utime.tv_sec) + Double(u.ru_utime.tv_usec) / 1e6,
                Double(u.ru_stime.tv_sec) + Double(u.ru_stime.tv_usec) / 1e6)
    }

    /// Milliseconds until the soonest deadline, at most one second.
    func waitMs(now: UInt64, _ a: UInt64?, _ b: UInt64? = nil, _ c: UInt64? = nil) -> Int32 {
        var soonest = now + 1_000_000_000
        if let a, a < soonest { soonest = a }
        if let b, b < soonest { soonest = b }
        if let c, c < soonest { soonest = c }
        if soonest <= now { return 0 }
        // Round up so a wakeup never comes before the deadline and spins.
        return Int32((soonest - now + 999_999) / 1_000_000)
    }

    /// When the rate limit allows the next start (nil without a limit or nothing left).
    func nextRateSlot(since start: UInt64) -> UInt64? {
        guard let rate = config.rate, attempted < config.sessions, inFlight.count < config.concurrency else { return nil }
        return start + UInt64(Double(attempted) / rate * 1e9)
    }

    func poll(timeoutMs: Int32) {
        let n = events.withUnsafeMutableBufferPointer { epoll_wait(epfd, $0.baseAddress, Int32($0.count), timeoutMs) }
        guard n > 0 else { return }
        for i in 0..<Int(n) {
            let token = events[i].data.u64
            let mask = events[i].events
            if token == Self.signalToken {
                var info = signalfd_siginfo()
                while read(signalFd, &info, MemoryLayout<signalfd_siginfo>.size) == MemoryLayout<signalfd_siginfo>.size {
                    interrupted = true
                    signals += 1
                }
                continue
            }
            let index = Int(UInt32(truncatingIfNeeded: token))
            let generation = UInt32(truncatingIfNeeded: token >> 32)
            guard index < sessions.count else { continue }
            let s = sessions[index]
            // An event for a socket this session has since replaced or closed.
            guard s.generation == generation, s.fd >= 0 else { continue }
            handle(s, mask)
        }
    }

    func startMore(now: UInt64, since start: UInt64) {
        while attempted < config.sessions, inFlight.count < config.concurrency {
            if let rate = config.rate {
                // Starts allowed so far: one at t=0, then one every 1/rate seconds.
                let allowed = Int(Double(now - start) / 1e9 * rate) + 1
                if attempted >= allowed { return }
            }
            let s = sessions[attempted]
            attempted += 1
            s.startNs = now
            s.inFlightPos = inFlight.count
            inFlight.append(s.index)
            openSocket(s)
        }
    }

    // MARK: - Connection setup

    /// A new non-blocking socket for `s` and its connect. The session must be counted
    /// in flight already.
    func openSocket(_ s: Session) {
        s.connections += 1
        s.generation &+= 1
        s.state = .connecting
        let fd = socket(peer.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            fail(s, "local error: socket: \(SystemError.reason(errno))")
            return
        }
        s.fd = fd
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        if !bindAddresses.isEmpty {
            let b = bindAddresses[s.index % bindAddresses.count]
            // Let connect() pick the port: with thousands of sockets on one source
            // address, binding port 0 first would use up ports per address, not per 4-tuple.
            setsockopt(fd, Int32(IPPROTO_IP), 24 /* IP_BIND_ADDRESS_NO_PORT */, &one, socklen_t(MemoryLayout<Int32>.size))
            let rc = b.withSockaddr { bind(fd, $0, $1) }
            guard rc == 0 else {
                fail(s, "local error: bind \(b): \(SystemError.reason(errno))")
                return
            }
        }
        var ev = epoll_event(events: UInt32(EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLRDHUP.rawValue | EPOLLET.rawValue),
                             data: epoll_data_t(u64: UInt64(s.generation) << 32 | UInt64(UInt32(s.index))))
        guard epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == 0 else {
            fail(s, "local error: epoll_ctl: \(SystemError.reason(errno))")
            return
        }
        let rc = peer.withSockaddr { connect(fd, $0, $1) }
        if rc == 0 {
            connected(s)
        } else if errno != EINPROGRESS {
            failConnect(s, errno)
        }
    }

    func failConnect(_ s: Session, _ err: Int32) {
        if err == ECONNREFUSED {
            fail(s, "connect refused")
        } else {
            fail(s, "connect error: \(SystemError.reason(err))")
        }
    }

    func connected(_ s: Session) {
        let out = s.output ?? OutboundBuffer(pool: pool)
        s.output = out
        do {
            s.tls = try tlsContext.makeConnection(fd: s.fd, output: out, serverName: serverName)
        } catch {
            fail(s, "local error: TLS setup", detail: "\(error)")
            return
        }
        s.state = .handshaking
        handshake(s)
    }

    // MARK: - Events

    func handle(_ s: Session, _ mask: UInt32) {
        switch s.state {
        case .connecting:
            var err: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len)
            if err != 0 {
                failConnect(s, err)
                return
            }
            if mask & UInt32(EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0 {
                failConnect(s, ECONNRESET)
                return
            }
            guard mask & UInt32(EPOLLOUT.rawValue) != 0 else { return }
            connected(s)
        case .handshaking:
            handshake(s)
        case .login, .connectSent:
            readHTTP(s)
        case .tunnel:
            readTunnel(s)
        case .closing:
            readClosing(s)
        case .pending, .done:
            return
        }
        flush(s)
    }

    func handshake(_ s: Session) {
        guard let tls = s.tls else { return }
        switch tls.handshake() {
        case .done:
            if let pin = config.pin {
                let got = tls.peerPublicKeyPin
                guard got == pin else {
                    fail(s, "TLS failure: server key does not match --pin", detail: "the server key is \(got ?? "none")")
                    return
                }
            }
            if tlsVersion.isEmpty {
                tlsVersion = tls.protocolVersion
                tlsCipher = tls.cipherName
            }
            sendFirstRequest(s)
        case .wantRead, .wantWrite:
            return
        case .closed:
            fail(s, "TLS failure", detail: "the gateway closed the connection during the handshake")
        case .failed(let m):
            fail(s, "TLS failure", detail: m)
        }
    }

    func sendFirstRequest(_ s: Session) {
        let request: [UInt8]
        switch s.pending {
        case .connect:
            guard let cookie = s.cookie else { return fail(s, "login failed", detail: "no cookie") }
            request = LoginRequests.connect(config.target, userAgent: config.userAgent, cookie: cookie)
            s.state = .connectSent
        case .post(let r):
            request = r
            s.state = .login
        case .login:
            switch config.login {
            case .bearer:
                request = LoginRequests.bearer(config.target, userAgent: config.userAgent, token: tokens[s.index % tokens.count])
            case .password(let user, let password):
                s.password = PasswordLogin(user: user, password: password)
                request = LoginRequests.xmlPost(config.target, path: config.target.path, userAgent: config.userAgent,
                                                cookies: nil, body: LoginRequests.initBody(config.target))
            }
            s.state = .login
        }
        s.pending = .login
        writeRequest(s, request)
    }

    func writeRequest(_ s: Session, _ request: [UInt8]) {
        guard let tls = s.tls else { return }
        s.http.removeAll(keepingCapacity: true)
        s.eof = false
        let result = request.withUnsafeBytes { tls.write($0.baseAddress!, $0.count) }
        if case .done = result { return }
        fail(s, "local error: TLS write", detail: "TLS write of a \(request.count)-byte request failed: \(result)")
    }

    func readHTTP(_ s: Session) {
        guard let tls = s.tls else { return }
        reading: while true {
            switch tls.read(readBuffer, Self.readCapacity) {
            case .done(let n):
                s.http.append(contentsOf: UnsafeRawBufferPointer(start: readBuffer, count: n))
                if s.http.count > HTTPResponseParser.maxHeadBytes + HTTPResponseParser.maxBodyBytes {
                    return fail(s, "protocol error", detail: "response larger than \(HTTPResponseParser.maxHeadBytes + HTTPResponseParser.maxBodyBytes) bytes")
                }
            case .wantRead, .wantWrite:
                break reading
            case .closed:
                s.eof = true
                break reading
            case .failed(let m):
                return fail(s, "TLS failure", detail: m)
            }
        }
        processHTTP(s)
    }

    func processHTTP(_ s: Session) {
        let parsedHead: (head: HTTPResponseHead, length: Int)?
        do {
            parsedHead = try HTTPResponseParser.parseHead(s.http)
        } catch {
            return fail(s, "protocol error", detail: "\(error)")
        }
        guard let (head, headLength) = parsedHead else {
            if s.eof { fail(s, "closed by the gateway during \(s.phaseName)") }
            return
        }
        let step = s.state == .connectSent ? "CONNECT" : "login"
        guard head.status == 200 else {
            var detail = head.reason
            if let why = head.header("x-reason") { detail += " (X-Reason: \(why))" }
            return fail(s, "HTTP \(head.status) on \(step)", detail: detail)
        }
        if s.state == .connectSent {
            return tunnelUp(s, head, leftover: s.http[headLength...])
        }
        let parsedBody: (body: [UInt8], length: Int)?
        do {
            parsedBody = try HTTPResponseParser.parseBody(head: head, s.http, from: headLength, atEOF: s.eof)
        } catch {
            return fail(s, "protocol error", detail: "\(error)")
        }
        guard let (body, _) = parsedBody else {
            if s.eof { fail(s, "closed by the gateway during login", detail: "in the middle of a response") }
            return
        }
        for c in head.headers("set-cookie") { s.cookies.apply(setCookie: c) }
        let page = AuthPage.parse(body)
        let next: LoginStep
        if s.password != nil {
            next = s.password!.next(page: page, cookies: s.cookies, target: config.target)
        } else {
            next = BearerLogin.step(page: page, cookies: s.cookies)
        }
        let keepAlive = head.keepAlive && !s.eof
        switch next {
        case .fail(let why):
            fail(s, "login failed", detail: why)
        case .connect(let cookie):
            s.cookie = cookie
            if keepAlive {
                s.state = .connectSent
                writeRequest(s, LoginRequests.connect(config.target, userAgent: config.userAgent, cookie: cookie))
            } else {
                reconnect(s, then: .connect)
            }
        case .post(let path, let xml):
            let request = LoginRequests.xmlPost(config.target, path: path, userAgent: config.userAgent,
                                                cookies: s.cookies.header, body: xml)
            if keepAlive {
                writeRequest(s, request)
            } else {
                reconnect(s, then: .post(request))
            }
        }
    }

    /// The gateway ended the connection mid-login: a new one, as openconnect does.
    func reconnect(_ s: Session, then pending: Session.Pending) {
        guard s.connections < Self.maxConnectionsPerSession else {
            return fail(s, "closed by the gateway during login", detail: "after each of \(s.connections) login connections")
        }
        closeSocket(s)
        s.pending = pending
        openSocket(s)
    }

    func tunnelUp(_ s: Session, _ head: HTTPResponseHead, leftover: ArraySlice<UInt8>) {
        let grant: TunnelGrant
        do {
            grant = try TunnelGrant(head)
        } catch {
            return fail(s, "protocol error", detail: "\(error)")
        }
        let now = Self.now()
        removeInFlight(s)
        openTunnels += 1
        if s.resuming {
            s.resuming = false
            resumingCount -= 1
            resumed += 1
            resumeLatenciesMs.append(Double(now - s.droppedNs) / 1e6)
            lastResumeNs = now
            s.resumedAtNs = now
        } else {
            established += 1
            latenciesMs.append(Double(now - s.startNs) / 1e6)
        }
        s.state = .tunnel
        s.dpdNs = UInt64(grant.dpd) * 1_000_000_000
        s.keepaliveNs = UInt64(grant.keepalive) * 1_000_000_000
        s.lastRxNs = now
        s.lastTxNs = now
        var a = in_addr()
        if inet_pton(AF_INET, grant.address, &a) == 1 {
            s.address = a.s_addr
            let holders = addressesInUse[a.s_addr, default: 0]
            if holders > 0 { duplicateAddresses += 1 }
            addressesInUse[a.s_addr] = holders + 1
            if s.previousAddress != 0, s.previousAddress != a.s_addr { addressesChanged += 1 }
            s.previousAddress = 0
        }
        if server == nil {
            server = .init(tlsVersion: tlsVersion, cipher: tlsCipher, dpdSeconds: grant.dpd, keepaliveSeconds: grant.keepalive, mtu: grant.mtu)
        }
        // The login state is not needed any more; thousands of sessions should not keep it
        // (the cookie only to resume with).
        let rest = Array(leftover)
        s.http = []
        s.cookies = CookieJar()
        s.password = nil
        if config.resume, let cookie = s.cookie { s.resumeCookie = cookie }
        s.cookie = nil
        if !rest.isEmpty { receive(s, bytes: rest) }
    }

    // MARK: - Tunnel

    func readTunnel(_ s: Session) {
        guard let tls = s.tls else { return }
        while s.state == .tunnel {
            switch tls.read(readBuffer, Self.readCapacity) {
            case .done(let n):
                s.lastRxNs = Self.now()
                if s.partial.isEmpty {
                    let used = frames(s, UnsafeRawBufferPointer(start: readBuffer, count: n))
                    if s.state == .tunnel, used < n {
                        s.partial = Array(UnsafeRawBufferPointer(start: readBuffer + used, count: n - used))
                    }
                } else {
                    receive(s, bytes: Array(UnsafeRawBufferPointer(start: readBuffer, count: n)))
                }
            case .wantRead, .wantWrite:
                return
            case .closed:
                drop(s, "closed by the gateway")
            case .failed(let m):
                drop(s, "TLS error", detail: m)
            }
        }
    }

    /// Bytes that continue a split frame (or follow the CONNECT head): the rare path.
    func receive(_ s: Session, bytes: [UInt8]) {
        var data = s.partial
        s.partial = []
        data.append(contentsOf: bytes)
        let used = data.withUnsafeBytes { frames(s, $0) }
        if s.state == .tunnel, used < data.count { s.partial = Array(data[used...]) }
    }

    /// Handles every whole frame in `p`; returns the bytes used.
    func frames(_ s: Session, _ p: UnsafeRawBufferPointer) -> Int {
        var offset = 0
        while s.state == .tunnel {
            let rest = UnsafeRawBufferPointer(rebasing: p[offset...])
            switch CSTP.parseHeader(rest) {
            case .incomplete:
                return offset
            case .invalid:
                drop(s, "protocol error", detail: "bytes that are not a CSTP frame")
                return p.count
            case .header(let type, let length):
                guard rest.count >= CSTP.headerSize + length else { return offset }
                frame(s, type: type, payload: UnsafeRawBufferPointer(rebasing: rest[CSTP.headerSize..<CSTP.headerSize + length]))
                offset += CSTP.headerSize + length
            }
        }
        return p.count
    }

    func frame(_ s: Session, type: UInt8, payload: UnsafeRawBufferPointer) {
        switch CSTP.PacketType(rawValue: type) {
        case .data:
            cstp.dataFramesReceived += 1
        case .dpdRequest:
            if send(s, .dpdResponse, payload) { cstp.dpdRequestsAnswered += 1 }
        case .dpdResponse:
            cstp.dpdResponsesReceived += 1
            s.dpdSentNs = 0
        case .keepalive:
            cstp.keepalivesReceived += 1
        case .disconnect:
            let text = payload.count > 1 ? String(decoding: payload.dropFirst(), as: UTF8.self) : ""
            drop(s, "DISCONNECT from the gateway", detail: text.isEmpty ? nil : text)
        case .terminate:
            drop(s, "TERMINATE from the gateway")
        case .compressed, nil:
            drop(s, "protocol error", detail: "unexpected CSTP type \(type)")
        }
    }

    /// One frame, one SSL_write, one TLS record. False when not sent: the connection's
    /// queue is full (its window is closed; the next timer tick retries) or it failed.
    @discardableResult
    func send(_ s: Session, _ type: CSTP.PacketType, _ payload: UnsafeRawBufferPointer) -> Bool {
        guard let tls = s.tls, let out = s.output, payload.count <= CSTP.maxPayload else { return false }
        let length = CSTP.headerSize + payload.count
        // Room for the record's own overhead too (header, nonce, tag, padding).
        guard out.freeSpace >= length + 256 else { return false }
        CSTP.writeHeader(frameBuffer, type: type, length: payload.count)
        if let base = payload.baseAddress, payload.count > 0 {
            (frameBuffer + CSTP.headerSize).copyMemory(from: base, byteCount: payload.count)
        }
        switch tls.write(frameBuffer, length) {
        case .done:
            s.lastTxNs = Self.now()
            return true
        case let other:
            drop(s, "TLS error", detail: "write: \(other)")
            return false
        }
    }

    func sweepTunnels(now: UInt64) {
        for s in sessions where s.state == .tunnel {
            if s.dpdNs > 0 {
                let silent = now &- s.lastRxNs
                if silent >= 2 * s.dpdNs {
                    drop(s, "no DPD answer", detail: "nothing received for \(2 * s.dpdNs / 1_000_000_000) s")
                    continue
                }
                if silent >= s.dpdNs, s.dpdSentNs == 0 || now &- s.dpdSentNs >= s.dpdNs / 2 {
                    if send(s, .dpdRequest, UnsafeRawBufferPointer(start: nil, count: 0)) {
                        s.dpdSentNs = now
                        cstp.dpdRequestsSent += 1
                    }
                }
            }
            if s.state == .tunnel, s.keepaliveNs > 0, now &- s.lastTxNs >= s.keepaliveNs {
                if send(s, .keepalive, UnsafeRawBufferPointer(start: nil, count: 0)) { cstp.keepalivesSent += 1 }
            }
            flush(s)
        }
    }

    func sweepInFlight(now: UInt64) {
        let limit = UInt64(config.timeout * 1e9)
        var i = inFlight.count - 1
        while i >= 0 {
            if i < inFlight.count {
                let s = sessions[inFlight[i]]
                if now &- s.startNs >= limit { fail(s, "timeout in \(s.phaseName)", detail: "no tunnel after \(config.timeout) s") }
            }
            i -= 1
        }
    }

    // MARK: - Output and endings

    func flush(_ s: Session) {
        guard s.fd >= 0, let out = s.output, !out.isEmpty else {
            if s.state == .closing { shutWriteIfDone(s) }
            return
        }
        switch out.flush(fd: s.fd) {
        case .drained:
            if s.state == .closing { shutWriteIfDone(s) }
        case .blocked:
            return
        case .failed(let e):
            let why = SystemError.reason(e)
            if s.isInFlight {
                fail(s, "closed by the gateway during \(s.phaseName)", detail: "send: \(why)")
            } else if s.state == .tunnel {
                drop(s, "closed by the gateway", detail: "send: \(why)")
            } else if s.state == .closing {
                finishClosing(s)
            }
        }
    }

    func shutWriteIfDone(_ s: Session) {
        guard !s.shutWrite, s.fd >= 0 else { return }
        s.shutWrite = true
        shutdown(s.fd, Int32(SHUT_WR))
    }

    func removeInFlight(_ s: Session) {
        let pos = s.inFlightPos
        guard pos >= 0, pos < inFlight.count, inFlight[pos] == s.index else { return }
        let last = inFlight.removeLast()
        if last != s.index {
            inFlight[pos] = last
            sessions[last].inFlightPos = pos
        }
        s.inFlightPos = -1
    }

    /// A session that never reached its tunnel.
    func fail(_ s: Session, _ reason: String, detail: String? = nil) {
        guard s.isInFlight else { return }
        removeInFlight(s)
        closeSocket(s)
        if s.resuming {
            resumeFailed(s, reason, detail: detail)
            return
        }
        s.state = .done
        failed += 1
        failures.add(reason, detail: detail)
        releaseLoginState(s)
    }

    /// An established tunnel that ended before we ended it.
    func drop(_ s: Session, _ reason: String, detail: String? = nil) {
        guard s.state == .tunnel else { return }
        closeSocket(s)
        s.state = .done
        openTunnels -= 1
        if phase == .holding, config.resume, let cookie = s.resumeCookie, !reason.hasPrefix("DISCONNECT"), !reason.hasPrefix("TERMINATE") {
            s.previousAddress = s.address
            releaseAddress(s)
            startResume(s, cookie: cookie)
            return
        }
        releaseAddress(s)
        switch phase {
        case .connecting:
            droppedBeforeHold += 1
        case .holding:
            droppedDuringHold += 1
        case .closing:
            // Lost while we were ending it (a logoff that could not be written): the
            // hold's figures are final by now, and logoffsSent shows the gap.
            return
        }
        drops.add(reason, detail: detail)
    }

    func releaseAddress(_ s: Session) {
        guard s.address != 0, let n = addressesInUse[s.address] else { return }
        if n <= 1 { addressesInUse[s.address] = nil } else { addressesInUse[s.address] = n - 1 }
        s.address = 0
    }

    func releaseLoginState(_ s: Session) {
        s.http = []
        s.cookies = CookieJar()
        s.password = nil
        s.cookie = nil
    }

    /// Closes the socket (which also takes it out of epoll) and frees its TLS state.
    func closeSocket(_ s: Session) {
        if s.fd >= 0 {
            close(s.fd)
            s.fd = -1
        }
        // SSL_free; the outbound BIO gives up its reference to the buffer.
        s.tls = nil
        s.output?.release()
        s.output = nil
        s.partial = []
        s.shutWrite = false
    }

    /// End of the run: logoff (optional), close_notify, close. With --logoff the loop
    /// waits (bounded) for the gateway to close each connection, so every DISCONNECT is
    /// read before our side goes away.
    func closeAll() {
        phase = .closing
        for i in inFlight.reversed() { fail(sessions[i], "interrupted before the tunnel was up") }
        for s in sessions where s.state == .tunnel {
            if config.logoff {
                let sent = logoffPayload.withUnsafeBytes { send(s, .disconnect, $0) }
                if sent { cstp.logoffsSent += 1 }
            }
            guard s.state == .tunnel, let tls = s.tls else { continue }
            tls.shutdown()
            openTunnels -= 1
            releaseAddress(s)
            if config.logoff {
                s.state = .closing
                closingCount += 1
                flush(s)
            } else {
                flush(s)
                closeSocket(s)
                s.state = .done
            }
        }
        guard closingCount > 0 else { return }
        let signalsBefore = signals
        let deadline = Self.now() + min(Self.closingWaitNs, UInt64(config.timeout * 1e9))
        while closingCount > 0, signals == signalsBefore {
            let now = Self.now()
            if now >= deadline { break }
            poll(timeoutMs: waitMs(now: now, deadline))
        }
        for s in sessions where s.state == .closing { finishClosing(s) }
    }

    /// Sessions still waiting for the gateway to close after the logoff.
    var closingCount = 0

    // MARK: - Resume (--resume)

    /// Sessions between losing their tunnel and having it back (or giving up).
    var resumingCount = 0
    var resumeDropped = 0
    /// Sessions that lost their tunnel at least once (`resumeDropped` counts losses).
    var sessionsLost = 0
    var resumed = 0
    var resumeRefused = 0
    var resumeGaveUp = 0
    var resumeAttempts = 0
    var addressesChanged = 0
    var resumeLatenciesMs: [Double] = []
    var resumeFailures = Tally()
    var firstDropNs: UInt64 = 0
    var lastResumeNs: UInt64 = 0
    /// Sessions waiting for their next attempt (their `retryAtNs`).
    var retrying: [Int] = []
    /// Between attempts, as the stock client spaces its own (but shorter: this measures the
    /// gateways, not the client's patience).
    static let retryNs: UInt64 = 500_000_000

    /// A tunnel lost within this long of coming back continues the same loss: its deadline
    /// runs from the first, and it waits before trying again (a gateway that takes the
    /// cookie and closes at once must not make a tight loop).
    static let streakNs: UInt64 = 5_000_000_000

    /// The tunnel was closed under the session: reconnect with its cookie now.
    func startResume(_ s: Session, cookie: String) {
        let now = Self.now()
        resumeDropped += 1
        resumingCount += 1
        if !s.lostOnce {
            s.lostOnce = true
            sessionsLost += 1
        }
        if firstDropNs == 0 { firstDropNs = now }
        s.resuming = true
        s.droppedNs = now
        let again = s.resumedAtNs != 0 && now - s.resumedAtNs < Self.streakNs
        if !again { s.streakStartNs = now }
        if again {
            s.state = .pending
            s.retryAtNs = now + Self.retryNs
            retrying.append(s.index)
        } else {
            attemptResume(s, cookie: cookie, now: now)
        }
    }

    func attemptResume(_ s: Session, cookie: String, now: UInt64) {
        resumeAttempts += 1
        s.connections = 0
        s.cookie = cookie
        s.pending = .connect
        s.startNs = now
        s.inFlightPos = inFlight.count
        inFlight.append(s.index)
        openSocket(s)
    }

    /// An attempt failed. A refusal of the cookie (401 or 403 on CONNECT) means the client
    /// would have to log in again: that ends the resume. Anything else (the dead server
    /// still chosen, a 503 from a busy or draining one, a timeout) is tried again shortly,
    /// until the deadline.
    func resumeFailed(_ s: Session, _ reason: String, detail: String?) {
        if reason.hasPrefix("HTTP 401") || reason.hasPrefix("HTTP 403") {
            endResume(s, gaveUp: false, reason: reason + (detail.map { ": \($0)" } ?? ""))
            return
        }
        let now = Self.now()
        if Double(now - s.streakStartNs) / 1e9 >= config.resumeDeadline {
            endResume(s, gaveUp: true, reason: "no tunnel \(Int(config.resumeDeadline)) s after it was lost (last: \(reason))")
            return
        }
        s.state = .pending
        // ±25 % so the sessions of a dead server do not come back in lockstep.
        s.retryAtNs = now + Self.retryNs * UInt64.random(in: 75...125) / 100
        retrying.append(s.index)
    }

    func endResume(_ s: Session, gaveUp: Bool, reason: String) {
        s.resuming = false
        s.state = .done
        resumingCount -= 1
        if gaveUp { resumeGaveUp += 1 } else { resumeRefused += 1 }
        resumeFailures.add(gaveUp ? "gave up" : "refused", detail: reason)
        releaseLoginState(s)
    }

    /// Starts the attempts that are due; returns when the next one is.
    func startDueResumes(now: UInt64) -> UInt64? {
        guard !retrying.isEmpty else { return nil }
        var next: UInt64?
        var waiting: [Int] = []
        for i in retrying {
            let s = sessions[i]
            guard s.resuming, s.state == .pending else { continue }
            if s.retryAtNs <= now, let cookie = s.resumeCookie {
                attemptResume(s, cookie: cookie, now: now)
            } else {
                waiting.append(i)
                next = min(next ?? s.retryAtNs, s.retryAtNs)
            }
        }
        retrying = waiting
        return next
    }

    func resumeReport() -> LoadReport.Resume {
        LoadReport.Resume(
            lost: resumeDropped, sessionsLost: sessionsLost, resumed: resumed, refused: resumeRefused, gaveUp: resumeGaveUp, attempts: resumeAttempts,
            addressesChanged: addressesChanged, latencyMs: Percentiles(resumeLatenciesMs),
            allBackSeconds: resumed > 0 && resumed == resumeDropped ? Double(lastResumeNs - firstDropNs) / 1e9 : nil,
            failures: resumeFailures)
    }

    func finishClosing(_ s: Session) {
        guard s.state == .closing else { return }
        closeSocket(s)
        s.state = .done
        closingCount -= 1
    }

    func readClosing(_ s: Session) {
        guard let tls = s.tls else { return }
        while true {
            switch tls.read(readBuffer, Self.readCapacity) {
            case .done:
                continue
            case .wantRead, .wantWrite:
                return
            case .closed, .failed:
                cstp.closedByGatewayAfterLogoff += 1
                finishClosing(s)
                return
            }
        }
    }
}
