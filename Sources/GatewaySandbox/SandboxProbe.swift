internal import CGatewayShims
import Foundation
import GatewaySystem

/// `mstunnel-server --check-sandbox`: confines this process exactly as the gateway
/// confines itself, then tries what the gateway must never do and what it must still be
/// able to do, so an operator (and the tests) can see the confinement work on this kernel.
public enum SandboxProbe {
    public struct Result: Sendable, Equatable {
        public var what: String
        public var expected: String
        public var outcome: String
        public var ok: Bool
    }

    public static func run(as account: Sandbox.Account) throws -> [Result] {
        try Sandbox.confine(to: account)
        var results: [Result] = []
        func refused(_ what: String, _ rc: Int32) {
            let e = errno
            results.append(Result(what: what, expected: "refused", outcome: rc < 0 ? "refused: \(SystemError.reason(e))" : "ALLOWED",
                                  ok: rc < 0 && e == EPERM))
        }
        func works(_ what: String, _ rc: Int32) {
            let e = errno
            results.append(Result(what: what, expected: "works", outcome: rc >= 0 ? "works" : "failed: \(SystemError.reason(e))", ok: rc >= 0))
        }
        var argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
        defer { free(argv[0]) }
        refused("execve /bin/true (start a program)", execve("/bin/true", &argv, nil))
        refused("socket(AF_NETLINK) (change routes or addresses)", socket(AF_NETLINK, Int32(SOCK_RAW.rawValue), 0))
        refused("socket(AF_PACKET) (raw frames)", socket(AF_PACKET, Int32(SOCK_RAW.rawValue), 0))
        refused("open /tmp for writing (write a file)", open("/tmp/mstunnel-sandbox-probe", O_WRONLY | O_CREAT, 0o600))
        refused("mount (change the filesystem)", mount("none", "/tmp", "tmpfs", 0, nil))
        refused("setuid 0 (become root again)", setuid(0))
        let unix = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        works("socket(AF_UNIX) (reach the auth plugin)", unix)
        if unix >= 0 { close(unix) }
        let fd = open("/proc/self/status", O_RDONLY)
        works("open /proc/self/status for reading (reload settings)", fd)
        if fd >= 0 { close(fd) }
        let status = ProcessSecurity.current()
        results.append(Result(what: "CapEff / CapPrm", expected: "0 / 0",
                              outcome: "\(String(status.effectiveCapabilities, radix: 16)) / \(String(status.permittedCapabilities, radix: 16))",
                              ok: status.effectiveCapabilities == 0 && status.permittedCapabilities == 0))
        results.append(Result(what: "Seccomp / NoNewPrivs", expected: "2 / 1", outcome: "\(status.seccompMode) / \(status.noNewPrivileges ? 1 : 0)",
                              ok: status.seccompMode == 2 && status.noNewPrivileges))
        return results
    }
}
