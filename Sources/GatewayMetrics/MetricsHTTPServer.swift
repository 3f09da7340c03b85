import Foundation
import Hummingbird
import Logging
import NIOCore

/// The scrape endpoint of `--metrics-listen HOST:PORT`: plain HTTP answering `GET /metrics`
/// with the Prometheus text exposition, and 404 to anything else.
///
/// Plain HTTP and no authentication, as Prometheus scrapes by default: the numbers say how
/// busy the gateway is and what it refused, never who (no user, address or token is a
/// label). Bind it to loopback or to the management network, never to the address users
/// connect to (docs/metrics.md).
public enum MetricsHTTPServer {
    public struct StartError: Error, CustomStringConvertible {
        public let description: String
    }

    /// `HOST:PORT` (IPv6 as `[ADDR]:PORT`) or nil with the reason.
    public static func parse(listen: String) -> (host: String, port: Int)? {
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]),
              (1...65535).contains(port) else { return nil }
        var host = String(listen[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty, !host.contains("["), !host.contains("]") else { return nil }
        return (host, port)
    }

    /// The listener, not started; `onServerRunning` gets the port it bound.
    public static func application(host: String, port: Int, logger: Logger, render: @escaping @Sendable () -> [UInt8],
                                   onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        let router = Router()
        router.get("/metrics") { _, _ -> Response in
            let body = render()
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
        }
        return Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: nil),
                           onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? port) }, logger: logger)
    }

    /// For a program without Swift concurrency of its own (the agent): starts the listener
    /// on its own task and returns once it is bound (the port it got: `port` 0 picks one),
    /// or throws why it could not bind within 10 s. It runs until the process exits.
    @discardableResult
    public static func start(host: String, port: Int, logger: Logger, render: @escaping @Sendable () -> [UInt8]) throws -> Int {
        let bound = BoundPort()
        let app = application(host: host, port: port, logger: logger, render: render) { bound.set(.success($0)) }
        Task.detached {
            do {
                try await app.run()
            } catch {
                bound.set(.failure(StartError(description: "metrics listener on \(host):\(port): \(error)")))
            }
        }
        switch bound.wait(seconds: 10) {
        case .success(let p)?: return p
        case .failure(let e)?: throw e
        case nil: throw StartError(description: "metrics listener on \(host):\(port) not bound after 10 s")
        }
    }
}

/// The first outcome of binding, handed from the server's task to the caller's thread.
private final class BoundPort: @unchecked Sendable {
    private let condition = NSCondition()
    private var result: Result<Int, MetricsHTTPServer.StartError>?

    func set(_ r: Result<Int, MetricsHTTPServer.StartError>) {
        condition.lock()
        if result == nil { result = r }
        condition.broadcast()
        condition.unlock()
    }

    func wait(seconds: Double) -> Result<Int, MetricsHTTPServer.StartError>? {
        let deadline = Date().addingTimeInterval(seconds)
        condition.lock()
        defer { condition.unlock() }
        while result == nil, condition.wait(until: deadline) {}
        return result
    }
}
