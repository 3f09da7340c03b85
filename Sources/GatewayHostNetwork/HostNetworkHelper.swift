internal import CGatewayShims
import Foundation
import GatewayIPC
import GatewayWire
import Logging
import GatewaySystem

/// The privileged half of `mstunnel-server`: a small process that keeps `CAP_NET_ADMIN`
/// (and nothing else) so the internet-facing gateway need not. It serves one client, the
/// gateway that started it, over a socket pair on descriptor 3, speaking the wire module's
/// `hostNetwork` request; it acts only on the TUN device named on its command line.
///
/// It ignores the stop signals: its life is the socket's. When the gateway closes it —
/// a clean stop, or a crash — the helper takes the NAT rules away and exits, so a gateway
/// that dies never leaves its rules behind.
public enum HostNetworkHelper {
    public static let descriptor: Int32 = 3

    public static func serve(tun: String, logger: Logger, commands: any HostCommands = SystemHostCommands()) {
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        signal(SIGHUP, SIG_IGN)
        signal(SIGPIPE, SIG_IGN)
        let connection = WireConnection(fd: descriptor)
        let converger = HostNetworkConverger(tun: tun, commands: commands)
        var warnings: [String] = []
        var ipv6Forwarding = false
        if !NetworkSetup.enableForwarding(ipv6: false) && !NetworkSetup.forwardingEnabled() {
            warnings.append("net.ipv4.ip_forward is 0 and read-only here; clients will not reach the network (set the sysctl on the host or container)")
        }
        while true {
            let envelope: WireEnvelope?
            do {
                envelope = try connection.receive()
            } catch {
                logger.error("host.helper_read_failed", metadata: ["error": "\(error)"])
                break
            }
            guard let envelope else { break }
            guard case .request(.hostNetwork(let request)) = envelope.message else {
                try? connection.send(WireEnvelope(id: envelope.id, .response(.error(WireErrorResponse(
                    code: WireErrorResponse.unknownRequest, message: "the host-network helper serves hostNetwork requests only")))))
                continue
            }
            var response = converger.converge(to: request.state)
            // IPv6 forwarding only once the gateway has an IPv6 pool (`ipv6Network`): a host
            // that routes IPv6 also stops taking router advertisements on its other links.
            if !ipv6Forwarding, response.applied, request.state?.natPrefixes.contains(where: { $0.contains(":") }) == true {
                ipv6Forwarding = true
                let (enabled, acceptRA2) = NetworkSetup.enableIPv6Forwarding()
                if !acceptRA2.isEmpty {
                    logger.notice("host.accept_ra", metadata: ["links": "\(acceptRA2.joined(separator: ","))", "accept_ra": "2",
                                                               "why": "IPv6 forwarding is turned on for ipv6Network; these links keep taking router advertisements"])
                }
                if !enabled {
                    response.warnings.append("net.ipv6.conf.all.forwarding is 0 and read-only here; clients' IPv6 will not reach the network (set it on the host, with accept_ra=2 on links configured by router advertisements)")
                }
            }
            response.warnings += warnings
            warnings = []
            if response.applied {
                if !response.steps.isEmpty {
                    logger.info("host.changed", metadata: ["tun": "\(tun)", "steps": "\(response.steps.joined(separator: "; "))"])
                }
            } else {
                logger.error("host.change_failed", metadata: ["tun": "\(tun)", "error": "\(response.error ?? "?")",
                                                              "undone": "\(response.steps.joined(separator: "; "))"])
            }
            do {
                try connection.send(WireEnvelope(id: envelope.id, .response(.hostNetwork(response))))
            } catch {
                break
            }
        }
        let teardown = converger.converge(to: nil)
        logger.info("host.helper_stopped", metadata: ["tun": "\(tun)", "steps": "\(teardown.steps.joined(separator: "; "))"])
    }
}

/// The gateway's side: how it asks for host changes.
public protocol HostNetworkControl: AnyObject {
    /// Makes the host match `state` (nil: take down what was set up). Throws
    /// `HostNetworkError` when the helper refused or failed; the host is then unchanged.
    @discardableResult
    func apply(_ state: HostNetworkState?) throws -> HostNetworkResponse
}

public struct HostNetworkError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Starts the helper (this same executable, with the helper's arguments) and talks to it.
/// A request waits for its answer: host changes happen at start, on a pool or MTU change
/// and at stop — a few milliseconds, rarely — and the caller needs the outcome before it
/// answers whoever asked for the change.
public final class HostNetworkClient: HostNetworkControl {
    private let connection: WireConnection
    public let helperPid: Int32
    private var nextId: UInt64 = 1

    public init(executable: String, arguments: [String]) throws {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw HostNetworkError("cannot create the helper's socket pair: \(SystemError.reason(errno))")
        }
        var argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) }
        argv.append(nil)
        defer { for a in argv { free(a) } }
        let pid = CGatewayShims_spawnWithDescriptor(executable, &argv, fds[1])
        close(fds[1])
        guard pid > 0 else {
            close(fds[0])
            throw HostNetworkError("cannot start the host-network helper \(executable): \(SystemError.reason(-pid))")
        }
        helperPid = pid
        connection = WireConnection(fd: fds[0])
        connection.setReceiveTimeout(seconds: 30)
    }

    @discardableResult
    public func apply(_ state: HostNetworkState?) throws -> HostNetworkResponse {
        let id = nextId
        nextId += 1
        let response: WireResponse
        do {
            response = try connection.call(.hostNetwork(HostNetworkRequest(state: state)), id: id)
        } catch {
            throw HostNetworkError("the host-network helper (pid \(helperPid)) did not answer: \(error)")
        }
        switch response {
        case .hostNetwork(let r):
            guard r.applied else { throw HostNetworkError(r.error ?? "the host-network helper refused the change") }
            return r
        case .error(let e): throw HostNetworkError("the host-network helper refused: \(e.message)")
        default: throw HostNetworkError("the host-network helper answered \(response.typeName)")
        }
    }
}
