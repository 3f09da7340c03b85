import Foundation
import GatewayIPC
import GatewayWire
import Logging

/// The ticket keys mstunnel-auth seals and opens with, and where they came from
/// (docs/site.md, "Site keys"):
///
/// - `file`: `--ticket-keys FILE`, kept by the operator; nothing else may replace them.
/// - `site`: the Site's keys from the control plane, handed over by the agent
///   (`installTicketKeys`) and kept in auth's own directory (`site-keys.json`, 0600), so a
///   restart of auth seals with them again before the agent's next check-in.
/// - `local`: a key of this server's own, made at first start (`ticket-keys.json`).
///
/// The local keys keep opening after Site keys arrive, so the tickets this server gave out
/// before it joined a Site (or before the control plane was reachable) stay good here.
public final class TicketKeyring: @unchecked Sendable {
    // @unchecked: `current` and `source` are only touched under `lock`.
    private let lock = Mutex()
    private var current: TicketSealer
    private var currentSource: String
    private let local: [TicketSealer.Key]
    /// Where installed Site keys are kept; nil when `--ticket-keys` decides.
    private let siteFile: String?
    private let logger: Logger

    /// A fixed sealer (a key file, or tests): installs are refused.
    public init(fixed sealer: TicketSealer, source: String = "file", logger: Logger) {
        current = sealer
        currentSource = source
        local = []
        siteFile = nil
        self.logger = logger
    }

    /// This server's own keys from `localFile` (made if missing), and the Site's from
    /// `siteFile` when an earlier install left them there.
    public init(localFile: String, siteFile: String, logger: Logger) throws {
        let (own, created) = try TicketKeyFile.load(path: localFile, create: true)
        local = Array(own.keys.values)
        self.siteFile = siteFile
        self.logger = logger
        current = own
        currentSource = "local"
        if created { logger.info("auth.tickets.local_key_created", metadata: ["path": "\(localFile)"]) }
        if FileManager.default.fileExists(atPath: siteFile) {
            do {
                let (site, _) = try TicketKeyFile.load(path: siteFile, create: false)
                current = Self.combine(site, local)
                currentSource = "site"
            } catch {
                // The agent hands the keys over again at its next check-in.
                logger.error("auth.tickets.site_keys_unreadable", metadata: ["path": "\(siteFile)", "error": "\(error)",
                                                                              "effect": "sealing with this server's own key until the agent hands them over again"])
            }
        }
    }

    public var sealer: TicketSealer { lock.withLock { current } }
    public var source: String { lock.withLock { currentSource } }

    public var summary: TicketKeysResponse {
        lock.withLock { TicketKeysResponse(sealing: current.sealing.id, keyIds: current.keys.keys.sorted(), source: currentSource) }
    }

    /// The Site's keys, from the agent: checked, written to auth's own directory, sealing
    /// from now on. Throws with the rule broken, or when `--ticket-keys` decides.
    public func install(_ file: TicketKeyFile) throws -> TicketKeysResponse {
        guard let siteFile else {
            throw TicketSealer.TicketError("this mstunnel-auth seals with --ticket-keys; the Site's keys are not taken from the agent")
        }
        let site = try file.sealer()
        let before = summary
        let data = try JSONEncoder().encode(file)
        try PrivateFile.write(data, to: siteFile)
        let combined = Self.combine(site, local)
        lock.withLock {
            current = combined
            currentSource = "site"
        }
        let after = summary
        if after != before {
            logger.info("auth.tickets.keys", metadata: ["sealing": "\(after.sealing)", "keys": "\(after.keyIds.joined(separator: ","))",
                                                        "lifetime_s": "\(combined.lifetime)", "scope": "the Site", "from": "the agent"])
        }
        return after
    }

    /// The Site's keys, and this server's own for opening only (a Site key wins an id clash).
    static func combine(_ site: TicketSealer, _ local: [TicketSealer.Key]) -> TicketSealer {
        let opening = local.filter { site.keys[$0.id] == nil } + Array(site.keys.values)
        return TicketSealer(sealing: site.sealing, opening: opening, lifetime: site.lifetime)
    }
}

/// A file only this process may read, written whole: a fresh file renamed into place, never
/// through a link, fsynced (the session store and the ticket key files).
enum PrivateFile {
    static func write(_ data: Data, to path: String) throws {
        let temp = path + ".tmp"
        _ = unlink(temp)
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw TicketSealer.TicketError("open \(temp): \(String(cString: strerror(errno)))") }
        _ = fchmod(fd, 0o600)
        let written = data.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        close(fd)
        guard written == data.count, synced == 0 else { throw TicketSealer.TicketError("write \(temp): \(String(cString: strerror(errno)))") }
        guard rename(temp, path) == 0 else { throw TicketSealer.TicketError("rename to \(path): \(String(cString: strerror(errno)))") }
    }
}
