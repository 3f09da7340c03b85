import Foundation
import GatewayCore

/// The agent ↔ control-plane HTTP API: the JSON bodies both sides encode and decode.
/// One module so the two can never disagree on a field name. No I/O here.
///
/// Endpoints (all under the control plane's HTTPS listener, see docs/control-plane.md):
///
///     GET  /agent/v1/ca                         the control plane's CA certificate (PEM), public
///     POST /agent/v1/enroll                     EnrollmentRequest → EnrollmentResponse   (join token, no client cert)
///     POST /agent/v1/renew                      RenewalRequest → EnrollmentResponse      (mTLS)
///     POST /agent/v1/checkin                    CheckinRequest → CheckinResponse         (mTLS)
///     POST /agent/v1/reports                    ReportBatch → ReportAck                  (mTLS)
///     PUT  /agent/v1/logCollections/{id}        raw log bytes (text/plain), → 204        (mTLS)
///     POST /agent/v1/logCollections/{id}/failure LogCollectionFailure → 204              (mTLS)
///
/// Errors use the same OData shape as the admin API: `{"error":{"code","message"}}`
/// (`AgentAPIError`). Dates are ISO 8601 strings in UTC with a `Z`, as in Graph.
public enum AgentAPI {
    public static let version = "v1"
    public static let basePath = "/agent/v1"
}

/// A Site's one-time join token as an operator copies it:
/// `mstj1.<tokenId>.<secret>.<caSHA256>`.
///
/// `tokenId` names the row on the control plane, `secret` is checked against its stored
/// SHA-256, and `caSHA256` (hex of the SHA-256 of the CA certificate's DER) lets the agent
/// trust the control plane's TLS certificate on first contact without any other
/// distribution step (the kubeadm discovery-hash idea).
public struct JoinToken: Sendable, Equatable, CustomStringConvertible {
    public static let prefix = "mstj1"
    public var tokenId: String
    public var secret: String
    public var caSHA256: String

    public init(tokenId: String, secret: String, caSHA256: String) {
        self.tokenId = tokenId
        self.secret = secret
        self.caSHA256 = caSHA256
    }

    public init(parsing text: String) throws(AgentAPIError) {
        let parts = text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == Self.prefix else {
            throw AgentAPIError(code: "invalidJoinToken", message: "a join token looks like mstj1.<id>.<secret>.<ca-hash>")
        }
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
        for p in parts.dropFirst() where p.isEmpty || p.count > 128 || !p.allSatisfy({ allowed.contains($0) }) {
            throw AgentAPIError(code: "invalidJoinToken", message: "join token has an empty, overlong or non-base64url part")
        }
        guard parts[3].count == 64, parts[3].allSatisfy({ $0.isHexDigit }) else {
            throw AgentAPIError(code: "invalidJoinToken", message: "join token's CA hash is not 64 hex digits")
        }
        tokenId = String(parts[1])
        secret = String(parts[2])
        caSHA256 = parts[3].lowercased()
    }

    /// The whole token. It is a secret: never log it.
    public var description: String { "\(Self.prefix).\(tokenId).\(secret).\(caSHA256)" }
}

// MARK: - Enrollment

public struct EnrollmentRequest: Codable, Sendable, Equatable {
    /// The whole join token text (`JoinToken.description`). Spent on success.
    public var joinToken: String
    /// PKCS#10 request for the agent's own key, PEM. The key never leaves the host.
    public var csrPEM: String
    /// Becomes the server's `displayName` in the Site.
    public var hostname: String
    public var agentVersion: String

    public init(joinToken: String, csrPEM: String, hostname: String, agentVersion: String) {
        self.joinToken = joinToken
        self.csrPEM = csrPEM
        self.hostname = hostname
        self.agentVersion = agentVersion
    }
}

public struct RenewalRequest: Codable, Sendable, Equatable {
    public var csrPEM: String
    public init(csrPEM: String) { self.csrPEM = csrPEM }
}

