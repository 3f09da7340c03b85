import Foundation
import GatewayAgentAPI
import GatewayAuth
import Hummingbird

/// `/beta/deviceManagement/microsoftTunnelSites` (+ `requestUpgrade`,
/// `microsoftTunnelConfiguration` navigation, and the `createJoinToken` extension).
extension ControlPlane {
    static let sitesPath = "/beta/deviceManagement/microsoftTunnelSites"
    static let configurationNavigation = "microsoftTunnelConfiguration"

    func addSiteRoutes(_ router: RouteTable) {
        let schema = GraphSchemas.site
        let expandable = [Self.configurationNavigation]
        HTTP.route(router, Self.sitesPath, [
            .get: { request, _ in
                let query = try ODataQuery(parameters: HTTP.query(request), schema: schema, expandable: expandable)
                var items: [[String: JSONValue]] = []
                for site in try await self.store.listSites() { items.append(try await self.siteJSON(site, expand: query.expand)) }
                return HTTP.collection(query.apply(to: items).map { withODataType($0, schema) }, context: "deviceManagement/microsoftTunnelSites")
            },
            .post: { request, _ in
                let body = try GraphBody.parse(try await HTTP.body(request), schema: schema)
                var site = SiteRecord(id: Secrets.newId(), displayName: "")
                site.upgradeAutomatically = true
                site.upgradeAvailable = false
                site.upgradeWindowUtcOffsetInMinutes = 0
                site.enableCertificatePinning = false
                site.roleScopeTagIds = ["0"]
                site = try self.merged(site, body.values)
                if let target = try await self.configurationReference(body.navigation) { site.configurationId = target }
                try self.validateSite(site)
                try await self.store.insertSite(site)
                let stored = try await self.store.site(id: site.id) ?? site
                return HTTP.json(.object(withODataType(try await self.siteJSON(stored, expand: []), schema)), status: .created)
            },
        ])
        HTTP.route(router, Self.sitesPath + "/{siteId}", [
            .get: { request, context in
                let id = try HTTP.parameter(context, "siteId")
                let query = try ODataQuery(parameters: HTTP.query(request), schema: schema, expandable: expandable)
                let site = try await self.requireSite(id)
                return HTTP.json(.object(withODataType(query.project(try await self.siteJSON(site, expand: query.expand)), schema)))
            },
            .patch: { request, context in
                let id = try HTTP.parameter(context, "siteId")
                let body = try GraphBody.parse(try await HTTP.body(request), schema: schema)
                var site = try self.merged(try await self.requireSite(id), body.values)
                if body.navigation.isEmpty == false {
                    site.configurationId = try await self.configurationReference(body.navigation)
                }
                try self.validateSite(site)
                guard let stored = try await self.store.updateSite(site) else { throw Self.siteNotFound(id) }
                return HTTP.json(.object(withODataType(try await self.siteJSON(stored, expand: []), schema)))
            },
            .delete: { _, context in
                let id = try HTTP.parameter(context, "siteId")
                switch try await self.store.deleteSite(id: id) {
                case .deleted: return HTTP.noContent()
                case .notFound: throw Self.siteNotFound(id)
                case .inUse(let servers):
                    throw GraphError.conflict("site '\(id)' still has \(servers.count) server(s) (\(servers.prefix(5).joined(separator: ", "))); delete them first")
                }
            },
        ])
        HTTP.route(router, Self.sitesPath + "/{siteId}/microsoftTunnelConfiguration", [
            .get: { _, context in
                let site = try await self.requireSite(try HTTP.parameter(context, "siteId"))
                guard let cid = site.configurationId, let c = try await self.store.configuration(id: cid) else {
                    throw GraphError.notFound("site '\(site.id)' has no microsoftTunnelConfiguration")
                }
                return HTTP.json(.object(withODataType(self.configurationJSON(c), GraphSchemas.configuration)))
            },
        ])
        // Graph's requestUpgrade: the Site's servers move to the release one at a time, inside
        // the upgrade window, driven by their check-ins (RollingUpgradePolicy). Also what
        // restarts an upgrade that failed.
        HTTP.route(router, Self.sitesPath + "/{siteId}/requestUpgrade", [
            .post: { _, context in
                let id = try HTTP.parameter(context, "siteId")
                guard let release = self.options.gatewayRelease else {
                    _ = try await self.requireSite(id)
                    throw GraphError(.conflict, code: "noRelease",
                                     "no gateway release is published: start the control plane with --gateway-release TAG (the image tag the servers should run)")
                }
                guard try await self.store.recordUpgradeRequest(siteId: id, at: self.now()) else { throw Self.siteNotFound(id) }
                self.logger.notice("site.upgrade.requested", metadata: ["site": "\(id)", "release": "\(release)",
                                                                       "when": "at the servers' next check-ins, inside the upgrade window"])
                return HTTP.noContent()
            },
        ])
        // Extension: rotate the Site's ticket key (docs/site.md, "Site keys"). The new key is
        // sent to every server at its next check-in and begins to seal once all live servers
        // have it; the old one keeps opening until the tickets it sealed have expired.
        HTTP.route(router, Self.sitesPath + "/{siteId}/rotateTicketKey", [
            .post: { _, context in
                let id = try HTTP.parameter(context, "siteId")
                switch try await self.store.addTicketKey(siteId: id, now: self.now()) {
                case .siteNotFound: throw Self.siteNotFound(id)
                case .rotationInProgress(let pending):
                    throw GraphError(.conflict, code: "rotationInProgress",
                                     "key \(pending) was added earlier and does not seal yet: every live server of the Site must check in with it first")
                case .added(let key):
                    self.logger.info("site.ticket_key.added", metadata: ["site": "\(id)", "key": "\(key)", "sealing": "once every live server has it"])
                    return HTTP.noContent()
                }
            },
        ])
        // Extension: a one-time join token for enrolling a server into this Site.
        HTTP.route(router, Self.sitesPath + "/{siteId}/createJoinToken", [
            .post: { request, context in
                let id = try HTTP.parameter(context, "siteId")
                let body = try GraphBody.parse(try await HTTP.body(request), schema: GraphSchemas.joinTokenRequest, allowEmpty: true)
                _ = try await self.requireSite(id)
                var minutes: Int64 = 60
                if case .int(let m)? = body.values["expirationMinutes"] { minutes = m }
                guard (1...(7 * 24 * 60)).contains(minutes) else {
                    throw GraphError.validation("expirationMinutes must be within 1...10080 (7 days), got \(minutes)")
                }
                var maxUses: Int64 = 1
                if case .int(let n)? = body.values["maxUses"] { maxUses = n }
                guard (1...1000).contains(maxUses) else {
                    throw GraphError.validation("maxUses must be within 1...1000, got \(maxUses)")
                }
                let secret = Secrets.randomToken(bytes: 32)
                let now = self.now()
                let record = JoinTokenRecord(id: Secrets.randomToken(bytes: 12), siteId: id, secretSHA256: Secrets.sha256Hex(Data(secret.utf8)),
                                             createdDateTime: now, expirationDateTime: now.addingTimeInterval(TimeInterval(minutes * 60)),
                                             maxUses: Int(maxUses))
                try await self.store.insertJoinToken(record)
                let token = JoinToken(tokenId: record.id, secret: secret, caSHA256: self.ca.sha256Hex)
                self.logger.info("site.join_token_created", metadata: ["site": "\(id)", "token.id": "\(record.id)", "expires": "\(GraphDate.string(record.expirationDateTime))",
                                                                      "max_uses": "\(maxUses)"])
                return HTTP.json(.object([
                    "joinToken": .string(token.description),
                    "expirationDateTime": .string(GraphDate.string(record.expirationDateTime)),
                    "siteId": .string(id),
                    "maxUses": .int(maxUses),
                ]))
            },
        ])
    }

