import Foundation
import GatewayCore
import GatewaySessionCore
import GatewaySystem
import GatewayHostNetwork
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
            let context = try TLSServerContext(certificate: try load())
            if options.requestClientCertificates { context.requestClientCertificates() }
            tls = context
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

    /// What the host must look like for `pool` and `mtu`: the gateway address of the
    /// current prefix and of every retired prefix that still has leases (each gives the
    /// on-link route to its clients), and NAT for all of them; with `ipv6Network`, the
    /// gateway's IPv6 address (the on-link route to every client's) and NAT for it too.
    static func hostState(pool: AddressPool, leases6: IPv6Leases?, mtu: Int) -> HostNetworkState {
        let prefixes = pool.routedPrefixes
        var addresses = prefixes.map { "\(IPv4Address($0.network.value + 1))/\($0.length)" }
        var nat = prefixes.map { "\($0)" }
        if let leases6 {
            addresses.append(leases6.hostAddress(gateway: pool.gatewayAddress))
            nat.append("\(leases6.prefix)")
        }
        return HostNetworkState(mtu: mtu, addresses: addresses, natPrefixes: nat)
    }

    /// Puts validated settings in force. The host is changed first, in one request to the
    /// helper that is all or nothing, so on a thrown error neither the host nor the
    /// in-memory state has changed.
    private func put(_ requested: GatewaySettings) throws -> [String] {
        var new = requested
        let restart = Self.restartOnlyChanges(from: settings, to: new)
        // Keep what the open sockets are bound to; the file carries the new values to
        // the next start.
        new.listenPort = settings.listenPort
        new.listenAddress = settings.listenAddress
        new.ipv6Pool = settings.ipv6Pool

        var next = pool
        let gone = new.pool != settings.pool ? next.changePrefix(to: new.pool) : []
        if new.pool != settings.pool || new.advanced.mtu != settings.advanced.mtu {
            try host.apply(Self.hostState(pool: next, leases6: leases6, mtu: new.advanced.mtu))
        }
        if new.advanced.poolSlice != next.slice {
            next.setSlice(new.advanced.poolSlice)
            logger.info("pool.slice", metadata: ["slice": "\(new.advanced.poolSlice.map { "\($0)" } ?? "the whole pool")",
                                                 "addresses": "\(next.sliceCapacity)"])
        }
        let reservedChanged = Set(new.advanced.poolReserved.map(\.value)) != next.reservedRequested
        if reservedChanged { reserve(new.advanced.poolReserved, in: &next) }
        if new.advanced.poolSlice != settings.advanced.poolSlice || reservedChanged { pool = next }
        if new.pool != settings.pool {
            pool = next
            logger.info("pool.renumbered", metadata: [
                "pool": "\(new.pool)", "retired": "\(pool.retired.map { "\($0.prefix) (\($0.inUse) leases)" }.joined(separator: ", "))",
                "released": "\(gone.map { "\($0)" }.joined(separator: ", "))",
            ])
        }
        settings = new
        sourceGuard.limits = Self.sourceLimits(new.advanced)
        enforceGroupPolicies()
        return restart
    }

    /// Marks the addresses siblings hold (`pool-reserved`) and says so; an address a
    /// session here holds too is a conflict the log names (it ends with either session).
    func reserve(_ addresses: Set<IPv4Address>, in target: inout AddressPool) {
        let held = target.setReserved(addresses)
        logger.info("pool.reserved", metadata: ["addresses": "\(addresses.count)", "held_here": "\(held.count)",
                                                "why": "held by sibling servers for sessions resumed there"])
        // A session here that is not connected is usually the same session's copy (its
        // ticket made here, its tunnel now at the sibling): no conflict. A connected one is
        // two clients with one address until one of them ends.
        let clash = held.filter { a in target.owner(of: a).flatMap { sessions.session(at: $0) }?.connection != nil }
        if !clash.isEmpty {
            logger.warning("pool.reserved_conflict", metadata: [
                "addresses": "\(clash.prefix(20).map { "\($0)" }.joined(separator: ", "))", "count": "\(clash.count)",
                "meaning": "a connected session here and one at a sibling hold the same address until one of them ends",
            ])
        }
    }

    /// After a configuration change: a session whose user a group policy now denies ends
    /// at once (an admin who locks a group out means now, not at its next login). Other
    /// sessions keep the routes and DNS they were given; they get the new ones at their
    /// next CONNECT, since a client takes routes only when its tunnel starts.
    private func enforceGroupPolicies() {
        var changed = 0
        for s in sessions.all {
            let now = settings.effectivePolicy(for: s.identity.policySubject)
            if now.denied {
                logger.notice("session.denied_by_policy", metadata: sessionMetadata(s, ["policy": "\(now.policyName ?? "")", "when": "configuration changed"]))
                counters.policyDenials += 1
                endSession(s, reason: "denied by group policy '\(now.policyName ?? "")' (configuration changed)")
            } else if now != s.policy {
                changed += 1
            }
        }
        if changed > 0 {
            logger.info("policy.changed", metadata: ["sessions": "\(changed)", "applies": "at each session's next CONNECT"])
        }
    }

    /// Called when a release emptied a retired block: its address and NAT rule go.
    func retiredPrefixEmptied(_ prefix: IPv4Prefix) {
        do {
            try host.apply(Self.hostState(pool: pool, leases6: leases6, mtu: settings.advanced.mtu))
            logger.info("pool.retired_prefix_released", metadata: ["prefix": "\(prefix)"])
        } catch {
            logger.error("pool.host_update_failed", metadata: ["prefix": "\(prefix)", "error": "\(error)"])
        }
    }

    static func sourceLimits(_ a: GatewaySettings.Advanced) -> SourceGuard<SocketAddress.Key>.Limits {
        .init(maxLoginConnectionsPerSource: a.maxLoginConnectionsPerIP, maxBanScore: a.maxBanScore, banResetSeconds: Int64(a.banResetTime),
              maxLoginConnections: a.maxLoginConnections)
    }
}
