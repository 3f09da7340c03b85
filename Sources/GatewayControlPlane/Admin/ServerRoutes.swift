import Foundation
import GatewayAgentAPI
import GatewayAuth
import Hummingbird

/// `/beta/deviceManagement/microsoftTunnelSites/{siteId}/microsoftTunnelServers` and the
/// server actions. `tunnelServerHealthStatus` is evaluated at read time.
extension ControlPlane {
    func addServerRoutes(_ router: RouteTable) {
        let schema = GraphSchemas.server
        let base = Self.sitesPath + "/{siteId}/microsoftTunnelServers"
        HTTP.route(router, base, [
            .get: { request, context in
                let site = try await self.requireSite(try HTTP.parameter(context, "siteId"))
                let query = try ODataQuery(parameters: HTTP.query(request), schema: schema)
                let thresholds = try await self.thresholdMap()
                var items: [[String: JSONValue]] = []
                for server in try await self.store.listServers(siteId: site.id) {
                    let health = try await self.evaluate(server, site: site, thresholds: thresholds)
                    items.append(self.serverJSON(server, status: health.status))
                }
                return HTTP.collection(query.apply(to: items).map { withODataType($0, schema) },
                                       context: "deviceManagement/microsoftTunnelSites('\(site.id)')/microsoftTunnelServers")
            },
        ])
        HTTP.route(router, base + "/{serverId}", [
            .get: { request, context in
                let (site, server) = try await self.requireServer(context)
                let query = try ODataQuery(parameters: HTTP.query(request), schema: schema)
                let health = try await self.evaluate(server, site: site, thresholds: try await self.thresholdMap())
                return HTTP.json(.object(withODataType(query.project(self.serverJSON(server, status: health.status)), schema)))
            },
            .patch: { request, context in
                let (site, server) = try await self.requireServer(context)
                let body = try GraphBody.parse(try await HTTP.body(request), schema: schema)
                var updated = server
                if case .string(let name)? = body.values["displayName"] {
                    let trimmed = name.trimmingCharacters(in: .whitespaces)
                    guard !trimmed.isEmpty, trimmed.count <= 200 else {
                        throw GraphError.validation("displayName: 1 to 200 characters")
                    }
                    updated.displayName = trimmed
                    _ = try await self.store.renameServer(id: server.id, displayName: trimmed)
                }
                let health = try await self.evaluate(updated, site: site, thresholds: try await self.thresholdMap())
                return HTTP.json(.object(withODataType(self.serverJSON(updated, status: health.status), schema)))
            },
            .delete: { _, context in
                let (_, server) = try await self.requireServer(context)
                // From here on the server's agent certificate is refused (its row is gone
                // and the certificates are marked revoked).
                guard let blobs = try await self.store.deleteServer(id: server.id) else { throw Self.serverNotFound(server.id) }
                self.removeLogBlobs(blobs)
                return HTTP.noContent()
            },
        ])
        HTTP.route(router, base + "/{serverId}/getHealthMetrics", [
            .post: { request, context in
                let (_, server) = try await self.requireServer(context)
                let body = try GraphBody.parse(try await HTTP.body(request), schema: GraphSchemas.healthMetricsRequest, allowEmpty: true)
                var names = MetricValues.names
                if case .array(let items)? = body.values["metricNames"], !items.isEmpty {
                    names = items.compactMap(\.stringValue)
                    let unknown = names.filter { !MetricValues.names.contains($0) }
                    if !unknown.isEmpty {
                        throw GraphError.validation("unknown metric name(s) \(unknown.joined(separator: ", ")) (known: \(MetricValues.names.joined(separator: ", ")))")
                    }
                }
                var values: [JSONValue] = []
                if let latest = try await self.store.latestHealth(serverId: server.id) {
                    for name in names {
                        if let v = MetricValues.long(name, latest.report, at: self.now()) {
                            values.append(.object(["name": .string(name), "value": .int(v)]))
                        }
                    }
                }
                return HTTP.json(.object(["@odata.context": .string("/beta/$metadata#Collection(microsoft.graph.keyLongValuePair)"), "value": .array(values)]))
            },
        ])
        HTTP.route(router, base + "/{serverId}/getHealthMetricTimeSeries", [
            .post: { request, context in
                let (_, server) = try await self.requireServer(context)
                let body = try GraphBody.parse(try await HTTP.body(request), schema: GraphSchemas.timeSeriesRequest)
                guard case .string(let name)? = body.values["metricName"] else { throw GraphError.validation("metricName is required") }
                guard MetricValues.names.contains(name) else {
                    throw GraphError.validation("unknown metricName '\(name)' (known: \(MetricValues.names.joined(separator: ", ")))")
                }
                let from = body.values["startDateTime"]?.stringValue.flatMap(GraphDateParsing.parse)
                let to = body.values["endDateTime"]?.stringValue.flatMap(GraphDateParsing.parse)
                let samples = try await self.store.healthSamples(serverId: server.id, from: from, to: to, limit: self.options.maxTimeSeriesPoints)
                let points: [JSONValue] = samples.compactMap { s in
                    MetricValues.long(name, s.report, at: s.dateTime).map {
                        .object(["dateTime": .string(GraphDate.string(s.dateTime)), "value": .int($0)])
                    }
                }
                return HTTP.json(.object(["@odata.context": .string("/beta/$metadata#Collection(microsoft.graph.metricTimeSeriesDataPoint)"), "value": .array(points)]))
            },
        ])
        // Extension: drain the server (docs/site.md, "Drain"): its agent drains the gateway at
        // its next check-in — the liveness page answers 503, no new session, and after
        // `handOverAfterSeconds` (default 10; `wait: true` never) every client is handed to
        // the Site's other servers with its ticket. `undrain` ends it.
        HTTP.route(router, base + "/{serverId}/drain", [
            .post: { request, context in
                let (_, server) = try await self.requireServer(context)
                let body = try GraphBody.parse(try await HTTP.body(request), schema: GraphSchemas.drainRequest, allowEmpty: true)
                var after: Int64 = 10
                if case .int(let n)? = body.values["handOverAfterSeconds"] { after = n }
                guard (0...86_400).contains(after) else { throw GraphError.validation("handOverAfterSeconds must be within 0...86400, got \(after)") }
                if case .bool(true)? = body.values["wait"] { after = -1 }
                _ = try await self.store.setDrain(serverId: server.id, handOverAfter: after)
                self.logger.notice("server.drain_requested", metadata: ["server": "\(server.id)", "hand_over": "\(after < 0 ? "never (wait)" : "after \(after) s")"])
                return HTTP.noContent()
            },
        ])
        HTTP.route(router, base + "/{serverId}/undrain", [
            .post: { _, context in
                let (_, server) = try await self.requireServer(context)
                _ = try await self.store.setDrain(serverId: server.id, handOverAfter: nil)
                self.logger.notice("server.undrain_requested", metadata: ["server": "\(server.id)"])
                return HTTP.noContent()
            },
        ])
        HTTP.route(router, base + "/{serverId}/createServerLogCollectionRequest", [
            .post: { request, context in
                let (site, server) = try await self.requireServer(context)
                let body = try GraphBody.parse(try await HTTP.body(request), schema: GraphSchemas.logCollectionRequest)
                guard let start = body.values["startDateTime"]?.stringValue.flatMap(GraphDateParsing.parse),
                      let end = body.values["endDateTime"]?.stringValue.flatMap(GraphDateParsing.parse) else {
                    throw GraphError.validation("startDateTime and endDateTime are required")
                }
                guard start < end else { throw GraphError.validation("startDateTime must be before endDateTime") }
                let now = self.now()
                let record = LogCollectionRecord(id: Secrets.newId(), serverId: server.id, siteId: site.id, status: .pending,
                                                 startDateTime: start, endDateTime: end, requestDateTime: now,
                                                 expiryDateTime: now.addingTimeInterval(self.options.logRetention))
                try await self.store.insertLogCollection(record)
                // OData answers an action's single entity as the entity itself.
                var entity = withODataType(self.logCollectionJSON(record), GraphSchemas.logCollection)
                entity["@odata.context"] = .string("/beta/$metadata#microsoft.graph.microsoftTunnelServerLogCollectionResponse")
                return HTTP.json(.object(entity))
            },
        ])
        // Extension: the session and access events the server's agent forwarded, oldest
        // first. At most `maxSessionEvents` per answer: without `startDateTime` the newest
        // ones (up to `endDateTime`), with it the first ones from it (to page forward).
        // `$filter`/`$select`/`$top` work as on every collection (e.g.
        // `$filter=type eq 'sessionDisconnected'`, pushed into the query); `$top` keeps the
        // newest N without `startDateTime`, the first N with it.
        HTTP.route(router, base + "/{serverId}/sessionEvents", [
            .get: { request, context in
                let (site, server) = try await self.requireServer(context)
                let parameters = try HTTP.query(request)
                let query = try ODataQuery(parameters: parameters, schema: GraphSchemas.sessionEvent)
                func date(_ name: String) throws(GraphError) -> Date? {
                    guard let text = parameters.first(where: { $0.0 == name })?.1 else { return nil }
                    guard let d = GraphDateParsing.parse(text) else { throw GraphError.validation("\(name): not an ISO 8601 date-time: '\(text)'") }
                    return d
                }
                let from = try date("startDateTime")
                let newest = from == nil
                let type = query.filter?.requiredEquality(property: "type")
                var limit = self.options.maxSessionEvents
                // When the database applies the whole filter, $top can be its limit too.
                let wholeFilterInQuery = query.filter == nil || type.map { query.filter == .compare(property: "type", op: .eq, literal: .string($0)) } == true
                if let top = query.top, wholeFilterInQuery { limit = min(limit, top) }
                let events = try await self.store.events(serverId: server.id, from: from, to: try date("endDateTime"),
                                                         type: type, newest: newest, limit: limit)
                var items: [[String: JSONValue]] = events.map { stored in
                    let e = stored.event
                    var o: [String: JSONValue] = ["id": .string(stored.id), "type": .string(e.type.rawValue), "dateTime": .string(e.dateTime)]
                    for (k, v) in [("userId", e.userId), ("userName", e.userName), ("deviceId", e.deviceId), ("sessionId", e.sessionId),
                                   ("clientAddress", e.clientAddress), ("assignedAddress", e.assignedAddress), ("reason", e.reason)] {
                        o[k] = v.map(JSONValue.string) ?? .null
                    }
                    o["bytesIn"] = e.bytesIn.map { .int($0) } ?? .null
                    o["bytesOut"] = e.bytesOut.map { .int($0) } ?? .null
                    return o
                }
                if let filter = query.filter { items = items.filter { filter.matches($0) } }
                if let top = query.top { items = newest ? Array(items.suffix(top)) : Array(items.prefix(top)) }
                return HTTP.collection(items.map(query.project),
                                       context: "deviceManagement/microsoftTunnelSites('\(site.id)')/microsoftTunnelServers('\(server.id)')/sessionEvents")
            },
        ])
        // Extension: every check behind tunnelServerHealthStatus, with its reason.
        HTTP.route(router, base + "/{serverId}/healthChecks", [
            .get: { request, context in
                let (site, server) = try await self.requireServer(context)
                let query = try ODataQuery(parameters: HTTP.query(request), schema: GraphSchemas.healthCheck)
                let health = try await self.evaluate(server, site: site, thresholds: try await self.thresholdMap())
                let items = health.checks.map { c -> [String: JSONValue] in
                    ["id": .string(c.id), "status": .string(c.status.rawValue), "message": .string(c.message), "value": c.value.map(JSONValue.string) ?? .null]
                }
                let response = query.apply(to: items).map(JSONValue.object)
                return HTTP.json(.object([
                    "@odata.context": .string("/beta/$metadata#microsoftTunnelServerHealthChecks"),
                    "tunnelServerHealthStatus": .string(health.status.rawValue),
                    "value": .array(response),
                ]))
            },
        ])
    }

