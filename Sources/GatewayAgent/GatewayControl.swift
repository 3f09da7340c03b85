import Foundation
import GatewayIPC
import GatewayWire
import Glibc
import Logging

/// Why a call to the gateway's control socket did not get an answer.
public enum GatewayCallError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No socket, or nobody listening: the gateway is not running.
    case notRunning(String)
    /// The gateway answered with a wire error (unknown request on an older gateway, …).
    case refused(code: Int, message: String)
    /// Timeout, broken connection, unexpected answer.
    case failed(String)
    /// Something listens on the socket, but not as a user the agent trusts to be the
    /// gateway (see `GatewayControl.peerRefusal`): nothing was sent to it.
    case untrustedPeer(String)

    public var description: String {
        switch self {
        case .notRunning(let s): return "gateway not running (\(s))"
        case .refused(let code, let message): return "gateway refused the request (wire error \(code)): \(message)"
        case .failed(let s): return "gateway control socket: \(s)"
        case .untrustedPeer(let s): return "gateway control socket not trusted: \(s)"
        }
    }
}

/// Calls on the gateway's control socket `<run-dir>/server.sock`, one short connection per
/// call (the gateway is an event loop; a held-open idle connection buys nothing), with a
/// receive timeout so a wedged gateway cannot stall the agent's loop.
///
/// Who is listening is checked before anything is sent. Whoever can create `server.sock`
/// (write access to the run directory, or the socket removed while the gateway is down)
/// could otherwise pose as the gateway: it would receive every configuration the agent
/// applies (`applySettings` carries the whole Server configuration) and could feed the
/// agent made-up health and session events. So after connecting, the listener's
/// credentials (SO_PEERCRED: the uid/gid the listening process had when it called
/// listen(2), which the kernel records and the peer cannot fake) must be root, the
/// agent's own uid, or a primary gid the operator allowed with `--gateway-gid`.
public struct GatewayControl: Sendable {
    public let socketPath: String
    public var timeoutSeconds: Double
    /// Primary gids (beyond root and the agent's own uid) accepted for the listener.
    public var allowedGIDs: Set<UInt32>
    /// Uids (beyond root and the agent's own) accepted for the listener.
    public var allowedUIDs: Set<UInt32> = []
    let peerLog: PeerCheckLog?

    public init(runDirectory: String, timeoutSeconds: Double = 10, allowedGIDs: Set<UInt32> = [], logger: Logger? = nil) {
        self.socketPath = runDirectory + "/server.sock"
        self.timeoutSeconds = timeoutSeconds
        self.allowedGIDs = allowedGIDs
        self.peerLog = logger.map(PeerCheckLog.init)
    }

    /// mstunnel-auth's socket, trusted only when its listener is root, the agent's uid or one
    /// of `authUIDs` — never by group: the stack's group includes the gateway, which must not
    /// receive the Site's ticket keys by posing as auth.
    public init(authSocket: String, authUIDs: Set<UInt32>, timeoutSeconds: Double = 10, logger: Logger? = nil) {
        self.socketPath = authSocket
        self.timeoutSeconds = timeoutSeconds
        self.allowedGIDs = []
        self.allowedUIDs = authUIDs
        self.peerLog = logger.map(PeerCheckLog.init)
    }

    /// Revocations both ways with mstunnel-auth (docs/site.md, "Revocation").
    public func ticketRevocations(_ request: TicketRevocationsRequest) -> Result<TicketRevocationsResponse, GatewayCallError> {
        call(.ticketRevocations(request)).flatMap {
            if case .ticketRevocations(let r) = $0 { return .success(r) }
            return .failure(.failed("unexpected answer \($0.typeName) to ticketRevocations"))
        }
    }

    /// Hands the Site's ticket keys to mstunnel-auth (nil: only asks what it has).
    public func installTicketKeys(_ keys: TicketKeyFile?) -> Result<TicketKeysResponse, GatewayCallError> {
        call(.installTicketKeys(InstallTicketKeysRequest(keys: keys))).flatMap {
            if case .ticketKeys(let r) = $0 { return .success(r) }
            return .failure(.failed("unexpected answer \($0.typeName) to installTicketKeys"))
        }
    }

    /// The trust policy for the process listening on the control socket, as a pure
    /// function: nil when it may be talked to, else the reason it may not. Root, the
    /// agent's own (effective) uid, or a gid in `allowedGIDs`.
    public static func peerRefusal(_ peer: PeerCredentials, ownUID: UInt32, allowedGIDs: Set<UInt32>, allowedUIDs: Set<UInt32> = []) -> String? {
        if peer.uid == 0 || peer.uid == ownUID || allowedGIDs.contains(peer.gid) || allowedUIDs.contains(peer.uid) { return nil }
        let groups = allowedGIDs.isEmpty ? "no --gateway-gid given" : "allowed gids \(allowedGIDs.sorted().map(String.init).joined(separator: ","))"
        return "the listener runs as uid \(peer.uid) gid \(peer.gid) (pid \(peer.pid)): not root, not the agent's uid \(ownUID), "
            + "and its gid is not allowed (\(groups)); nothing was sent to it, since it could be posing as the gateway"
    }

