import Foundation
import GatewayAgentAPI
import GatewayCore

/// A Site as stored: its Graph properties plus what only the control plane knows.
public struct SiteRecord: Sendable, Equatable, Codable {
    public var id: String
    public var displayName: String
    public var description: String?
    public var publicAddress: String?
    public var upgradeWindowUtcOffsetInMinutes: Int?
    public var upgradeWindowStartTime: String?
    public var upgradeWindowEndTime: String?
    public var upgradeAutomatically: Bool?
    public var upgradeAvailable: Bool?
    public var internalNetworkProbeUrl: String?
    public var enableCertificatePinning: Bool?
    public var roleScopeTagIds: [String]?
    /// The Server configuration the Site uses (Graph's navigation property).
    public var configurationId: String?
    /// Bumps whenever the configuration or the choice of configuration changes. Never goes back.
    public var configurationVersion: Int64
    /// The last `requestUpgrade` not fulfilled yet (cleared when the Site runs the release).
    public var upgradeRequestedDateTime: Date?
    /// The rolling upgrade under way, or the one that failed (`RollingUpgradePolicy`).
    public var upgrade: SiteUpgradeState?

    public init(id: String, displayName: String) {
        self.id = id
        self.displayName = displayName
        self.configurationVersion = 0
    }

    /// The version the agents see: 0 while the Site has no configuration.
    public var effectiveConfigurationVersion: Int64 { configurationId == nil ? 0 : configurationVersion }
}

public struct ServerRecord: Sendable, Equatable {
    public var id: String
    public var siteId: String
    public var displayName: String
    public var deploymentMode: String
    public var createdDateTime: Date
    public var lastCheckinDateTime: Date?
    public var agentVersion: String?
    public var serverVersion: String?
    public var appliedConfigurationVersion: Int64
    public var lastApply: ConfigurationApplyResult?
    /// An administrator asked for a drain: seconds before the hand-over, -1 to wait; nil: none.
    public var drainHandOverAfter: Int64?
    /// The image tag the server's containers run, as its agent reported it; nil outside containers.
    public var imageTag: String?
    /// Its agent's last report on an upgrade the Site asked of it.
    public var upgradeReport: UpgradeReport?
    /// Sessions and `max-sessions` (0: none) at its last check-in; nil: not reported.
    public var sessions: Int?
    public var sessionLimit: Int?

    public init(id: String, siteId: String, displayName: String, deploymentMode: String = "standaloneRootful",
                createdDateTime: Date, lastCheckinDateTime: Date? = nil, agentVersion: String? = nil,
                serverVersion: String? = nil, appliedConfigurationVersion: Int64 = 0, lastApply: ConfigurationApplyResult? = nil) {
        self.id = id
        self.siteId = siteId
        self.displayName = displayName
        self.deploymentMode = deploymentMode
        self.createdDateTime = createdDateTime
        self.lastCheckinDateTime = lastCheckinDateTime
        self.agentVersion = agentVersion
        self.serverVersion = serverVersion
        self.appliedConfigurationVersion = appliedConfigurationVersion
        self.lastApply = lastApply
    }
}

/// A join token row. Only the SHA-256 of the secret is kept.
public struct JoinTokenRecord: Sendable, Equatable {
    public var id: String
    public var siteId: String
    public var secretSHA256: String
    public var createdDateTime: Date
    public var expirationDateTime: Date
    /// How many servers it may enroll (1: the usual one-time token; more for an
    /// orchestrator's identical pods, deploy/kubernetes).
    public var maxUses: Int

    public init(id: String, siteId: String, secretSHA256: String, createdDateTime: Date, expirationDateTime: Date, maxUses: Int = 1) {
        self.id = id
        self.siteId = siteId
        self.secretSHA256 = secretSHA256
        self.createdDateTime = createdDateTime
        self.expirationDateTime = expirationDateTime
        self.maxUses = maxUses
    }
}

