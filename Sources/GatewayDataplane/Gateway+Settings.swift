import Foundation
import GatewayCore
import GatewayTLS
import GatewayTUN
import GatewayWire
import Logging

/// Live configuration changes: from the agent (`applySettings` on the control socket)
/// and from SIGHUP (re-read `admin-settings.json`). Nothing here drops a session: new
/// sessions get the new settings at CONNECT, existing ones keep what they were given,
/// and a pool change keeps every existing lease (see `AddressPool.changePrefix`).
extension Gateway {
    /// Settings that are bound to sockets opened at start; a change is stored (the agent
    /// writes the file) and reported as needing a restart, the rest is applied now.
    static func restartOnlyChanges(from old: GatewaySettings, to new: GatewaySettings) -> [String] {
        var fields: [String] = []
        if new.listenPort != old.listenPort { fields.append("listenPort") }
        if new.listenAddress != old.listenAddress { fields.append("advancedSettings.listen-address") }
        if new.ipv6Pool != old.ipv6Pool { fields.append("ipv6Network") }
        return fields
    }

    func applySettings(_ request: ApplySettingsRequest) -> ApplySettingsResponse {
        let new: GatewaySettings
        do {
            let admin = try AdminSettings.decode(Data(request.settingsJSON.utf8))
            switch GatewaySettings.validate(admin) {
            case .success(let s): new = s
            case .failure(let e): throw e
            }
        } catch {
            logger.warning("settings.refused", metadata: ["version": "\(request.version.map(String.init) ?? "-")", "error": "\(error)"])
            return ApplySettingsResponse(applied: false, error: "\(error)")
        }
        do {
            let restart = try put(new)
            logger.info("settings.applied", metadata: [
                "version": "\(request.version.map(String.init) ?? "-")", "source": "control socket",
                "sessions.kept": "\(sessions.count)", "pool": "\(settings.pool)",
                "routes.include": "\(new.routeIncludes.count)", "routes.exclude": "\(new.routeExcludes.count)",
                "restart_required": "\(restart.joined(separator: ","))",
            ])
            return ApplySettingsResponse(applied: true, restartRequired: restart, sessionsKept: sessions.count)
        } catch {
            // The document was good; the host refused a step. Nothing changed, and the
            // same version may well work next time (e.g. a transient nft failure).
            logger.error("settings.apply_failed", metadata: ["error": "\(error)"])
            return ApplySettingsResponse(applied: false, error: "the gateway host could not be changed: \(error)", retryable: true)
        }
    }

    /// SIGHUP: a new certificate in the state directory is used for connections from now
    /// on; a certificate that does not load leaves the current one in place.
    func reloadCertificate() {
        guard let load = options.reloadCertificate else { return }
        do {
            tls = try TLSServerContext(certificate: try load())
            logger.info("tls.certificate_reloaded", metadata: ["sessions.kept": "\(sessions.count)", "applies_to": "new connections"])
        } catch {
            logger.error("tls.certificate_reload_failed", metadata: ["error": "\(error)", "kept": "the certificate in use"])
        }
    }

    func reloadSettings() {
        do {
            let new = try options.reload()
            let restart = try put(new)
            logger.info("gateway.reloaded", metadata: [
                "sessions.kept": "\(sessions.count)", "pool": "\(settings.pool)",
                "routes.include": "\(new.routeIncludes.count)", "routes.exclude": "\(new.routeExcludes.count)",
                "restart_required": "\(restart.joined(separator: ","))",
            ])
        } catch {
            logger.error("gateway.reload_failed", metadata: ["error": "\(error)"])
        }
    }

    /// Puts validated settings in force. Host changes (MTU, TUN address, NAT rules) are
    /// made first and undone if a later one fails, so on a thrown error neither the host
    /// nor the in-memory state has changed.
    private func put(_ requested: GatewaySettings) throws -> [String] {
        var new = requested
        let restart = Self.restartOnlyChanges(from: settings, to: new)
        // Keep what the open sockets are bound to; the file carries the new values to
        // the next start.
        new.listenPort = settings.listenPort
        new.listenAddress = settings.listenAddress
        new.ipv6Pool = settings.ipv6Pool

        let oldMTU = settings.advanced.mtu
        if new.advanced.mtu != oldMTU {
            try NetworkSetup.ip(["link", "set", "dev", tun.name, "mtu", "\(new.advanced.mtu)"])
        }
        if new.pool != settings.pool {
            do {
                try renumberPool(to: new.pool)
            } catch {
                if new.advanced.mtu != oldMTU { try? NetworkSetup.ip(["link", "set", "dev", tun.name, "mtu", "\(oldMTU)"]) }
                throw error
            }
        }
        settings = new
        return restart
    }

    /// Moves the pool to `prefix`: the TUN gets the new prefix's gateway address (and so
    /// its route), NAT covers every prefix that still has leases, and prefixes left
    /// without leases lose their address on the TUN.
    private func renumberPool(to prefix: IPv4Prefix) throws {
        var next = pool
        let alreadyRouted = pool.routedPrefixes.contains(prefix)
        let gone = next.changePrefix(to: prefix)
        try NetworkSetup.ip(["addr", "replace", "\(next.gatewayAddress)/\(prefix.length)", "dev", tun.name])
        do {
            try PATRules(pools: next.routedPrefixes, pool6: nil, tunName: tun.name).apply()
        } catch {
            // Undo the address so the host matches the unchanged pool.
            if !alreadyRouted { removeTunPrefix(prefix) }
            throw error
        }
        pool = next
        for old in gone { removeTunPrefix(old) }
        logger.info("pool.renumbered", metadata: [
            "pool": "\(prefix)", "retired": "\(pool.retired.map { "\($0.prefix) (\($0.inUse) leases)" }.joined(separator: ", "))",
        ])
    }

    /// Called when a release emptied a retired block.
    func retiredPrefixEmptied(_ prefix: IPv4Prefix) {
        removeTunPrefix(prefix)
        do {
            try PATRules(pools: pool.routedPrefixes, pool6: nil, tunName: tun.name).apply()
        } catch {
            logger.error("pool.nat_update_failed", metadata: ["error": "\(error)"])
        }
        logger.info("pool.retired_prefix_released", metadata: ["prefix": "\(prefix)"])
    }

    private func removeTunPrefix(_ prefix: IPv4Prefix) {
        let gw = IPv4Address(prefix.network.value + 1)
        do {
            try NetworkSetup.ip(["addr", "del", "\(gw)/\(prefix.length)", "dev", tun.name])
        } catch {
            logger.warning("pool.tun_address_remove_failed", metadata: ["prefix": "\(prefix)", "error": "\(error)"])
        }
    }
}
