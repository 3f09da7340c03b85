import Foundation
import HummingbirdCore
import Logging
import NIOCore
import NIOSSL
import NIOTLS
import Synchronization

/// Counts open connections per source (`SourceAddress.key`) and in all, and refuses one
/// over either limit. The table holds only sources with an open connection, so it is
/// bounded by `total`.
final class ConnectionLimiter: Sendable {
    enum Admission: Equatable {
        case admitted
        case perSourceLimit
        case totalLimit
    }

    private struct State {
        var perSource: [String: Int] = [:]
        var total = 0
    }
    private let state = Mutex(State())
    let perSourceLimit: Int
    let totalLimit: Int

    init(perSource: Int, total: Int) {
        perSourceLimit = max(1, perSource)
        totalLimit = max(1, total)
    }

    func admit(_ key: String) -> Admission {
        state.withLock { s in
            if s.total >= totalLimit { return .totalLimit }
            let open = s.perSource[key, default: 0]
            if open >= perSourceLimit { return .perSourceLimit }
            s.perSource[key] = open + 1
            s.total += 1
            return .admitted
        }
    }

    func release(_ key: String) {
        state.withLock { s in
            guard let open = s.perSource[key] else { return }
            if open <= 1 { s.perSource.removeValue(forKey: key) } else { s.perSource[key] = open - 1 }
            s.total -= 1
        }
    }

    func open(_ key: String) -> Int { state.withLock { $0.perSource[key, default: 0] } }
    var openTotal: Int { state.withLock { $0.total } }
}

/// Wraps the TLS child channel of the HTTPS listener:
/// - a connection over the per-source or the total limit is closed at once, before any TLS
///   work (`control.conn.refused`);
/// - the TLS handshake must finish within `handshakeTimeout` of the connection becoming
///   active, or the connection is closed (`control.conn.handshake_timeout`), so a client
///   that sends no ClientHello, or half of one, cannot hold a socket;
/// - the HTTP/1 channel beneath closes connections idle for its `idleTimeout`.
struct GuardedChildChannel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value

    struct Refused: Error {}

    let base: Base
    let limiter: ConnectionLimiter
    let handshakeTimeout: TimeAmount
    let logger: Logger
    let logGate: LogGate

    func setup(channel: any Channel, logger setupLogger: Logger) -> EventLoopFuture<Value> {
        let source = SourceAddress.key(channel.remoteAddress)
        let admission = limiter.admit(source)
        guard admission == .admitted else {
            if let suppressed = logGate.pass("control.conn.refused") {
                logger.notice("control.conn.refused", metadata: [
                    "source": "\(source)",
                    "reason": "\(admission == .perSourceLimit ? "per_source_limit" : "total_limit")",
                    "limit": "\(admission == .perSourceLimit ? limiter.perSourceLimit : limiter.totalLimit)",
                    "suppressed": "\(suppressed)",
                ])
            }
            // The channel is not registered yet; a failed setup would leave it open.
            channel.close(promise: nil)
            return channel.eventLoop.makeFailedFuture(Refused())
        }
        let limiter = self.limiter
        channel.closeFuture.whenComplete { _ in limiter.release(source) }
        let timeout = handshakeTimeout
        let logger = self.logger
        let logGate = self.logGate
        let onTimeout: @Sendable () -> Void = {
            guard let suppressed = logGate.pass("control.conn.handshake_timeout") else { return }
            logger.notice("control.conn.handshake_timeout", metadata: [
                "source": "\(source)", "timeout_ms": "\(timeout.nanoseconds / 1_000_000)", "suppressed": "\(suppressed)",
            ])
        }
        return base.setup(channel: channel, logger: setupLogger).flatMapThrowing { value in
            // After the TLS handler, which tells the handlers behind it that the handshake completed.
            let sync = channel.pipeline.syncOperations
            let tls = try sync.handler(type: NIOSSLServerHandler.self)
            try sync.addHandler(TLSHandshakeDeadlineHandler(timeout: timeout, onTimeout: onTimeout), position: .after(tls))
            return value
        }.flatMapErrorThrowing { error in
            channel.close(promise: nil)
            throw error
        }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

/// Closes the connection when the TLS handshake has not completed `timeout` after the
/// connection became active; removes itself once it has.
final class TLSHandshakeDeadlineHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let timeout: TimeAmount
    private let onTimeout: @Sendable () -> Void
    private var timer: Scheduled<Void>?
    private var completed = false

    init(timeout: TimeAmount, onTimeout: @escaping @Sendable () -> Void) {
        self.timeout = timeout
        self.onTimeout = onTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cancel()
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancel()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let tls = event as? TLSUserEvent, case .handshakeCompleted = tls {
            completed = true
            cancel()
            context.fireUserInboundEventTriggered(event)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func start(_ context: ChannelHandlerContext) {
        guard timer == nil, !completed else { return }
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            self.timer = nil
            guard !self.completed else { return }
            self.onTimeout()
            context.close(promise: nil)
        }
    }

    private func cancel() {
        timer?.cancel()
        timer = nil
    }
}
