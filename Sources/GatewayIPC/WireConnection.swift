import Glibc
import GatewayWire

/// A blocking, framed connection over a Unix socket, for the processes that are not
/// event loops (the auth plugin's per-connection reader, `mst-cli`, tests). Reads and
/// writes may happen on different threads; writes are serialised by a lock.
public final class WireConnection: @unchecked Sendable {
    // @unchecked: `fd` is immutable; `decoder` is touched only by the single reader
    // thread; `writeLock` serialises writers.
    public let fd: Int32
    private var decoder: WireFrameDecoder
    private let writeLock = Mutex()
    private var readBuffer = [UInt8](repeating: 0, count: 64 * 1024)

    public init(fd: Int32, maxPayload: Int = WireFrame.defaultMaxPayload) {
        self.fd = fd
        self.decoder = WireFrameDecoder(maxPayload: maxPayload)
    }

    deinit { close(fd) }

    /// Connects to a socket path.
    public static func connect(path: String) throws -> WireConnection {
        WireConnection(fd: try UnixSocket.connect(path: path))
    }

    public func send(_ envelope: WireEnvelope) throws {
        let bytes = try WireCodec.encode(envelope)
        try writeLock.withLock { try UnixSocket.writeAll(fd: fd, bytes) }
    }

    /// The next envelope; nil at a clean end of stream. Throws `WireFrameError` on a bad
    /// stream (the caller should close) and `IPCError` on a socket error.
    public func receive() throws -> WireEnvelope? {
        while true {
            if let envelope = try decoder.next() { return envelope }
            let n = readBuffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 {
                if decoder.buffered > 0 { throw IPCError("peer closed mid-frame") }
                return nil
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw IPCError("recv", errno: errno)
            }
            decoder.append(readBuffer[0..<n])
        }
    }

    /// Sends a request and waits for the response with the same id (single-caller use).
    public func call(_ request: WireRequest, id: UInt64 = 1) throws -> WireResponse {
        try send(WireEnvelope(id: id, .request(request)))
        while let envelope = try receive() {
            if envelope.id == id, case .response(let r) = envelope.message { return r }
        }
        throw IPCError("connection closed before the response")
    }

    /// Sets a receive timeout in seconds (0 = none).
    public func setReceiveTimeout(seconds: Double) {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1_000_000))
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }
}

/// A minimal pthread mutex: Synchronization.Mutex needs macOS 15 availability
/// annotations everywhere; this keeps the Linux build simple.
public final class Mutex: @unchecked Sendable {
    // @unchecked: the pthread mutex is the synchronisation itself.
    private var m = pthread_mutex_t()
    public init() { pthread_mutex_init(&m, nil) }
    deinit { pthread_mutex_destroy(&m) }
    public func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(&m)
        defer { pthread_mutex_unlock(&m) }
        return try body()
    }
}
