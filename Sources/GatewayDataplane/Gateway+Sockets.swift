import CGatewayShims
import Glibc
import GatewayCore
import GatewayHostNetwork
import GatewayIPC
import GatewaySessionCore
import GatewayTLS
import GatewayTUN
import GatewayWire
import Logging

/// The listening sockets, opened once at start (before the gateway gives up root), and
/// the printable form of a peer address.
extension Gateway {
    /// A TCP listener on `address`:`port` (`::` is dual-stack).
    static func listen(address: String, port: Int) throws -> Int32 {
        let fd = try bound(address: address, port: port, type: SOCK_STREAM) { fd in
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, 4)
        }
        if Glibc.listen(fd, 4096) < 0 {
            let e = errno
            close(fd)
            throw DataplaneError("listen", errno: e)
        }
        return fd
    }

    /// The UDP socket for DTLS on the same address and port.
    static func bindUDP(address: String, port: Int) throws -> Int32 {
        try bound(address: address, port: port, type: SOCK_DGRAM) { fd in
            // Room for bursts: a few MB each way (FORCE variants need CAP_NET_ADMIN, which
            // the gateway has; the plain ones are the fallback, capped by the sysctls).
            var size: Int32 = 4 * 1024 * 1024
            if setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, 4) != 0 { setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, 4) }
            if setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, 4) != 0 { setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, 4) }
        }
    }

    /// A non-blocking socket bound to `address`:`port`; `configure` runs before bind.
    static func bound(address: String, port: Int, type: __socket_type, configure: (Int32) -> Void) throws -> Int32 {
        let v6 = address.contains(":")
        let fd = socket(v6 ? AF_INET6 : AF_INET, Int32(type.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { throw DataplaneError("socket", errno: errno) }
        configure(fd)
        var rc: Int32
        if v6 {
            var zero: Int32 = 0
            setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &zero, 4)
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            sa.sin6_port = in_port_t(UInt16(port).bigEndian)
            _ = address.withCString { inet_pton(AF_INET6, $0, &sa.sin6_addr) }
            rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        } else {
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = in_port_t(UInt16(port).bigEndian)
            _ = address.withCString { inet_pton(AF_INET, $0, &sa.sin_addr) }
            rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        }
        if rc < 0 {
            let e = errno
            close(fd)
            throw DataplaneError("cannot bind \(type == SOCK_DGRAM ? "UDP" : "TCP") [\(address)]:\(port)", errno: e)
        }
        return fd
    }

    static func describe(_ ss: inout sockaddr_storage) -> String {
        var host = [CChar](repeating: 0, count: 64)
        var port: UInt16 = 0
        if ss.ss_family == sa_family_t(AF_INET) {
            withUnsafePointer(to: &ss) { $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { p in
                var a = p.pointee.sin_addr
                inet_ntop(AF_INET, &a, &host, 64)
                port = UInt16(bigEndian: p.pointee.sin_port)
            } }
        } else {
            withUnsafePointer(to: &ss) { $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { p in
                var a = p.pointee.sin6_addr
                inet_ntop(AF_INET6, &a, &host, 64)
                port = UInt16(bigEndian: p.pointee.sin6_port)
            } }
        }
        var h = String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if h.hasPrefix("::ffff:"), h.contains(".") { h.removeFirst(7) }
        return h.contains(":") ? "[\(h)]:\(port)" : "\(h):\(port)"
    }
}
