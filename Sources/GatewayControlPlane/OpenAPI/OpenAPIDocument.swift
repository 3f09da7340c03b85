import Foundation
import GatewayAgentAPI
import GatewayAuth
import Hummingbird
import NIOCore

/// The OpenAPI 3.1 description of the control plane's HTTP surface, served at
/// `GET /openapi.json` (no credentials: it holds no secrets) and committed as
/// `docs/openapi.json` (`mstunnel-control openapi` writes it).
///
/// Built from the code, not written beside it: paths are the route constants the route
/// files register, admin entity and body schemas come from `GraphSchemas` (the tables
/// `GraphBody` validates with), enums from the Swift enums. Only the agent bodies' schemas
/// are written out (`AgentSchemas`), and a unit test holds them to the Codable types. Another
/// unit test compares the router's registered routes with `operations`, both ways, so a
/// route cannot be added without being described.
public enum ControlPlaneOpenAPI {
    public static let path = "/openapi.json"

    /// The document as pretty-printed JSON with sorted keys (stable, diffable).
    public static func json(version: String = ControlPlaneVersion.string) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // JSONValue always encodes; an empty object is only a fallback for the impossible.
        return ((try? encoder.encode(document(version: version))) ?? Data("{}".utf8)) + Data("\n".utf8)
    }

    static func document(version: String) -> JSONValue {
        var paths: [String: [String: JSONValue]] = [:]
        for op in OpenAPIOperations.all {
            paths[op.path, default: [:]][op.method.rawValue.lowercased()] = op.json()
        }
        return .object([
            "openapi": .string("3.1.0"),
            "info": .object([
                "title": .string("mstunnel-control"),
                "version": .string(version),
                "description": .string("""
                    The self-hosted control plane of mstunnel: a Graph-beta-shaped admin API under \
                    /beta/deviceManagement (Authorization: Bearer with the local admin token or an admin JWT), \
                    the agent API under /agent/v1 (enrollment with a one-time join token, then the agent's client \
                    certificate over mutual TLS), signed log download links, and health. Errors are OData-shaped \
                    ({"error":{"code","message"}}). See docs/control-plane.md.
                    """),
                "license": .object(["name": .string("See LICENSE in the repository")]),
            ]),
            "tags": .array(OpenAPIOperations.tags.map { .object(["name": .string($0.0), "description": .string($0.1)]) }),
            "paths": .object(paths.mapValues(JSONValue.object)),
            "components": .object([
                "securitySchemes": .object([
                    "adminBearer": .object([
                        "type": .string("http"), "scheme": .string("bearer"),
                        "description": .string("The local admin token (mstunnel-control admin-token) or, with --admin-auth-config, an admin JWT whose roles claim holds --admin-role."),
                    ]),
                    "agentCertificate": .object([
                        "type": .string("mutualTLS"),
                        "description": .string("The agent's client certificate from enrollment, issued by this control plane's CA, for a server that still exists."),
                    ]),
                ]),
                "responses": .object([
                    "Error": .object([
                        "description": .string("An error in the OData shape: 400 (BadRequest, ValidationError), 401, 403, 404, 405 (with Allow), 409, 410, 413, 415, 429 (with Retry-After)."),
                        "content": .object(["application/json": .object(["schema": JS.ref("ODataError")])]),
                    ]),
                ]),
                "schemas": .object(OpenAPISchemas.all),
            ]),
        ])
    }
}

/// One described operation.
struct OpenAPIOperation: Sendable {
    enum Security: Sendable { case admin, agent, none }

    var method: HTTPRequest.Method
    var path: String
    var operationId: String
    var summary: String
    var tag: String
    var security: Security
    var query: [JSONValue] = []
    /// Schema and media type of the body, and whether it may be empty.
    var body: (schema: JSONValue, mediaType: String, required: Bool)? = nil
    /// Status → (media type, schema); nil media type for an empty answer.
    var responses: [(status: Int, description: String, mediaType: String?, schema: JSONValue?)]

    /// `{name}` segments of the path, in order.
    var pathParameters: [String] {
        path.split(separator: "/").compactMap { s in s.hasPrefix("{") && s.hasSuffix("}") ? String(s.dropFirst().dropLast()) : nil }
    }

