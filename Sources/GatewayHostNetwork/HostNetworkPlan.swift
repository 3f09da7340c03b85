import GatewayCore
import GatewayWire

/// One change to the host's network for the TUN device.
public enum HostStep: Sendable, Equatable, CustomStringConvertible {
    case setMTU(Int)
    case addAddress(String)
    case removeAddress(String)
    case linkUp
    /// Replace the NAT table with masquerading for these prefixes.
    case setNAT([String])
    case removeNAT

    public var description: String {
        switch self {
        case .setMTU(let mtu): return "mtu \(mtu)"
        case .addAddress(let a): return "address add \(a)"
        case .removeAddress(let a): return "address remove \(a)"
        case .linkUp: return "link up"
        case .setNAT(let p): return "nat \(p.joined(separator: ","))"
        case .removeNAT: return "nat removed"
        }
    }
}

/// From one host state to the next, with no I/O: what the helper must do, in an order
/// that never leaves clients without a path (a new address and its NAT before an old
/// address goes), and the state each step leaves behind (to undo a partial change).
public enum HostNetworkPlan {
    public static func steps(from current: HostNetworkState?, to desired: HostNetworkState?) -> [HostStep] {
        guard let desired else {
            // The addresses go with the TUN device when the gateway closes it.
            return current == nil ? [] : [.removeNAT]
        }
        guard let current else {
            return [.setMTU(desired.mtu)] + desired.addresses.map { .addAddress($0) } + [.linkUp, .setNAT(desired.natPrefixes)]
        }
        var steps: [HostStep] = []
        if desired.mtu != current.mtu { steps.append(.setMTU(desired.mtu)) }
        steps += desired.addresses.filter { !current.addresses.contains($0) }.map { .addAddress($0) }
        if desired.natPrefixes != current.natPrefixes { steps.append(.setNAT(desired.natPrefixes)) }
        steps += current.addresses.filter { !desired.addresses.contains($0) }.map { .removeAddress($0) }
        return steps
    }

    /// The state after `step` (nil: nothing set up).
    public static func state(after step: HostStep, from state: HostNetworkState?) -> HostNetworkState? {
        var s = state ?? HostNetworkState(mtu: 0, addresses: [], natPrefixes: [])
        switch step {
        case .setMTU(let mtu): s.mtu = mtu
        case .addAddress(let a): if !s.addresses.contains(a) { s.addresses.append(a) }
        case .removeAddress(let a): s.addresses.removeAll { $0 == a }
        case .linkUp: break
        case .setNAT(let p): s.natPrefixes = p
        case .removeNAT: return nil
        }
        return s
    }

    /// Why `state` must not reach the host, or nil. The helper checks every request: the
    /// gateway that sends it faces the internet and is trusted with nothing it need not have.
    public static func problem(in state: HostNetworkState) -> String? {
        guard (576...65535).contains(state.mtu) else { return "mtu \(state.mtu) is outside 576...65535" }
        guard !state.addresses.isEmpty, state.addresses.count <= 64 else { return "between 1 and 64 addresses, not \(state.addresses.count)" }
        guard state.natPrefixes.count <= 64 else { return "at most 64 NAT prefixes, not \(state.natPrefixes.count)" }
        for a in state.addresses {
            guard case .success = IPPrefix.parse(a, strict: false) else { return "'\(a)' is not an address/prefix-length" }
        }
        for p in state.natPrefixes {
            guard case .success = IPPrefix.parse(p) else { return "'\(p)' is not an IP prefix" }
        }
        return nil
    }
}
