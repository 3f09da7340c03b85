import GatewayCore
import GatewayWire
import Testing
@testable import GatewayHostNetwork

@Suite struct HostNetworkPlanTests {
    let start = HostNetworkState(mtu: 1400, addresses: ["100.64.0.1/24"], natPrefixes: ["100.64.0.0/24"])

    @Test func firstStateSetsEverythingUp() {
        #expect(HostNetworkPlan.steps(from: nil, to: start) == [
            .setMTU(1400), .addAddress("100.64.0.1/24"), .linkUp, .setNAT(["100.64.0.0/24"]),
        ])
    }

    @Test func sameStateIsNoStep() {
        #expect(HostNetworkPlan.steps(from: start, to: start).isEmpty)
    }

    @Test func mtuAloneIsOneStep() {
        var next = start
        next.mtu = 1300
        #expect(HostNetworkPlan.steps(from: start, to: next) == [.setMTU(1300)])
    }

    @Test func renumberingAddsAndNATsBeforeRemoving() {
        // A pool move with leases left in the old prefix: both stay routed.
        let moved = HostNetworkState(mtu: 1400, addresses: ["100.65.0.1/24", "100.64.0.1/24"], natPrefixes: ["100.65.0.0/24", "100.64.0.0/24"])
        #expect(HostNetworkPlan.steps(from: start, to: moved) == [.addAddress("100.65.0.1/24"), .setNAT(["100.65.0.0/24", "100.64.0.0/24"])])
        // The last lease of the old prefix ends: NAT first narrows, then the address goes.
        let released = HostNetworkState(mtu: 1400, addresses: ["100.65.0.1/24"], natPrefixes: ["100.65.0.0/24"])
        #expect(HostNetworkPlan.steps(from: moved, to: released) == [.setNAT(["100.65.0.0/24"]), .removeAddress("100.64.0.1/24")])
    }

    @Test func teardownRemovesTheNATOnly() {
        #expect(HostNetworkPlan.steps(from: start, to: nil) == [.removeNAT])
        #expect(HostNetworkPlan.steps(from: nil, to: nil).isEmpty)
    }

    @Test func stepsReplayedOnAStateReachTheTarget() {
        let moved = HostNetworkState(mtu: 1280, addresses: ["100.65.0.1/16"], natPrefixes: ["100.65.0.0/16"])
        var s: HostNetworkState? = start
        for step in HostNetworkPlan.steps(from: start, to: moved) { s = HostNetworkPlan.state(after: step, from: s) }
        #expect(s == moved)
    }

    @Test(arguments: [
        (HostNetworkState(mtu: 100, addresses: ["100.64.0.1/24"], natPrefixes: []), "mtu"),
        (HostNetworkState(mtu: 1400, addresses: [], natPrefixes: []), "addresses"),
        (HostNetworkState(mtu: 1400, addresses: ["100.64.0.1"], natPrefixes: []), "not an address/prefix-length"),
        (HostNetworkState(mtu: 1400, addresses: ["100.64.0.1/24; reboot"], natPrefixes: []), "not an address/prefix-length"),
        (HostNetworkState(mtu: 1400, addresses: ["100.64.0.1/24"], natPrefixes: ["100.64.0.0/24\"; flush ruleset"]), "not an IP prefix"),
        (HostNetworkState(mtu: 1400, addresses: ["100.64.0.1/24"], natPrefixes: ["100.64.0.1/24"]), "not an IP prefix"),
        (HostNetworkState(mtu: 1400, addresses: ["100.64.0.1/24"], natPrefixes: ["fd00:198:18:64::1/64"]), "not an IP prefix"),
    ])
    func refusesWhatMustNotReachTheHost(_ state: HostNetworkState, _ reason: String) {
        #expect(HostNetworkPlan.problem(in: state)?.contains(reason) == true)
    }
}

