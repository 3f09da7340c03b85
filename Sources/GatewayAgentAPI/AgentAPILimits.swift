/// Upper bounds of what the control plane stores from an agent: bytes (UTF-8) per string
/// field, entries per array, bytes per request body. Each is well above any real value, so
/// only a broken or hostile agent reaches one; the control plane then refuses the request
/// with a 400 that names the field and its limit (`FieldLimitError`), and the agent clamps
/// its own values to them before it queues anything (`clampedToLimits()`), so a long
/// gateway message can never block its outbox.
public enum AgentAPILimits {
    /// Report item ids (the agent's UUIDs), session ids.
    public static let id = 128
    /// ISO 8601 dates (`createdDateTime`, `dateTime`, `notBefore`…).
    public static let dateTime = 64
    /// Agent and gateway versions.
    public static let version = 64
    public static let userId = 256
    public static let userName = 1024
    public static let deviceId = 256
    /// `clientAddress`, `assignedAddress` (an IPv6 address with port and zone fits easily).
    public static let address = 128
    /// Free text: an event's `reason`, a probe's or the gateway's `error`, a certificate problem.
    public static let reason = 1024
    /// A certificate subject.
    public static let subject = 1024
    /// One DNS name of the gateway's certificate.
    public static let dnsName = 255
    public static let dnsNames = 100
    public static let problems = 32
    /// The internal network probe URL.
    public static let url = 2048
    /// A configuration apply result's message (the gateway's validation error).
    public static let applyMessage = 4096
    /// A CSR in PEM (a P-256 CSR is about 500 bytes).
    public static let csrPEM = 16 << 10
    /// A log collection failure message.
    public static let failureMessage = 4096
    /// Malformed-input classes in a health report (13 today), and the length of each name.
    public static let malformedClasses = 64
    public static let malformedClassName = 64
    /// Ticket key ids a check-in reports (a Site has at most a few; auth holds at most 16,
    /// plus its own), and the length of each.
    public static let ticketKeyIds = 32
    public static let ticketKeyId = 32
    /// Revoked tickets per check-in, each way (a check-in body stays well under 64 KiB).
    public static let revokedTickets = 400
    /// Foreign leases one check-in reports (an address is at most 18 bytes of JSON: with 400
    /// revocations the body stays under 64 KiB). A server holding more reports these and
    /// says so; the rest of its siblings' addresses could be given out twice (logged as a
    /// conflict where it happens). bench/failover.sh moves about 500 to each survivor.
    public static let foreignLeases = 1024
    public static let foreignLease = 15
    /// An image tag (registries allow 128 characters).
    public static let imageTag = 128

    /// Body of every agent JSON request except report batches.
    public static let maxJSONBodyBytes = 64 << 10
    /// Body of one report batch (≤ `ReportBatch.maxItems` items; a real batch is far smaller,
    /// and an agent answered 413 halves its batch).
    public static let maxReportBatchBytes = 4 << 20

    /// `text` cut to at most `maxBytes` UTF-8 bytes on a character boundary, with "…" at the
    /// end when something was cut.
    public static func truncated(_ text: String, toBytes maxBytes: Int) -> String {
        guard text.utf8.count > maxBytes else { return text }
        let ellipsis = "…"
        let budget = maxBytes - ellipsis.utf8.count
        guard budget > 0 else { return "" }
        var used = 0
        var end = text.startIndex
        for index in text.indices {
            let n = text[index].utf8.count
            if used + n > budget { break }
            used += n
            end = text.index(after: index)
        }
        return String(text[..<end]) + ellipsis
    }

    static func truncated(_ text: String?, toBytes maxBytes: Int) -> String? {
        text.map { truncated($0, toBytes: maxBytes) }
    }
}

/// A field over its limit: `items[3].event.reason: 8388608 bytes, at most 1024 allowed`.
public struct FieldLimitError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Unit: String, Sendable { case bytes, entries }
    public var field: String
    public var size: Int
    public var limit: Int
    public var unit: Unit

    public init(field: String, size: Int, limit: Int, unit: Unit) {
        self.field = field
        self.size = size
        self.limit = limit
        self.unit = unit
    }

    public var description: String { "\(field): \(size) \(unit.rawValue), at most \(limit) allowed" }
}

/// The checks, field by field; `path` is the field's place in the request body.
enum Limit {
    static func string(_ value: String?, _ path: String, max: Int) throws(FieldLimitError) {
        guard let value else { return }
        let size = value.utf8.count
        if size > max { throw FieldLimitError(field: path, size: size, limit: max, unit: .bytes) }
    }

    static func strings(_ values: [String], _ path: String, maxCount: Int, maxEach: Int) throws(FieldLimitError) {
        if values.count > maxCount { throw FieldLimitError(field: path, size: values.count, limit: maxCount, unit: .entries) }
        for (i, v) in values.enumerated() { try string(v, "\(path)[\(i)]", max: maxEach) }
    }

