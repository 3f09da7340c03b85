import GatewayCore
import Glibc

/// A TUN in memory, for tests: frames the "network" sends wait in `inbound` (with a virtio
/// header first when `offload`, as the kernel hands them over), frames the gateway writes
/// collect in `written`. The split and merge are the same code as the kernel device's.
public final class MemoryTUN: TunnelDevice {
    public let name: String
    public let offload: Bool
    public let framing = TUNFraming()
    public var descriptor: Int32 { -1 }
    /// Frames to be read, oldest first.
    public var inbound: [[UInt8]] = []
    /// Frames written, oldest first.
    public private(set) var written: [[UInt8]] = []

    public init(name: String = "memtun0", offload: Bool) {
        self.name = name
        self.offload = offload
    }

    public func readFrame(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) -> Int {
        guard !inbound.isEmpty else { return 0 }
        let frame = inbound.removeFirst()
        guard frame.count <= buffer.count - offset else { return -Int(EMSGSIZE) }
        UnsafeMutableRawBufferPointer(rebasing: buffer[offset..<(offset + frame.count)]).copyBytes(from: frame)
        return frame.count
    }

    public func writeFrame(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) -> Int32 {
        written.append(Array(first) + Array(second))
        return 0
    }

    /// Takes the frames written so far.
    public func takeWritten() -> [[UInt8]] {
        defer { written = [] }
        return written
    }
}
