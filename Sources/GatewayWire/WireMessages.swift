import Foundation

/// How the client presented its token; kept for logs and per-path policy.
public enum TokenTransport: String, Codable, Sendable {
    /// `Authorization: Bearer` (RFC 6750), e.g. `openconnect --token-mode=oidc`.
    case bearer
    /// The password field of the XML login form.
    case password
    /// The `webvpn` cookie on CONNECT, e.g. `openconnect --cookie 'webvpn=…'`.
    case cookie
    /// No token: the TLS client certificate alone (`openconnect -c cert.pem -k key.pem`).
    case certificate
}

public struct ValidateTokenRequest: Codable, Sendable, Equatable {
    /// The compact JWS exactly as the client sent it; empty when `transport` is
    /// `.certificate`. Never logged by either side.
    public var token: String
    public var transport: TokenTransport
    /// The client's address as the gateway saw it, for the auth log.
    public var peerAddress: String?
    /// The certificate chain the client presented in the TLS handshake (DER, leaf first),
    /// if it presented one. libssl has checked only that the client holds the leaf's private
    /// key; whether the chain is trusted, unrevoked and whose it is, mstunnel-auth decides.
    public var clientCertificateChain: [Data]?
    /// A session's re-check at its deadline, not a login: verify the certificate chain
    /// alone, whatever `authenticationMode` asks of a login (in `certificate+token` the
    /// token was checked at the login, and its expiry still bounds the session).
    public var recheck: Bool?

    public init(token: String, transport: TokenTransport, peerAddress: String? = nil, clientCertificateChain: [Data]? = nil,
                recheck: Bool? = nil) {
        self.token = token
        self.transport = transport
        self.peerAddress = peerAddress
        self.clientCertificateChain = clientCertificateChain
        self.recheck = recheck
    }
}

/// Who the token belongs to.
public struct Identity: Codable, Sendable, Equatable {
    /// Stable user id: the `oid` claim (falls back to `sub` when the issuer has no `oid`).
    public var userId: String
    /// Display name: `upn`, else `preferred_username`, else `userId`.
    public var userName: String
    public var tenantId: String?
    /// The `deviceid` claim, kept for logs.
    public var deviceId: String?
    /// Token expiry, seconds since 1970 (for a certificate login: the certificate's notAfter).
    public var expiresAt: Int64
    /// Set when a client certificate was part of the decision: SHA-256 of the leaf's DER, in
    /// lowercase hex. The gateway binds the session to it, so its cookie is accepted only on
    /// a connection presenting the same certificate (a stolen cookie alone is worth nothing).
    public var certificateSHA256: String?
    /// What group policy matches on (docs/group-policy.md). The token's `groups` claim
    /// (Entra group object ids, or names where the issuer sends names); nil when the token
    /// has none.
    public var groups: [String]?
    /// The token's `roles` claim (app roles assigned to the user or to a group of theirs).
    public var roles: [String]?
    /// For a certificate login: the `OU` values of the leaf's subject, in order.
    public var organizationalUnits: [String]?
    /// The issuer left the groups out because the user has too many (Entra's "groups
    /// overage": `_claim_names.groups` or `hasgroups`). Group policy then sees no groups,
    /// and the gateway logs it so an operator knows why a group did not match.
    public var groupsOverage: Bool?

    public init(userId: String, userName: String, tenantId: String? = nil, deviceId: String? = nil, expiresAt: Int64,
                certificateSHA256: String? = nil, groups: [String]? = nil, roles: [String]? = nil,
                organizationalUnits: [String]? = nil, groupsOverage: Bool? = nil) {
        self.userId = userId
        self.userName = userName
        self.tenantId = tenantId
        self.deviceId = deviceId
        self.expiresAt = expiresAt
        self.certificateSHA256 = certificateSHA256
        self.groups = groups
        self.roles = roles
        self.organizationalUnits = organizationalUnits
        self.groupsOverage = groupsOverage
    }
}