    static func siteNotFound(_ id: String) -> GraphError { .notFound("no microsoftTunnelSite with id '\(id)'") }

    func requireSite(_ id: String) async throws -> SiteRecord {
        guard let site = try await store.site(id: id) else { throw Self.siteNotFound(id) }
        return site
    }

    /// The Graph view of a Site. The navigation property appears only with `$expand`.
    func siteJSON(_ s: SiteRecord, expand: [String]) async throws -> [String: JSONValue] {
        func str(_ v: String?) -> JSONValue { v.map(JSONValue.string) ?? .null }
        func bool(_ v: Bool?) -> JSONValue { v.map(JSONValue.bool) ?? .null }
        var o: [String: JSONValue] = [
            "id": .string(s.id), "displayName": .string(s.displayName), "description": str(s.description),
            "publicAddress": str(s.publicAddress),
            "upgradeWindowUtcOffsetInMinutes": s.upgradeWindowUtcOffsetInMinutes.map { .int(Int64($0)) } ?? .null,
            "upgradeWindowStartTime": str(s.upgradeWindowStartTime), "upgradeWindowEndTime": str(s.upgradeWindowEndTime),
            "upgradeAutomatically": bool(s.upgradeAutomatically), "upgradeAvailable": bool(s.upgradeAvailable),
            "internalNetworkProbeUrl": str(s.internalNetworkProbeUrl), "enableCertificatePinning": bool(s.enableCertificatePinning),
            "roleScopeTagIds": s.roleScopeTagIds.map { .array($0.map(JSONValue.string)) } ?? .null,
            "gatewayRelease": options.gatewayRelease.map(JSONValue.string) ?? .null,
            "upgradeRequestedDateTime": s.upgradeRequestedDateTime.map { .string(GraphDate.string($0)) } ?? .null,
            "upgradeStatus": .string(s.upgrade?.phase.rawValue ?? "none"),
            "upgradeTargetTag": str(s.upgrade?.target), "upgradingServerId": str(s.upgrade?.serverId),
            "upgradedServerCount": s.upgrade.map { .int(Int64($0.upgraded)) } ?? .null,
            "upgradeMessage": str(s.upgrade?.message),
        ]
        if expand.contains(Self.configurationNavigation) {
            if let cid = s.configurationId, let c = try await store.configuration(id: cid) {
                o[Self.configurationNavigation] = .object(configurationJSON(c))
            } else {
                o[Self.configurationNavigation] = .null
            }
        }
        return o
    }