    public func ping() -> Result<PingResponse, GatewayCallError> {
        call(.ping(PingRequest())).flatMap {
            if case .ping(let r) = $0 { return .success(r) }
            return .failure(.failed("unexpected answer \($0.typeName) to ping"))
        }
    }

    public func serverStatus() -> Result<ServerStatusResponse, GatewayCallError> {
        call(.serverStatus(ServerStatusRequest())).flatMap {
            if case .serverStatus(let r) = $0 { return .success(r) }
            return .failure(.failed("unexpected answer \($0.typeName) to serverStatus"))
        }
    }

    public func applySettings(_ request: ApplySettingsRequest) -> Result<ApplySettingsResponse, GatewayCallError> {
        // Applying may rebuild routes and DNS for every session: give it longer.
        var slow = self
        slow.timeoutSeconds = max(timeoutSeconds, 30)
        return slow.call(.applySettings(request)).flatMap {
            if case .applySettings(let r) = $0 { return .success(r) }
            return .failure(.failed("unexpected answer \($0.typeName) to applySettings"))
        }
    }

    public func drain(_ request: DrainRequest) -> Result<DrainResponse, GatewayCallError> {
        call(.drain(request)).flatMap {
            if case .drain(let r) = $0 { return .success(r) }
            return .failure(.failed("unexpected answer \($0.typeName) to drain"))
        }
    }

    public func endSessions(_ request: EndSessionsRequest) -> Result<EndSessionsResponse, GatewayCallError> {
        call(.endSessions(request)).flatMap {
            if case .endSessions(let r) = $0 { return .success(r) }
            return .failure(.failed("unexpected answer \($0.typeName) to endSessions"))
        }
    }

    public func sessionEvents(after: UInt64, limit: Int) -> Result<SessionEventsResponse, GatewayCallError> {
        call(.sessionEvents(SessionEventsRequest(after: after, limit: limit))).flatMap {
            if case .sessionEvents(let r) = $0 { return .success(r) }
            return .failure(.failed("unexpected answer \($0.typeName) to sessionEvents"))
        }
    }

    func call(_ request: WireRequest) -> Result<WireResponse, GatewayCallError> {
        let connection: WireConnection
        do {
            connection = try WireConnection.connect(path: socketPath)
        } catch let e as IPCError where e.errno == ENOENT || e.errno == ECONNREFUSED {
            return .failure(.notRunning(e.description))
        } catch {
            return .failure(.failed("\(error)"))
        }
        // Before anything is sent: is the listener someone we trust to be the gateway?
        let peer: PeerCredentials
        do {
            peer = try PeerCredentials.of(fd: connection.fd)
        } catch {
            return .failure(.failed("cannot read the listener's credentials on \(socketPath): \(error)"))
        }
        if let reason = Self.peerRefusal(peer, ownUID: UInt32(geteuid()), allowedGIDs: allowedGIDs, allowedUIDs: allowedUIDs) {
            let text = "\(socketPath): \(reason)"
            peerLog?.note(refusal: text)
            return .failure(.untrustedPeer(text))
        }
        peerLog?.note(refusal: nil)
        connection.setReceiveTimeout(seconds: timeoutSeconds)
        do {
            let response = try connection.call(request)
            if case .error(let e) = response { return .failure(.refused(code: e.code, message: e.message)) }
            return .success(response)
        } catch let e as IPCError where e.errno == EAGAIN || e.errno == EWOULDBLOCK {
            return .failure(.failed("no answer to \(request.typeName) within \(Int(timeoutSeconds)) s"))
        } catch {
            return .failure(.failed("\(request.typeName): \(error)"))
        }
    }
}

/// Logs a refused control-socket listener once per change (first refusal, a different
/// listener, trusted again), not at every call; calls come from the agent's loop thread,
/// the lock only keeps the type honestly Sendable.
final class PeerCheckLog: @unchecked Sendable {
    // @unchecked: `last` is only touched under `lock`.
    private let lock = Mutex()
    private var last: String?
    let logger: Logger

    init(logger: Logger) { self.logger = logger }

    /// `refusal` nil: the listener was trusted.
    func note(refusal: String?) {
        let changed: Bool = lock.withLock {
            defer { last = refusal }
            return last != refusal
        }
        guard changed else { return }
        if let refusal {
            logger.error("agent.gateway.untrusted", metadata: [
                "error": "\(refusal)",
                "hint": "run mstunnel-server as root or as the agent's user, or allow its group with --gateway-gid GID",
            ])
        } else {
            logger.info("agent.gateway.trusted", metadata: ["detail": "the control socket's listener is trusted again"])
        }
    }
}
