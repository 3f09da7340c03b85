internal import CGatewayShims
import Foundation
import GatewaySystem

/// Least privilege for the internet-facing gateway: once its ports are bound and its
/// TUN device is open, nothing it does needs root or a capability, so it gives them up
/// for good and confines itself to the system calls it makes (see docs/architecture.md,
/// "Least privilege"). Host changes after that go through `HostNetworkHelper`.
public enum Sandbox {
    /// The account the gateway becomes: `--run-as UID:GID`.
    public struct Account: Sendable, Equatable, CustomStringConvertible {
        public var uid: UInt32
        public var gid: UInt32

        public init(uid: UInt32, gid: UInt32) {
            self.uid = uid
            self.gid = gid
        }

        /// `UID:GID` with numbers (the containers have no user database entries to look
        /// names up in, and numbers say exactly what the file permissions must allow).
        public init(parsing text: String) throws {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, let uid = UInt32(parts[0]), let gid = UInt32(parts[1]) else {
                throw SandboxError("'\(text)' is not UID:GID with numbers (for example 994:990)")
            }
            guard uid != 0 else { throw SandboxError("--run-as must name an unprivileged uid, not 0") }
            self.init(uid: uid, gid: gid)
        }

        public var description: String { "\(uid):\(gid)" }
    }

    /// Becomes `account` (all capabilities gone, no_new_privs) and installs the system-call
    /// allow-list. Either step failing is fatal to the caller: a gateway that meant to be
    /// confined must not carry on privileged.
    public static func confine(to account: Account) throws {
        let dropped = CGatewayShims_dropPrivileges(account.uid, account.gid)
        if dropped < 0 { throw SandboxError("cannot become \(account): \(SystemError.reason(-dropped)) (needs CAP_SETUID and CAP_SETGID)") }
        let status = ProcessSecurity.current()
        guard status.effectiveCapabilities == 0, status.permittedCapabilities == 0, status.uids.allSatisfy({ $0 == account.uid }) else {
            throw SandboxError("still privileged after becoming \(account): \(status)")
        }
        let filtered = CGatewayShims_installSyscallFilter()
        if filtered < 0 { throw SandboxError("cannot install the system-call filter: \(SystemError.reason(-filtered))") }
    }

    /// Keeps only the listed capabilities (the host-network helper keeps CAP_NET_ADMIN).
    public static func keepOnly(capabilities: [Int32]) throws {
        let mask = capabilities.reduce(UInt64(0)) { $0 | (UInt64(1) << UInt64($1)) }
        let rc = CGatewayShims_keepCapabilities(mask)
        if rc < 0 { throw SandboxError("cannot limit capabilities: \(SystemError.reason(-rc))") }
    }

    public static let capNetAdmin: Int32 = 12
}

public struct SandboxError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// What `/proc/PID/status` says about a process's privileges.
public struct ProcessSecurity: Sendable, Equatable, CustomStringConvertible {
    public var uids: [UInt32] = []
    public var gids: [UInt32] = []
    public var effectiveCapabilities: UInt64 = 0
    public var permittedCapabilities: UInt64 = 0
    public var boundingCapabilities: UInt64 = 0
    public var noNewPrivileges = false
    /// 0 none, 1 strict, 2 filter.
    public var seccompMode = 0

    public static func current() -> ProcessSecurity { parse((try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? "") }

    public static func parse(_ text: String) -> ProcessSecurity {
        var s = ProcessSecurity()
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let value = parts[1].trimmingCharacters(in: .whitespaces)
            switch parts[0] {
            case "Uid": s.uids = value.split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { UInt32($0) }
            case "Gid": s.gids = value.split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { UInt32($0) }
            case "CapEff": s.effectiveCapabilities = UInt64(value, radix: 16) ?? 0
            case "CapPrm": s.permittedCapabilities = UInt64(value, radix: 16) ?? 0
            case "CapBnd": s.boundingCapabilities = UInt64(value, radix: 16) ?? 0
            case "NoNewPrivs": s.noNewPrivileges = value == "1"
            case "Seccomp": s.seccompMode = Int(value) ?? 0
            default: break
            }
        }
        return s
    }

    public var description: String {
        "uid \(uids.map(String.init).joined(separator: "/")), CapEff \(String(effectiveCapabilities, radix: 16)), "
            + "CapPrm \(String(permittedCapabilities, radix: 16)), NoNewPrivs \(noNewPrivileges ? 1 : 0), Seccomp \(seccompMode)"
    }
}