public struct EnrollmentResponse: Codable, Sendable, Equatable {
    /// The `microsoftTunnelServer` id this agent now is.
    public var serverId: String
    public var siteId: String
    /// Leaf first. Its subject CN is the server id.
    public var certificateChainPEM: String
    /// The CA that signs agent certificates and the control plane's TLS certificate.
    public var caCertificatePEM: String
    /// The leaf's notAfter, ISO 8601.
    public var notAfter: String

    public init(serverId: String, siteId: String, certificateChainPEM: String, caCertificatePEM: String, notAfter: String) {
        self.serverId = serverId
        self.siteId = siteId
        self.certificateChainPEM = certificateChainPEM
        self.caCertificatePEM = caCertificatePEM
        self.notAfter = notAfter
    }
}

// MARK: - Check-in (poll)

/// The outcome of applying one configuration version to the gateway.
public struct ConfigurationApplyResult: Codable, Sendable, Equatable {
    public var version: Int64
    public var success: Bool
    /// The gateway's validation error (or why it could not be reached) when `success` is false.
    public var message: String?
    public var dateTime: String

    public init(version: Int64, success: Bool, message: String? = nil, dateTime: String) {
        self.version = version
        self.success = success
        self.message = message
        self.dateTime = dateTime
    }
}

public struct CheckinRequest: Codable, Sendable, Equatable {
    public var agentVersion: String
    /// The gateway's version as it answered ping, nil when unreachable.
    public var serverVersion: String?
    /// The configuration version in force on the gateway (0: none from the control plane yet).
    public var appliedConfigurationVersion: Int64
    /// The last apply attempt, reported until the control plane has seen it.
    public var lastApply: ConfigurationApplyResult?
    /// The ticket key ids this server's mstunnel-auth opens with now (never the keys); nil:
    /// unknown (auth unreachable, or an older agent). The control plane makes a new Site key
    /// the sealing one only once every live server of the Site has it.
    public var ticketKeyIds: [String]?
    /// Tickets this server's auth revoked since the last check-in (logoffs…), for the Site's
    /// other servers (docs/site.md, "Revocation"); at most `AgentAPILimits.revokedTickets`.
    public var revokedTickets: [RevokedTicketEntry]?
    /// The Site's revocations this agent has already taken (the control plane's cursor).
    public var revocationsAfter: Int64?
    /// Addresses of this server's sessions outside its slice of the Site's pool (sessions
    /// resumed here from a sibling: foreign leases, docs/site.md); at most
    /// `AgentAPILimits.foreignLeases`. nil: not reported (an older agent, or no slice).
    public var foreignLeases: [String]?
    /// The image tag this server's containers run (`MSTUNNEL_TAG`, handed to the agent's
    /// container as `MSTUNNEL_IMAGE_TAG`); nil outside containers. A rolling upgrade moves it
    /// to the Site's release (docs/site.md, "Rolling upgrade").
    public var imageTag: String?
    /// Where the upgrade the control plane asked of this server stands (the host's updater's
    /// result once it has one); nil when none was asked since the agent started.
    public var upgrade: UpgradeReport?
    /// The gateway's sessions now, and its `max-sessions` (0: no limit): before a rolling
    /// upgrade drains a server, its siblings must have room for its sessions. nil: not
    /// reported (an older agent, or the gateway did not answer).
    public var sessions: Int?
    public var sessionLimit: Int?

    public init(agentVersion: String, serverVersion: String?, appliedConfigurationVersion: Int64, lastApply: ConfigurationApplyResult?,
                ticketKeyIds: [String]? = nil, revokedTickets: [RevokedTicketEntry]? = nil, revocationsAfter: Int64? = nil) {
        self.revokedTickets = revokedTickets
        self.revocationsAfter = revocationsAfter
        self.agentVersion = agentVersion
        self.serverVersion = serverVersion
        self.appliedConfigurationVersion = appliedConfigurationVersion
        self.lastApply = lastApply
        self.ticketKeyIds = ticketKeyIds
    }
}

/// Slice `index` of `count` of the Site's pool.
public struct PoolSliceAssignment: Codable, Sendable, Equatable {
    public var index: Int
    public var count: Int
    public init(index: Int, count: Int) {
        self.index = index
        self.count = count
    }
    /// As the gateway's `pool-slice` setting takes it.
    public var setting: String { "\(index)/\(count)" }
}