/// Why a token was refused. Codes are stable; `reason` is for humans and logs and never
/// contains the token.
public struct TokenRejection: Codable, Sendable, Equatable {
    public enum Code: String, Codable, Sendable {
        case malformed
        case algorithmNotAllowed
        case unknownKey
        case badSignature
        case expired
        case notYetValid
        case issuedInFuture
        case badIssuer
        case badAudience
        case tenantNotAllowed
        case missingClaim
        case claimMismatch
        /// The issuer's keys could not be fetched, or the client-certificate CRL is missing or
        /// expired: not the client's fault (503, no ban score).
        case issuerUnavailable
        /// The configured mode needs a client certificate and none was presented.
        case certificateRequired
        /// Client certificates are not accepted here (`authenticationMode` is `token`).
        case certificateNotAccepted
        /// The chain does not lead to a trusted CA, is expired, or is not for client auth.
        case certificateUntrusted
        /// The certificate (or one above it) is on its CA's revocation list.
        case certificateRevoked
        /// The subject names no user under the configured mapping.
        case certificateNoUser
        /// `certificate+token`: the certificate's user is not the token's user.
        case certificateUserMismatch
    }
    public var code: Code
    public var reason: String

    public init(code: Code, reason: String) {
        self.code = code
        self.reason = reason
    }
}

public struct ValidateTokenResponse: Codable, Sendable, Equatable {
    public var identity: Identity?
    public var rejection: TokenRejection?

    public static func accepted(_ identity: Identity) -> Self { .init(identity: identity, rejection: nil) }
    public static func rejected(_ code: TokenRejection.Code, _ reason: String) -> Self {
        .init(identity: nil, rejection: TokenRejection(code: code, reason: reason))
    }

    public init(identity: Identity?, rejection: TokenRejection?) {
        self.identity = identity
        self.rejection = rejection
    }
}

public struct PingRequest: Codable, Sendable, Equatable {
    public init() {}
}

public struct PingResponse: Codable, Sendable, Equatable {
    /// Which process answered (`mstunnel-auth`, `mstunnel-server`).
    public var process: String
    public var version: String

    public init(process: String, version: String) {
        self.process = process
        self.version = version
    }
}

public struct ServerStatusRequest: Codable, Sendable, Equatable {
    public init() {}
}

