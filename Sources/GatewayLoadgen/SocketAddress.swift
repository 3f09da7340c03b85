// CGatewayShims for SOCK_STREAM: Glibc alone does not make it visible in whole-module (release) builds.
import CGatewayShims
import Glibc

/// An IPv4 or IPv6 socket address, resolved once before the run.
struct SocketAddress {
    var storage = sockaddr_storage()
    var length: socklen_t = 0

    var family: Int32 { Int32(storage.ss_family) }

    /// An address literal with a port.
    init?(literal: String, port: UInt16) {
        var s = sockaddr_storage()
        if let len = Self.fill(&s, literal: literal, port: port) {
            storage = s
            length = len
        } else {
            return nil
        }
    }

    private static func fill(_ s: inout sockaddr_storage, literal: String, port: UInt16) -> socklen_t? {
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, literal, &v4) == 1 {
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = port.bigEndian
            sa.sin_addr = v4
            withUnsafeBytes(of: sa) { src in withUnsafeMutableBytes(of: &s) { $0.copyMemory(from: src) } }
            return socklen_t(MemoryLayout<sockaddr_in>.size)
        }
        if inet_pton(AF_INET6, literal, &v6) == 1 {
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            sa.sin6_port = port.bigEndian
            sa.sin6_addr = v6
            withUnsafeBytes(of: sa) { src in withUnsafeMutableBytes(of: &s) { $0.copyMemory(from: src) } }
            return socklen_t(MemoryLayout<sockaddr_in6>.size)
        }
        return nil
    }

    /// A literal, or the first address `getaddrinfo` gives for a name (of `family`
    /// when one is required, e.g. to match --bind-address).
    static func resolve(host: String, port: UInt16, family: Int32?) throws -> SocketAddress {
        if let a = SocketAddress(literal: host, port: port) {
            if let family, a.family != family { throw LoadgenError("\(host) and --bind-address are of different address families") }
            return a
        }
        var hints = addrinfo()
        hints.ai_family = family ?? AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &res)
        guard rc == 0, let first = res else {
            throw LoadgenError("cannot resolve \(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(res) }
        var out = SocketAddress(literal: "0.0.0.0", port: 0)!
        guard let addr = first.pointee.ai_addr, Int(first.pointee.ai_addrlen) <= MemoryLayout<sockaddr_storage>.size else {
            throw LoadgenError("cannot resolve \(host): no address")
        }
        withUnsafeMutableBytes(of: &out.storage) { dst in
            dst.copyMemory(from: UnsafeRawBufferPointer(start: addr, count: Int(first.pointee.ai_addrlen)))
        }
        out.length = first.pointee.ai_addrlen
        return out
    }

    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        withUnsafeBytes(of: storage) { raw in
            body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), length)
        }
    }
}

public struct LoadgenError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}