    /// Applies body values (already type-checked) to a Site.
    func merged(_ site: SiteRecord, _ values: [String: JSONValue]) throws(GraphError) -> SiteRecord {
        var object = JSONValue.from(site).objectValue ?? [:]
        for (k, v) in values {
            if (k == "upgradeWindowStartTime" || k == "upgradeWindowEndTime"), case .string(let t) = v {
                object[k] = TimeOfDay.parse(t).map(JSONValue.string) ?? v
            } else {
                object[k] = v
            }
        }
        do {
            return try JSONValue.object(object).decode(SiteRecord.self)
        } catch {
            throw GraphError.validation("the site does not decode: \(error)")
        }
    }

    func validateSite(_ s: SiteRecord) throws(GraphError) {
        var problems: [String] = []
        let name = s.displayName.trimmingCharacters(in: .whitespaces)
        if name.isEmpty { problems.append("displayName: required") }
        if name.count > 200 { problems.append("displayName: at most 200 characters") }
        if let offset = s.upgradeWindowUtcOffsetInMinutes, !(-720...840).contains(offset) {
            problems.append("upgradeWindowUtcOffsetInMinutes: \(offset) is not a UTC offset (-720...840)")
        }
        if let url = s.internalNetworkProbeUrl, !url.isEmpty {
            let c = URLComponents(string: url)
            if c == nil || !["http", "https"].contains(c?.scheme?.lowercased() ?? "") || (c?.host ?? "").isEmpty {
                problems.append("internalNetworkProbeUrl: '\(url)' is not an http(s) URL")
            }
        }
        if let address = s.publicAddress, !address.isEmpty {
            if address.contains("://") || address.contains("/") || address.contains(" ") {
                problems.append("publicAddress: '\(address)' must be a host name or IP address (optionally :port), not a URL")
            }
        }
        if !problems.isEmpty { throw GraphError.validation(problems.joined(separator: "; ")) }
    }

    /// The configuration a body points the Site to: `"microsoftTunnelConfiguration":{"id":…}`
    /// or `"microsoftTunnelConfiguration@odata.bind":"…/microsoftTunnelConfigurations/{id}"`.
    /// nil when the body unassigns it (`null`). Unknown ids are refused.
    func configurationReference(_ navigation: [String: JSONValue]) async throws -> String? {
        guard !navigation.isEmpty else { return nil }
        if navigation.count > 1 {
            throw GraphError.validation("give either microsoftTunnelConfiguration or microsoftTunnelConfiguration@odata.bind, not both")
        }
        let id: String
        switch (navigation[Self.configurationNavigation], navigation[Self.configurationNavigation + "@odata.bind"]) {
        case (.null?, _), (_, .null?):
            return nil
        case (.object(let o)?, nil):
            guard let value = o["id"]?.stringValue, o.keys.allSatisfy({ $0 == "id" || $0 == "@odata.type" }) else {
                throw GraphError.validation("microsoftTunnelConfiguration must be {\"id\": \"<configuration id>\"}")
            }
            id = value
        case (nil, .string(let bind)?):
            guard let parsed = Self.boundId(bind) else {
                throw GraphError.validation("microsoftTunnelConfiguration@odata.bind must end in microsoftTunnelConfigurations/{id} or microsoftTunnelConfigurations('{id}')")
            }
            id = parsed
        default:
            throw GraphError.validation("microsoftTunnelConfiguration must be {\"id\": …} and microsoftTunnelConfiguration@odata.bind a string")
        }
        guard try await store.configuration(id: id) != nil else {
            throw GraphError.validation("microsoftTunnelConfiguration: no configuration with id '\(id)'")
        }
        return id
    }

    static func boundId(_ bind: String) -> String? {
        let marker = "microsoftTunnelConfigurations"
        guard let range = bind.range(of: marker, options: .backwards) else { return nil }
        var rest = Substring(bind[range.upperBound...])
        if rest.hasPrefix("/") {
            rest = rest.dropFirst()
        } else if rest.hasPrefix("('"), rest.hasSuffix("')") {
            rest = rest.dropFirst(2).dropLast(2)
        } else {
            return nil
        }
        guard !rest.isEmpty, !rest.contains("/") else { return nil }
        return String(rest)
    }
}
