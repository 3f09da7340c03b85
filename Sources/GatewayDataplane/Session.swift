import Foundation
import GatewayCore
import GatewaySessionCore
import GatewayTLS
import GatewayWire
import GatewaySystem

/// A logged-in user's tunnel: outlives any one TLS connection for the reconnect window,
/// keeps its address for its whole life, ends on logoff or at its deadline.
final class Session: SessionEntry {
    let slot: Int32
    /// 32 random bytes; hex of it is the `X-DTLS-App-ID`; its first 8 hex chars are the
    /// public handle shown in logs and `mst-cli`.
    let id: [UInt8]
    let handle: String
    /// SHA-256 of the cookie. Set once, before the session is in the directory (a sealed
    /// ticket's digest is known only when mstunnel-auth answers).
    var cookieKey: CookieKey
    let appID: CookieKey
    let identity: Identity
    let transport: TokenTransport
    let address: IPv4Address
    /// The IPv6 address the latest CONNECT gave (`IPv6Leases`, always the same one for this
    /// session); nil when it gave none (no `ipv6Network`, a client without IPv6, an MTU
    /// under 1280): then IPv6 from this client is dropped.
    var address6: IPv6Address?
    var createdWall: Int64
    /// Set for a session restored after a restart until its client CONNECTs here: if it
    /// ends first, its address is quarantined until then (wall-clock seconds; the client may
    /// have resumed at a sibling with it, `AddressPool.quarantine`).
    var quarantineUntil: Int64?
    /// Waiting for a CONNECT, carried by a connection, detached, ended (GatewaySessionCore).
    var life: SessionLifecycle<ClientConnection>
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
    /// The established DTLS channel (records both ways).
    var dtls: DTLSChannel?
    /// DTLS handshakes in progress, each from its own address (at most
    /// `SessionDirectory.maxHandshakesPerSession`); the one that completes replaces `dtls`.
    var handshakes: [DTLSChannel] = []
    /// The user's group policy as of the latest login or CONNECT (routes and DNS given).
    var policy: EffectivePolicy
    /// The client certificate chain of a login that involved one (DER, leaf first), verified
    /// again at each deadline.
    var certificateChain: [Data]?

    init(slot: Int32, id: [UInt8], cookieKey: CookieKey, identity: Identity, transport: TokenTransport,
         address: IPv4Address, now: Int64, sessionTimeout: Int, policy: EffectivePolicy,
         restored life: SessionLifecycle<ClientConnection>? = nil) {
        self.slot = slot
        self.id = id
        handle = String(hex(id).prefix(8))
        appID = CookieKey(digest: id)
        self.cookieKey = cookieKey
        self.identity = identity
        self.transport = transport
        self.address = address
        self.policy = policy
        createdWall = wallSeconds()
        self.life = life ?? SessionLifecycle(now: now, sessionTimeout: sessionTimeout)
        lastTraffic = now
    }

    /// The connection carrying the tunnel (per packet, so inlined).
    @inline(__always)
    var connection: ClientConnection? { life.connection }
    var createdMono: Int64 { life.createdAt }
    var createdAt: Int64 { life.createdAt }
    var userId: String { identity.userId }
    var isConnected: Bool { connection != nil }
    var deadline: Int64 { life.deadline }
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
    /// Sequence numbers of the client's records OpenSSL accepted: says why it dropped one
    /// (a replay, or a forged record; see `Gateway.feedDTLS`).
    var replay = DTLSReplayWindow()

    /// The random of the ClientHello that started it: a copy of that hello (a
    /// retransmission) belongs to this handshake, another hello starts a new one.
    let helloRandom: [UInt8]

    init(connection: DTLSConnection, peer: SocketAddress.Key, helloRandom: [UInt8], now: Int64) {
        self.connection = connection
        self.peer = peer
        self.helloRandom = helloRandom
        startedAt = now
        lastReceive = now
    }
}
