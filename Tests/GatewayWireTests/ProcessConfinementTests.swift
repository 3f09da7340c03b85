import Testing
@testable import GatewayWire

@Suite struct ProcessConfinementTests {
    @Test func confinedAsDesigned() {
        let c = ProcessConfinement(uid: 994, gid: 990, effectiveCapabilities: 0, noNewPrivileges: true, seccompMode: 2)
        #expect(c.isConfined)
        #expect(c.summary == "uid 994:990, no capabilities, system-call filter on")
    }

    @Test(arguments: [
        ProcessConfinement(uid: 0, gid: 0, effectiveCapabilities: 0x1400, noNewPrivileges: true, seccompMode: 0),
        ProcessConfinement(uid: 994, gid: 990, effectiveCapabilities: 0x1000, noNewPrivileges: true, seccompMode: 2),
        ProcessConfinement(uid: 994, gid: 990, effectiveCapabilities: 0, noNewPrivileges: true, seccompMode: 0),
        ProcessConfinement(uid: 0, gid: 990, effectiveCapabilities: 0, noNewPrivileges: true, seccompMode: 2),
    ])
    func anythingLessIsNotConfined(_ c: ProcessConfinement) {
        #expect(!c.isConfined)
        #expect(c.summary.hasPrefix("NOT CONFINED"))
    }
}
