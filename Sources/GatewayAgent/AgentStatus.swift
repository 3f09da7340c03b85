import Foundation
import GatewayAgentAPI

/// `mstunnel-agent status`: what an operator (or `mst-cli agent status`) needs at a glance.
/// Read-only: it never creates the database or any file.
public struct AgentStatus: Codable, Sendable, Equatable {
    public var enrolled: Bool
    public var serverId: String?
    public var siteId: String?
    public var controlPlaneUrl: String?
    public var enrolledDateTime: String?
    public var agentCertificateNotAfter: String?
    public var agentCertificateExpired: Bool?
    public var appliedConfigurationVersion: Int64?
    public var lastApply: ConfigurationApplyResult?
    public var lastCheckinDateTime: String?
    public var lastSuccessfulCheckinDateTime: String?
    public var lastCheckinResult: String?
    public var outboxDepth: Int?
    public var outboxDropped: Int64?
    /// The image tag this stack runs, and the last upgrade the Site asked of it (attempt,
    /// target tag, stage: draining, requested, succeeded, failed; why it failed).
    public var imageTag: String?
    public var upgradeAttempt: String?
    public var upgradeTag: String?
    public var upgradeStage: String?
    public var upgradeMessage: String?
    /// A problem reading the state, if any.
    public var error: String?

    public static func gather(paths: AgentPaths, now: Date = Date(),
                              imageTag: String? = ProcessInfo.processInfo.environment["MSTUNNEL_IMAGE_TAG"]) -> AgentStatus {
        var s = AgentStatus(enrolled: false)
        s.imageTag = imageTag.flatMap { $0.isEmpty ? nil : $0 }
        do {
            guard let info = try AgentInfo.load(paths) else { return s }
            s.enrolled = true
            s.serverId = info.serverId
            s.siteId = info.siteId
            s.controlPlaneUrl = info.controlPlaneUrl
            s.enrolledDateTime = info.enrolledDateTime
        } catch {
            s.error = error.message
            return s
        }
        if let data = AtomicFile.read(paths.agentCertificate),
           let cert = try? AgentCertificateInfo.load(certificatePEM: String(decoding: data, as: UTF8.self)) {
            s.agentCertificateNotAfter = GraphDate.string(cert.notAfter)
            s.agentCertificateExpired = now > cert.notAfter
        }
        do {
            if let db = try AgentDatabase.openExisting(path: paths.database) {
                s.appliedConfigurationVersion = db.appliedConfigurationVersion
                s.lastApply = db.lastApply
                s.lastCheckinDateTime = db.value(.lastCheckinDateTime)
                s.lastSuccessfulCheckinDateTime = db.value(.lastCheckinSuccessDateTime)
                s.lastCheckinResult = db.value(.lastCheckinResult)
                let outbox = Outbox(database: db, maxRows: .max)
                s.outboxDepth = outbox.depth()
                s.outboxDropped = outbox.droppedCount()
                s.upgradeAttempt = db.value(.upgradeAttempt)
                s.upgradeTag = db.value(.upgradeTag)
                s.upgradeStage = db.value(.upgradeStage)
                s.upgradeMessage = db.value(.upgradeMessage)
            }
        } catch {
            s.error = error.message
        }
        return s
    }

    public init(enrolled: Bool) { self.enrolled = enrolled }

    /// Lines for a terminal.
    public var text: String {
        guard enrolled else {
            return "enrolled: no" + (error.map { "\nerror: \($0)" } ?? "") + "\nenroll with: mstunnel-agent enroll --control-url https://HOST:PORT --join-token-file FILE"
        }
        var lines = ["enrolled: yes"]
        func add(_ label: String, _ value: String?) { lines.append("\(label): \(value ?? "-")") }
        add("server id", serverId)
        add("site id", siteId)
        add("control plane", controlPlaneUrl)
        add("enrolled", enrolledDateTime)
        add("agent certificate notAfter", agentCertificateNotAfter.map { $0 + (agentCertificateExpired == true ? " (EXPIRED)" : "") })
        add("applied configuration version", appliedConfigurationVersion.map(String.init))
        add("last apply", lastApply.map { "version \($0.version) \($0.success ? "ok" : "FAILED")\($0.message.map { ": \($0)" } ?? "") at \($0.dateTime)" })
        add("last check-in", lastCheckinDateTime.map { "\($0): \(lastCheckinResult ?? "-")" })
        add("last successful check-in", lastSuccessfulCheckinDateTime)
        add("outbox depth", outboxDepth.map(String.init))
        add("outbox dropped (unacknowledged)", outboxDropped.map(String.init))
        add("image tag", imageTag)
        if let upgradeTag {
            add("last upgrade", "to \(upgradeTag): \(upgradeStage ?? "-")\(upgradeMessage.map { " (\($0))" } ?? "") [attempt \(upgradeAttempt ?? "-")]")
        }
        if let error { add("error", error) }
        return lines.joined(separator: "\n")
    }
}
