import Testing
@testable import GatewaySandbox

@Suite struct SandboxAccountTests {
    @Test func parsesNumbers() throws {
        #expect(try Sandbox.Account(parsing: "994:990") == Sandbox.Account(uid: 994, gid: 990))
    }

    @Test(arguments: ["", "994", "994:", ":990", "gw:990", "994:990:1", "-1:990", "994:mstunnel"])
    func refusesWhatIsNotUidColonGid(_ text: String) {
        #expect(throws: SandboxError.self) { try Sandbox.Account(parsing: text) }
    }

    @Test func refusesRoot() {
        let error = #expect(throws: SandboxError.self) { try Sandbox.Account(parsing: "0:990") }
        #expect(error?.message.contains("not 0") == true)
    }
}

@Suite struct ProcessSecurityTests {
    // The lines of /proc/PID/status that matter, as a confined gateway shows them.
    static let confined = """
        Name:\tmstunnel-server
        Umask:\t0022
        State:\tS (sleeping)
        Uid:\t994\t994\t994\t994
        Gid:\t990\t990\t990\t990
        CapInh:\t0000000000000000
        CapPrm:\t0000000000000000
        CapEff:\t0000000000000000
        CapBnd:\t00000000000014c0
        CapAmb:\t0000000000000000
        NoNewPrivs:\t1
        Seccomp:\t2
        Seccomp_filters:\t1
        """

    @Test func readsAConfinedProcess() {
        let s = ProcessSecurity.parse(Self.confined)
        #expect(s.uids == [994, 994, 994, 994])
        #expect(s.gids == [990, 990, 990, 990])
        #expect(s.effectiveCapabilities == 0 && s.permittedCapabilities == 0)
        #expect(s.boundingCapabilities == 0x14c0)
        #expect(s.noNewPrivileges)
        #expect(s.seccompMode == 2)
    }

    @Test func readsTheHelpersNetAdmin() {
        let s = ProcessSecurity.parse("Uid:\t0\t0\t0\t0\nCapEff:\t0000000000001000\nCapPrm:\t0000000000001000\nSeccomp:\t0\n")
        #expect(s.effectiveCapabilities == UInt64(1) << UInt64(Sandbox.capNetAdmin))
        #expect(!s.noNewPrivileges && s.seccompMode == 0)
    }

    @Test func thisTestProcessIsReadable() {
        // Whatever the runner's privileges, the parser finds the uid line of a real file.
        #expect(ProcessSecurity.current().uids.count == 4)
    }
}