    func json() -> JSONValue {
        var parameters: [JSONValue] = pathParameters.map { name in
            .object(["name": .string(name), "in": .string("path"), "required": .bool(true),
                     "schema": OpenAPIOperations.pathParameterSchema(name, path: path)])
        }
        parameters += query
        var o: [String: JSONValue] = [
            "operationId": .string(operationId), "summary": .string(summary), "tags": .array([.string(tag)]),
        ]
        if !parameters.isEmpty { o["parameters"] = .array(parameters) }
        switch security {
        case .admin: o["security"] = .array([.object(["adminBearer": .array([])])])
        case .agent: o["security"] = .array([.object(["agentCertificate": .array([])])])
        case .none: o["security"] = .array([])
        }
        if let body {
            o["requestBody"] = .object([
                "required": .bool(body.required),
                "content": .object([body.mediaType: .object(["schema": body.schema])]),
            ])
        }
        var answers: [String: JSONValue] = ["default": .object(["$ref": .string("#/components/responses/Error")])]
        for r in responses {
            var answer: [String: JSONValue] = ["description": .string(r.description)]
            if let mediaType = r.mediaType {
                answer["content"] = .object([mediaType: .object(["schema": r.schema ?? .object([:])])])
            }
            answers[String(r.status)] = .object(answer)
        }
        o["responses"] = .object(answers)
        return .object(o)
    }
}

/// Every operation the router serves, but for `undocumented`.
enum OpenAPIOperations {
    static let tags: [(String, String)] = [
        ("configurations", "Server configurations (microsoftTunnelConfiguration)"),
        ("sites", "Sites (microsoftTunnelSite), their actions and join tokens"),
        ("servers", "Servers enrolled in a Site, their health and events"),
        ("healthThresholds", "Health thresholds (microsoftTunnelHealthThreshold)"),
        ("logCollections", "Log collections and their signed download links"),
        ("agent", "The agent API (mstunnel-agent)"),
        ("service", "Liveness and this description"),
    ]

    /// Routes the router serves that this document leaves out, by path prefix, with why.
    static let undocumented: [(prefix: String, reason: String)] = [
        ("/console", "the admin web console's HTML page (it calls the admin API described here)"),
        ("/dev-issuer/", "the development OIDC issuer, only with --dev-issuer (docs/identity.md)"),
        (ControlPlane.devIssuerAdminPath, "the development issuer's admin routes, only with --dev-issuer"),
    ]
    /// Exact paths left out: `GET /` only redirects to the console.
    static let undocumentedExact: Set<String> = ["/"]

    static func isUndocumented(_ path: String) -> Bool {
        undocumentedExact.contains(path) || undocumented.contains { path == $0.prefix || path.hasPrefix($0.prefix.hasSuffix("/") ? $0.prefix : $0.prefix + "/") }
    }

    static func pathParameterSchema(_ name: String, path: String) -> JSONValue {
        if name == "id", path.hasPrefix(ControlPlane.thresholdsPath) {
            return JS.string("metric name", enumeration: HealthMetric.allCases.map(\.rawValue))
        }
        return JS.string()
    }

    // MARK: - Query options

    static func queryParameter(_ name: String, _ schema: JSONValue, _ description: String) -> JSONValue {
        .object(["name": .string(name), "in": .string("query"), "required": .bool(false), "schema": schema, "description": .string(description)])
    }

    static let select = queryParameter("$select", JS.string(), "comma-separated property names")
    static let filter = queryParameter("$filter", JS.string(maxLength: ODataFilter.maxLength),
                                       "eq ne gt ge lt le, and or not, parentheses, startswith endswith contains; see docs/control-plane.md")
    static let top = queryParameter("$top", JS.integer(minimum: 0, maximum: Int64(ODataQuery.maxTop)), "at most this many items")
    static let expandConfiguration = queryParameter("$expand", JS.string(enumeration: [ControlPlane.configurationNavigation]),
                                                    "the Site's Server configuration")
    static let collectionQuery = [select, filter, top]

    // MARK: - Responses