    static func serverNotFound(_ id: String) -> GraphError { .notFound("no microsoftTunnelServer with id '\(id)'") }

    func requireServer(_ context: ControlRequestContext) async throws -> (SiteRecord, ServerRecord) {
        let site = try await requireSite(try HTTP.parameter(context, "siteId"))
        let id = try HTTP.parameter(context, "serverId")
        guard let server = try await store.server(id: id), server.siteId == site.id else { throw Self.serverNotFound(id) }
        return (site, server)
    }

    func serverJSON(_ s: ServerRecord, status: TunnelServerHealthStatus) -> [String: JSONValue] {
        [
            "id": .string(s.id), "displayName": .string(s.displayName), "tunnelServerHealthStatus": .string(status.rawValue),
            "lastCheckinDateTime": s.lastCheckinDateTime.map { .string(GraphDate.string($0)) } ?? .null,
            "agentImageDigest": .null, "serverImageDigest": .null, "deploymentMode": .string(s.deploymentMode),
            "agentVersion": s.agentVersion.map(JSONValue.string) ?? .null, "serverVersion": s.serverVersion.map(JSONValue.string) ?? .null,
            "appliedConfigurationVersion": .int(s.appliedConfigurationVersion),
            "drainRequested": .bool(s.drainHandOverAfter != nil),
            "drainHandOverAfterSeconds": s.drainHandOverAfter.flatMap { $0 < 0 ? nil : JSONValue.int($0) } ?? .null,
            "imageTag": s.imageTag.map(JSONValue.string) ?? .null,
        ]
    }
}