public struct ServerStatusResponse: Codable, Sendable, Equatable {
    public var version: String
    public var startedAt: Int64
    public var listenPort: Int
    public var tunDevice: String
    public var activeSessions: Int
    public var connectedSessions: Int
    public var totalSessions: Int
    public var authFailures: Int
    public var poolSize: Int
    public var poolInUse: Int
    public var poolExhaustedCount: Int
    public var rxBytes: UInt64
    public var txBytes: UInt64
    public var authAvailable: Bool
    /// Packets dropped, by reason (added in 0.1.1; absent from older servers).
    public var drops: PacketDrops?
    /// Sessions whose packets currently travel over DTLS.
    public var dtlsSessions: Int?
    /// Pure TCP ACKs not forwarded (to the network or to a client) because a later ACK of
    /// the same flow in the same batch superseded them (added in 0.1.2).
    public var acksCoalesced: UInt64?
    /// Of `dtlsSessions`, those whose records the gateway seals itself rather than
    /// through libssl (added in 0.1.3; see docs/performance.md).
    public var dtlsDirectSessions: Int?
    /// Transit time through the gateway since it started (added in 0.1.4): tunnel packets
    /// measured, and the sum over them of the time each spent inside the gateway, ns (an
    /// upper bound per loop turn). The agent reports Δnanos / Δpackets as `latency`.
    public var transitPackets: UInt64?
    public var transitNanos: UInt64?
    /// How the gateway process is confined right now, from its own /proc/self/status
    /// (added in 0.1.5; see docs/architecture.md, "Least privilege").
    public var confinement: ProcessConfinement?
    /// Connections closed at accept (per-address login limit or ban), and addresses banned
    /// since start (added in 0.1.6; docs/security.md).
    public var connectionsRefused: Int?
    public var bansSinceStart: Int?
    /// Malformed tunnel input dropped since start, by class (added in 0.1.7; absent from
    /// older servers).
    public var malformed: MalformedInputCounts?
    /// Logins and CONNECTs refused by a group policy that denies the user (added in 0.1.7).
    public var policyDenials: Int?
    /// Traffic per channel (added in 0.1.8).
    public var tls: ChannelTraffic?
    public var dtls: ChannelTraffic?
    /// Logins by the outcomes the other counters do not cover (added in 0.1.8).
    public var logins: LoginOutcomes?
    /// How long mstunnel-auth took to answer a validation (logins and re-checks; added in 0.1.8).
    public var authLatency: LatencyHistogram?
    /// Sessions taken back from tickets this process did not make (docs/site.md).
    public var sessionsResumed: UInt64?
    /// The server is draining (`mst-cli server drain`): nil or absent when it is not.
    public var drain: DrainStatus?
    /// Addresses of this server's sessions outside its slice of the Site's pool: sessions
    /// resumed here from a sibling (foreign leases, docs/site.md). The agent reports them
    /// so the control plane keeps their home server from handing them out. Absent without
    /// a slice.
    public var foreignLeases: [String]?
    /// Addresses kept from new logins for now: sessions restored after a restart that ended
    /// without their client coming back (they may live on at a sibling). Absent when none.
    public var poolQuarantined: Int?
    /// `max-sessions` in force (0: no limit; added in 0.1.9).
    public var maxSessions: Int?

    public init(version: String, startedAt: Int64, listenPort: Int, tunDevice: String, activeSessions: Int,
                connectedSessions: Int, totalSessions: Int, authFailures: Int, poolSize: Int, poolInUse: Int,
                poolExhaustedCount: Int, rxBytes: UInt64, txBytes: UInt64, authAvailable: Bool) {
        self.version = version
        self.startedAt = startedAt
        self.listenPort = listenPort
        self.tunDevice = tunDevice
        self.activeSessions = activeSessions
        self.connectedSessions = connectedSessions
        self.totalSessions = totalSessions
        self.authFailures = authFailures
        self.poolSize = poolSize
        self.poolInUse = poolInUse
        self.poolExhaustedCount = poolExhaustedCount
        self.rxBytes = rxBytes
        self.txBytes = txBytes
        self.authAvailable = authAvailable
    }
}

/// agent → gateway: end the sessions with these ids (64 hex digits): their tickets were revoked
/// on another server of the Site (a logoff there), so a copy here (made before the session
/// moved, or restored after a restart) must not live on.
public struct EndSessionsRequest: Codable, Sendable, Equatable {
    public var sessionIds: [String]
    public var reason: String
    public init(sessionIds: [String], reason: String) {
        self.sessionIds = sessionIds
        self.reason = reason
    }
}

public struct EndSessionsResponse: Codable, Sendable, Equatable {
    public var ended: Int
    public init(ended: Int) { self.ended = ended }
}

/// cli/agent → gateway: drain this server (docs/site.md, "Drain"): its liveness page answers
/// 503 so the balancer sends new clients to its siblings, it takes no new session (a login, a
/// ticket from a sibling), and after `handOverAfterSeconds` it closes every tunnel without a
/// DISCONNECT, so each client reconnects through the balancer and resumes on a sibling with
/// its ticket. `drain` false ends a drain (sessions handed over are not taken back).
public struct DrainRequest: Codable, Sendable, Equatable {
    public var drain: Bool
    /// nil: never hand over; the server waits for its sessions to end on their own.
    public var handOverAfterSeconds: Int?
    public init(drain: Bool, handOverAfterSeconds: Int? = nil) {
        self.drain = drain
        self.handOverAfterSeconds = handOverAfterSeconds
    }
}

