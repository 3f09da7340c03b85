internal import CGatewayShims
import Foundation
import GatewayCore
import GatewaySystem

/// The kernel's TUN device all sessions share: layer 3, no packet-info header,
/// non-blocking, with TCP offload when the kernel agrees (`IFF_VNET_HDR`; then every read
/// and write carries a `VirtioNetHeader`, and reads may be TCP segments of up to 64 KiB).
/// One `read` or `writev` per frame; the packets and the merging are `TunnelDevice`'s.
public final class LinuxTUN: TunnelDevice {
    public let fd: Int32
    public let name: String
    public let offload: Bool
    public let framing = TUNFraming()
    public var descriptor: Int32 { fd }

    public init(name: String, offload: Bool = true) throws {
        var out = [CChar](repeating: 0, count: Int(CGatewayShims_ifnamsiz()))
        var enabled: Int32 = 0
        let fd = CGatewayShims_tunOpenOffload(name, offload ? 1 : 0, &out, &enabled)
        self.offload = enabled == 1
        if fd < 0 {
            let e = -fd
            throw TUNError("cannot create TUN device \(name): \(SystemError.reason(e))"
                + (e == EPERM ? " (needs CAP_NET_ADMIN)" : e == ENOENT ? " (is /dev/net/tun present?)" : ""))
        }
        self.fd = fd
        self.name = String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    deinit { close(fd) }

    public func readFrame(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) -> Int {
        let n = read(fd, buffer.baseAddress! + offset, buffer.count - offset)
        if n > 0 { return n }
        if n == 0 { return 0 }
        return errno == EAGAIN || errno == EINTR ? 0 : -Int(errno)
    }

    public func writeFrame(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) -> Int32 {
        if second.isEmpty {
            return write(fd, first.baseAddress, first.count) < 0 ? errno : 0
        }
        return withUnsafeTemporaryAllocation(of: iovec.self, capacity: 2) { iov in
            iov[0] = iovec(iov_base: UnsafeMutableRawPointer(mutating: first.baseAddress), iov_len: first.count)
            iov[1] = iovec(iov_base: UnsafeMutableRawPointer(mutating: second.baseAddress), iov_len: second.count)
            return writev(fd, iov.baseAddress, 2) < 0 ? errno : 0
        }
    }
}

public struct TUNError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
