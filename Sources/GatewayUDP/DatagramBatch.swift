// The one module that imports the C shim publicly: the per-datagram path (`reserve`,
// `commit`, `datagram(_:)`) is @inlinable so it inlines into the gateway's loop, and
// inlinable code may only touch publicly imported types (the shim's mmsghdr slots, and
// libc's sockaddr_storage, which reaches Swift through the shim's header because glibc's
// headers are not modular). Every other module imports the shims `internal`.
import CGatewayShims
import Glibc

/// Receive slots for one recvmmsg: fixed buffers, allocated once.
public final class DatagramSlots {
    public static let slotSize = 2048
    public let capacity: Int
    @usableFromInline let slots: UnsafeMutablePointer<CGatewayShims_Datagram>
    private let storage: UnsafeMutableRawPointer

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

    /// Receives up to `capacity` datagrams from `fd` with one `recvmmsg` (non-blocking).
    /// Returns how many arrived (0 when none or on an error).
    public func receive(fd: Int32) -> Int {
        max(0, Int(CGatewayShims_recvBatch(fd, slots, Int32(capacity))))
    }

    /// Datagram `i` of the last `receive`: its bytes and its sender, valid until the next.
    /// Inlinable: the gateway calls it for every datagram it receives.
    @inlinable
    public func datagram(_ i: Int) -> (bytes: UnsafeRawBufferPointer, sender: UnsafeMutablePointer<sockaddr_storage>, senderLength: UInt32) {
        let slot = slots + i
        let sender = (UnsafeMutableRawPointer(slot) + MemoryLayout<CGatewayShims_Datagram>.offset(of: \.addr)!)
            .assumingMemoryBound(to: sockaddr_storage.self)
        return (UnsafeRawBufferPointer(start: slot.pointee.buf, count: Int(slot.pointee.len)), sender, slot.pointee.addrlen)
    }
}

/// Outgoing datagrams of one loop turn, packed back to back in one arena and sent with
/// one `sendmmsg`; runs to the same client of equal size leave as UDP GSO sends (the
/// shape a large TCP segment split into DTLS records has), so the kernel routes,
/// filters and queues them once instead of once per datagram.
public final class DatagramBatch {
    public let arenaSize: Int
    public let maxDatagrams: Int
    // Internal, but usable from inlinable code: the DTLS sealer (another module) reserves
    // and commits a record per packet, and those two must inline into it.
    @usableFromInline let arena: UnsafeMutableRawPointer
    @usableFromInline let entries: UnsafeMutablePointer<CGatewayShims_OutDatagram>
    // Unchecked exclusivity: these are read and bumped per datagram, never held across a
    // call, and public visibility kept the optimizer from proving that, so every access
    // paid a runtime check (swift_beginAccess, ~5 % of the gateway's user-space
    // instructions with the other hot properties; callgrind, docs/performance.md).
    @exclusivity(unchecked) @usableFromInline var queued = 0
    /// Datagrams queued since the last flush.
    @inlinable public var count: Int { queued }
    @exclusivity(unchecked) @usableFromInline var used = 0
    /// Whether UDP GSO is in use (cleared for good if the kernel refuses it).
    public private(set) var gso: Bool
    /// Datagrams dropped: the socket buffer was full, or the batch was (its owner did not
    /// make room first, see `isNearlyFull`).
    public private(set) var dropped: UInt64 = 0
    /// Room every writer may count on while `isNearlyFull` is false: a DTLS handshake
    /// flight or retransmission is a few datagrams of at most the link MTU.
    public static let reserveDatagrams = 8
    public static let reserveBytes = 16 * 1024

    public init(arenaSize: Int = 512 * 1024, maxDatagrams: Int = 512, gso: Bool = true) {
        self.arenaSize = arenaSize
        self.maxDatagrams = maxDatagrams
        self.gso = gso
        arena = .allocate(byteCount: arenaSize, alignment: 16)
        entries = .allocate(capacity: maxDatagrams)
    }

    deinit {
        arena.deallocate()
        entries.deallocate()
    }

    /// Queues one datagram for `address`. False if it cannot be queued (larger than
    /// the arena, or the batch is full and nobody flushed it).
    @discardableResult
    public func append(_ bytes: UnsafeRawPointer, _ n: Int, to address: UnsafePointer<sockaddr_storage>, length: UInt32) -> Bool {
        guard let out = reserve(n) else { return false }
        memcpy(out, bytes, n)
        commit(n, to: address, length: length)
        return true
    }

    /// Whether the owner should send the batch before the next thing that may queue
    /// datagrams. The batch never sends itself: writes come from inside OpenSSL (a BIO
    /// callback) as well as from the gateway, and a `sendmmsg` belongs to the loop, which
    /// checks this before each DTLS write, read, handshake step or retransmission.
    @inlinable
    public var isNearlyFull: Bool {
        queued + Self.reserveDatagrams > maxDatagrams || used + Self.reserveBytes > arenaSize
    }

    /// Room for one datagram of up to `n` bytes, to be written in place and queued with
    /// `commit`; nil (and the datagram counted as dropped) if there is none.
    @inlinable @inline(__always)
    public func reserve(_ n: Int) -> UnsafeMutableRawPointer? {
        guard n <= 65507, queued < maxDatagrams, used + n <= arenaSize else {
            noteDropped()
            return nil
        }
        return arena + used
    }

    @usableFromInline func noteDropped() { dropped &+= 1 }

    /// Queues the `n` bytes written at the last `reserve` (at most what it reserved).
    @inlinable @inline(__always)
    public func commit(_ n: Int, to address: UnsafePointer<sockaddr_storage>, length: UInt32) {
        entries[queued].offset = UInt32(used)
        entries[queued].len = UInt32(n)
        entries[queued].addr = address.pointee
        entries[queued].addrlen = length
        used += n
        queued += 1
    }

    /// The queued datagrams, oldest first (tests, diagnostics).
    public func forEachQueued(_ body: (UnsafeRawBufferPointer) -> Void) {
        for i in 0..<count {
            body(UnsafeRawBufferPointer(start: arena + Int(entries[i].offset), count: Int(entries[i].len)))
        }
    }

    /// Drops everything queued without sending it.
    public func discardQueued() {
        queued = 0
        used = 0
    }

    /// Sends everything queued on `fd`. What the kernel refuses (full socket buffer)
    /// is dropped, as a router would.
    public func flush(fd: Int32) {
        guard count > 0 else { return }
        var useGSO: Int32 = gso ? 1 : 0
        let sent = CGatewayShims_sendDatagrams(fd, arena.assumingMemoryBound(to: UInt8.self), entries, Int32(count), &useGSO)
        gso = useGSO == 1
        if sent >= 0, Int(sent) < count { dropped &+= UInt64(count - Int(sent)) }
        queued = 0
        used = 0
    }
}