/// Drain the gateway: hand its sessions to the Site's other servers after
/// `handOverAfterSeconds`, or (nil) wait for them to end.
public struct DrainInstruction: Codable, Sendable, Equatable {
    public var handOverAfterSeconds: Int?
    public init(handOverAfterSeconds: Int?) { self.handOverAfterSeconds = handOverAfterSeconds }
}

/// Upgrade this server's containers to image tag `tag` (docs/site.md, "Rolling upgrade"):
/// drain the gateway, hand its sessions over after `handOverAfterSeconds`, wait until they
/// are gone (at most `drainTimeoutSeconds`), then ask the host's updater for the tag.
/// `id` names this attempt: the updater's result carries it back.
public struct UpgradeInstruction: Codable, Sendable, Equatable {
    public var id: String
    public var tag: String
    public var handOverAfterSeconds: Int
    public var drainTimeoutSeconds: Int
    public init(id: String, tag: String, handOverAfterSeconds: Int, drainTimeoutSeconds: Int) {
        self.id = id
        self.tag = tag
        self.handOverAfterSeconds = handOverAfterSeconds
        self.drainTimeoutSeconds = drainTimeoutSeconds
    }
}

/// An upgrade attempt as the agent sees it: `draining` (its gateway hands sessions over),
/// `requested` (the updater was asked), then the updater's `succeeded` or `failed` (the
/// containers are back on the tag they ran before; `message` says why).
public struct UpgradeReport: Codable, Sendable, Equatable {
    public enum State: String, Codable, Sendable, CaseIterable {
        case draining, requested, succeeded, failed
    }
    public var id: String
    public var tag: String
    public var state: State
    public var message: String?
    public var dateTime: String
    public init(id: String, tag: String, state: State, message: String? = nil, dateTime: String) {
        self.id = id
        self.tag = tag
        self.state = state
        self.message = message
        self.dateTime = dateTime
    }

    /// An image tag as registries accept it (letters, digits, `_ . -`; at most 128, not
    /// starting with `.` or `-`): the only tags an agent or the updater takes.
    public static func isValidTag(_ tag: String) -> Bool {
        guard let first = tag.utf8.first, tag.utf8.count <= 128, first != UInt8(ascii: "."), first != UInt8(ascii: "-") else { return false }
        return tag.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == UInt8(ascii: "_") || c == UInt8(ascii: ".") || c == UInt8(ascii: "-")
        }
    }
}

/// A revoked ticket: a session id (64 hex digits) and when the revocation may be forgotten
/// (wall-clock seconds).
public struct RevokedTicketEntry: Codable, Sendable, Equatable {
    public var sessionId: String
    public var until: Int64
    public init(sessionId: String, until: Int64) {
        self.sessionId = sessionId
        self.until = until
    }
}

/// The Site's ticket keys (docs/site.md, "Site keys"): every server's mstunnel-auth seals a
/// session's cookie with `sealing` and opens with any of `keys`, so a client whose server is
/// gone resumes on a sibling. Sent at every check-in over the agent's mTLS connection; the
/// agent hands them to mstunnel-auth and keeps no copy. Printed, it shows key ids only.
public struct SiteTicketKeys: Codable, Sendable, Equatable, CustomStringConvertible {
    public struct Key: Codable, Sendable, Equatable, CustomStringConvertible {
        public var id: String
        /// 32 bytes, base64.
        public var key: String
        public init(id: String, key: String) {
            self.id = id
            self.key = key
        }
        public var description: String { "ticket key \(id)" }
    }
    public var sealing: String
    public var keys: [Key]
    public var lifetimeSeconds: Int64

    public init(sealing: String, keys: [Key], lifetimeSeconds: Int64) {
        self.sealing = sealing
        self.keys = keys
        self.lifetimeSeconds = lifetimeSeconds
    }
    public var description: String { "ticket keys \(keys.map(\.id)) sealing \(sealing)" }
}

