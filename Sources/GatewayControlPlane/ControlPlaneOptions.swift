import Foundation
import GatewayWire

/// The control plane's version; agents and gateways on another version get a
/// version-currency warning.
public enum ControlPlaneVersion {
    public static var string: String { ProductVersion.string }
}

/// Run-time settings of one control-plane instance (the `serve` options).
public struct ControlPlaneOptions: Sendable {
    /// Holds the CA, the TLS identity, the admin token, the database and uploaded logs.
    public var stateDirectory: String
    /// `https://host:port` as admins reach this instance; download URLs are built on it.
    public var publicBaseURL: String
    public var checkinInterval: TimeInterval = 60
    public var reportInterval: TimeInterval = 60
    public var offlineAfter: TimeInterval = 300
    public var agentCertificateLifetime: TimeInterval = 30 * 24 * 3600
    /// Largest log upload accepted from an agent.
    public var maxLogUploadBytes: Int = 64 << 20
    /// How long a `createDownloadUrl` link works.
    public var downloadURLLifetime: TimeInterval = 600
    /// How long uploaded logs are kept available (Graph's `expiryDateTime`).
    public var logRetention: TimeInterval = 7 * 24 * 3600
    /// Most points one `getHealthMetricTimeSeries` answer holds (the newest in the window).
    public var maxTimeSeriesPoints: Int = 1440
    /// Most events one `sessionEvents` answer holds.
    public var maxSessionEvents: Int = 10_000
    /// Health reports, session events and report ids older than this are deleted by the
    /// retention task (`--retention-days`).
    public var retention: TimeInterval = 30 * 24 * 3600
    /// How often the retention task runs (also once at start).
    public var retentionInterval: TimeInterval = 600
    public var version: String = ControlPlaneVersion.string
    /// The image tag every Site's servers should run (`--gateway-release`): a server on
    /// another tag makes its Site `upgradeAvailable`, and a rolling upgrade moves it there
    /// (docs/site.md). nil: none published, so no Site upgrades — never a guess, since moving
    /// servers drains them and a wrong tag would be a downgrade.
    public var gatewayRelease: String?
    /// A connection whose TLS handshake has not completed this long after it was accepted
    /// is closed (`--tls-handshake-timeout`).
    public var tlsHandshakeTimeout: TimeInterval = 10
    /// An HTTP connection with no request in progress and nothing read for this long is
    /// closed (`--idle-timeout`).
    public var idleTimeout: TimeInterval = 60
    /// Open connections from one source (an IPv4 address or an IPv6 /64); the next one is
    /// closed at once (`--max-connections-per-source`).
    public var maxConnectionsPerSource: Int = 64
    /// Open connections in all (`--max-connections`).
    public var maxConnections: Int = 4096
    /// Failed admin authentications per source before a lockout (429), and its length.
    public var adminAuthThrottle = AdminAuthThrottle.Settings()

    public init(stateDirectory: String, publicBaseURL: String) {
        self.stateDirectory = stateDirectory
        self.publicBaseURL = publicBaseURL
    }

    var logsDirectory: String { stateDirectory + "/logs" }
}
