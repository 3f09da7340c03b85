import GatewaySystem

/// A SHA-256 of a cookie value (the directory's key; it never holds a cookie, or a token
/// used as one), or of a session id (the DTLS App-ID a ClientHello carries).
public struct CookieKey: Hashable, Sendable {
    public let a: UInt64, b: UInt64, c: UInt64, d: UInt64

    /// The first 32 bytes of `digest` (a SHA-256, or a 32-byte session id).
    public init(digest: [UInt8]) {
        precondition(digest.count >= 32, "CookieKey needs 32 bytes")
        func word(_ i: Int) -> UInt64 { (0..<8).reduce(UInt64(0)) { $0 << 8 | UInt64(digest[i * 8 + $1]) } }
        a = word(0)
        b = word(1)
        c = word(2)
        d = word(3)
    }

    /// The 32 bytes as lowercase hex (what `StoredSession.cookieDigest` holds).
    public var hex: String {
        [a, b, c, d].map { w in
            let h = String(w, radix: 16)
            return String(repeating: "0", count: 16 - h.count) + h
        }.joined()
    }

    /// From 64 hex digits; nil for anything else.
    public init?(hex: String) {
        guard let bytes = CookieKey.bytes(hex: hex), bytes.count == 32 else { return nil }
        self.init(digest: bytes)
    }