public struct CheckinResponse: Codable, Sendable, Equatable {
    public var serverId: String
    public var siteId: String
    /// Version of the Site's Server configuration (bumps on every change of the
    /// configuration or of which configuration the Site uses). 0 = the Site has none.
    public var configurationVersion: Int64
    /// Present when `configurationVersion` differs from the agent's applied version.
    public var configuration: AdminSettings?
    /// The Site's `internalNetworkProbeUrl`, probed by the agent each report.
    public var internalNetworkProbeUrl: String?
    /// How often to check in and to send a health report.
    public var checkinIntervalSeconds: Int
    public var reportIntervalSeconds: Int
    public var actions: [AgentAction]
    /// When the agent should renew its certificate (ISO 8601); nil = no opinion.
    public var renewAfter: String?
    /// The Site's ticket keys (nil from an older control plane).
    public var ticketKeys: SiteTicketKeys?
    /// Tickets the Site's other servers revoked after `revocationsAfter`; the agent hands
    /// them to its auth and sends `revocationsCursor` next time.
    public var revokedTickets: [RevokedTicketEntry]?
    public var revocationsCursor: Int64?
    /// An administrator drains this server: the agent drains its gateway (docs/site.md,
    /// "Drain") and ends the drain it started when this is absent again.
    public var drain: DrainInstruction?
    /// This server's slice of the Site's pool (docs/site.md): new logins here get addresses
    /// from it only. nil from an older control plane, or when the Site has no slice free.
    public var poolSlice: PoolSliceAssignment?
    /// Addresses of that slice the Site's other live servers hold for sessions resumed there
    /// (their foreign leases): this server must not give them to new logins.
    public var reservedAddresses: [String]?
    /// The Site's rolling upgrade has reached this server (docs/site.md, "Rolling upgrade").
    public var upgrade: UpgradeInstruction?

    public init(serverId: String, siteId: String, configurationVersion: Int64, configuration: AdminSettings?,
                internalNetworkProbeUrl: String?, checkinIntervalSeconds: Int, reportIntervalSeconds: Int,
                actions: [AgentAction], renewAfter: String?, ticketKeys: SiteTicketKeys? = nil,
                revokedTickets: [RevokedTicketEntry]? = nil, revocationsCursor: Int64? = nil) {
        self.ticketKeys = ticketKeys
        self.revokedTickets = revokedTickets
        self.revocationsCursor = revocationsCursor
        self.serverId = serverId
        self.siteId = siteId
        self.configurationVersion = configurationVersion
        self.configuration = configuration
        self.internalNetworkProbeUrl = internalNetworkProbeUrl
        self.checkinIntervalSeconds = checkinIntervalSeconds
        self.reportIntervalSeconds = reportIntervalSeconds
        self.actions = actions
        self.renewAfter = renewAfter
    }
}

/// Work the control plane asks of the agent. `type` discriminates; unknown types are
/// skipped by the agent (and logged), so a newer control plane does not break an older agent.
public struct AgentAction: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable, CaseIterable {
        /// Gather the stack's logs for [startDateTime, endDateTime] and upload them to
        /// `PUT /agent/v1/logCollections/{id}`.
        case collectLogs
    }
    public var id: String
    public var type: String
    public var startDateTime: String?
    public var endDateTime: String?

    public init(id: String, type: Kind, startDateTime: String? = nil, endDateTime: String? = nil) {
        self.id = id
        self.type = type.rawValue
        self.startDateTime = startDateTime
        self.endDateTime = endDateTime
    }

    public var kind: Kind? { Kind(rawValue: type) }
}

// MARK: - Reports (durable outbox → control plane)

/// One measurement round on the gateway host. Every field the agent could not measure
/// is nil (never a made-up zero); the control plane evaluates what is present.
public struct HealthReport: Codable, Sendable, Equatable {
    /// Host CPU busy, percent of all cores, over the last interval.
    public var cpuUsagePercent: Double?
    /// Host memory in use (MemTotal - MemAvailable), percent.
    public var memoryUsagePercent: Double?
    /// Free bytes on the file system holding the state directory.
    public var diskFreeBytes: Int64?
    /// Tunnel sessions connected now.
    public var currentConnections: Int64?
    /// Tunnel bytes per second (both directions) over the last interval.
    public var throughputBytesPerSecond: Int64?
    /// Round trip of the agent's last successful control-plane request, ms.
    public var latencyMilliseconds: Double?
    public var tlsCertificate: CertificateReport?
    /// The agent's own mTLS certificate's notAfter, ISO 8601.
    public var agentCertificateNotAfter: String?
    public var internalNetworkProbe: ProbeReport?
    public var gateway: GatewayReport
    /// Configuration version in force on the gateway.
    public var appliedConfigurationVersion: Int64

