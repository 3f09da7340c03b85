import Foundation
import GatewayIPC
import GatewayWire
import Glibc

/// Why a call to the gateway's control socket did not get an answer.
public enum GatewayCallError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No socket, or nobody listening: the gateway is not running.
    case notRunning(String)
    /// The gateway answered with a wire error (unknown request on an older gateway, …).
    case refused(code: Int, message: String)
    /// Timeout, broken connection, unexpected answer.
    case failed(String)

    public var description: String {
        switch self {
        case .notRunning(let s): return "gateway not running (\(s))"
        case .refused(let code, let message): return "gateway refused the request (wire error \(code)): \(message)"
        case .failed(let s): return "gateway control socket: \(s)"
        }
    }
}

/// Calls on the gateway's control socket `<run-dir>/server.sock`, one short connection per
/// call (the gateway is an event loop; a held-open idle connection buys nothing), with a
/// receive timeout so a wedged gateway cannot stall the agent's loop.
public struct GatewayControl: Sendable {
    public let socketPath: String
    public var timeoutSeconds: Double

    public init(runDirectory: String, timeoutSeconds: Double = 10) {
        self.socketPath = runDirectory + "/server.sock"
        self.timeoutSeconds = timeoutSeconds
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
