import Foundation
import GatewayAgentAPI
import GatewayCore

/// Everything the control plane keeps. `SQLControlStore` implements it on SQLite (the
/// embedded default) and on PostgreSQL (several control-plane instances).
///
/// Methods that must be atomic (spending a join token and creating the server; storing a
/// report batch; bumping Site versions with a configuration change) are single calls, so
/// an implementation runs each in one transaction.
public protocol ControlStore: Sendable {
    // MARK: Server configurations (Graph microsoftTunnelConfiguration, stored as AdminSettings)
    func listConfigurations() async throws -> [AdminSettings]
    func configuration(id: String) async throws -> AdminSettings?
    func insertConfiguration(_ configuration: AdminSettings) async throws
    /// Replaces the configuration and bumps the version of every Site using it. False if missing.
    func updateConfiguration(_ configuration: AdminSettings) async throws -> Bool
    /// Refused (`inUse`) while a Site uses it.
    func deleteConfiguration(id: String) async throws -> DeleteOutcome

    // MARK: Sites
    func listSites() async throws -> [SiteRecord]
    func site(id: String) async throws -> SiteRecord?
    func insertSite(_ site: SiteRecord) async throws
    /// Replaces the Site's properties. When `configurationId` changes, the version bumps.
    /// Returns the stored record, nil if missing.
    func updateSite(_ site: SiteRecord) async throws -> SiteRecord?
    /// Refused (`inUse`) while servers are enrolled in it.
    func deleteSite(id: String) async throws -> DeleteOutcome
    func recordUpgradeRequest(siteId: String, at: Date) async throws -> Bool
    /// In one transaction: the Site's rolling upgrade decided by `RollingUpgradePolicy` over
    /// its servers (live: checked in since `liveSince`) and written back, with
    /// `upgradeAvailable`; nil when there is no such Site.
    func upgradeStep(siteId: String, release: String, now: Date, liveSince: Date,
                     newId: @escaping @Sendable () -> String) async throws -> RollingUpgradePolicy.Outcome?

    // MARK: Servers
    func listServers(siteId: String?) async throws -> [ServerRecord]
    func server(id: String) async throws -> ServerRecord?
    func renameServer(id: String, displayName: String) async throws -> Bool
    /// Deletes the server, revokes its certificates and deletes its log collections.
    /// Nil if there was no such server; otherwise the blob files of the deleted log
    /// collections, for the caller to remove.
    func deleteServer(id: String) async throws -> [String]?
    func recordCheckin(serverId: String, at: Date, request: CheckinRequest) async throws
    /// The foreign leases (addresses held for sessions resumed from a sibling) the Site's
    /// other servers reported, of those that checked in since `liveSince`.
    func siblingForeignLeases(siteId: String, excluding serverId: String, liveSince: Date) async throws -> Set<String>
    /// An administrator's drain of the server (nil: none); false when there is no such server.
    func setDrain(serverId: String, handOverAfter: Int64?) async throws -> Bool
    /// The server's slice of its Site's pool, given the lowest free one of `count` the first
    /// time; nil when every slice is taken.
    func poolSlice(serverId: String, siteId: String, count: Int) async throws -> Int?

    // MARK: Site ticket keys (docs/site.md)
    /// In one transaction: the Site's keys (a first one made if it has none), decided by
    /// `SiteTicketKeyPolicy` over the ticket key ids reported by the Site's servers that
    /// checked in since `liveSince` (`recordCheckin` stored them), with a promotion and
    /// retirements written back.
    func ticketKeys(siteId: String, now: Date, liveSince: Date) async throws -> SiteTicketKeyPolicy.Outcome
    /// A new key for the Site, opening only until every live server has it.
    func addTicketKey(siteId: String, now: Date) async throws -> AddTicketKeyOutcome
    /// Stores `add` (a server's new revocations; expired ones skipped) and returns the Site's
    /// revocations from its other servers after `after`, at most `limit`, with the cursor to
    /// send next time. Expired rows of the Site are dropped on the way.
    func exchangeRevocations(siteId: String, serverId: String, add: [RevokedTicketEntry], after: Int64, limit: Int,
                             now: Date) async throws -> (revoked: [RevokedTicketEntry], cursor: Int64)