    static func join(_ path: String, _ field: String) -> String { path.isEmpty ? field : path + "." + field }
}

// MARK: - Checks (control plane) and clamps (agent)

extension AgentEvent {
    public func checkLimits(_ path: String) throws(FieldLimitError) {
        let p = { (f: String) in Limit.join(path, f) }
        try Limit.string(dateTime, p("dateTime"), max: AgentAPILimits.dateTime)
        try Limit.string(userId, p("userId"), max: AgentAPILimits.userId)
        try Limit.string(userName, p("userName"), max: AgentAPILimits.userName)
        try Limit.string(deviceId, p("deviceId"), max: AgentAPILimits.deviceId)
        try Limit.string(sessionId, p("sessionId"), max: AgentAPILimits.id)
        try Limit.string(clientAddress, p("clientAddress"), max: AgentAPILimits.address)
        try Limit.string(assignedAddress, p("assignedAddress"), max: AgentAPILimits.address)
        try Limit.string(reason, p("reason"), max: AgentAPILimits.reason)
    }

    public func clampedToLimits() -> AgentEvent {
        var e = self
        e.dateTime = AgentAPILimits.truncated(dateTime, toBytes: AgentAPILimits.dateTime)
        e.userId = AgentAPILimits.truncated(userId, toBytes: AgentAPILimits.userId)
        e.userName = AgentAPILimits.truncated(userName, toBytes: AgentAPILimits.userName)
        e.deviceId = AgentAPILimits.truncated(deviceId, toBytes: AgentAPILimits.deviceId)
        e.sessionId = AgentAPILimits.truncated(sessionId, toBytes: AgentAPILimits.id)
        e.clientAddress = AgentAPILimits.truncated(clientAddress, toBytes: AgentAPILimits.address)
        e.assignedAddress = AgentAPILimits.truncated(assignedAddress, toBytes: AgentAPILimits.address)
        e.reason = AgentAPILimits.truncated(reason, toBytes: AgentAPILimits.reason)
        return e
    }
}

extension HealthReport {
    public func checkLimits(_ path: String) throws(FieldLimitError) {
        let p = { (f: String) in Limit.join(path, f) }
        try Limit.string(agentCertificateNotAfter, p("agentCertificateNotAfter"), max: AgentAPILimits.dateTime)
        if let c = tlsCertificate {
            try Limit.string(c.subject, p("tlsCertificate.subject"), max: AgentAPILimits.subject)
            try Limit.string(c.notBefore, p("tlsCertificate.notBefore"), max: AgentAPILimits.dateTime)
            try Limit.string(c.notAfter, p("tlsCertificate.notAfter"), max: AgentAPILimits.dateTime)
            try Limit.strings(c.dnsNames, p("tlsCertificate.dnsNames"), maxCount: AgentAPILimits.dnsNames, maxEach: AgentAPILimits.dnsName)
            try Limit.strings(c.problems, p("tlsCertificate.problems"), maxCount: AgentAPILimits.problems, maxEach: AgentAPILimits.reason)
        }
        if let probe = internalNetworkProbe {
            try Limit.string(probe.url, p("internalNetworkProbe.url"), max: AgentAPILimits.url)
            try Limit.string(probe.error, p("internalNetworkProbe.error"), max: AgentAPILimits.reason)
        }
        try Limit.string(gateway.version, p("gateway.version"), max: AgentAPILimits.version)
        try Limit.string(gateway.error, p("gateway.error"), max: AgentAPILimits.reason)
        if let m = gateway.refused?.malformed {
            try Limit.strings(m.keys.sorted(), p("gateway.refused.malformed"), maxCount: AgentAPILimits.malformedClasses,
                              maxEach: AgentAPILimits.malformedClassName)
        }
    }

