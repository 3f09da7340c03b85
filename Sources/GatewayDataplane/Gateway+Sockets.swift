internal import CGatewayShims
import Glibc
import GatewaySystem
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
        guard let where_ = SocketAddress(literal: address, port: UInt16(port)) else {
            throw DataplaneError("listen address \(address) is not an IPv4 or IPv6 address")
        }
        let fd = socket(where_.family, Int32(type.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { throw DataplaneError("socket", errno: errno) }
        configure(fd)
        if where_.family == AF_INET6 {
            // `::` takes IPv4 clients too.
            var zero: Int32 = 0
            setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &zero, 4)
        }
        if where_.withSockaddr({ bind(fd, $0, $1) }) < 0 {
            let e = errno
            close(fd)
            throw DataplaneError("cannot bind \(type == SOCK_DGRAM ? "UDP" : "TCP") \(where_)", errno: e)
        }
        return fd
    }
}
