import Foundation
import GatewayAgentAPI

/// `agent-info.json`: who this host is in the control plane (product.md §2). Written last
/// at enrollment, so its presence means the identity files beside it are complete.
public struct AgentInfo: Codable, Sendable, Equatable {
    public var serverId: String
    public var siteId: String
    public var controlPlaneUrl: String
    public var enrolledDateTime: String

    public init(serverId: String, siteId: String, controlPlaneUrl: String, enrolledDateTime: String) {
        self.serverId = serverId
        self.siteId = siteId
        self.controlPlaneUrl = controlPlaneUrl
        self.enrolledDateTime = enrolledDateTime
    }

    /// nil when not enrolled; throws when the file exists but is damaged.
    public static func load(_ paths: AgentPaths) throws(AgentError) -> AgentInfo? {
        guard FileManager.default.fileExists(atPath: paths.agentInfo) else { return nil }
        guard let data = AtomicFile.read(paths.agentInfo) else { throw AgentError("cannot read \(paths.agentInfo)") }
        do {
            return try JSONDecoder().decode(AgentInfo.self, from: data)
        } catch {
            throw AgentError("\(paths.agentInfo) is damaged (\(ControlPlaneClient.describe(error))); enroll again with --force")
        }
    }

    func encoded() -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return ((try? encoder.encode(self)) ?? Data()) + Data("\n".utf8)
    }
}

enum HostName {
    static func current() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "mstunnel-gateway" }
        let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        let name = String(decoding: bytes, as: UTF8.self)
        return name.isEmpty ? "mstunnel-gateway" : name
    }
}