public struct DrainStatus: Codable, Sendable, Equatable {
    /// Wall-clock seconds since 1970.
    public var since: Int64
    /// When the sessions are (or were) handed over; nil: they are waited for.
    public var handOverAt: Int64?
    public var handedOver: Int
    public init(since: Int64, handOverAt: Int64?, handedOver: Int) {
        self.since = since
        self.handOverAt = handOverAt
        self.handedOver = handedOver
    }
}

public struct DrainResponse: Codable, Sendable, Equatable {
    /// nil: not draining (after `drain: false`).
    public var drain: DrainStatus?
    /// Sessions on this server now.
    public var sessions: Int
    public init(drain: DrainStatus?, sessions: Int) {
        self.drain = drain
        self.sessions = sessions
    }
}

/// A process's privileges as the kernel reports them.
public struct ProcessConfinement: Codable, Sendable, Equatable {
    public var uid: UInt32
    public var gid: UInt32
    /// The effective capability set, as the bit mask /proc shows in hex (`CapEff`).
    public var effectiveCapabilities: UInt64
    public var noNewPrivileges: Bool
    /// 0 none, 1 strict, 2 a seccomp filter.
    public var seccompMode: Int

    public init(uid: UInt32, gid: UInt32, effectiveCapabilities: UInt64, noNewPrivileges: Bool, seccompMode: Int) {
        self.uid = uid
        self.gid = gid
        self.effectiveCapabilities = effectiveCapabilities
        self.noNewPrivileges = noNewPrivileges
        self.seccompMode = seccompMode
    }

    /// Confined as designed: not root, no capability, under its system-call filter.
    public var isConfined: Bool { uid != 0 && effectiveCapabilities == 0 && noNewPrivileges && seccompMode == 2 }

    public var summary: String {
        isConfined
            ? "uid \(uid):\(gid), no capabilities, system-call filter on"
            : "NOT CONFINED: uid \(uid), capabilities \(String(effectiveCapabilities, radix: 16)), seccomp \(seccompMode == 2 ? "on" : "off")"
    }
}

/// Why packets were dropped; each a running count since start.
public struct PacketDrops: Codable, Sendable, Equatable {
    /// To a pool address with no connected session.
    public var noSession: UInt64
    /// The client's send queue was full (its TCP window closed).
    public var queueFull: UInt64
    /// From a client, with a source address that is not its own.
    public var spoofed: UInt64
    /// IPv6 (not yet routed), compressed or malformed.
    public var unsupported: UInt64
    /// UDP datagrams that matched no session.
    public var unknownDatagram: UInt64

    public init(noSession: UInt64, queueFull: UInt64, spoofed: UInt64, unsupported: UInt64, unknownDatagram: UInt64) {
        self.noSession = noSession
        self.queueFull = queueFull
        self.spoofed = spoofed
        self.unsupported = unsupported
        self.unknownDatagram = unknownDatagram
    }
}

public struct ListSessionsRequest: Codable, Sendable, Equatable {
    /// Only this user's sessions (matched against userId or userName).
    public var user: String?
    public init(user: String? = nil) { self.user = user }
}

public struct SessionInfo: Codable, Sendable, Equatable {
    /// Short, non-secret session handle (not the cookie).
    public var id: String
    public var userId: String
    public var userName: String
    public var deviceId: String?
    public var address: String
    public var remoteAddress: String?
    public var connected: Bool
    public var channel: String
    public var connectedAt: Int64
    public var expiresAt: Int64
    public var rxBytes: UInt64
    public var txBytes: UInt64
    public var userAgent: String?
    public var hostname: String?
    /// What group policy saw in the identity (added in 0.1.7; absent from older servers).
    public var groups: [String]?
    public var roles: [String]?
    public var organizationalUnits: [String]?
    public var groupsOverage: Bool?
    /// The routes and DNS this session was given at its latest CONNECT, and the policy
    /// they came from (added in 0.1.7).
    public var policy: SessionPolicyInfo?
    /// The IPv6 address the latest CONNECT gave, if any (`ipv6Network`; added in 0.1.9).
    public var address6: String?

