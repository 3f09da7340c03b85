import GatewayCore
import GatewayWire

/// Makes one host step happen. `SystemHostCommands` runs `ip` and `nft`; the tests record.
public protocol HostCommands {
    func run(_ step: HostStep, tun: String) throws
}

/// Runs the standard tools for each step on the one TUN device.
public struct SystemHostCommands: HostCommands {
    public init() {}

    public func run(_ step: HostStep, tun: String) throws {
        switch step {
        case .setMTU(let mtu): try NetworkSetup.ip(["link", "set", "dev", tun, "mtu", "\(mtu)"])
        case .addAddress(let a): try NetworkSetup.ip(["addr", "replace", a, "dev", tun])
        case .removeAddress(let a): try NetworkSetup.ip(["addr", "del", a, "dev", tun])
        case .linkUp: try NetworkSetup.ip(["link", "set", "dev", tun, "up"])
        case .setNAT(let prefixes):
            // Parsed already by `HostNetworkPlan.problem(in:)`.
            let parsed = prefixes.compactMap { text -> IPPrefix? in
                if case .success(let p) = IPPrefix.parse(text) { return p }
                return nil
            }
            let pools = parsed.compactMap { if case .v4(let p) = $0 { p } else { nil } }
            let pools6 = parsed.compactMap { if case .v6(let p) = $0 { p } else { nil } }
            try PATRules(pools: pools, pools6: pools6, tunName: tun).apply()
        case .removeNAT: PATRules.remove()
        }
    }
}

/// The helper's memory of what it did, and the transaction around each request: the
/// steps from there to the requested state, all or nothing.
public final class HostNetworkConverger {
    public let tun: String
    public private(set) var current: HostNetworkState?
    private let commands: any HostCommands

    public init(tun: String, commands: any HostCommands = SystemHostCommands()) {
        self.tun = tun
        self.commands = commands
    }

    public func converge(to desired: HostNetworkState?) -> HostNetworkResponse {
        if let desired, let problem = HostNetworkPlan.problem(in: desired) {
            return HostNetworkResponse(applied: false, error: "refused: \(problem)")
        }
        var reached = current
        var done: [String] = []
        for step in HostNetworkPlan.steps(from: current, to: desired) {
            do {
                try commands.run(step, tun: tun)
                reached = HostNetworkPlan.state(after: step, from: reached)
                done.append(step.description)
            } catch {
                // Back to where the request found the host; a step of the way back that
                // fails is reported with the error, since the host now differs from both.
                var undoFailures: [String] = []
                for undo in HostNetworkPlan.steps(from: reached, to: current) {
                    do { try commands.run(undo, tun: tun) } catch { undoFailures.append("\(undo): \(error)") }
                }
                let undoText = undoFailures.isEmpty ? "" : "; undoing also failed: \(undoFailures.joined(separator: "; "))"
                return HostNetworkResponse(applied: false, error: "\(step): \(error)\(undoText)", steps: done)
            }
        }
        current = desired
        return HostNetworkResponse(applied: true, steps: done)
    }
}
