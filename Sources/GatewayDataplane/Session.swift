import GatewayCore
import GatewayTLS
import GatewayWire
import GatewaySystem

/// A SHA-256 of a cookie value: the session table's key. The table never holds the
/// cookie (or a token used as a cookie) itself.
struct CookieKey: Hashable {
    let a: UInt64, b: UInt64, c: UInt64, d: UInt64

    init(digest: [UInt8]) {
        func word(_ i: Int) -> UInt64 { (0..<8).reduce(UInt64(0)) { $0 << 8 | UInt64(digest[i * 8 + $1]) } }
        a = word(0)
        b = word(1)
        c = word(2)
        d = word(3)
    }
}

/// A logged-in user's tunnel: outlives any one TLS connection for the reconnect window,
/// keeps its address for its whole life, ends on logoff or at its deadline.
final class Session {
    let slot: Int32
    /// 32 random bytes; hex of it is the `X-DTLS-App-ID`; its first 8 hex chars are the
    /// public handle shown in logs and `mst-cli`.
    let id: [UInt8]
    let handle: String
    let cookieKey: CookieKey
    let identity: Identity
    let transport: TokenTransport
    let address: IPv4Address
    let createdWall: Int64
    let createdMono: Int64
    /// Monotonic deadline (session-timeout); 0 = none.
    let deadline: Int64
    var connection: ClientConnection?
    /// When the last connection went away (monotonic), while detached.
    var detachedAt: Int64 = 0
    /// Whether a CONNECT ever attached this session (a login that never connects is
    /// dropped after auth-timeout instead of the whole reconnect window).
    var everConnected = false
    var lastTraffic: Int64
    var rxBytes: UInt64 = 0
    var txBytes: UInt64 = 0
    var rxPackets: UInt64 = 0
    var txPackets: UInt64 = 0
    var hostname: String?
    var userAgent: String?
    var remoteAddress: String?
    /// The DTLS-PSK key exported from the TLS connection that carried the latest
    /// CONNECT; nil when DTLS was not offered.
    var dtlsPSK: [UInt8]?
    /// The client's link MTU (X-CSTP-Base-MTU) and tunnel MTU from the latest CONNECT.
    var baseMTU = 1406
    var mtu = 1340
    var dtls: DTLSChannel?

    init(slot: Int32, id: [UInt8], cookieKey: CookieKey, identity: Identity, transport: TokenTransport,
         address: IPv4Address, now: Int64, deadline: Int64) {
        self.slot = slot
        self.id = id
        handle = String(hex(id).prefix(8))
        self.cookieKey = cookieKey
        self.identity = identity
        self.transport = transport
        self.address = address
        createdWall = wallSeconds()
        createdMono = now
        self.deadline = deadline
        lastTraffic = now
    }
}

/// A session's UDP channel: the DTLS connection and the client address it is bound to.
final class DTLSChannel {
    let connection: DTLSConnection
    let peer: SocketAddress.Key
    let startedAt: Int64
    var established = false
    var lastReceive: Int64
    /// False after the client sent data over TLS while this channel was up (it moved to
    /// TLS, e.g. UDP got blocked); true again when data arrives over DTLS.
    var preferred = true
    /// Whether the record path was checked after the first record (see `noteRecordPath`).
    var recordPathNoted = false

    init(connection: DTLSConnection, peer: SocketAddress.Key, now: Int64) {
        self.connection = connection
        self.peer = peer
        startedAt = now
        lastReceive = now
    }
}

/// All sessions, by slot (for the pool's O(1) routing) and by cookie hash.
struct SessionTable {
    private(set) var slots: [Session?] = []
    private var freeSlots: [Int32] = []
    private var byCookie: [CookieKey: Int32] = [:]
    /// By the 32-byte session id that is the DTLS App-ID (the ClientHello session_id).
    private var byAppID: [CookieKey: Int32] = [:]
    private(set) var count = 0

    mutating func reserveSlot() -> Int32 {
        if let s = freeSlots.popLast() { return s }
        slots.append(nil)
        return Int32(slots.count - 1)
    }

    mutating func unreserve(_ slot: Int32) { freeSlots.append(slot) }

    mutating func insert(_ s: Session) {
        slots[Int(s.slot)] = s
        byCookie[s.cookieKey] = s.slot
        byAppID[CookieKey(digest: s.id)] = s.slot
        count += 1
    }

    mutating func remove(_ s: Session) {
        guard slots[Int(s.slot)] === s else { return }
        slots[Int(s.slot)] = nil
        byCookie[s.cookieKey] = nil
        byAppID[CookieKey(digest: s.id)] = nil
        freeSlots.append(s.slot)
        count -= 1
    }

    /// Sessions of one user, oldest first.
    func sessions(ofUser userId: String) -> [Session] {
        slots.compactMap { $0 }.filter { $0.identity.userId == userId }.sorted { $0.createdMono < $1.createdMono }
    }

    func lookup(_ key: CookieKey) -> Session? {
        byCookie[key].flatMap { slots[Int($0)] }
    }

    func lookup(appID: CookieKey) -> Session? {
        byAppID[appID].flatMap { slots[Int($0)] }
    }

    @inline(__always)
    func session(at slot: Int32) -> Session? { slots[Int(slot)] }

    var all: [Session] { slots.compactMap { $0 } }
}
