import Glibc

/// Fixed-size chunks for outbound TLS bytes, reused across connections. An idle
/// connection holds no chunk; a busy one holds exactly one. This keeps per-session
/// memory small (thousands of idle sessions) while letting a busy session queue a
/// burst of records that goes out in one `send`.
public final class BufferPool {
    public let chunkSize: Int
    private var free: [UnsafeMutableRawPointer] = []
    private let maxFree: Int
    public private(set) var outstanding = 0

    public init(chunkSize: Int = 256 * 1024, maxFree: Int = 64) {
        self.chunkSize = chunkSize
        self.maxFree = maxFree
    }

    deinit { for p in free { p.deallocate() } }

    func take() -> UnsafeMutableRawPointer {
        outstanding += 1
        if let p = free.popLast() { return p }
        return UnsafeMutableRawPointer.allocate(byteCount: chunkSize, alignment: 16)
    }

    func give(_ p: UnsafeMutableRawPointer) {
        outstanding -= 1
        if free.count < maxFree { free.append(p) } else { p.deallocate() }
    }
}

/// The bytes a connection has produced but the kernel has not yet taken.
public final class OutboundBuffer {
    private let pool: BufferPool
    private var base: UnsafeMutableRawPointer?
    private var head = 0
    private var tail = 0

    public init(pool: BufferPool) { self.pool = pool }

    deinit { if let base { pool.give(base) } }

    public var count: Int { tail - head }
    public var isEmpty: Bool { tail == head }
    /// Room for more bytes, counting what compaction would free.
    public var freeSpace: Int { pool.chunkSize - (tail - head) }

    /// Appends; false if it does not fit (the caller checks `freeSpace` first).
    func append(_ p: UnsafeRawPointer, _ n: Int) -> Bool {
        if base == nil {
            base = pool.take()
            head = 0
            tail = 0
        }
        if tail + n > pool.chunkSize {
            guard tail - head + n <= pool.chunkSize else { return false }
            memmove(base!, base! + head, tail - head)
            tail -= head
            head = 0
        }
        memcpy(base! + tail, p, n)
        tail += n
        return true
    }

    public enum FlushResult: Equatable {
        /// Everything went out.
        case drained
        /// The socket is full; wait for writability.
        case blocked
        /// The socket failed (peer gone).
        case failed(Int32)
    }

    /// Sends as much as the socket takes.
    public func flush(fd: Int32) -> FlushResult {
        while head < tail, let base {
            let n = send(fd, base + head, tail - head, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
            if n > 0 {
                head += n
                continue
            }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { return .blocked }
                return .failed(errno)
            }
            return .blocked
        }
        release()
        return .drained
    }

    /// Takes every queued byte out (a memory transport: tests hand them to the peer's
    /// `InboundBuffer`).
    public func take() -> [UInt8] {
        guard let base, head < tail else { return [] }
        let bytes = Array(UnsafeRawBufferPointer(start: base + head, count: tail - head))
        release()
        return bytes
    }

    /// Drops queued bytes and returns the chunk to the pool.
    public func release() {
        if let b = base {
            pool.give(b)
            base = nil
        }
        head = 0
        tail = 0
    }
}