    public init(cpuUsagePercent: Double? = nil, memoryUsagePercent: Double? = nil, diskFreeBytes: Int64? = nil,
                currentConnections: Int64? = nil, throughputBytesPerSecond: Int64? = nil, latencyMilliseconds: Double? = nil,
                tlsCertificate: CertificateReport? = nil, agentCertificateNotAfter: String? = nil,
                internalNetworkProbe: ProbeReport? = nil, gateway: GatewayReport, appliedConfigurationVersion: Int64) {
        self.cpuUsagePercent = cpuUsagePercent
        self.memoryUsagePercent = memoryUsagePercent
        self.diskFreeBytes = diskFreeBytes
        self.currentConnections = currentConnections
        self.throughputBytesPerSecond = throughputBytesPerSecond
        self.latencyMilliseconds = latencyMilliseconds
        self.tlsCertificate = tlsCertificate
        self.agentCertificateNotAfter = agentCertificateNotAfter
        self.internalNetworkProbe = internalNetworkProbe
        self.gateway = gateway
        self.appliedConfigurationVersion = appliedConfigurationVersion
    }
}

/// The gateway's TLS certificate (`certs/site.crt` or the PFX) as the agent checked it.
public struct CertificateReport: Codable, Sendable, Equatable {
    public var subject: String?
    public var notBefore: String?
    public var notAfter: String?
    public var dnsNames: [String]
    /// Human-readable findings: "no subjectAltName", "validity exceeds 2 years",
    /// "expired", "chain does not verify: …". Empty = valid.
    public var problems: [String]

    public init(subject: String?, notBefore: String?, notAfter: String?, dnsNames: [String], problems: [String]) {
        self.subject = subject
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.dnsNames = dnsNames
        self.problems = problems
    }
}

/// A GET of the Site's `internalNetworkProbeUrl` from the gateway host.
public struct ProbeReport: Codable, Sendable, Equatable {
    public var url: String
    public var reachable: Bool
    public var statusCode: Int?
    public var latencyMilliseconds: Double?
    public var error: String?

    public init(url: String, reachable: Bool, statusCode: Int? = nil, latencyMilliseconds: Double? = nil, error: String? = nil) {
        self.url = url
        self.reachable = reachable
        self.statusCode = statusCode
        self.latencyMilliseconds = latencyMilliseconds
        self.error = error
    }
}

/// The gateway container's health as seen over its control socket.
public struct GatewayReport: Codable, Sendable, Equatable {
    public var reachable: Bool
    public var version: String?
    public var uptimeSeconds: Int64?
    public var poolSize: Int64?
    public var poolInUse: Int64?
    /// Is the auth plugin answering the gateway?
    public var authReachable: Bool?
    public var error: String?
    /// What the gateway refused since it started (absent from older agents and gateways).
    public var refused: RefusedInputReport?

    public init(reachable: Bool, version: String? = nil, uptimeSeconds: Int64? = nil, poolSize: Int64? = nil,
                poolInUse: Int64? = nil, authReachable: Bool? = nil, error: String? = nil, refused: RefusedInputReport? = nil) {
        self.reachable = reachable
        self.version = version
        self.uptimeSeconds = uptimeSeconds
        self.poolSize = poolSize
        self.poolInUse = poolInUse
        self.authReachable = authReachable
        self.error = error
        self.refused = refused
    }
}

