import Foundation
import GatewayAuth
import Hummingbird

/// `/beta/deviceManagement/microsoftTunnelHealthThresholds`: one entry per metric with a
/// threshold (id = metric name); PATCH stores an override, the defaults stay visible.
extension ControlPlane {
    static let thresholdsPath = "/beta/deviceManagement/microsoftTunnelHealthThresholds"

    func addThresholdRoutes(_ router: RouteTable) {
        let schema = GraphSchemas.healthThreshold
        HTTP.route(router, Self.thresholdsPath, [
            .get: { request, _ in
                let query = try ODataQuery(parameters: HTTP.query(request), schema: schema)
                let overrides = try await self.thresholdMap()
                let items = HealthMetric.allCases.map { self.thresholdJSON($0, overrides[$0.rawValue]) }
                return HTTP.collection(query.apply(to: items).map { withODataType($0, schema) }, context: "deviceManagement/microsoftTunnelHealthThresholds")
            },
        ])
        HTTP.route(router, Self.thresholdsPath + "/{id}", [
            .get: { request, context in
                let metric = try Self.metric(try HTTP.parameter(context, "id"))
                let query = try ODataQuery(parameters: HTTP.query(request), schema: schema)
                let overrides = try await self.thresholdMap()
                return HTTP.json(.object(withODataType(query.project(self.thresholdJSON(metric, overrides[metric.rawValue])), schema)))
            },
            .patch: { request, context in
                let metric = try Self.metric(try HTTP.parameter(context, "id"))
                let body = try GraphBody.parse(try await HTTP.body(request), schema: schema)
                let current = try await self.thresholdMap()[metric.rawValue]
                var healthy = current?.healthyThreshold ?? metric.defaultHealthy
                var unhealthy = current?.unhealthyThreshold ?? metric.defaultUnhealthy
                if case .int(let v)? = body.values["healthyThreshold"] { healthy = v }
                if case .int(let v)? = body.values["unhealthyThreshold"] { unhealthy = v }
                if let problem = metric.validate(healthy: healthy, unhealthy: unhealthy) { throw GraphError.validation(problem) }
                let value = ThresholdOverride(id: metric.rawValue, healthyThreshold: healthy, unhealthyThreshold: unhealthy)
                try await self.store.setThresholdOverride(value)
                return HTTP.json(.object(withODataType(self.thresholdJSON(metric, value), schema)))
            },
        ])
    }

    static func metric(_ id: String) throws(GraphError) -> HealthMetric {
        guard let metric = HealthMetric(rawValue: id) else {
            throw GraphError.notFound("no microsoftTunnelHealthThreshold '\(id)' (known: \(HealthMetric.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        return metric
    }

    func thresholdJSON(_ metric: HealthMetric, _ override: ThresholdOverride?) -> [String: JSONValue] {
        [
            "id": .string(metric.rawValue),
            "healthyThreshold": .int(override?.healthyThreshold ?? metric.defaultHealthy),
            "unhealthyThreshold": .int(override?.unhealthyThreshold ?? metric.defaultUnhealthy),
            "defaultHealthyThreshold": .int(metric.defaultHealthy),
            "defaultUnhealthyThreshold": .int(metric.defaultUnhealthy),
        ]
    }
}