    static func ok(_ schema: JSONValue, _ description: String = "OK") -> (Int, String, String?, JSONValue?) {
        (200, description, "application/json", schema)
    }
    static func created(_ schema: JSONValue) -> (Int, String, String?, JSONValue?) { (201, "Created", "application/json", schema) }
    static let noContent: (Int, String, String?, JSONValue?) = (204, "No Content", nil, nil)

    static func collection(_ item: JSONValue) -> JSONValue {
        JS.object(["@odata.context": JS.string(), "value": JS.array(item)], required: ["value"])
    }

    static func graphBody(_ name: String) -> (JSONValue, String, Bool) { (JS.ref(name), "application/json", true) }
    static func agentBody(_ name: String) -> (JSONValue, String, Bool) { (JS.ref(name), "application/json", true) }

    // MARK: - The operations

    static var all: [OpenAPIOperation] { admin + agent + service }

    static var admin: [OpenAPIOperation] {
        let configurations = ControlPlane.configurationsPath
        let sites = ControlPlane.sitesPath
        let servers = sites + "/{siteId}/microsoftTunnelServers"
        let server = servers + "/{serverId}"
        let thresholds = ControlPlane.thresholdsPath
        let logs = ControlPlane.logCollectionsPath
        func op(_ method: HTTPRequest.Method, _ path: String, _ id: String, _ tag: String, _ summary: String,
                query: [JSONValue] = [], body: (JSONValue, String, Bool)? = nil,
                _ responses: [(Int, String, String?, JSONValue?)]) -> OpenAPIOperation {
            OpenAPIOperation(method: method, path: path, operationId: id, summary: summary, tag: tag, security: .admin, query: query,
                             body: body.map { (schema: $0.0, mediaType: $0.1, required: $0.2) },
                             responses: responses.map { (status: $0.0, description: $0.1, mediaType: $0.2, schema: $0.3) })
        }
        return [
            op(.get, configurations, "listConfigurations", "configurations", "List Server configurations", query: collectionQuery,
               [ok(collection(JS.ref("microsoftTunnelConfiguration")))]),
            op(.post, configurations, "createConfiguration", "configurations",
               "Create a Server configuration (validated as the gateway validates admin-settings.json)",
               body: graphBody("microsoftTunnelConfigurationCreate"), [created(JS.ref("microsoftTunnelConfiguration"))]),
            op(.get, configurations + "/{id}", "getConfiguration", "configurations", "Get a Server configuration", query: [select],
               [ok(JS.ref("microsoftTunnelConfiguration"))]),
            op(.patch, configurations + "/{id}", "updateConfiguration", "configurations",
               "Change a Server configuration; its Sites' configuration version grows",
               body: graphBody("microsoftTunnelConfigurationUpdate"), [ok(JS.ref("microsoftTunnelConfiguration"))]),
            op(.delete, configurations + "/{id}", "deleteConfiguration", "configurations",
               "Delete a Server configuration (409 while a Site uses it)", [noContent]),

            op(.get, sites, "listSites", "sites", "List Sites", query: collectionQuery + [expandConfiguration],
               [ok(collection(JS.ref("microsoftTunnelSite")))]),
            op(.post, sites, "createSite", "sites", "Create a Site", body: graphBody("microsoftTunnelSiteCreate"),
               [created(JS.ref("microsoftTunnelSite"))]),
            op(.get, sites + "/{siteId}", "getSite", "sites", "Get a Site", query: [select, expandConfiguration],
               [ok(JS.ref("microsoftTunnelSite"))]),
            op(.patch, sites + "/{siteId}", "updateSite", "sites", "Change a Site or the configuration it uses",
               body: graphBody("microsoftTunnelSiteUpdate"), [ok(JS.ref("microsoftTunnelSite"))]),
            op(.delete, sites + "/{siteId}", "deleteSite", "sites", "Delete a Site (409 while it has servers)", [noContent]),
            op(.get, sites + "/{siteId}/microsoftTunnelConfiguration", "getSiteConfiguration", "sites",
               "The Site's Server configuration (navigation property)", [ok(JS.ref("microsoftTunnelConfiguration"))]),
            op(.post, sites + "/{siteId}/requestUpgrade", "requestUpgrade", "sites",
               "Graph's requestUpgrade: the Site's servers move to the control plane's gateway release one at a time, inside the upgrade window (docs/site.md, Rolling upgrade); 409 when no release is published (--gateway-release)", [noContent]),
            op(.post, sites + "/{siteId}/rotateTicketKey", "rotateTicketKey", "sites",
               "Extension: a new ticket key for the Site; it seals once every live server has it (409 while a rotation is in progress)", [noContent]),
            op(.post, sites + "/{siteId}/createJoinToken", "createJoinToken", "sites",
               "Extension: a one-time join token for enrolling a server into the Site",
               body: (JS.ref("createJoinTokenParameters"), "application/json", false), [ok(JS.ref("joinTokenResponse"))]),

            op(.get, servers, "listServers", "servers", "List the Site's servers (health evaluated now)", query: collectionQuery,
               [ok(collection(JS.ref("microsoftTunnelServer")))]),
            op(.get, server, "getServer", "servers", "Get a server", query: [select], [ok(JS.ref("microsoftTunnelServer"))]),
            op(.patch, server, "updateServer", "servers", "Rename a server (displayName only)",
               body: graphBody("microsoftTunnelServerUpdate"), [ok(JS.ref("microsoftTunnelServer"))]),
            op(.delete, server, "deleteServer", "servers",
               "Delete (revoke) a server: its agent certificates are refused from then on", [noContent]),
            op(.post, server + "/drain", "drainServer", "servers",
               "Extension: drain the server at its agent's next check-in (liveness 503, no new session, sessions handed to the Site's other servers)",
               body: (JS.ref("drainParameters"), "application/json", false), [noContent]),
            op(.post, server + "/undrain", "undrainServer", "servers", "Extension: end an administrator's drain", [noContent]),
            op(.post, server + "/getHealthMetrics", "getHealthMetrics", "servers", "Metrics of the latest health report",
               body: (JS.ref("getHealthMetricsParameters"), "application/json", false), [ok(collection(JS.ref("keyLongValuePair")))]),
            op(.post, server + "/getHealthMetricTimeSeries", "getHealthMetricTimeSeries", "servers", "One metric over time, oldest first",
               body: graphBody("getHealthMetricTimeSeriesParameters"), [ok(collection(JS.ref("metricTimeSeriesDataPoint")))]),
            op(.post, server + "/createServerLogCollectionRequest", "createServerLogCollectionRequest", "servers",
               "Ask the server's agent for its logs of a time window", body: graphBody("createServerLogCollectionRequestParameters"),
               [ok(JS.ref("microsoftTunnelServerLogCollectionResponse"))]),
            op(.get, server + "/sessionEvents", "listSessionEvents", "servers",
               "Extension: session and access events the agent forwarded, oldest first",
               query: collectionQuery + [
                   queryParameter("startDateTime", JS.string(format: "date-time"), "the first events from this time (pages forward)"),
                   queryParameter("endDateTime", JS.string(format: "date-time"), "events up to this time"),
               ], [ok(collection(JS.ref("microsoftTunnelSessionEvent")))]),
            op(.get, server + "/healthChecks", "listHealthChecks", "servers", "Extension: every check behind tunnelServerHealthStatus",
               query: collectionQuery, [ok(JS.ref("healthCheckList"))]),

            op(.get, thresholds, "listHealthThresholds", "healthThresholds", "List health thresholds", query: collectionQuery,
               [ok(collection(JS.ref("microsoftTunnelHealthThreshold")))]),
            op(.get, thresholds + "/{id}", "getHealthThreshold", "healthThresholds", "Get one metric's thresholds", query: [select],
               [ok(JS.ref("microsoftTunnelHealthThreshold"))]),
            op(.patch, thresholds + "/{id}", "updateHealthThreshold", "healthThresholds", "Override one metric's thresholds",
               body: graphBody("microsoftTunnelHealthThresholdUpdate"), [ok(JS.ref("microsoftTunnelHealthThreshold"))]),

            op(.get, logs, "listLogCollections", "logCollections", "List log collections", query: collectionQuery,
               [ok(collection(JS.ref("microsoftTunnelServerLogCollectionResponse")))]),
            op(.get, logs + "/{id}", "getLogCollection", "logCollections", "Get a log collection", query: [select],
               [ok(JS.ref("microsoftTunnelServerLogCollectionResponse"))]),
            op(.post, logs + "/{id}/createDownloadUrl", "createDownloadUrl", "logCollections",
               "A signed download link for a completed collection, good for 10 minutes", [ok(JS.ref("downloadUrl"))]),
        ]
    }

