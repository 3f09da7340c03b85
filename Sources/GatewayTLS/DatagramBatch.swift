import CGatewayShims
import Glibc

/// Outgoing datagrams collected during one loop turn and sent with one `sendmmsg`.
/// Fixed slots, allocated once: DTLS records are copied in by the BIO and the batch is
/// flushed by the owner (or by `flushWhenFull` mid-turn when it fills up).
public final class DatagramBatch {
    public static let slotSize = 2048
    public let capacity: Int
    public private(set) var slots: UnsafeMutablePointer<CGatewayShims_Datagram>
    private let storage: UnsafeMutableRawPointer
    public private(set) var count = 0
    /// Called when a record must be added to a full batch; it must empty the batch.
    public var flushWhenFull: (() -> Void)?

    public init(capacity: Int = 64) {
        self.capacity = capacity
        slots = .allocate(capacity: capacity)
        storage = .allocate(byteCount: capacity * Self.slotSize, alignment: 16)
        for i in 0..<capacity {
            slots[i] = CGatewayShims_Datagram()
            slots[i].buf = storage + i * Self.slotSize
            slots[i].cap = UInt32(Self.slotSize)
        }
    }

    deinit {
        slots.deallocate()
        storage.deallocate()
    }

    /// Queues one datagram for `address`. False when it cannot be queued (too large,
    /// or the batch is full and nobody flushed it).
    @discardableResult
    public func append(_ bytes: UnsafeRawPointer, _ n: Int, to address: UnsafePointer<sockaddr_storage>, length: UInt32) -> Bool {
        guard n <= Self.slotSize else { return false }
        if count == capacity { flushWhenFull?() }
        guard count < capacity else { return false }
        memcpy(slots[count].buf, bytes, n)
        slots[count].len = UInt32(n)
        slots[count].addr = address.pointee
        slots[count].addrlen = length
        count += 1
        return true
    }

    /// Sends everything queued on `fd`. Datagrams the kernel refuses (full socket
    /// buffer) are dropped, as a router would.
    public func flush(fd: Int32) {
        var sent = 0
        while sent < count {
            let r = CGatewayShims_sendBatch(fd, slots + sent, Int32(count - sent))
            if r <= 0 {
                if r == -EINTR { continue }
                if r == 0 || r == -EAGAIN || r == -ENOBUFS { break }
                // A per-datagram error (e.g. unreachable peer): skip that one.
                sent += 1
                continue
            }
            sent += Int(r)
        }
        count = 0
    }
}
