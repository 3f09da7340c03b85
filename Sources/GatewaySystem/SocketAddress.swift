import Glibc

/// A socket address as the kernel takes it — IPv4, IPv6 or a Unix path — the one type for
/// the gateway's listeners and client peers, the load generator's targets and the IPC
/// sockets. Printable the way logs show peers: `198.18.0.2:51234`, `[fd00::2]:443`
/// (an IPv4-mapped IPv6 address prints as IPv4), or the path.
public struct SocketAddress: Sendable, CustomStringConvertible {
    public private(set) var storage = sockaddr_storage()
    public private(set) var length: socklen_t = 0

    public var family: Int32 { Int32(storage.ss_family) }

    /// An address a system call filled in (`accept`, `recvfrom`).
    public init(storage: sockaddr_storage, length: socklen_t) {
        self.storage = storage
        self.length = length
    }

    /// An IPv4 or IPv6 literal with a port; nil for anything else (names included).
    public init?(literal: String, port: UInt16) {
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, literal, &v4) == 1 {
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = port.bigEndian
            sa.sin_addr = v4
            store(sa)
        } else if inet_pton(AF_INET6, literal, &v6) == 1 {
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            sa.sin6_port = port.bigEndian
            sa.sin6_addr = v6
            store(sa)
        } else {
            return nil
        }
    }

    /// A Unix-domain socket path. Throws when the path does not fit `sun_path`.
    public init(unixPath path: String) throws(SocketAddressError) {
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: sa.sun_path)
        guard bytes.count < capacity, !bytes.isEmpty else {
            throw SocketAddressError("socket path \(bytes.isEmpty ? "is empty" : "too long (\(bytes.count) bytes, max \(capacity - 1))"): \(path)")
        }
        withUnsafeMutableBytes(of: &sa.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        store(sa)
    }

    private mutating func store<T>(_ sa: T) {
        withUnsafeBytes(of: sa) { src in withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: src) } }
        length = socklen_t(MemoryLayout<T>.size)
    }

    /// A literal, or the first address `getaddrinfo` gives for a name (of `family` when
    /// one is required, e.g. to match a bind address).
    public static func resolve(host: String, port: UInt16, family: Int32? = nil) throws(SocketAddressError) -> SocketAddress {
        if let a = SocketAddress(literal: host, port: port) {
            if let family, a.family != family { throw SocketAddressError("\(host) is not of the address family asked for") }
            return a
        }
        var hints = addrinfo()
        hints.ai_family = family ?? AF_UNSPEC
        // Stream or datagram gives the same addresses; asking for one avoids duplicates.
        hints.ai_socktype = 1  // SOCK_STREAM (a C enum Glibc does not always surface)
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &res)
        guard rc == 0, let first = res else {
            throw SocketAddressError("cannot resolve \(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(res) }
        guard let addr = first.pointee.ai_addr, Int(first.pointee.ai_addrlen) <= MemoryLayout<sockaddr_storage>.size else {
            throw SocketAddressError("cannot resolve \(host): no address")
        }
        var out = SocketAddress(storage: sockaddr_storage(), length: first.pointee.ai_addrlen)
        withUnsafeMutableBytes(of: &out.storage) { dst in
            dst.copyMemory(from: UnsafeRawBufferPointer(start: addr, count: Int(first.pointee.ai_addrlen)))
        }
        return out
    }

    /// The address as `bind`, `connect` and `sendto` take it.
    public func withSockaddr<R, E: Error>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws(E) -> R) throws(E) -> R {
        var copy = storage
        return try withUnsafePointer(to: &copy) { p throws(E) -> R in
            try body(UnsafeRawPointer(p).assumingMemoryBound(to: sockaddr.self), length)
        }
    }

    /// The port of an IP address; nil for a Unix path.
    public var port: UInt16? {
        switch family {
        case AF_INET, AF_INET6: return key.port
        default: return nil
        }
    }

    public var description: String {
        switch family {
        case AF_INET, AF_INET6: return key.description
        case AF_UNIX:
            return withUnsafeBytes(of: storage) { raw in
                let path = raw.dropFirst(MemoryLayout<sa_family_t>.size).prefix { $0 != 0 }
                return String(decoding: path, as: UTF8.self)
            }
        default: return "(address family \(family))"
        }
    }

    /// An IP address and port as two words and a port, IPv4 in its IPv4-mapped IPv6 form:
    /// what the gateway hashes per datagram to find the DTLS channel a peer is bound to.
    public struct Key: Hashable, Sendable, CustomStringConvertible {
        public let high: UInt64
        public let low: UInt64
        public let port: UInt16

        public init(high: UInt64, low: UInt64, port: UInt16) {
            self.high = high
            self.low = low
            self.port = port
        }

        public var isIPv4: Bool { high == 0 && low >> 32 == 0xFFFF }

        public var description: String {
            var text = [CChar](repeating: 0, count: 64)
            if isIPv4 {
                var a = in_addr(s_addr: UInt32(truncatingIfNeeded: low).bigEndian)
                inet_ntop(AF_INET, &a, &text, 64)
                return "\(Self.string(text)):\(port)"
            }
            var a = in6_addr()
            withUnsafeMutableBytes(of: &a) { b in
                for i in 0..<8 { b[i] = UInt8(truncatingIfNeeded: high >> (56 - 8 * UInt64(i))) }
                for i in 0..<8 { b[8 + i] = UInt8(truncatingIfNeeded: low >> (56 - 8 * UInt64(i))) }
            }
            inet_ntop(AF_INET6, &a, &text, 64)
            return "[\(Self.string(text))]:\(port)"
        }

        private static func string(_ c: [CChar]) -> String {
            String(decoding: c.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    /// The key of an IP address (zero for a Unix path).
    public var key: Key {
        withUnsafePointer(to: storage) { Self.key(of: $0) }
    }

    /// The key of an address a system call filled in, read in place (per datagram: no copy).
    @inlinable
    public static func key(of ss: UnsafePointer<sockaddr_storage>) -> Key {
        let raw = UnsafeRawPointer(ss)
        switch Int32(ss.pointee.ss_family) {
        case AF_INET6:
            let p6 = raw.assumingMemoryBound(to: sockaddr_in6.self)
            var hi: UInt64 = 0, lo: UInt64 = 0
            withUnsafeBytes(of: p6.pointee.sin6_addr) { b in
                for i in 0..<8 { hi = hi << 8 | UInt64(b[i]) }
                for i in 8..<16 { lo = lo << 8 | UInt64(b[i]) }
            }
            return Key(high: hi, low: lo, port: UInt16(bigEndian: p6.pointee.sin6_port))
        case AF_INET:
            let p4 = raw.assumingMemoryBound(to: sockaddr_in.self)
            let a = UInt64(UInt32(bigEndian: p4.pointee.sin_addr.s_addr))
            return Key(high: 0, low: 0xFFFF_0000_0000 | a, port: UInt16(bigEndian: p4.pointee.sin_port))
        default:
            return Key(high: 0, low: 0, port: 0)
        }
    }
}

/// An address that cannot be made: a name that does not resolve, a path too long.
public struct SocketAddressError: Error, CustomStringConvertible, Sendable, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