    static var agent: [OpenAPIOperation] {
        let base = AgentAPI.basePath
        func op(_ method: HTTPRequest.Method, _ path: String, _ id: String, _ summary: String, security: OpenAPIOperation.Security = .agent,
                body: (JSONValue, String, Bool)?, _ responses: [(Int, String, String?, JSONValue?)]) -> OpenAPIOperation {
            OpenAPIOperation(method: method, path: base + path, operationId: id, summary: summary, tag: "agent", security: security,
                             body: body.map { (schema: $0.0, mediaType: $0.1, required: $0.2) },
                             responses: responses.map { (status: $0.0, description: $0.1, mediaType: $0.2, schema: $0.3) })
        }
        return [
            op(.get, "/ca", "getAgentCA", "The control plane's CA certificate (PEM)", security: .none, body: nil,
               [(200, "OK", "application/x-pem-file", JS.string())]),
            op(.post, "/enroll", "enroll", "Enroll with a one-time join token and a CSR", security: .none,
               body: agentBody("EnrollmentRequest"), [ok(JS.ref("EnrollmentResponse"))]),
            op(.post, "/renew", "renew", "A new certificate for the same server", body: agentBody("RenewalRequest"),
               [ok(JS.ref("EnrollmentResponse"))]),
            op(.post, "/leave", "leave", "The server leaves its Site (its record and certificates go)", body: nil, [noContent]),
            op(.post, "/checkin", "checkin", "Check in: versions, the last apply; answers configuration and actions",
               body: agentBody("CheckinRequest"), [ok(JS.ref("CheckinResponse"))]),
            op(.post, "/reports", "postReports", "A batch of health reports and session events (idempotent by item id)",
               body: agentBody("ReportBatch"), [ok(JS.ref("ReportAck"))]),
            op(.put, "/logCollections/{id}", "uploadLogCollection", "The logs of the server's pending collection (at most 64 MiB)",
               body: (JS.string(format: "binary"), "application/octet-stream", false), [noContent]),
            op(.post, "/logCollections/{id}/failure", "reportLogCollectionFailure", "The agent could not collect the logs",
               body: agentBody("LogCollectionFailure"), [noContent]),
        ]
    }