    /// Hex text to bytes; nil if it is not an even number of hex digits.
    public static func bytes(hex: String) -> [UInt8]? {
        let u = Array(hex.utf8)
        guard u.count % 2 == 0 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: return c - 0x30
            case 0x61...0x66: return c - 0x61 + 10
            case 0x41...0x46: return c - 0x41 + 10
            default: return nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(u.count / 2)
        var i = 0
        while i < u.count {
            guard let hi = nibble(u[i]), let lo = nibble(u[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }
}

/// What the directory needs to know of a session; the gateway's `Session` is one.
public protocol SessionEntry: AnyObject {
    var slot: Int32 { get }
    var cookieKey: CookieKey { get }
    /// The session id as the ClientHello of its DTLS names it (`X-DTLS-App-ID`).
    var appID: CookieKey { get }
    var userId: String { get }
    var createdAt: Int64 { get }
    var isConnected: Bool { get }
}

/// Every session of one event loop, and the ways to find one: by slot (the address pool
/// routes a packet to a slot in O(1)), by cookie (a CONNECT), by session id (a DTLS
/// ClientHello), by user (`max-sessions-per-user`), and by the UDP peer its DTLS channel is
/// bound to (every datagram). One owner for all of them, so a binding cannot outlive its
/// session, and no I/O: SessionDirectoryTests plays logins, roaming and reuse in memory.
public struct SessionDirectory<Entry: SessionEntry> {
    @usableFromInline var slots: [Entry?] = []
    private var freeSlots: [Int32] = []
    private var byCookie: [CookieKey: Int32] = [:]
    private var byAppID: [CookieKey: Int32] = [:]
    /// UDP peer → slot, for each session whose DTLS channel is bound to a peer; and back.
    @usableFromInline var byPeer: [SocketAddress.Key: Int32] = [:]
    private var peerOfSlot: [Int32: SocketAddress.Key] = [:]
    /// UDP peer → slot, for each DTLS handshake in progress; and each session's, oldest first.
    /// Kept apart from `byPeer` so a handshake that never finishes (a replayed ClientHello)
    /// cannot take an established channel's place.
    @usableFromInline var byHandshakePeer: [SocketAddress.Key: Int32] = [:]
    private var handshakePeersOfSlot: [Int32: [SocketAddress.Key]] = [:]
    /// Handshakes one session may have in progress at once, at different addresses: a
    /// replayed ClientHello from one address does not cancel the client's own from another.
    public static var maxHandshakesPerSession: Int { 4 }
    public private(set) var count = 0

    public init() {}

    /// A slot for a session about to be created (its address is leased under it first).
    public mutating func reserveSlot() -> Int32 {
        if let s = freeSlots.popLast() { return s }
        slots.append(nil)
        return Int32(slots.count - 1)
    }

    /// Gives back a reserved slot whose session was not created after all.
    public mutating func unreserve(_ slot: Int32) { freeSlots.append(slot) }

    public mutating func insert(_ s: Entry) {
        precondition(slots[Int(s.slot)] == nil, "SessionDirectory: slot \(s.slot) is taken")
        slots[Int(s.slot)] = s
        byCookie[s.cookieKey] = s.slot
        byAppID[s.appID] = s.slot
        count += 1
    }

    /// Removes a session, its peer binding and its handshakes; the slot is free again.
    public mutating func remove(_ s: Entry) {
        guard Int(s.slot) < slots.count, slots[Int(s.slot)] === s else { return }
        unbindPeer(of: s)
        _ = removeHandshakes(of: s)
        slots[Int(s.slot)] = nil
        byCookie[s.cookieKey] = nil
        byAppID[s.appID] = nil
        freeSlots.append(s.slot)
        count -= 1
    }

    public func lookup(cookie key: CookieKey) -> Entry? { byCookie[key].flatMap { slots[Int($0)] } }

    public func lookup(appID key: CookieKey) -> Entry? { byAppID[key].flatMap { slots[Int($0)] } }

    @inlinable @inline(__always)
    public func session(at slot: Int32) -> Entry? { slots[Int(slot)] }

    public var all: [Entry] { slots.compactMap { $0 } }

    /// Sessions of one user, oldest first.
    public func sessions(ofUser userId: String) -> [Entry] {
        slots.compactMap { $0 }.filter { $0.userId == userId }.sorted { $0.createdAt < $1.createdAt }
    }

    /// Whether a login of `userId` may create a session (`SessionAdmission`).
    public func admission(ofUser userId: String, _ limits: SessionAdmission.Limits) -> SessionAdmission.Decision {
        SessionAdmission.decide(limits, total: count, user: sessions(ofUser: userId).map { .init(slot: $0.slot, connected: $0.isConnected) })
    }

    // MARK: DTLS peers

    /// The session whose DTLS channel is bound to `peer` (per datagram).
    @inlinable @inline(__always)
    public func session(boundTo peer: SocketAddress.Key) -> Entry? {
        byPeer[peer].flatMap { slots[Int($0)] }
    }

    /// The peer `s`'s channel is bound to.
    public func peer(of s: Entry) -> SocketAddress.Key? { peerOfSlot[s.slot] }

    /// Binds `s`'s DTLS channel to `peer`: a session has one peer, a peer one session. A
    /// client that roamed (a ClientHello naming its session from a new address) moves
    /// here. Returns the other session that was bound to `peer` (a NAT gave its address
    /// and port to this client): its channel now leads nowhere, and the caller drops it.
    @discardableResult
    public mutating func bind(_ s: Entry, to peer: SocketAddress.Key) -> Entry? {
        unbindPeer(of: s)
        var displaced: Entry?
        if let other = byPeer[peer], other != s.slot {
            peerOfSlot[other] = nil
            displaced = slots[Int(other)]
        }
        byPeer[peer] = s.slot
        peerOfSlot[s.slot] = peer
        return displaced
    }

    /// `s` has no DTLS channel any more.
    public mutating func unbindPeer(of s: Entry) {
        guard let peer = peerOfSlot.removeValue(forKey: s.slot) else { return }
        if byPeer[peer] == s.slot { byPeer[peer] = nil }
    }

    public var boundPeers: Int { byPeer.count }

    // MARK: DTLS handshakes in progress

    /// The session with a handshake in progress at `peer`.
    @inlinable
    public func session(handshakeAt peer: SocketAddress.Key) -> Entry? {
        byHandshakePeer[peer].flatMap { slots[Int($0)] }
    }

    /// The peers of `s`'s handshakes in progress, oldest first.
    public func handshakePeers(of s: Entry) -> [SocketAddress.Key] { handshakePeersOfSlot[s.slot] ?? [] }

    /// A handshake for `s` starts at `peer` (a ClientHello naming it came from there). Returns
    /// the handshakes the caller discards: the one at `peer` before (this session's or
    /// another's: one handshake per address), and `s`'s oldest when it would have more than
    /// `maxHandshakesPerSession`.
    public mutating func addHandshake(_ s: Entry, at peer: SocketAddress.Key) -> [(Entry, SocketAddress.Key)] {
        var discarded: [(Entry, SocketAddress.Key)] = []
        if let other = byHandshakePeer[peer], let e = slots[Int(other)] {
            removeHandshake(e, at: peer)
            discarded.append((e, peer))
        }
        var mine = handshakePeersOfSlot[s.slot] ?? []
        while mine.count >= Self.maxHandshakesPerSession {
            let oldest = mine.removeFirst()
            byHandshakePeer[oldest] = nil
            discarded.append((s, oldest))
        }
        mine.append(peer)
        handshakePeersOfSlot[s.slot] = mine
        byHandshakePeer[peer] = s.slot
        return discarded
    }

    /// `s`'s handshake at `peer` failed or timed out.
    public mutating func removeHandshake(_ s: Entry, at peer: SocketAddress.Key) {
        guard byHandshakePeer[peer] == s.slot else { return }
        byHandshakePeer[peer] = nil
        var mine = handshakePeersOfSlot[s.slot] ?? []
        mine.removeAll { $0 == peer }
        handshakePeersOfSlot[s.slot] = mine.isEmpty ? nil : mine
    }

    /// Ends every handshake `s` has in progress; returns their peers.
    public mutating func removeHandshakes(of s: Entry) -> [SocketAddress.Key] {
        let mine = handshakePeersOfSlot.removeValue(forKey: s.slot) ?? []
        for p in mine where byHandshakePeer[p] == s.slot { byHandshakePeer[p] = nil }
        return mine
    }

    /// `s`'s handshake at `peer` finished: its channel is bound there (in place of the one it
    /// had, see `bind`), and its other handshakes end. Returns the session whose channel was
    /// bound to `peer` before (the caller drops it) and the peers of the ended handshakes.
    public mutating func completeHandshake(_ s: Entry, at peer: SocketAddress.Key) -> (displaced: Entry?, abandoned: [SocketAddress.Key]) {
        let abandoned = removeHandshakes(of: s).filter { $0 != peer }
        return (bind(s, to: peer), abandoned)
    }

    public var handshakesInProgress: Int { byHandshakePeer.count }
}