/// Hostile or broken input the gateway refused since it started: its own counters, which
/// start again at 0 with it (the control plane shows them beside the uptime). They say an
/// attack or a broken client is under way; they never make a server unhealthy.
public struct RefusedInputReport: Codable, Sendable, Equatable {
    /// Malformed tunnel input dropped, by class, under the names `mst-cli server show status
    /// --json` uses (`dtlsReplayed`, `cstpBadHeader`…; docs/security.md lists them). A map,
    /// so a class a newer gateway adds reaches an older control plane.
    public var malformed: [String: Int64]
    /// Connections closed at accept (per-address or global login limits, bans).
    public var connectionsRefused: Int64?
    /// Addresses banned for repeated failed logins.
    public var bans: Int64?
    /// Logins and reconnects refused by a group policy that denies the user.
    public var policyDenials: Int64?

    public init(malformed: [String: Int64] = [:], connectionsRefused: Int64? = nil, bans: Int64? = nil, policyDenials: Int64? = nil) {
        self.malformed = malformed
        self.connectionsRefused = connectionsRefused
        self.bans = bans
        self.policyDenials = policyDenials
    }

    /// All malformed input together.
    public var malformedTotal: Int64 { malformed.values.reduce(0) { $0 &+ max(0, $1) } }
}

/// A session or access event from the gateway, forwarded by the agent.
public struct AgentEvent: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable, CaseIterable {
        case sessionConnected
        case sessionDisconnected
        case loginRejected
    }
    public var type: Kind
    public var dateTime: String
    public var userId: String?
    public var userName: String?
    public var deviceId: String?
    /// Short, non-secret session handle (never the cookie).
    public var sessionId: String?
    public var clientAddress: String?
    public var assignedAddress: String?
    public var reason: String?
    public var bytesIn: Int64?
    public var bytesOut: Int64?

    public init(type: Kind, dateTime: String, userId: String? = nil, userName: String? = nil, deviceId: String? = nil,
                sessionId: String? = nil, clientAddress: String? = nil, assignedAddress: String? = nil,
                reason: String? = nil, bytesIn: Int64? = nil, bytesOut: Int64? = nil) {
        self.type = type
        self.dateTime = dateTime
        self.userId = userId
        self.userName = userName
        self.deviceId = deviceId
        self.sessionId = sessionId
        self.clientAddress = clientAddress
        self.assignedAddress = assignedAddress
        self.reason = reason
        self.bytesIn = bytesIn
        self.bytesOut = bytesOut
    }
}

/// One outbox entry. `id` is a UUID the agent assigns when it queues the report; the
/// control plane stores each id once, so a batch resent after a lost response is
/// acknowledged again but never counted twice.
public struct ReportItem: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable, CaseIterable {
        case health
        case event
    }
    public var id: String
    public var kind: Kind
    /// When the agent queued it (the measurement time), ISO 8601.
    public var createdDateTime: String
    public var health: HealthReport?
    public var event: AgentEvent?

    public init(id: String, createdDateTime: String, health: HealthReport) {
        self.id = id
        self.kind = .health
        self.createdDateTime = createdDateTime
        self.health = health
        self.event = nil
    }

    public init(id: String, createdDateTime: String, event: AgentEvent) {
        self.id = id
        self.kind = .event
        self.createdDateTime = createdDateTime
        self.health = nil
        self.event = event
    }
}

public struct ReportBatch: Codable, Sendable, Equatable {
    public var items: [ReportItem]
    /// Reports the agent had to drop because its outbox hit its bound, since the last
    /// batch the control plane acknowledged (so the loss is visible, not silent).
    public var droppedSinceLastAck: Int64

    public init(items: [ReportItem], droppedSinceLastAck: Int64 = 0) {
        self.items = items
        self.droppedSinceLastAck = droppedSinceLastAck
    }

    /// Upper bound of items in one POST; the control plane refuses larger batches.
    public static let maxItems = 500
}

public struct ReportAck: Codable, Sendable, Equatable {
    /// Every id of the batch that is now stored (new or already seen): the agent deletes them.
    public var acknowledged: [String]
    /// Of those, how many were already stored (a retry).
    public var duplicates: Int

    public init(acknowledged: [String], duplicates: Int) {
        self.acknowledged = acknowledged
        self.duplicates = duplicates
    }
}

public struct LogCollectionFailure: Codable, Sendable, Equatable {
    public var message: String
    public init(message: String) { self.message = message }
}