    static var service: [OpenAPIOperation] {
        [
            OpenAPIOperation(method: .get, path: "/healthz", operationId: "getHealthz",
                             summary: "Liveness: 200 when this instance reaches its database, 503 when not (a balancer leaves it out)",
                             tag: "service", security: .none,
                             responses: [(200, "OK", "application/json",
                                          JS.object(["status": JS.string(enumeration: ["ok"]), "version": JS.string(), "database": JS.string()],
                                                    required: ["status", "version", "database"])),
                                         (503, "the database does not answer", "application/json",
                                          JS.object(["status": JS.string(enumeration: ["unavailable"]), "version": JS.string(), "database": JS.string(),
                                                     "error": JS.string()], required: ["status", "version", "database", "error"]))]),
            OpenAPIOperation(method: .get, path: ControlPlaneOpenAPI.path, operationId: "getOpenAPI", summary: "This description",
                             tag: "service", security: .none,
                             responses: [(200, "OK", "application/json", JS.object([:], required: ["openapi", "paths"]))]),
            OpenAPIOperation(method: .get, path: ControlPlane.downloadsPath + "/{id}", operationId: "downloadLogCollection",
                             summary: "A log collection's bytes; the link's signature is the credential", tag: "logCollections",
                             security: .none,
                             query: [queryParameter("expires", JS.string(), "Unix time the link stops working"),
                                     queryParameter("sig", JS.string(), "HMAC-SHA256 of the id and expires")],
                             responses: [(200, "the uploaded logs", "text/plain", JS.string())]),
        ]
    }
}

