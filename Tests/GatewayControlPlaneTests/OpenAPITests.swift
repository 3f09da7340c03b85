import Foundation
import GatewayAgentAPI
import GatewayAuth
@testable import GatewayControlPlane
import GatewayCore
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

/// The published OpenAPI description (`GET /openapi.json`, `docs/openapi.json`) cannot
/// drift from the code: the router's routes and the described operations are the same set,
/// the agent body schemas have exactly the Codable types' keys, every `$ref` resolves, what
/// the admin API answers is described, and the committed file is the generated one.
@Suite struct OpenAPITests {
    static let committedPath = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("docs/openapi.json").path

    static var document: JSONValue { ControlPlaneOpenAPI.document(version: ControlPlaneVersion.string) }

    /// Path → method names the description holds.
    static var described: [String: Set<String>] {
        var out: [String: Set<String>] = [:]
        for op in OpenAPIOperations.all { out[op.path, default: []].insert(op.method.rawValue) }
        return out
    }

    @Test func everyRoutedOperationIsDescribedAndEveryDescribedOneIsRouted() async throws {
        // With the development issuer too, so its routes are seen and must be on the
        // undocumented list rather than slip through.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mstc-openapi-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let issuer = try await DevIssuer.loadOrCreate(stateDirectory: dir, baseURL: "https://localhost:8443")
        let env = try TestEnv(devIssuer: issuer)
        let registry = RouteRegistry()
        _ = env.controlPlane.router(refuseAmbiguousPaths: true, authenticateBetaPrefix: true, registry: registry)
        let routed = registry.routes
        let documented = routed.filter { !OpenAPIOperations.isUndocumented($0.key) }
        let described = Self.described
        #expect(documented.count >= 30)

        for (path, methods) in documented {
            #expect(described[path] == methods, "router serves \(methods.sorted()) on \(path); the description has \(described[path]?.sorted() ?? [])")
        }
        for (path, methods) in described {
            #expect(documented[path] == methods, "the description has \(methods.sorted()) on \(path); the router serves \(documented[path]?.sorted() ?? [])")
        }
        // Each exclusion still excludes something (a stale entry would hide nothing, or
        // worse, a new route under an old prefix).
        for exclusion in OpenAPIOperations.undocumented {
            #expect(routed.keys.contains { $0 == exclusion.prefix || $0.hasPrefix(exclusion.prefix) }, "nothing routed under \(exclusion.prefix)")
        }
        for path in OpenAPIOperations.undocumentedExact { #expect(routed[path] != nil, "\(path) is not routed") }
        // operationIds are unique (generators name functions after them).
        let ids = OpenAPIOperations.all.map(\.operationId)
        #expect(Set(ids).count == ids.count)
    }

    @Test func committedDocumentIsTheGeneratedOne() throws {
        let committed = try #require(FileManager.default.contents(atPath: Self.committedPath), "docs/openapi.json is missing")
        #expect(committed == ControlPlaneOpenAPI.json(),
                "docs/openapi.json is out of date: regenerate it with `swift run mstunnel-control openapi > docs/openapi.json`")
    }

