import Foundation
import GatewayIPC
import GatewayWire
import Logging

/// The sessions that outlive a `mstunnel-server` process (docs/architecture.md, "Sessions
/// across a restart"). The gateway is confined and writes no file; it hands each session
/// here as it is made or renewed and says when it ends, and a new gateway process asks for
/// them all back. Kept in memory and written to one file (0600), whole and renamed into
/// place, at most once a second while something changed, and at stop: a crash of this
/// process loses at most the last second's changes, never the file.
///
/// Why a file of our own rather than SQLite: one small table, read once at start, written
/// whole; the plugin has no database otherwise, and the file's format is the wire module's
/// own Codable `StoredSession`.
public final class SessionStore: @unchecked Sendable {
    // @unchecked: `sessions`, `dirty` and `lastWrite` are only touched under `lock`.

    /// Far more than one gateway holds (its pool is at most a /10 and its file limit
    /// 20,000 here), so a confused peer cannot make the file grow without bound.
    public static let maxSessions = 100_000

    public let path: String
    private let logger: Logger
    private let lock = Mutex()
    private let writeLock = NSLock()
    private var sessions: [String: StoredSession] = [:]
    /// Session ids whose tickets no longer open (the session ended for good: logoff,
    /// refused re-check, administrator…), until the moment their ticket would have expired
    /// anyway. Kept in the same file.
    private var revoked: [String: Int64] = [:]
    /// This auth's own revocations in order, for the agent to spread to the Site (others'
    /// revocations it imports are not in it, so nothing echoes back).
    private var revocationLog: [LogEntry] = []
    private var nextSequence: UInt64 = 1
    /// Random per file: a new file (lost, or never written) restarts the numbering.
    private var epoch = String(UInt64.random(in: 0...UInt64.max), radix: 16)
    private var dirty = false
    /// Seals and opens resumption tickets (nil: this store gives out none, and the gateway
    /// falls back to cookies of its own).
    public let keyring: TicketKeyring?
    var sealer: TicketSealer? { keyring?.sealer }
    private var timer: (any DispatchSourceTimer)?
    private let now: @Sendable () -> Int64