/// `components.schemas`.
enum OpenAPISchemas {
    static var all: [String: JSONValue] {
        var s: [String: JSONValue] = [
            "ODataError": JS.object([
                "error": JS.object(["code": JS.string(), "message": JS.string()], required: ["code", "message"]),
            ], required: ["error"]),
            "microsoftTunnelConfiguration": entity(GraphSchemas.configuration),
            "microsoftTunnelConfigurationCreate": request(GraphSchemas.configuration, required: ["displayName", "network"]),
            "microsoftTunnelConfigurationUpdate": request(GraphSchemas.configuration),
            "microsoftTunnelSite": entity(GraphSchemas.site, extra: [
                ControlPlane.configurationNavigation: JS.nullable(JS.ref("microsoftTunnelConfiguration")),
            ]),
            "microsoftTunnelSiteCreate": request(GraphSchemas.site, required: ["displayName"], extra: siteNavigation),
            "microsoftTunnelSiteUpdate": request(GraphSchemas.site, extra: siteNavigation),
            "microsoftTunnelServer": entity(GraphSchemas.server),
            "microsoftTunnelServerUpdate": request(GraphSchemas.server),
            "microsoftTunnelHealthThreshold": entity(GraphSchemas.healthThreshold),
            "microsoftTunnelHealthThresholdUpdate": request(GraphSchemas.healthThreshold),
            "microsoftTunnelServerLogCollectionResponse": entity(GraphSchemas.logCollection),
            "microsoftTunnelSessionEvent": entity(GraphSchemas.sessionEvent),
            "microsoftTunnelServerHealthCheck": entity(GraphSchemas.healthCheck),
            "createServerLogCollectionRequestParameters": parameters(GraphSchemas.logCollectionRequest, required: ["startDateTime", "endDateTime"]),
            "getHealthMetricsParameters": parameters(GraphSchemas.healthMetricsRequest),
            "getHealthMetricTimeSeriesParameters": parameters(GraphSchemas.timeSeriesRequest, required: ["metricName"]),
            "createJoinTokenParameters": parameters(GraphSchemas.joinTokenRequest),
            "drainParameters": parameters(GraphSchemas.drainRequest),
            "joinTokenResponse": JS.object([
                "joinToken": JS.string("mstj1.<id>.<secret>.<ca-sha256>; a secret, shown once"),
                "expirationDateTime": JS.string(format: "date-time"), "siteId": JS.string(), "maxUses": JS.integer(),
            ], required: ["joinToken", "expirationDateTime", "siteId", "maxUses"]),
            "keyLongValuePair": JS.object(["name": JS.string(enumeration: MetricValues.names), "value": JS.integer()], required: ["name", "value"]),
            "metricTimeSeriesDataPoint": JS.object(["dateTime": JS.string(format: "date-time"), "value": JS.integer()],
                                                   required: ["dateTime", "value"]),
            "healthCheckList": JS.object([
                "@odata.context": JS.string(),
                "tunnelServerHealthStatus": JS.string(enumeration: TunnelServerHealthStatus.allCases.map(\.rawValue)),
                "value": JS.array(JS.ref("microsoftTunnelServerHealthCheck")),
            ], required: ["tunnelServerHealthStatus", "value"]),
            "downloadUrl": JS.object(["@odata.context": JS.string(), "value": JS.string(format: "uri")], required: ["value"]),
        ]
        for (name, schema) in AgentSchemas.all { s[name] = schema }
        return s
    }

    /// The navigation property a Site body may set: `{"id": …}` or an `@odata.bind` URL;
    /// null unassigns.
    static let siteNavigation: [String: JSONValue] = [
        ControlPlane.configurationNavigation: JS.nullable(JS.object(
            ["id": JS.string(), "@odata.type": JS.string()], required: ["id"], closed: true)),
        ControlPlane.configurationNavigation + "@odata.bind": JS.nullable(JS.string(
            "…/microsoftTunnelConfigurations/{id} or …/microsoftTunnelConfigurations('{id}')")),
    ]

