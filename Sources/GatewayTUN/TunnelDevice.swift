import GatewayCore

/// Where the gateway's IP packets leave for the network and come back: the kernel's TUN
/// (`LinuxTUN`) or memory (`MemoryTUN`, for tests). Like wireguard-go's `tun.Device`, the
/// device speaks in IP packets and batches: behind it, a TUN with offload reads TCP
/// segments of up to 64 KiB (split here into packets, GSO) and takes TCP segments of one
/// flow merged into one (GRO-like); the gateway never sees a virtio header.
///
/// A conforming type moves frames (`readFrame`, `writeFrame`); the packets and the
/// batching are this protocol's extension, the same for every device.
public protocol TunnelDevice: AnyObject {
    var name: String { get }
    /// For the event loop's epoll set; -1 for a device with no descriptor (memory).
    var descriptor: Int32 { get }
    /// Frames carry a `VirtioNetHeader` (the kernel agreed to TCP offload).
    var offload: Bool { get }
    /// The per-device split/merge state.
    var framing: TUNFraming { get }
    /// One frame into `buffer` from `offset`: its length, 0 when none waits, or -errno.
    func readFrame(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) -> Int
    /// One frame, given as two parts written together (`second` may be empty): 0 or errno.
    func writeFrame(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) -> Int32
}

/// What one `readPackets` call did.
public struct TUNReadResult: Equatable, Sendable {
    public var frames = 0
    /// Frames that could not be turned into packets (a GSO type other than TCP/IPv4, a
    /// truncated header), dropped.
    public var unsupported = 0
    /// The errno of a read that failed (0: none); the batch ends there.
    public var error: Int32 = 0
    public init() {}
}

extension TunnelDevice {
    /// Reads up to `maxFrames` frames and hands every IP packet in them to
    /// `deliver(offset, length)` in `buffer`, each with at least `headroom` free bytes in
    /// front (the caller's framing: the CSTP header). The packets are in `buffer` only until
    /// `deliver` returns.
    @inlinable
    public func readPackets(into buffer: UnsafeMutableRawBufferPointer, headroom: Int, maxFrames: Int,
                            _ deliver: (Int, Int) -> Void) -> TUNReadResult {
        var result = TUNReadResult()
        for _ in 0..<maxFrames {
            let n = readFrame(into: buffer, at: headroom)
            if n < 0 { result.error = Int32(-n) }
            if n <= 0 { break }
            result.frames += 1
            if !offload {
                deliver(headroom, n)
            } else if !framing.split(buffer, frameAt: headroom, length: n, deliver) {
                result.unsupported += 1
            }
        }
        return result
    }

    /// One IP packet for the network. Behind offload, TCP segments of one flow are held and
    /// merged until the flow changes or `flush`; the errno of a write that failed, or 0.
    @inlinable
    public func writePacket(_ p: UnsafeRawBufferPointer) -> Int32 {
        guard offload else { return writeFrame(p, UnsafeRawBufferPointer(start: nil, count: 0)) }
        if TCPCoalescer.eligible(p) {
            if framing.coalescer.active {
                if framing.coalescer.append(p) { return 0 }
                let e = flush()
                framing.coalescer.start(p)
                return e
            }
            framing.coalescer.start(p)
            return 0
        }
        let e = flush()
        let alone = writeFrame(UnsafeRawBufferPointer(start: framing.zeroHeader, count: VirtioNetHeader.size), p)
        return e != 0 ? e : alone
    }

    /// Writes the merged segment being built, if any (the end of every loop turn, so
    /// nothing waits longer than one turn); the errno of a failed write, or 0.
    @inlinable
    @discardableResult
    public func flush() -> Int32 {
        guard framing.coalescer.active else { return 0 }
        return writeFrame(framing.coalescer.finish(), UnsafeRawBufferPointer(start: nil, count: 0))
    }
}

/// The virtio framing state of one device: the merge in progress, an empty header for
/// packets written alone, and the split of a frame read.
public final class TUNFraming {
    public var coalescer = TCPCoalescer()
    /// An all-zero virtio header (no offload asked) for packets written alone.
    public let zeroHeader: UnsafeMutableRawPointer

    public init() {
        zeroHeader = .allocate(byteCount: VirtioNetHeader.size, alignment: 8)
        zeroHeader.initializeMemory(as: UInt8.self, repeating: 0, count: VirtioNetHeader.size)
    }

    deinit { zeroHeader.deallocate() }

    /// The IP packets of the frame at `buffer[offset..<offset+length]` (virtio header
    /// first), split in place (`TUNPacketSplitter`); false if the frame is unusable.
    public func split(_ buffer: UnsafeMutableRawBufferPointer, frameAt offset: Int, length: Int,
                      _ deliver: (Int, Int) -> Void) -> Bool {
        guard length > VirtioNetHeader.size else { return false }
        let base = buffer.baseAddress!
        let h = VirtioNetHeader(base + offset)
        let packetOffset = offset + VirtioNetHeader.size
        let packetLength = length - VirtioNetHeader.size
        switch h.gsoType & ~VirtioNetHeader.gsoECN {
        case VirtioNetHeader.gsoNone:
            if h.flags & VirtioNetHeader.needsChecksum != 0,
               !TUNPacketSplitter.completeChecksum(h, packet: UnsafeMutableRawBufferPointer(start: base + packetOffset, count: packetLength)) {
                return false
            }
            deliver(packetOffset, packetLength)
            return true
        case VirtioNetHeader.gsoTCPv4:
            return TUNPacketSplitter.segmentTCPv4(h, buffer: buffer, packetOffset: packetOffset, length: packetLength, emit: deliver) == nil
        default:
            return false
        }
    }
}
