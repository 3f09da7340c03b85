import GatewayWire

/// A failure the agent explains to an operator in one sentence. Every path that can fail
/// ends up here (or in `ControlPlaneError`) so the CLI prints a message, never a stack.
public struct AgentError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The agent's own version, sent in enrollment and check-in.
public enum AgentVersion {
    public static var string: String { ProductVersion.string }
}
