import Foundation

/// Where the agent keeps its files under the state directory (`/etc/mstunnel`, or
/// `MSTUNNEL_DIR`). The names are the product contract (product.md §2); the gateway reads
/// `admin-settings.json` and `certs/site.crt` from the same directory.
public struct AgentPaths: Sendable, Equatable {
    public let stateDirectory: String

    public init(stateDirectory: String) {
        self.stateDirectory = stateDirectory
    }

    /// `--state-dir`, else `MSTUNNEL_DIR`, else `/etc/mstunnel`.
    public static func resolve(_ option: String?, environment: [String: String] = ProcessInfo.processInfo.environment) -> AgentPaths {
        if let option, !option.isEmpty { return AgentPaths(stateDirectory: option) }
        if let env = environment["MSTUNNEL_DIR"], !env.isEmpty { return AgentPaths(stateDirectory: env) }
        return AgentPaths(stateDirectory: "/etc/mstunnel")
    }

    func file(_ relative: String) -> String { stateDirectory + "/" + relative }

    /// The control plane's CA, pinned at enrollment by the join token's hash.
    public var controlCA: String { file("certs/control-ca.crt") }
    /// The agent's mTLS identity: certificate chain (leaf first) and its P-256 key (0600).
    public var agentCertificate: String { file("certs/agent.crt") }
    public var agentKey: String { file("private/agent.key") }
    /// Written last at enrollment: its presence means "enrolled".
    public var agentInfo: String { file("agent-info.json") }
    /// The Server configuration in force, read by the gateway at start and on SIGHUP.
    public var adminSettings: String { file("admin-settings.json") }
    /// The gateway's TLS identity, inspected for the health report.
    public var siteCertificate: String { file("certs/site.crt") }
    public var sitePFX: String { file("private/site.pfx") }
    public var certsDirectory: String { file("certs") }
    public var privateDirectory: String { file("private") }
    /// The agent's own durable state: outbox, applied version, handled actions.
    public var agentDirectory: String { file("agent") }
    public var database: String { file("agent/agent.sqlite") }
    /// The agent's requests to the host's updater (deploy/mstunnel-updater; docs/site.md,
    /// "Rolling upgrade"): `desired`, and `confirmed` once the agent on the new tag checked in.
    /// The updater reads them as the agent's uid and answers in its own directory.
    public var upgradeDirectory: String { file("upgrade") }
}
