internal import CGatewayShims
import Foundation
import GatewayCore
import GatewaySystem

/// The one TUN device all sessions share. Layer 3, no packet-info header, non-blocking.
public final class TUNDevice {
    public let fd: Int32
    public let name: String
    /// Every read and write carries a `VirtioNetHeader`; reads may be TCP segments of
    /// up to 64 KiB, and writes may be too (see `TUNPacketSplitter`, `TCPCoalescer`).
    public let offload: Bool

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
}

public struct TUNError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