    @Test func servedWithoutCredentials() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            try await client.execute(uri: ControlPlaneOpenAPI.path, method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "application/json")
                let served = try JSONDecoder().decode(JSONValue.self, from: Data(buffer: response.body))
                #expect(served == Self.document)
                #expect(served["openapi"]?.string == "3.1.0")
            }
        }
    }

    @Test func everyReferenceResolves() {
        let schemas = Self.document["components"]?["schemas"]
        var refs: [String] = []
        func walk(_ v: JSONValue) {
            switch v {
            case .object(let o):
                if case .string(let r)? = o["$ref"] { refs.append(r) }
                o.values.forEach(walk)
            case .array(let a): a.forEach(walk)
            default: break
            }
        }
        walk(Self.document)
        #expect(!refs.isEmpty)
        for ref in refs {
            if ref.hasPrefix("#/components/schemas/") {
                #expect(schemas?[String(ref.dropFirst("#/components/schemas/".count))] != nil, "\(ref) does not resolve")
            } else {
                #expect(ref == "#/components/responses/Error", "unexpected reference \(ref)")
            }
        }
    }

    // MARK: - Agent bodies against their Codable types

    static func keys(_ value: some Encodable) -> Set<String> { Set(JSONValue.from(value).objectValue?.keys ?? [:].keys) }

    static func schemaKeys(_ name: String) -> (properties: Set<String>, required: Set<String>) {
        let schema = AgentSchemas.all[name]
        let properties = Set(schema?["properties"]?.objectValue?.keys ?? [:].keys)
        let required = Set(schema?["required"]?.array.compactMap(\.stringValue) ?? [])
        return (properties, required)
    }

    /// `full` has every optional set, `minimal` none: their keys are the schema's properties
    /// and its required ones (Swift's encoder leaves nil optionals out).
    static func check(_ name: String, full: some Encodable, minimal: some Encodable) {
        let (properties, required) = schemaKeys(name)
        #expect(keys(full) == properties, "\(name): the type encodes \(keys(full).sorted()), the schema has \(properties.sorted())")
        #expect(keys(minimal) == required, "\(name): the type requires \(keys(minimal).sorted()), the schema \(required.sorted())")
    }

    @Test func agentSchemasHaveTheCodableTypesKeys() {
        let date = "2027-01-15T07:00:00Z"
        Self.check("EnrollmentRequest", full: EnrollmentRequest(joinToken: "t", csrPEM: "c", hostname: "h", agentVersion: "v"),
                   minimal: EnrollmentRequest(joinToken: "t", csrPEM: "c", hostname: "h", agentVersion: "v"))
        Self.check("RenewalRequest", full: RenewalRequest(csrPEM: "c"), minimal: RenewalRequest(csrPEM: "c"))
        let enrolled = EnrollmentResponse(serverId: "s", siteId: "t", certificateChainPEM: "c", caCertificatePEM: "a", notAfter: date)
        Self.check("EnrollmentResponse", full: enrolled, minimal: enrolled)
        Self.check("ConfigurationApplyResult", full: ConfigurationApplyResult(version: 1, success: false, message: "m", dateTime: date),
                   minimal: ConfigurationApplyResult(version: 1, success: true, dateTime: date))
        Self.check("CheckinRequest",
                   full: CheckinRequest(agentVersion: "a", serverVersion: "s", appliedConfigurationVersion: 1,
                                        lastApply: ConfigurationApplyResult(version: 1, success: true, dateTime: date), ticketKeyIds: ["k"],
                                        revokedTickets: [], revocationsAfter: 0).with {
                                            $0.foreignLeases = []; $0.imageTag = "1.0"; $0.sessions = 1; $0.sessionLimit = 0
                                            $0.upgrade = UpgradeReport(id: "i", tag: "1.0", state: .succeeded, message: "m", dateTime: date)
                                        },
                   minimal: CheckinRequest(agentVersion: "a", serverVersion: nil, appliedConfigurationVersion: 1, lastApply: nil))
        Self.check("SiteTicketKeys", full: SiteTicketKeys(sealing: "k", keys: [], lifetimeSeconds: 1),
                   minimal: SiteTicketKeys(sealing: "k", keys: [], lifetimeSeconds: 1))
        Self.check("SiteTicketKey", full: SiteTicketKeys.Key(id: "k", key: "a2V5"), minimal: SiteTicketKeys.Key(id: "k", key: "a2V5"))
        Self.check("UpgradeReport", full: UpgradeReport(id: "i", tag: "1.0", state: .failed, message: "m", dateTime: date),
                   minimal: UpgradeReport(id: "i", tag: "1.0", state: .draining, dateTime: date))
        let instruction = UpgradeInstruction(id: "i", tag: "1.0", handOverAfterSeconds: 10, drainTimeoutSeconds: 120)
        Self.check("UpgradeInstruction", full: instruction, minimal: instruction)
        Self.check("PoolSliceAssignment", full: PoolSliceAssignment(index: 1, count: 8), minimal: PoolSliceAssignment(index: 1, count: 8))
        Self.check("DrainInstruction", full: DrainInstruction(handOverAfterSeconds: 1), minimal: DrainInstruction(handOverAfterSeconds: nil))
        Self.check("RevokedTicket", full: RevokedTicketEntry(sessionId: "a", until: 1), minimal: RevokedTicketEntry(sessionId: "a", until: 1))
        Self.check("AgentAction", full: AgentAction(id: "i", type: .collectLogs, startDateTime: date, endDateTime: date),
                   minimal: AgentAction(id: "i", type: .collectLogs))
        Self.check("CheckinResponse",
                   full: CheckinResponse(serverId: "s", siteId: "t", configurationVersion: 1, configuration: AdminSettings(),
                                         internalNetworkProbeUrl: "http://x/", checkinIntervalSeconds: 1, reportIntervalSeconds: 1,
                                         actions: [], renewAfter: date,
                                         ticketKeys: SiteTicketKeys(sealing: "k", keys: [.init(id: "k", key: "a2V5")], lifetimeSeconds: 1),
                                         revokedTickets: [], revocationsCursor: 0).with { $0.drain = DrainInstruction(handOverAfterSeconds: 1); $0.poolSlice = PoolSliceAssignment(index: 0, count: 8); $0.reservedAddresses = []
                                             $0.upgrade = instruction },
                   minimal: CheckinResponse(serverId: "s", siteId: "t", configurationVersion: 1, configuration: nil,
                                            internalNetworkProbeUrl: nil, checkinIntervalSeconds: 1, reportIntervalSeconds: 1,
                                            actions: [], renewAfter: nil))
        Self.check("CertificateReport", full: CertificateReport(subject: "s", notBefore: date, notAfter: date, dnsNames: [], problems: []),
                   minimal: CertificateReport(subject: nil, notBefore: nil, notAfter: nil, dnsNames: [], problems: []))
        Self.check("ProbeReport", full: ProbeReport(url: "u", reachable: true, statusCode: 200, latencyMilliseconds: 1, error: "e"),
                   minimal: ProbeReport(url: "u", reachable: true))
        let refused = RefusedInputReport(malformed: ["dtlsReplayed": 3], connectionsRefused: 1, bans: 1, policyDenials: 1)
        Self.check("RefusedInputReport", full: refused, minimal: RefusedInputReport())
        let gateway = GatewayReport(reachable: true, version: "v", uptimeSeconds: 1, poolSize: 2, poolInUse: 1, authReachable: true, error: "e",
                                    refused: refused)
        Self.check("GatewayReport", full: gateway, minimal: GatewayReport(reachable: false))
        let health = HealthReport(cpuUsagePercent: 1, memoryUsagePercent: 1, diskFreeBytes: 1, currentConnections: 1, throughputBytesPerSecond: 1,
                                  latencyMilliseconds: 1, tlsCertificate: CertificateReport(subject: nil, notBefore: nil, notAfter: nil, dnsNames: [], problems: []),
                                  agentCertificateNotAfter: date, internalNetworkProbe: ProbeReport(url: "u", reachable: true),
                                  gateway: gateway, appliedConfigurationVersion: 1)
        Self.check("HealthReport", full: health, minimal: HealthReport(gateway: gateway, appliedConfigurationVersion: 1))
        let event = AgentEvent(type: .sessionConnected, dateTime: date, userId: "u", userName: "n", deviceId: "d", sessionId: "s",
                               clientAddress: "c", assignedAddress: "a", reason: "r", bytesIn: 1, bytesOut: 1)
        Self.check("AgentEvent", full: event, minimal: AgentEvent(type: .loginRejected, dateTime: date))
        var both = ReportItem(id: "i", createdDateTime: date, health: health)
        both.event = event
        var neither = both
        neither.health = nil
        neither.event = nil
        Self.check("ReportItem", full: both, minimal: neither)
        Self.check("ReportBatch", full: ReportBatch(items: [], droppedSinceLastAck: 1), minimal: ReportBatch(items: []))
        Self.check("ReportAck", full: ReportAck(acknowledged: [], duplicates: 0), minimal: ReportAck(acknowledged: [], duplicates: 0))
        Self.check("LogCollectionFailure", full: LogCollectionFailure(message: "m"), minimal: LogCollectionFailure(message: "m"))
    }

    // MARK: - Admin answers against the entity schemas

    /// Every property the admin API answers is one the entity schema declares (the schemas
    /// leave extra properties open, so a response check alone would not see a new one).
    @Test func adminAnswersHoldOnlyDescribedProperties() async throws {
        let env = try TestEnv()
        let schemas = Self.document["components"]?["schemas"]
        var declaredBySchema: [String: Set<String>] = [:]
        for name in ["microsoftTunnelConfiguration", "microsoftTunnelSite", "microsoftTunnelHealthThreshold"] {
            declaredBySchema[name] = Set((schemas?[name]?["properties"]?.objectValue ?? [:]).keys)
        }
        let declared = declaredBySchema
        try await env.app().test(.router) { client in
            let (cid, sid) = try await Fixtures.siteWithConfiguration(client, probeURL: "http://198.18.1.2/")
            let answers: [(String, String)] = [
                (ControlPlane.configurationsPath + "/\(cid)", "microsoftTunnelConfiguration"),
                (ControlPlane.sitesPath + "/\(sid)?$expand=microsoftTunnelConfiguration", "microsoftTunnelSite"),
                (ControlPlane.thresholdsPath + "/cpuUsage", "microsoftTunnelHealthThreshold"),
            ]
            for (uri, schema) in answers {
                let (status, body) = try await client.admin(.get, uri)
                #expect(status == .ok, "\(uri)")
                let keys = Set((body?.objectValue ?? [:]).keys)
                let described = declared[schema] ?? []
                #expect(!keys.isEmpty)
                #expect(keys.isSubset(of: described), "\(uri) answers \(keys.subtracting(described).sorted()), not in \(schema)")
            }
            let (status, list) = try await client.admin(.get, ControlPlane.sitesPath)
            #expect(status == .ok)
            let listKeys = Set((list?.objectValue ?? [:]).keys)
            #expect(listKeys.isSubset(of: ["@odata.context", "value"]))
        }
    }
}

extension CheckinRequest {
    func with(_ change: (inout CheckinRequest) -> Void) -> CheckinRequest {
        var copy = self
        change(&copy)
        return copy
    }
}

extension CheckinResponse {
    /// A copy changed by `change` (for fields the initializer does not take).
    func with(_ change: (inout CheckinResponse) -> Void) -> CheckinResponse {
        var copy = self
        change(&copy)
        return copy
    }
}