/// A certificate this control plane issued to an agent.
public struct IssuedCertificate: Sendable, Equatable {
    /// Lowercase hex of the serial number's bytes.
    public var serial: String
    public var serverId: String
    public var notBefore: Date
    public var notAfter: Date
    public var revoked: Bool

    public init(serial: String, serverId: String, notBefore: Date, notAfter: Date, revoked: Bool = false) {
        self.serial = serial
        self.serverId = serverId
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.revoked = revoked
    }
}

public struct ThresholdOverride: Sendable, Equatable {
    public var id: String
    public var healthyThreshold: Int64
    public var unhealthyThreshold: Int64
    public init(id: String, healthyThreshold: Int64, unhealthyThreshold: Int64) {
        self.id = id
        self.healthyThreshold = healthyThreshold
        self.unhealthyThreshold = unhealthyThreshold
    }
}

public struct HealthSample: Sendable, Equatable {
    public var serverId: String
    /// The agent's time of the report, never later than `receivedDateTime`.
    public var dateTime: Date
    /// When the control plane received it (orders "latest" and drives the report-age check).
    public var receivedDateTime: Date
    public var report: HealthReport
    public init(serverId: String, dateTime: Date, receivedDateTime: Date? = nil, report: HealthReport) {
        self.serverId = serverId
        self.dateTime = dateTime
        self.receivedDateTime = receivedDateTime ?? dateTime
        self.report = report
    }
}

public struct LogCollectionRecord: Sendable, Equatable {
    public enum Status: String, Sendable, CaseIterable { case pending, completed, failed }
    public var id: String
    public var serverId: String
    public var siteId: String
    public var status: Status
    public var startDateTime: Date
    public var endDateTime: Date
    public var sizeInBytes: Int64
    public var requestDateTime: Date
    public var expiryDateTime: Date
    public var failureMessage: String?
    /// File holding the uploaded bytes (under the state directory), once completed.
    public var blobPath: String?

    public init(id: String, serverId: String, siteId: String, status: Status, startDateTime: Date, endDateTime: Date,
                sizeInBytes: Int64 = 0, requestDateTime: Date, expiryDateTime: Date, failureMessage: String? = nil, blobPath: String? = nil) {
        self.id = id
        self.serverId = serverId
        self.siteId = siteId
        self.status = status
        self.startDateTime = startDateTime
        self.endDateTime = endDateTime
        self.sizeInBytes = sizeInBytes
        self.requestDateTime = requestDateTime
        self.expiryDateTime = expiryDateTime
        self.failureMessage = failureMessage
        self.blobPath = blobPath
    }
}

public enum DeleteOutcome: Sendable, Equatable {
    case deleted
    case notFound
    /// Still referenced; the ids that reference it.
    case inUse([String])
}

/// A join token checked before enrollment does any work: valid (for this Site) or why not.
public enum JoinTokenCheck: Sendable, Equatable {
    case valid(siteId: String)
    case refused(EnrollmentOutcome)
}

/// What one retention pass deleted.
public struct PruneOutcome: Sendable, Equatable {
    public var healthReports = 0
    public var events = 0
    public var reportIds = 0
    public var logCollections = 0
    /// Blob files of the deleted log collections (the caller removes them).
    public var blobPaths: [String] = []
    public init() {}
}

public enum EnrollmentOutcome: Sendable, Equatable {
    case enrolled
    case unknownToken
    case wrongSecret
    case alreadyUsed
    case expired
    case siteMissing
}

/// One session or access event as the agent reported it; `id` is the report id the
/// agent gave it (unique, so a retried batch never shows an event twice).
public struct StoredEvent: Sendable, Equatable {
    public var id: String
    public var serverId: String
    public var event: AgentEvent
    public init(id: String, serverId: String, event: AgentEvent) {
        self.id = id
        self.serverId = serverId
        self.event = event
    }
}