// MARK: - Errors

/// `{"error":{"code":"…","message":"…"}}`, the OData error shape, used by both APIs.
public struct AgentAPIError: Error, Codable, Sendable, Equatable, CustomStringConvertible {
    public var code: String
    public var message: String

    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }

    public struct Body: Codable, Sendable, Equatable {
        public var error: AgentAPIError
        public init(error: AgentAPIError) { self.error = error }
    }
}

// MARK: - Dates

public enum GraphDate {
    /// ISO 8601 with fractional seconds and `Z`, as Graph writes dates.
    public static func string(_ date: Date) -> String {
        formatter(fractional: true).string(from: date)
    }

    /// Accepts with or without fractional seconds (at most 9 digits), `Z` or an offset, years
    /// 0001–9999. The shape is checked before Foundation sees the text: fuzzing found
    /// ISO8601DateFormatter dividing by zero (SIGFPE) on 35 fraction digits and reading year
    /// 0000 as 0001 (Fuzz/Crashes/fuzz-agent-api).
    public static func parse(_ text: String) -> Date? {
        let b = Array(text.utf8)
        guard isGraphShape(b), fieldsInRange(b) else { return nil }
        return formatter(fractional: true).date(from: text) ?? formatter(fractional: false).date(from: text)
    }

    /// The fields of `YYYY-MM-DDTHH:MM:SS…(Z|±HH:MM)` name a real instant: month 01–12, a day
    /// that month has, hour 00–23, minute and second 00–59, an offset within ±23:59. Foundation's
    /// formatter rolls 2020-02-30 over to March 1 and 24:00 to the next day; an API prober
    /// sending such "dates" as invalid found them accepted.
    public static func fieldsInRange(_ b: [UInt8]) -> Bool {
        func number(_ range: Range<Int>) -> Int? {
            guard range.upperBound <= b.count else { return nil }
            var n = 0
            for c in b[range] {
                guard c >= 0x30, c <= 0x39 else { return nil }
                n = n * 10 + Int(c - 0x30)
            }
            return n
        }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
              let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19),
              (1...12).contains(month), hour < 24, minute < 60, second < 60 else { return false }
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
        guard (1...days).contains(day) else { return false }
        if b.last == UInt8(ascii: "Z") { return true }
        guard b.count >= 6, let offsetHours = number(b.count - 5..<b.count - 3), let offsetMinutes = number(b.count - 2..<b.count) else {
            return false
        }
        return offsetHours < 24 && offsetMinutes < 60
    }

    /// `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)`, year not 0000.
    static func isGraphShape(_ b: [UInt8]) -> Bool {
        func digits(_ range: Range<Int>) -> Bool { range.upperBound <= b.count && b[range].allSatisfy { $0 >= 0x30 && $0 <= 0x39 } }
        func at(_ i: Int, _ c: Character) -> Bool { i < b.count && b[i] == c.asciiValue! }
        guard b.count >= 20, b.count <= 35, digits(0..<4), !b[0..<4].allSatisfy({ $0 == 0x30 }), at(4, "-"), digits(5..<7), at(7, "-"),
              digits(8..<10), at(10, "T"), digits(11..<13), at(13, ":"), digits(14..<16), at(16, ":"), digits(17..<19) else { return false }
        var i = 19
        if at(i, ".") {
            let start = i + 1
            i = start
            while i < b.count, b[i] >= 0x30, b[i] <= 0x39 { i += 1 }
            guard (1...9).contains(i - start) else { return false }
        }
        if at(i, "Z") { return i + 1 == b.count }
        guard at(i, "+") || at(i, "-") else { return false }
        return i + 6 == b.count && digits(i + 1..<i + 3) && at(i + 3, ":") && digits(i + 4..<i + 6)
    }

    // ISO8601DateFormatter is not Sendable; one per call is cheap next to an HTTP request.
    private static func formatter(fractional: Bool) -> ISO8601DateFormatter {
        let f = ISO8601DateFormatter()
        f.formatOptions = fractional ? [.withInternetDateTime, .withFractionalSeconds] : [.withInternetDateTime]
        return f
    }
}