    /// Enumerated values of read-only string properties, where the code has the enum.
    static let enumerations: [String: [String: [String]]] = [
        GraphSchemas.server.entityType: ["tunnelServerHealthStatus": TunnelServerHealthStatus.allCases.map(\.rawValue)],
        GraphSchemas.logCollection.entityType: ["status": LogCollectionRecord.Status.allCases.map(\.rawValue)],
        GraphSchemas.sessionEvent.entityType: ["type": AgentEvent.Kind.allCases.map(\.rawValue)],
        GraphSchemas.healthCheck.entityType: ["status": HealthCheck.Status.allCases.map(\.rawValue)],
        GraphSchemas.healthThreshold.entityType: ["id": HealthMetric.allCases.map(\.rawValue)],
    ]

    static func fieldSchema(_ type: GraphFieldType) -> JSONValue {
        switch type {
        case .string: return JS.string()
        case .stringArray: return JS.array(JS.string())
        case .int32: return JS.integer(minimum: Int64(Int32.min), maximum: Int64(Int32.max))
        case .int64: return JS.integer()
        case .bool: return JS.boolean
        case .keyValueArray:
            return JS.array(JS.object(["name": JS.string(), "value": JS.string(), "@odata.type": JS.string()],
                                      required: ["name", "value"], closed: true))
        case .objectArray: return JS.array(JS.object([:], description: "members checked by the route (GatewayCore's validation)"))
        case .timeOfDay:
            return JS.string("HH:mm, HH:mm:ss or HH:mm:ss.fffffff", pattern: "^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\\.[0-9]{1,7})?)?$")
        case .dateTime: return JS.string(format: "date-time")
        }
    }

    /// An entity as answered: every property may be null (Graph writes unset ones as null)
    /// and, with `$select`, absent; nothing is required.
    static func entity(_ schema: GraphSchema, extra: [String: JSONValue] = [:]) -> JSONValue {
        var properties: [String: JSONValue] = ["@odata.type": JS.string(), "@odata.context": JS.string()]
        let enums = enumerations[schema.entityType] ?? [:]
        for field in schema.fields {
            var s = fieldSchema(field.type)
            if let values = enums[field.name] { s = JS.string(enumeration: values) }
            if !field.writable { s = JS.with(s, ["readOnly": .bool(true)]) }
            properties[field.name] = JS.nullable(s)
        }
        for (k, v) in extra { properties[k] = v }
        return JS.object(properties, description: schema.entityType)
    }

    /// A POST/PATCH body as `GraphBody.parse` checks it: writable properties typed (null
    /// where the field allows it), read-only ones accepted and ignored (any value), unknown
    /// ones refused.
    static func request(_ schema: GraphSchema, required: [String] = [], extra: [String: JSONValue] = [:]) -> JSONValue {
        let type = "#microsoft.graph.\(schema.entityType)"
        var properties: [String: JSONValue] = ["@odata.type": JS.string(enumeration: [type, String(type.dropFirst())])]
        for field in schema.fields {
            if field.writable {
                let s = fieldSchema(field.type)
                properties[field.name] = field.nullable ? JS.nullable(s) : s
            } else {
                properties[field.name] = .object(["readOnly": .bool(true), "description": .string("read-only: accepted and ignored")])
            }
        }
        for (k, v) in extra { properties[k] = v }
        return JS.object(properties, required: required, closed: true, description: schema.entityType)
    }

    /// An action's parameters: only the named ones, no `@odata.type`.
    static func parameters(_ schema: GraphSchema, required: [String] = []) -> JSONValue {
        var properties: [String: JSONValue] = [:]
        for field in schema.fields {
            var s = fieldSchema(field.type)
            if field.name == "metricName" { s = JS.string(enumeration: MetricValues.names) }
            if field.name == "metricNames" { s = JS.array(JS.string(enumeration: MetricValues.names)) }
            if field.name == "expirationMinutes" { s = JS.integer("default 60", minimum: 1, maximum: 7 * 24 * 60) }
            properties[field.name] = field.nullable ? JS.nullable(s) : s
        }
        return JS.object(properties, required: required, closed: true, description: schema.entityType)
    }
}