    public init(id: String, userId: String, userName: String, deviceId: String?, address: String, remoteAddress: String?,
                connected: Bool, channel: String, connectedAt: Int64, expiresAt: Int64, rxBytes: UInt64, txBytes: UInt64,
                userAgent: String?, hostname: String?) {
        self.id = id
        self.userId = userId
        self.userName = userName
        self.deviceId = deviceId
        self.address = address
        self.remoteAddress = remoteAddress
        self.connected = connected
        self.channel = channel
        self.connectedAt = connectedAt
        self.expiresAt = expiresAt
        self.rxBytes = rxBytes
        self.txBytes = txBytes
        self.userAgent = userAgent
        self.hostname = hostname
    }
}

/// A session's effective group policy, as text (CIDRs, addresses, names).
public struct SessionPolicyInfo: Codable, Sendable, Equatable {
    /// The group policy that matched; nil: none did, the server-wide settings apply.
    public var policyName: String?
    public var routeIncludes: [String]
    public var routeExcludes: [String]
    public var dnsServers: [String]
    public var splitDNS: [String]
    public var defaultDomainSuffix: String?

    public init(policyName: String?, routeIncludes: [String], routeExcludes: [String], dnsServers: [String],
                splitDNS: [String], defaultDomainSuffix: String?) {
        self.policyName = policyName
        self.routeIncludes = routeIncludes
        self.routeExcludes = routeExcludes
        self.dnsServers = dnsServers
        self.splitDNS = splitDNS
        self.defaultDomainSuffix = defaultDomainSuffix
    }
}

public struct ListSessionsResponse: Codable, Sendable, Equatable {
    public var sessions: [SessionInfo]
    public init(sessions: [SessionInfo]) { self.sessions = sessions }
}

/// Stable numeric codes so a peer can act on the error without parsing text.
public struct WireErrorResponse: Codable, Sendable, Equatable {
    public static let unknownRequest = 1
    public static let notAllowed = 2
    public static let malformed = 3
    public static let unavailable = 4
    public static let `internal` = 5

    public var code: Int
    public var message: String

    public init(code: Int, message: String) {
        self.code = code
        self.message = message
    }
}

/// agent → gateway: put this Server configuration in force now, without dropping sessions.
///
/// The body is the `admin-settings.json` document itself (Graph field names), so the
/// gateway validates it with exactly the code that reads the file at start.
public struct ApplySettingsRequest: Codable, Sendable, Equatable {
    /// The JSON text of the configuration.
    public var settingsJSON: String
    /// The control plane's configuration version, echoed in logs and status.
    public var version: Int64?

    public init(settingsJSON: String, version: Int64? = nil) {
        self.settingsJSON = settingsJSON
        self.version = version
    }
}

public struct ApplySettingsResponse: Codable, Sendable, Equatable {
    public var applied: Bool
    /// The validation error when `applied` is false; names the field.
    public var error: String?
    /// Fields that changed but only take effect after a restart (e.g. `listenPort`).
    public var restartRequired: [String]
    /// Sessions that were alive before and after the change.
    public var sessionsKept: Int
    /// When `applied` is false: true if the document was fine but the host could not be
    /// changed (an `ip`/`nft` step failed), so sending the same version again may work;
    /// false or absent if the document itself was refused.
    public var retryable: Bool?

    public init(applied: Bool, error: String? = nil, restartRequired: [String] = [], sessionsKept: Int = 0, retryable: Bool? = nil) {
        self.applied = applied
        self.error = error
        self.restartRequired = restartRequired
        self.sessionsKept = sessionsKept
        self.retryable = retryable
    }
}

/// agent → gateway: session and access events after a sequence number.
public struct SessionEventsRequest: Codable, Sendable, Equatable {
    /// Return events with `sequence > after` (0 = from the oldest still held).
    public var after: UInt64
    public var limit: Int

