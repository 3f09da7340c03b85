import GatewayAgentAPI
import GatewayAuth

/// JSON Schemas of the agent API bodies (`AgentAPI.swift`), with the bounds of
/// `AgentAPILimits` (a string's limit is in UTF-8 bytes on the server; `maxLength` counts
/// characters, so anything over it is over the byte limit too). Written out because the
/// bodies are Codable structs; `OpenAPITests` encodes each type and checks that its keys are
/// exactly these properties and that the non-optional ones are the required ones.
///
/// Objects are left open: the control plane ignores unknown keys from agents, so a newer
/// agent may send more.
enum AgentSchemas {
    typealias L = AgentAPILimits

    static var all: [String: JSONValue] {
        let dateTime = JS.string("ISO 8601 date-time", maxLength: L.dateTime)
        // Checked as a date by the control plane (an event's or a report's own time).
        let checkedDateTime = JS.string(maxLength: L.dateTime, format: "date-time")
        func opt(_ s: JSONValue) -> JSONValue { JS.nullable(s) }
        return [
            "EnrollmentRequest": JS.object([
                "joinToken": JS.string("mstj1.<id>.<secret>.<ca-sha256>, from createJoinToken"),
                "csrPEM": JS.string("PKCS#10 request for the agent's key, PEM", maxLength: L.csrPEM),
                "hostname": JS.string("becomes the server's displayName (1 to 200 characters, one line)"),
                "agentVersion": JS.string(),
            ], required: ["joinToken", "csrPEM", "hostname", "agentVersion"]),
            "RenewalRequest": JS.object(["csrPEM": JS.string(maxLength: L.csrPEM)], required: ["csrPEM"]),
            "EnrollmentResponse": JS.object([
                "serverId": JS.string(), "siteId": JS.string(),
                "certificateChainPEM": JS.string("leaf first, then the CA"), "caCertificatePEM": JS.string(),
                "notAfter": JS.string(format: "date-time"),
            ], required: ["serverId", "siteId", "certificateChainPEM", "caCertificatePEM", "notAfter"]),
            "ConfigurationApplyResult": JS.object([
                "version": JS.integer(), "success": JS.boolean,
                "message": opt(JS.string(maxLength: L.applyMessage)), "dateTime": dateTime,
            ], required: ["version", "success", "dateTime"]),
            "CheckinRequest": JS.object([
                "agentVersion": JS.string("cut to 64 bytes"), "serverVersion": opt(JS.string("cut to 64 bytes")),
                "appliedConfigurationVersion": JS.integer(),
                "lastApply": opt(JS.ref("ConfigurationApplyResult")),
                "ticketKeyIds": opt(JS.array(JS.string(maxLength: L.ticketKeyId), maxItems: L.ticketKeyIds)),
                "revokedTickets": opt(JS.array(JS.ref("RevokedTicket"), maxItems: L.revokedTickets)),
                "revocationsAfter": opt(JS.integer()),
                "foreignLeases": opt(JS.array(JS.string("an IPv4 address", maxLength: L.foreignLease), maxItems: L.foreignLeases)),
                "imageTag": opt(JS.string("the image tag the server's containers run", maxLength: L.imageTag)),
                "upgrade": opt(JS.ref("UpgradeReport")),
                "sessions": opt(JS.integer("the gateway's sessions now", minimum: 0)),
                "sessionLimit": opt(JS.integer("the gateway's max-sessions (0: no limit)", minimum: 0)),
            ], required: ["agentVersion", "appliedConfigurationVersion"]),
            "UpgradeReport": JS.object([
                "id": JS.string("the attempt's id", maxLength: L.id), "tag": JS.string(maxLength: L.imageTag),
                "state": JS.string(enumeration: UpgradeReport.State.allCases.map(\.rawValue)),
                "message": opt(JS.string(maxLength: L.reason)), "dateTime": JS.string(maxLength: L.dateTime),
            ], required: ["id", "tag", "state", "dateTime"]),
            "UpgradeInstruction": JS.object([
                "id": JS.string(), "tag": JS.string(), "handOverAfterSeconds": JS.integer(), "drainTimeoutSeconds": JS.integer(),
            ], required: ["id", "tag", "handOverAfterSeconds", "drainTimeoutSeconds"]),
            "PoolSliceAssignment": JS.object([
                "index": JS.integer(), "count": JS.integer(),
            ], required: ["index", "count"]),
            "DrainInstruction": JS.object([
                "handOverAfterSeconds": opt(JS.integer()),
            ], required: []),
            "RevokedTicket": JS.object([
                "sessionId": JS.string("64 hex digits", maxLength: L.id), "until": JS.integer(),
            ], required: ["sessionId", "until"]),
            "SiteTicketKey": JS.object([
                "id": JS.string("letters, digits and '-'"), "key": JS.string("32 bytes, base64"),
            ], required: ["id", "key"]),
            "SiteTicketKeys": JS.object([
                "sealing": JS.string("the id of the key new tickets are sealed with"),
                "keys": JS.array(JS.ref("SiteTicketKey")), "lifetimeSeconds": JS.integer(),
            ], required: ["sealing", "keys", "lifetimeSeconds"]),
            "AgentAction": JS.object([
                "id": JS.string(), "type": JS.string("unknown types are skipped by the agent", enumeration: AgentAction.Kind.allCases.map(\.rawValue)),
                "startDateTime": opt(JS.string(format: "date-time")), "endDateTime": opt(JS.string(format: "date-time")),
            ], required: ["id", "type"]),
            "CheckinResponse": JS.object([
                "serverId": JS.string(), "siteId": JS.string(), "configurationVersion": JS.integer(),
                "configuration": opt(JS.ref("microsoftTunnelConfiguration")),
                "internalNetworkProbeUrl": opt(JS.string()),
                "checkinIntervalSeconds": JS.integer(), "reportIntervalSeconds": JS.integer(),
                "actions": JS.array(JS.ref("AgentAction")),
                "renewAfter": opt(JS.string(format: "date-time")),
                "ticketKeys": opt(JS.ref("SiteTicketKeys")),
                "revokedTickets": opt(JS.array(JS.ref("RevokedTicket"), maxItems: L.revokedTickets)),
                "revocationsCursor": opt(JS.integer()),
                "drain": opt(JS.ref("DrainInstruction")),
                "poolSlice": opt(JS.ref("PoolSliceAssignment")),
                "reservedAddresses": opt(JS.array(JS.string("an IPv4 address"))),
                "upgrade": opt(JS.ref("UpgradeInstruction")),
            ], required: ["serverId", "siteId", "configurationVersion", "checkinIntervalSeconds", "reportIntervalSeconds", "actions"]),
            "CertificateReport": JS.object([
                "subject": opt(JS.string(maxLength: L.subject)), "notBefore": opt(dateTime), "notAfter": opt(dateTime),
                "dnsNames": JS.array(JS.string(maxLength: L.dnsName), maxItems: L.dnsNames),
                "problems": JS.array(JS.string(maxLength: L.reason), maxItems: L.problems),
            ], required: ["dnsNames", "problems"]),
            "ProbeReport": JS.object([
                "url": JS.string(maxLength: L.url), "reachable": JS.boolean, "statusCode": opt(JS.integer()),
                "latencyMilliseconds": opt(JS.number()), "error": opt(JS.string(maxLength: L.reason)),
            ], required: ["url", "reachable"]),
            "GatewayReport": JS.object([
                "reachable": JS.boolean, "version": opt(JS.string(maxLength: L.version)), "uptimeSeconds": opt(JS.integer()),
                "poolSize": opt(JS.integer()), "poolInUse": opt(JS.integer()), "authReachable": opt(JS.boolean),
                "error": opt(JS.string(maxLength: L.reason)), "refused": opt(JS.ref("RefusedInputReport")),
            ], required: ["reachable"]),
            "RefusedInputReport": JS.object([
                "malformed": JS.with(JS.object([:]), [
                    "description": .string("Malformed tunnel input dropped since the gateway started, by class"),
                    "additionalProperties": JS.integer(), "maxProperties": .int(Int64(L.malformedClasses)),
                    "propertyNames": JS.string(maxLength: L.malformedClassName),
                ]),
                "connectionsRefused": opt(JS.integer()), "bans": opt(JS.integer()), "policyDenials": opt(JS.integer()),
            ], required: ["malformed"]),
            "HealthReport": JS.object([
                "cpuUsagePercent": opt(JS.number()), "memoryUsagePercent": opt(JS.number()), "diskFreeBytes": opt(JS.integer()),
                "currentConnections": opt(JS.integer()), "throughputBytesPerSecond": opt(JS.integer()),
                "latencyMilliseconds": opt(JS.number()), "tlsCertificate": opt(JS.ref("CertificateReport")),
                "agentCertificateNotAfter": opt(dateTime), "internalNetworkProbe": opt(JS.ref("ProbeReport")),
                "gateway": JS.ref("GatewayReport"), "appliedConfigurationVersion": JS.integer(),
            ], required: ["gateway", "appliedConfigurationVersion"]),
            "AgentEvent": JS.object([
                "type": JS.string(enumeration: AgentEvent.Kind.allCases.map(\.rawValue)), "dateTime": checkedDateTime,
                "userId": opt(JS.string(maxLength: L.userId)), "userName": opt(JS.string(maxLength: L.userName)),
                "deviceId": opt(JS.string(maxLength: L.deviceId)), "sessionId": opt(JS.string(maxLength: L.id)),
                "clientAddress": opt(JS.string(maxLength: L.address)), "assignedAddress": opt(JS.string(maxLength: L.address)),
                "reason": opt(JS.string(maxLength: L.reason)), "bytesIn": opt(JS.integer()), "bytesOut": opt(JS.integer()),
            ], required: ["type", "dateTime"]),
            "ReportItem": JS.object([
                "id": JS.string("the agent's UUID for this report; stored once per server", minLength: 1, maxLength: L.id),
                "kind": JS.string(enumeration: ReportItem.Kind.allCases.map(\.rawValue)),
                "createdDateTime": checkedDateTime,
                "health": opt(JS.ref("HealthReport")), "event": opt(JS.ref("AgentEvent")),
            ], required: ["id", "kind", "createdDateTime"]),
            "ReportBatch": JS.object([
                "items": JS.array(JS.ref("ReportItem"), maxItems: ReportBatch.maxItems),
                "droppedSinceLastAck": JS.integer(),
            ], required: ["items", "droppedSinceLastAck"]),
            "ReportAck": JS.object(["acknowledged": JS.array(JS.string()), "duplicates": JS.integer()],
                                   required: ["acknowledged", "duplicates"]),
            "LogCollectionFailure": JS.object(["message": JS.string(maxLength: L.failureMessage)], required: ["message"]),
        ]
    }
}
