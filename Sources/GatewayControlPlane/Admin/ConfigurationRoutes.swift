import Foundation
import GatewayAgentAPI
import GatewayAuth
import GatewayCore
import Hummingbird

/// `/beta/deviceManagement/microsoftTunnelConfigurations`: Server configurations.
/// Every write is validated by GatewayCore exactly as the gateway will validate the file,
/// so a configuration the gateway would refuse never reaches a Site.
extension ControlPlane {
    static let configurationsPath = "/beta/deviceManagement/microsoftTunnelConfigurations"

    func addConfigurationRoutes(_ router: RouteTable) {
        let schema = GraphSchemas.configuration
        HTTP.route(router, Self.configurationsPath, [
            .get: { request, _ in
                let query = try ODataQuery(parameters: HTTP.query(request), schema: schema)
                let items = try await self.store.listConfigurations().map { self.configurationJSON($0) }
                return HTTP.collection(query.apply(to: items).map { withODataType($0, schema) }, context: "deviceManagement/microsoftTunnelConfigurations")
            },
            .post: { request, _ in
                let body = try GraphBody.parse(try await HTTP.body(request), schema: schema)
                var object = body.values
                object["id"] = .string(Secrets.newId())
                // Graph's defaults, written out so admins see what is in force.
                if object["listenPort"] == nil || object["listenPort"] == .null { object["listenPort"] = .int(Int64(GatewaySettings.defaultListenPort)) }
                if object["disableUdpConnections"] == nil || object["disableUdpConnections"] == .null { object["disableUdpConnections"] = .bool(false) }
                if object["roleScopeTagIds"] == nil || object["roleScopeTagIds"] == .null { object["roleScopeTagIds"] = .array([.string("0")]) }
                let settings = try self.validatedConfiguration(object)
                try await self.store.insertConfiguration(settings)
                return HTTP.json(.object(withODataType(self.configurationJSON(settings), schema)), status: .created)
            },
        ])
        HTTP.route(router, Self.configurationsPath + "/{id}", [
            .get: { request, context in
                let id = try HTTP.parameter(context, "id")
                let query = try ODataQuery(parameters: HTTP.query(request), schema: schema)
                guard let settings = try await self.store.configuration(id: id) else { throw Self.configurationNotFound(id) }
                return HTTP.json(.object(withODataType(query.project(self.configurationJSON(settings)), schema)))
            },
            .patch: { request, context in
                let id = try HTTP.parameter(context, "id")
                let body = try GraphBody.parse(try await HTTP.body(request), schema: schema)
                guard let current = try await self.store.configuration(id: id) else { throw Self.configurationNotFound(id) }
                var object = JSONValue.from(current).objectValue ?? [:]
                for (k, v) in body.values { object[k] = v }
                object["id"] = .string(id)
                let settings = try self.validatedConfiguration(object)
                guard try await self.store.updateConfiguration(settings) else { throw Self.configurationNotFound(id) }
                return HTTP.json(.object(withODataType(self.configurationJSON(settings), schema)))
            },
            .delete: { _, context in
                let id = try HTTP.parameter(context, "id")
                switch try await self.store.deleteConfiguration(id: id) {
                case .deleted: return HTTP.noContent()
                case .notFound: throw Self.configurationNotFound(id)
                case .inUse(let sites):
                    throw GraphError.conflict("configuration '\(id)' is used by site(s) \(sites.joined(separator: ", ")); point them to another configuration first")
                }
            },
        ])
    }

    static func configurationNotFound(_ id: String) -> GraphError {
        .notFound("no microsoftTunnelConfiguration with id '\(id)'")
    }

    func configurationJSON(_ s: AdminSettings) -> [String: JSONValue] {
        graphEntity(JSONValue.from(s).objectValue ?? [:], schema: GraphSchemas.configuration)
    }

    /// Decodes the merged object and validates it with GatewayCore; stamps lastUpdateDateTime.
    func validatedConfiguration(_ object: [String: JSONValue]) throws(GraphError) -> AdminSettings {
        var settings: AdminSettings
        do {
            settings = try JSONValue.object(object).decode(AdminSettings.self)
        } catch {
            throw GraphError.validation("the configuration does not decode: \(error)")
        }
        var problems: [String] = []
        // Decoding ignores unknown members inside a policy; the file loader does not, and a
        // misspelt `routeInclude` would otherwise silently give the server-wide routes.
        if case .array(let policies) = object["groupPolicies"] {
            for (i, item) in policies.enumerated() {
                let unknown = Set((item.objectValue ?? [:]).keys).subtracting(AdminSettings.GroupPolicySettings.knownKeys)
                if !unknown.isEmpty { problems.append("groupPolicies[\(i)]: unknown key(s) \(unknown.sorted().joined(separator: ", "))") }
            }
        }
        if (settings.displayName ?? "").trimmingCharacters(in: .whitespaces).isEmpty {
            problems.append("displayName: required")
        } else if (settings.displayName ?? "").count > 200 {
            problems.append("displayName: at most 200 characters")
        }
        if case .failure(let error) = GatewaySettings.validate(settings) {
            problems.append(error.message)
        }
        if !problems.isEmpty { throw GraphError.validation(problems.joined(separator: "; ")) }
        settings.lastUpdateDateTime = GraphDate.string(now())
        return settings
    }
}