    public init(after: UInt64, limit: Int = 500) {
        self.after = after
        self.limit = limit
    }
}

public struct GatewaySessionEvent: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable {
        case sessionConnected
        case sessionDisconnected
        case loginRejected
    }
    public var sequence: UInt64
    public var type: Kind
    /// Milliseconds since 1970.
    public var time: Int64
    public var userId: String?
    public var userName: String?
    public var deviceId: String?
    public var sessionId: String?
    public var clientAddress: String?
    public var assignedAddress: String?
    public var reason: String?
    public var rxBytes: UInt64?
    public var txBytes: UInt64?

    public init(sequence: UInt64, type: Kind, time: Int64, userId: String? = nil, userName: String? = nil,
                deviceId: String? = nil, sessionId: String? = nil, clientAddress: String? = nil,
                assignedAddress: String? = nil, reason: String? = nil, rxBytes: UInt64? = nil, txBytes: UInt64? = nil) {
        self.sequence = sequence
        self.type = type
        self.time = time
        self.userId = userId
        self.userName = userName
        self.deviceId = deviceId
        self.sessionId = sessionId
        self.clientAddress = clientAddress
        self.assignedAddress = assignedAddress
        self.reason = reason
        self.rxBytes = rxBytes
        self.txBytes = txBytes
    }
}

public struct SessionEventsResponse: Codable, Sendable, Equatable {
    public var events: [GatewaySessionEvent]
    /// Random per gateway start: when it changes, sequences restarted from 1.
    public var bootId: String
    /// Events after `after` that the gateway no longer holds (its ring is bounded).
    public var missed: UInt64

    public init(events: [GatewaySessionEvent], bootId: String, missed: UInt64) {
        self.events = events
        self.bootId = bootId
        self.missed = missed
    }
}

/// What the gateway wants the host's network to look like for its TUN device. The
/// gateway, which runs without privileges, sends this to its privileged helper (the only
/// part of `mstunnel-server` that keeps `CAP_NET_ADMIN`); the helper works out the steps
/// from what it did last and makes them, or undoes them all if one fails. Declarative on
/// purpose: the helper never runs a command the gateway names, only the steps that take
/// the host from one such state to the next, on the one TUN device it was started for.
public struct HostNetworkState: Codable, Sendable, Equatable {
    /// The TUN device's MTU.
    public var mtu: Int
    /// Addresses on the TUN device, as `address/prefix-length` (the prefix gives the
    /// on-link route to the client pool). The first is the current pool's gateway address.
    public var addresses: [String]
    /// Client prefixes masqueraded when they leave through any other interface (PAT).
    public var natPrefixes: [String]

    public init(mtu: Int, addresses: [String], natPrefixes: [String]) {
        self.mtu = mtu
        self.addresses = addresses
        self.natPrefixes = natPrefixes
    }
}

/// gateway → its host-network helper: make the host match `state`; nil tears down what
/// the helper set up (the NAT table; the addresses go with the TUN device).
public struct HostNetworkRequest: Codable, Sendable, Equatable {
    public var state: HostNetworkState?

    public init(state: HostNetworkState?) { self.state = state }
}

public struct HostNetworkResponse: Codable, Sendable, Equatable {
    /// True when the host now matches the request; false when a step failed and every
    /// step before it was undone (the host is as it was).
    public var applied: Bool
    /// The failing step and the tool's reason.
    public var error: String?
    /// The steps made, in order, for the gateway's log (e.g. `mtu 1400`, `nat 100.64.0.0/24`).
    public var steps: [String]
    /// Things that did not stop the change but need an operator (e.g. forwarding off).
    public var warnings: [String]

    public init(applied: Bool, error: String? = nil, steps: [String] = [], warnings: [String] = []) {
        self.applied = applied
        self.error = error
        self.steps = steps
        self.warnings = warnings
    }
}