    public func clampedToLimits() -> HealthReport {
        var r = self
        r.agentCertificateNotAfter = AgentAPILimits.truncated(agentCertificateNotAfter, toBytes: AgentAPILimits.dateTime)
        if var c = r.tlsCertificate {
            c.subject = AgentAPILimits.truncated(c.subject, toBytes: AgentAPILimits.subject)
            c.notBefore = AgentAPILimits.truncated(c.notBefore, toBytes: AgentAPILimits.dateTime)
            c.notAfter = AgentAPILimits.truncated(c.notAfter, toBytes: AgentAPILimits.dateTime)
            c.dnsNames = c.dnsNames.prefix(AgentAPILimits.dnsNames).map { AgentAPILimits.truncated($0, toBytes: AgentAPILimits.dnsName) }
            c.problems = c.problems.prefix(AgentAPILimits.problems).map { AgentAPILimits.truncated($0, toBytes: AgentAPILimits.reason) }
            r.tlsCertificate = c
        }
        if var probe = r.internalNetworkProbe {
            probe.url = AgentAPILimits.truncated(probe.url, toBytes: AgentAPILimits.url)
            probe.error = AgentAPILimits.truncated(probe.error, toBytes: AgentAPILimits.reason)
            r.internalNetworkProbe = probe
        }
        r.gateway.version = AgentAPILimits.truncated(gateway.version, toBytes: AgentAPILimits.version)
        r.gateway.error = AgentAPILimits.truncated(gateway.error, toBytes: AgentAPILimits.reason)
        if var refused = r.gateway.refused, refused.malformed.count > AgentAPILimits.malformedClasses
            || refused.malformed.keys.contains(where: { $0.utf8.count > AgentAPILimits.malformedClassName }) {
            // Never reached by the gateway's 13 classes; a map has no order to cut in, so
            // the largest counts stay.
            let kept = refused.malformed.filter { $0.key.utf8.count <= AgentAPILimits.malformedClassName }
                .sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.prefix(AgentAPILimits.malformedClasses)
            refused.malformed = Dictionary(uniqueKeysWithValues: kept.map { ($0.key, $0.value) })
            r.gateway.refused = refused
        }
        return r
    }
}

extension ReportItem {
    /// `path` names the item, e.g. `items[3]`.
    public func checkLimits(_ path: String) throws(FieldLimitError) {
        try Limit.string(id, Limit.join(path, "id"), max: AgentAPILimits.id)
        try Limit.string(createdDateTime, Limit.join(path, "createdDateTime"), max: AgentAPILimits.dateTime)
        try health?.checkLimits(Limit.join(path, "health"))
        try event?.checkLimits(Limit.join(path, "event"))
    }

    /// The id is left alone (the agent makes it: a UUID); everything else is clamped.
    public func clampedToLimits() -> ReportItem {
        var item = self
        item.createdDateTime = AgentAPILimits.truncated(createdDateTime, toBytes: AgentAPILimits.dateTime)
        item.health = health?.clampedToLimits()
        item.event = event?.clampedToLimits()
        return item
    }
}

extension ConfigurationApplyResult {
    public func checkLimits(_ path: String) throws(FieldLimitError) {
        try Limit.string(message, Limit.join(path, "message"), max: AgentAPILimits.applyMessage)
        try Limit.string(dateTime, Limit.join(path, "dateTime"), max: AgentAPILimits.dateTime)
    }

    public func clampedToLimits() -> ConfigurationApplyResult {
        var r = self
        r.message = AgentAPILimits.truncated(message, toBytes: AgentAPILimits.applyMessage)
        r.dateTime = AgentAPILimits.truncated(dateTime, toBytes: AgentAPILimits.dateTime)
        return r
    }
}

extension CheckinRequest {
    /// Versions are not checked here: the control plane has always cut them to
    /// `AgentAPILimits.version` (older agents may send more).
    public func checkLimits() throws(FieldLimitError) {
        try lastApply?.checkLimits("lastApply")
        if let ids = ticketKeyIds {
            try Limit.strings(ids, "ticketKeyIds", maxCount: AgentAPILimits.ticketKeyIds, maxEach: AgentAPILimits.ticketKeyId)
        }
        if let revoked = revokedTickets {
            try Limit.strings(revoked.map(\.sessionId), "revokedTickets", maxCount: AgentAPILimits.revokedTickets, maxEach: AgentAPILimits.id)
        }
        if let leases = foreignLeases {
            try Limit.strings(leases, "foreignLeases", maxCount: AgentAPILimits.foreignLeases, maxEach: AgentAPILimits.foreignLease)
        }
        if let tag = imageTag { try Limit.string(tag, "imageTag", max: AgentAPILimits.imageTag) }
        if let u = upgrade {
            try Limit.string(u.id, "upgrade.id", max: AgentAPILimits.id)
            try Limit.string(u.tag, "upgrade.tag", max: AgentAPILimits.imageTag)
            try Limit.string(u.dateTime, "upgrade.dateTime", max: AgentAPILimits.dateTime)
            if let m = u.message { try Limit.string(m, "upgrade.message", max: AgentAPILimits.reason) }
        }
    }
}

extension EnrollmentRequest {
    public func checkLimits() throws(FieldLimitError) {
        try Limit.string(csrPEM, "csrPEM", max: AgentAPILimits.csrPEM)
    }
}

extension RenewalRequest {
    public func checkLimits() throws(FieldLimitError) {
        try Limit.string(csrPEM, "csrPEM", max: AgentAPILimits.csrPEM)
    }
}

extension LogCollectionFailure {
    public func checkLimits() throws(FieldLimitError) {
        try Limit.string(message, "message", max: AgentAPILimits.failureMessage)
    }
}
