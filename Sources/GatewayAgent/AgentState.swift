import Foundation
import GatewayAgentAPI

/// Typed access to the facts in the `state` table.
extension AgentDatabase {
    public var appliedConfigurationVersion: Int64 { int(.appliedConfigurationVersion) ?? 0 }

    public var lastApply: ConfigurationApplyResult? {
        value(.lastApply).flatMap { try? JSONDecoder().decode(ConfigurationApplyResult.self, from: Data($0.utf8)) }
    }

    public var lastApplyReported: Bool { value(.lastApplyReported) == "1" }
    public var lastApplyPermanent: Bool { value(.lastApplyPermanent) == "1" }

    /// Records an apply attempt; the applied version moves only when it is in force.
    public func recordApply(_ outcome: ApplyOutcome) throws(AgentError) {
        // Clamped to what the control plane accepts, so a long gateway message cannot get
        // every check-in refused.
        let json = (try? JSONEncoder().encode(outcome.result.clampedToLimits())).map { String(decoding: $0, as: UTF8.self) }
        var values: [StateKey: String?] = [
            .lastApply: json, .lastApplyReported: "0", .lastApplyPermanent: outcome.permanent ? "1" : "0",
        ]
        if outcome.inForce { values[.appliedConfigurationVersion] = String(outcome.result.version) }
        try set(values)
    }

    /// After a re-enrollment as a different server, facts about the old identity are void.
    /// Returns the number of queued reports discarded.
    public func adopt(serverId: String, outbox: Outbox) throws(AgentError) -> Int? {
        let previous = value(.serverId)
        guard previous != serverId else { return nil }
        var discarded = 0
        if previous != nil {
            discarded = try outbox.clear()
            try set([.appliedConfigurationVersion: nil, .lastApply: nil, .lastApplyReported: nil, .lastApplyPermanent: nil,
                     .lastCheckinDateTime: nil, .lastCheckinSuccessDateTime: nil, .lastCheckinResult: nil])
        }
        try set(.serverId, serverId)
        return discarded
    }
}
