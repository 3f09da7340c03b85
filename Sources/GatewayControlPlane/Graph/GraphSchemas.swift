/// The Graph beta entity types this control plane serves, with Graph's property names.
/// Extensions beyond Graph are marked; they are read-only.
enum GraphSchemas {
    static let configuration = GraphSchema(entityType: "microsoftTunnelConfiguration", fields: [
        .ro("id", .string),
        .rw("displayName", .string, nullable: false),
        .rw("description", .string),
        .rw("network", .string, nullable: false),
        .rw("ipv6Network", .string),
        .rw("dnsServers", .stringArray),
        .rw("defaultDomainSuffix", .string),
        .rw("routesInclude", .stringArray),
        .rw("routesExclude", .stringArray),
        .rw("routeIncludes", .stringArray),
        .rw("routeExcludes", .stringArray),
        .rw("splitDNS", .stringArray),
        .rw("listenPort", .int32),
        .rw("advancedSettings", .keyValueArray),
        .ro("lastUpdateDateTime", .dateTime),
        .rw("roleScopeTagIds", .stringArray),
        .rw("disableUdpConnections", .bool),
        // Extension: per-group routes, DNS or denial (docs/group-policy.md).
        .rw("groupPolicies", .objectArray),
    ])

    static let site = GraphSchema(entityType: "microsoftTunnelSite", fields: [
        .ro("id", .string),
        .rw("displayName", .string, nullable: false),
        .rw("description", .string),
        .rw("publicAddress", .string),
        .rw("upgradeWindowUtcOffsetInMinutes", .int32),
        .rw("upgradeWindowStartTime", .timeOfDay),
        .rw("upgradeWindowEndTime", .timeOfDay),
        .rw("upgradeAutomatically", .bool),
        .ro("upgradeAvailable", .bool),
        .rw("internalNetworkProbeUrl", .string),
        .rw("enableCertificatePinning", .bool),
        .rw("roleScopeTagIds", .stringArray),
        // Extensions: the rolling upgrade (docs/site.md, "Rolling upgrade"): the release
        // the servers should run, the last requestUpgrade not yet fulfilled, and the upgrade
        // under way or failed (`upgradeStatus` none, inProgress or failed).
        .ro("gatewayRelease", .string),
        .ro("upgradeRequestedDateTime", .dateTime),
        .ro("upgradeStatus", .string),
        .ro("upgradeTargetTag", .string),
        .ro("upgradingServerId", .string),
        .ro("upgradedServerCount", .int64),
        .ro("upgradeMessage", .string),
    ], navigation: ["microsoftTunnelConfiguration"])

    /// Extension: a session or access event forwarded by the agent (no Graph equivalent).
    static let sessionEvent = GraphSchema(entityType: "microsoftTunnelSessionEvent", fields: [
        .ro("id", .string),
        .ro("type", .string),
        .ro("dateTime", .dateTime),
        .ro("userId", .string),
        .ro("userName", .string),
        .ro("deviceId", .string),
        .ro("sessionId", .string),
        .ro("clientAddress", .string),
        .ro("assignedAddress", .string),
        .ro("reason", .string),
        .ro("bytesIn", .int64),
        .ro("bytesOut", .int64),
    ])

    static let server = GraphSchema(entityType: "microsoftTunnelServer", fields: [
        .ro("id", .string),
        .rw("displayName", .string, nullable: false),
        .ro("tunnelServerHealthStatus", .string),
        .ro("lastCheckinDateTime", .dateTime),
        .ro("agentImageDigest", .string),
        .ro("serverImageDigest", .string),
        .ro("deploymentMode", .string),
        // Extensions: what the agent reports about itself.
        .ro("agentVersion", .string),
        .ro("serverVersion", .string),
        .ro("appliedConfigurationVersion", .int64),
        // Extension: an administrator's drain (`drain`/`undrain`): `drainRequested` true, and
        // the seconds before the hand-over (null: wait for the sessions to end).
        .ro("drainRequested", .bool),
        .ro("drainHandOverAfterSeconds", .int64),
        // Extension: the image tag its containers run (null outside containers).
        .ro("imageTag", .string),
    ])

    static let healthThreshold = GraphSchema(entityType: "microsoftTunnelHealthThreshold", fields: [
        .ro("id", .string),
        .rw("healthyThreshold", .int64, nullable: false),
        .rw("unhealthyThreshold", .int64, nullable: false),
        .ro("defaultHealthyThreshold", .int64),
        .ro("defaultUnhealthyThreshold", .int64),
    ])

    static let logCollection = GraphSchema(entityType: "microsoftTunnelServerLogCollectionResponse", fields: [
        .ro("id", .string),
        .ro("status", .string),
        .ro("startDateTime", .dateTime),
        .ro("endDateTime", .dateTime),
        .ro("sizeInBytes", .int64),
        .ro("serverId", .string),
        .ro("requestDateTime", .dateTime),
        .ro("expiryDateTime", .dateTime),
    ])

    /// `createServerLogCollectionRequest` parameters.
    static let logCollectionRequest = GraphSchema(entityType: "createServerLogCollectionRequest parameters", fields: [
        .rw("startDateTime", .dateTime, nullable: false),
        .rw("endDateTime", .dateTime, nullable: false),
    ])

    static let healthMetricsRequest = GraphSchema(entityType: "getHealthMetrics parameters", fields: [
        .rw("metricNames", .stringArray, nullable: false),
    ])

    static let timeSeriesRequest = GraphSchema(entityType: "getHealthMetricTimeSeries parameters", fields: [
        .rw("metricName", .string, nullable: false),
        .rw("startDateTime", .dateTime),
        .rw("endDateTime", .dateTime),
    ])

    static let drainRequest = GraphSchema(entityType: "drain parameters", fields: [
        .rw("handOverAfterSeconds", .int64),
        .rw("wait", .bool),
    ])

    static let joinTokenRequest = GraphSchema(entityType: "createJoinToken parameters", fields: [
        .rw("expirationMinutes", .int32),
        // How many servers the token may enroll (default 1; up to 1,000 for an orchestrator's
        // identical gateway pods, deploy/kubernetes).
        .rw("maxUses", .int32),
    ])

    /// The health check list (extension).
    static let healthCheck = GraphSchema(entityType: "microsoftTunnelServerHealthCheck", fields: [
        .ro("id", .string),
        .ro("status", .string),
        .ro("message", .string),
        .ro("value", .string),
    ])
}