@Suite struct PATRulesTests {
    /// The IPv6 pool is masqueraded like the IPv4 ones, in the same table (one atomic load).
    @Test func bothFamiliesInOneTable() throws {
        let v4 = try GatewayCore.IPv4Prefix.parse("100.64.0.0/24").get()
        let v6 = try GatewayCore.IPv6Prefix.parse("fd00:198:18:64::/64").get()
        let script = PATRules(pools: [v4], pools6: [v6], tunName: "mstun0").script
        #expect(script.contains("ip saddr 100.64.0.0/24 oifname != \"mstun0\" masquerade\n"))
        #expect(script.contains("ip6 saddr fd00:198:18:64::/64 oifname != \"mstun0\" masquerade\n"))
        #expect(script.hasPrefix("table inet mstunnel\ndelete table inet mstunnel\n"))
    }

    @Test func aDualStackStateIsAccepted() {
        let state = HostNetworkState(mtu: 1400, addresses: ["100.64.0.1/24", "fd00:198:18:64::6440:1/64"],
                                     natPrefixes: ["100.64.0.0/24", "fd00:198:18:64::/64"])
        #expect(HostNetworkPlan.problem(in: state) == nil)
    }
}

/// Records each step; fails the step at `failAt` (counting from 0) once.
final class RecordingCommands: HostCommands {
    var log: [HostStep] = []
    var failAt: Int?
    var failUndo = false

    func run(_ step: HostStep, tun: String) throws {
        #expect(tun == "mstun0")
        if let f = failAt, log.count == f {
            failAt = nil
            throw NetworkSetupError("nft: Could not process rule")
        }
        if failUndo && failAt == nil && step == .removeAddress("100.65.0.1/24") {
            throw NetworkSetupError("ip: RTNETLINK answers: Cannot assign requested address")
        }
        log.append(step)
    }
}

@Suite struct HostNetworkConvergerTests {
    let start = HostNetworkState(mtu: 1400, addresses: ["100.64.0.1/24"], natPrefixes: ["100.64.0.0/24"])
    let moved = HostNetworkState(mtu: 1300, addresses: ["100.65.0.1/24"], natPrefixes: ["100.65.0.0/24"])

    @Test func appliesAndRemembers() {
        let commands = RecordingCommands()
        let c = HostNetworkConverger(tun: "mstun0", commands: commands)
        let r = c.converge(to: start)
        #expect(r.applied && r.steps == ["mtu 1400", "address add 100.64.0.1/24", "link up", "nat 100.64.0.0/24"])
        #expect(c.current == start)
        #expect(c.converge(to: start).steps.isEmpty)
    }

    @Test func aFailedStepUndoesTheOnesBefore() {
        let commands = RecordingCommands()
        let c = HostNetworkConverger(tun: "mstun0", commands: commands)
        _ = c.converge(to: start)
        commands.log = []
        // mtu, address add, then NAT fails.
        commands.failAt = 2
        let r = c.converge(to: moved)
        #expect(!r.applied)
        #expect(r.error?.hasPrefix("nat 100.65.0.0/24: nft: Could not process rule") == true)
        #expect(commands.log == [.setMTU(1300), .addAddress("100.65.0.1/24"), .setMTU(1400), .removeAddress("100.65.0.1/24")])
        #expect(c.current == start)
    }

    @Test func anUndoThatFailsIsReported() {
        let commands = RecordingCommands()
        let c = HostNetworkConverger(tun: "mstun0", commands: commands)
        _ = c.converge(to: start)
        commands.log = []
        commands.failAt = 2
        commands.failUndo = true
        let r = c.converge(to: moved)
        #expect(!r.applied)
        #expect(r.error?.contains("undoing also failed: address remove 100.65.0.1/24: ip: RTNETLINK") == true)
    }

    @Test func aBadRequestTouchesNothing() {
        let commands = RecordingCommands()
        let c = HostNetworkConverger(tun: "mstun0", commands: commands)
        let r = c.converge(to: HostNetworkState(mtu: 1400, addresses: ["eth0"], natPrefixes: []))
        #expect(!r.applied && r.error?.hasPrefix("refused:") == true)
        #expect(commands.log.isEmpty && c.current == nil)
    }

    @Test func teardownAfterSetup() {
        let commands = RecordingCommands()
        let c = HostNetworkConverger(tun: "mstun0", commands: commands)
        _ = c.converge(to: start)
        commands.log = []
        #expect(c.converge(to: nil).applied)
        #expect(commands.log == [.removeNAT])
        #expect(c.current == nil)
    }
}