    // MARK: Join tokens and enrollment
    func insertJoinToken(_ token: JoinTokenRecord) async throws
    /// In one transaction: checks the token (known, secret, unused, unexpired, Site present),
    /// spends it, creates the server and records its certificate.
    func enroll(tokenId: String, secretSHA256: String, now: Date, server: ServerRecord, certificate: IssuedCertificate) async throws -> EnrollmentOutcome
    /// Checks a token without spending it (known, secret, unused, unexpired, Site present),
    /// so no signing work is done for a bad one; `enroll` checks again when it spends it.
    func checkJoinToken(tokenId: String, secretSHA256: String, now: Date) async throws -> JoinTokenCheck

    // MARK: Agent certificates
    func insertCertificate(_ certificate: IssuedCertificate) async throws
    func certificate(serial: String) async throws -> IssuedCertificate?
    /// The most recently issued certificate of a server.
    func latestCertificate(serverId: String) async throws -> IssuedCertificate?

    // MARK: Health thresholds (overrides of the defaults)
    func thresholdOverrides() async throws -> [ThresholdOverride]
    func setThresholdOverride(_ value: ThresholdOverride) async throws

    // MARK: Reports
    /// Stores each item whose id was never seen from this server; returns every id (new or
    /// seen) and the number already seen. Item times later than `receivedAt` are clamped to it.
    func storeReports(serverId: String, items: [ReportItem], receivedAt: Date) async throws -> ReportAck
    /// The health report received last (by receive time, not the agent's clock).
    func latestHealth(serverId: String) async throws -> HealthSample?
    func healthSamples(serverId: String, from: Date?, to: Date?, limit: Int) async throws -> [HealthSample]
    func eventCount(serverId: String) async throws -> Int
    /// A server's session/access events within [from, to] (and of `type`, compared
    /// case-insensitively, when given), at most `limit`: the newest ones when `newest`, else
    /// the oldest ones; returned in time order, oldest first.
    func events(serverId: String, from: Date?, to: Date?, type: String?, newest: Bool, limit: Int) async throws -> [StoredEvent]

    // MARK: Log collections
    func insertLogCollection(_ record: LogCollectionRecord) async throws
    func logCollection(id: String) async throws -> LogCollectionRecord?
    func listLogCollections() async throws -> [LogCollectionRecord]
    func pendingLogCollections(serverId: String) async throws -> [LogCollectionRecord]
    /// pending → completed, with the uploaded bytes; false if it was not pending.
    func completeLogCollection(id: String, bytes: [UInt8], at: Date) async throws -> Bool
    /// A completed collection's bytes; nil when there are none in the store (a collection
    /// completed before v5 keeps a file, `blobPath`).
    func logCollectionBytes(id: String) async throws -> [UInt8]?
    /// pending → failed; false if it was not pending.
    func failLogCollection(id: String, message: String, at: Date) async throws -> Bool

    // MARK: Liveness
    /// One trivial statement, answered within `limit` (a store still migrating at start is
    /// waited for first): throws when the database does not answer.
    func ping(within limit: Duration) async throws
    /// "sqlite" or "postgres".
    var databaseKind: String { get }

    // MARK: Shared secrets
    /// The secret stored under `name`; the first caller's `create()` result when there is
    /// none yet (instances starting at once agree on one).
    func sharedSecret(name: String, create: @escaping @Sendable () throws -> String, now: Date) async throws -> String

    // MARK: Retention
    /// Deletes health reports and events dated before `olderThan`, report ids received
    /// before it, and log collections whose expiry is before `expiredBefore` (returning their
    /// blob files for the caller to remove).
    func prune(olderThan: Date, expiredBefore: Date) async throws -> PruneOutcome
}

public enum AddTicketKeyOutcome: Sendable, Equatable {
    case added(String)
    case siteNotFound
    /// A key added earlier does not seal yet: one rotation at a time.
    case rotationInProgress(String)
}
