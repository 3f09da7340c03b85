import Foundation
#if canImport(Glibc)
import Glibc
import GatewaySystem
#endif

/// Tells, before the control plane creates or opens anything, whether its listen address
/// can be bound, in one sentence an operator can act on (instead of NIO's raw
/// `bind(descriptor:ptr:bytes:)` error after the state directory was already made).
enum ListenCheck {
    static func check(host: String, port: Int) throws {
        var hints = addrinfo()
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let first = list else {
            throw PKIError("cannot listen on \(host):\(port): the address does not resolve (\(String(cString: gai_strerror(rc))))")
        }
        defer { freeaddrinfo(list) }
        let fd = socket(first.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw PKIError("cannot listen on \(host):\(port): \(SystemError.reason(errno))") }
        defer { close(fd) }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if bind(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) != 0 {
            let e = errno
            switch e {
            case EADDRINUSE:
                throw PKIError("cannot listen on \(host):\(port): the port is in use by another program (see `ss -ltnp 'sport = :\(port)'`); stop it or choose another --listen")
            case EADDRNOTAVAIL:
                throw PKIError("cannot listen on \(host):\(port): no interface on this host has that address; use one it has, or 0.0.0.0")
            case EACCES:
                throw PKIError("cannot listen on \(host):\(port): ports below 1024 need root or CAP_NET_BIND_SERVICE")
            default:
                throw PKIError("cannot listen on \(host):\(port): \(SystemError.reason(e))")
            }
        }
    }
}