    /// Loads `path` if it exists; a file that does not read is set aside (renamed with
    /// `.unreadable`) and the store starts empty, so a bad file costs re-logins, not a plugin
    /// that will not start.
    public init(path: String, sealer: TicketSealer? = nil, keyring: TicketKeyring? = nil, logger: Logger,
                now: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970) }) {
        self.path = path
        self.keyring = keyring ?? sealer.map { TicketKeyring(fixed: $0, logger: logger) }
        self.logger = logger
        self.now = now
        guard let data = FileManager.default.contents(atPath: path) else { return }
        do {
            // The file of an earlier version is a bare array of sessions.
            let file: File
            if let current = try? JSONDecoder().decode(File.self, from: data) { file = current } else {
                file = File(sessions: try JSONDecoder().decode([StoredSession].self, from: data), revoked: nil)
            }
            let t = now()
            for s in file.sessions where Self.live(s, at: t) { sessions[s.cookieDigest] = s }
            for (id, until) in file.revoked ?? [:] where until > t { revoked[id] = until }
            if let log = file.revocationLog, let next = file.nextSequence, let e = file.epoch {
                revocationLog = log.filter { $0.until > t }
                nextSequence = next
                epoch = e
            }
            logger.info("auth.sessions.loaded", metadata: ["path": "\(path)", "sessions": "\(sessions.count)", "expired": "\(file.sessions.count - sessions.count)",
                                                         "revoked": "\(revoked.count)"])
        } catch {
            let aside = path + ".unreadable"
            _ = rename(path, aside)
            logger.error("auth.sessions.unreadable", metadata: ["path": "\(path)", "error": "\(error)", "moved_to": "\(aside)"])
        }
    }

    /// Makes sure the store's directory exists and is this process's alone (0700, owned by
    /// our uid): the run directory is shared with the stack's group, and anyone who could
    /// replace the file could plant a session. Throws with the reason otherwise.
    public static func prepareDirectory(of path: String) throws {
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        if mkdir(dir, 0o700) != 0, errno != EEXIST {
            throw StoreError("cannot create \(dir): \(String(cString: strerror(errno)))")
        }
        var st = stat()
        guard lstat(dir, &st) == 0 else { throw StoreError("cannot stat \(dir): \(String(cString: strerror(errno)))") }
        guard st.st_mode & S_IFMT == S_IFDIR else { throw StoreError("\(dir) is not a directory") }
        guard st.st_uid == getuid() else { throw StoreError("\(dir) belongs to uid \(st.st_uid), not to this process (uid \(getuid()))") }
        if st.st_mode & 0o077 != 0, chmod(dir, 0o700) != 0 {
            throw StoreError("cannot make \(dir) private: \(String(cString: strerror(errno)))")
        }
    }

    /// Writes changes once a second from now on.
    public func startWriting() {
        let t = DispatchSource.makeTimerSource(queue: .global())
        t.schedule(deadline: .now() + 1, repeating: 1)
        t.setEventHandler { [weak self] in self?.flush() }
        t.resume()
        lock.withLock { timer = t }
    }

    public var count: Int { lock.withLock { sessions.count } }

    /// Whether `request` is one of the store's.
    public static func serves(_ request: WireRequest) -> Bool {
        switch request {
        case .saveSession, .forgetSession, .restoreSessions, .sealSession, .openTicket: return true
        default: return false
        }
    }

    /// Answers the session requests (keep, forget, give back, seal, open); nil for any other.
    public func respond(to request: WireRequest) -> WireResponse? {
        switch request {
        case .saveSession(let r):
            guard Self.isDigest(r.session.cookieDigest) else {
                return .error(WireErrorResponse(code: WireErrorResponse.malformed, message: "cookieDigest must be 64 lowercase hex digits"))
            }
            let t = now()
            if lock.withLock({ (revoked[r.session.id] ?? 0) > t }) {
                // A copy renewed on a gateway after the session was revoked in the Site.
                return .error(WireErrorResponse(code: WireErrorResponse.notAllowed, message: "session \(r.session.id.prefix(8)) was revoked"))
            }
            let kept: Int? = lock.withLock { () -> Int? in
                if sessions[r.session.cookieDigest] == nil, sessions.count >= Self.maxSessions { return nil }
                sessions[r.session.cookieDigest] = r.session
                dirty = true
                return sessions.count
            }
            guard let kept else {
                return .error(WireErrorResponse(code: WireErrorResponse.unavailable, message: "session store full (\(Self.maxSessions))"))
            }
            return .sessionStore(SessionStoreResponse(kept: kept))
        case .forgetSession(let r):
            let t = now()
            let kept = lock.withLock {
                let gone = sessions.removeValue(forKey: r.cookieDigest)
                if gone != nil { dirty = true }
                if r.revoke ?? true, let id = gone?.id ?? r.sessionId.flatMap({ Self.isDigest($0) ? $0 : nil }) {
                    makeRoomForRevocation(id, now: t)
                    // Until the ticket would have expired anyway; a session not kept here
                    // (unknown credential expiry): a whole ticket lifetime.
                    let expiry = gone.map { sealer?.notAfter($0) ?? $0.identity.expiresAt } ?? t + (sealer?.lifetime ?? TicketSealer.defaultLifetime)
                    let until = min(expiry, t + Self.longestTicketLifetime)
                    if until > t {
                        revoked[id] = max(revoked[id] ?? 0, until)
                        revocationLog.append(LogEntry(sequence: nextSequence, sessionId: id, until: until))
                        nextSequence += 1
                        dirty = true
                    }
                }
                return sessions.count
            }
            return .sessionStore(SessionStoreResponse(kept: kept))
        case .sealSession(let r):
            guard let sealer else {
                return .error(WireErrorResponse(code: WireErrorResponse.unknownRequest, message: "this mstunnel-auth has no ticket keys"))
            }
            let ticket: String
            do { ticket = try sealer.seal(r.session, now: now()) } catch {
                return .error(WireErrorResponse(code: WireErrorResponse.malformed, message: "cannot seal the session: \(error)"))
            }
            var kept = r.session
            kept.cookieDigest = Self.digest(ticket)
            let saved = lock.withLock { () -> Bool in
                if sessions[kept.cookieDigest] == nil, sessions.count >= Self.maxSessions { return false }
                sessions[kept.cookieDigest] = kept
                dirty = true
                return true
            }
            guard saved else {
                return .error(WireErrorResponse(code: WireErrorResponse.unavailable, message: "session store full (\(Self.maxSessions))"))
            }
            return .sealSession(SealSessionResponse(ticket: ticket, cookieDigest: kept.cookieDigest))
        case .openTicket(let r):
            guard let sealer else {
                return .error(WireErrorResponse(code: WireErrorResponse.unknownRequest, message: "this mstunnel-auth has no ticket keys"))
            }
            let t = now()
            switch sealer.open(r.ticket, now: t) {
            case .refused(let why):
                logger.notice("auth.ticket.refused", metadata: ["reason": "\(why)"])
                return .openTicket(OpenTicketResponse(refusal: why))
            case .session(let s, let keyId):
                if let until = lock.withLock({ revoked[s.id] }), until > t {
                    logger.notice("auth.ticket.refused", metadata: ["reason": "revoked", "session.id": "\(s.id.prefix(16))"])
                    return .openTicket(OpenTicketResponse(refusal: "the session was ended (logoff, refused re-check, or an administrator); log in again"))
                }
                logger.info("auth.ticket.opened", metadata: ["session.id": "\(s.id.prefix(16))", "user.id": "\(s.identity.userId)", "key": "\(keyId)"])
                return .openTicket(OpenTicketResponse(session: s, keyId: keyId))
            }
        case .restoreSessions(let r):
            let t = now()
            let limit = max(1, min(r.limit ?? 500, 1000))
            // Sorting every page is O(n log n) per page; restores are rare (a gateway start, an
            // auth reconnect) and n is bounded by `maxSessions`.
            let after = r.after ?? ""
            let live = lock.withLock { sessions.values.filter { s in Self.live(s, at: t) && s.cookieDigest > after } }
                .sorted { $0.cookieDigest < $1.cookieDigest }
            // Only with keys a sibling has too (the Site's, or a --ticket-keys file): a
            // server's own key opens nowhere else, so nothing of it can live on elsewhere.
            let shared = keyring.map { $0.source != "local" } ?? false
            let sealer = shared ? self.sealer : nil
            let page = live.prefix(limit).map { s in
                var s = s
                s.ticketNotAfter = sealer?.notAfter(s)
                return s
            }
            if r.after == nil { logger.info("auth.sessions.restoring", metadata: ["sessions": "\(live.count)"]) }
            return .restoreSessions(RestoreSessionsResponse(sessions: page, more: live.count > limit))
        default:
            return nil
        }
    }

    /// Writes the file if anything changed since the last write. False when it could not.
    @discardableResult
    public func flush() -> Bool {
        // One writer at a time (the timer and the stop may both flush).
        writeLock.lock()
        defer { writeLock.unlock() }
        let snapshot: File? = lock.withLock { () -> File? in
            guard dirty else { return nil }
            dirty = false
            let t = now()
            sessions = sessions.filter { Self.live($0.value, at: t) }
            revoked = revoked.filter { $0.value > t }
            revocationLog.removeAll { $0.until <= t }
            return File(sessions: Array(sessions.values), revoked: revoked, revocationLog: revocationLog, nextSequence: nextSequence, epoch: epoch)
        }
        guard let snapshot else { return true }
        do {
            // A fresh file every time (never one that was there, never through a link).
            try PrivateFile.write(try JSONEncoder().encode(snapshot), to: path)
            return true
        } catch {
            lock.withLock { dirty = true }
            logger.error("auth.sessions.write_failed", metadata: ["path": "\(path)", "error": "\(error)", "retry": "in 1 s"])
            return false
        }
    }

    /// Kept while its credential (token `exp`, certificate notAfter) is good. Not by its
    /// deadline: that is when the gateway re-checks it, and a deadline that passes while the
    /// gateway is down means "re-check at once", not "gone". A session its gateway never
    /// forgets (the gateway gone for good) leaves with its credential.
    static func live(_ s: StoredSession, at t: Int64) -> Bool { s.identity.expiresAt > t }

    /// The file: the sessions, and the revoked ticket ids with the moment each may be
    /// forgotten.
    struct File: Codable {
        var sessions: [StoredSession]
        var revoked: [String: Int64]?
        var revocationLog: [LogEntry]? = nil
        var nextSequence: UInt64? = nil
        var epoch: String? = nil
    }

    struct LogEntry: Codable {
        var sequence: UInt64
        var sessionId: String
        var until: Int64
    }

    /// The agent's exchange (docs/site.md, "Revocation"): the Site's revocations in, this
    /// auth's own since `after` out, a page at a time.
    public func exchangeRevocations(_ r: TicketRevocationsRequest) -> TicketRevocationsResponse {
        let t = now()
        let answer: TicketRevocationsResponse = lock.withLock {
            var added = 0
            for entry in r.add.prefix(Self.maxExchange) where Self.isDigest(entry.sessionId) && entry.until > t {
                let until = min(entry.until, t + Self.longestTicketLifetime)
                makeRoomForRevocation(entry.sessionId, now: t)
                if (revoked[entry.sessionId] ?? 0) < until {
                    if revoked[entry.sessionId] == nil { added += 1 }
                    revoked[entry.sessionId] = until
                    dirty = true
                }
            }
            if added > 0 {
                // A copy kept here must not come back with the next restart of the gateway.
                sessions = sessions.filter { revoked[$0.value.id] == nil }
            }
            guard let after = r.after else {
                return TicketRevocationsResponse(epoch: epoch, revoked: [], next: 0, more: false, added: added)
            }
            let from = r.epoch == epoch ? after : 0
            let limit = max(1, min(r.limit ?? Self.maxExchange, Self.maxExchange))
            let newer = revocationLog.filter { $0.sequence > from && $0.until > t }
            let page = newer.prefix(limit)
            return TicketRevocationsResponse(epoch: epoch, revoked: page.map { RevokedTicket(sessionId: $0.sessionId, until: $0.until) },
                                             next: page.last?.sequence ?? max(from, nextSequence - 1), more: newer.count > limit, added: added)
        }
        // What is handed out must be on disk first: after a crash the same numbers would
        // otherwise be given to other revocations, which the agent would then skip.
        if !answer.revoked.isEmpty, !flush() {
            return TicketRevocationsResponse(epoch: answer.epoch, revoked: [], next: r.after ?? 0, more: true, added: answer.added)
        }
        return answer
    }

    /// Revocations taken or given in one exchange.
    public static let maxExchange = 400
    /// No revocation is kept longer than the longest ticket lifetime a key file may set.
    static let longestTicketLifetime: Int64 = 30 * 86_400

    /// At the bound, the revocation that expires first gives way (under `lock`): a full list
    /// must not make new revocations fail open. O(n), only when full.
    private func makeRoomForRevocation(_ id: String, now: Int64) {
        guard revoked[id] == nil, revoked.count >= Self.maxSessions else { return }
        revoked = revoked.filter { $0.value > now }
        if revoked.count >= Self.maxSessions, let first = revoked.min(by: { $0.value < $1.value }) {
            revoked[first.key] = nil
        }
    }

    public var revokedCount: Int { lock.withLock { revoked.count } }

    static func digest(_ ticket: String) -> String { TicketSealer.cookieDigest(ticket) }

    static func isDigest(_ s: String) -> Bool {
        s.utf8.count == 64 && s.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    public struct StoreError: Error, CustomStringConvertible {
        public let description: String
        init(_ d: String) { description = d }
    }
}
