/// An IPv4 network in CIDR form. Host bits must be zero when parsed strictly, so a
/// typo like `10.0.0.1/8` is caught at configuration time rather than silently masked.
public struct IPv4Prefix: Hashable, Sendable, CustomStringConvertible {
    public let network: IPv4Address
    public let length: Int

    public init?(network: IPv4Address, length: Int) {
        guard (0...32).contains(length) else { return nil }
        self.network = IPv4Address(network.value & Self.maskValue(length))
        self.length = length
    }

    /// Parses `a.b.c.d/len` or `a.b.c.d/m.m.m.m`. `strict` refuses host bits.
    public static func parse(_ text: String, strict: Bool = true) -> Result<IPv4Prefix, PrefixError> {
        let pieces = text.split(separator: "/", omittingEmptySubsequences: false)
        guard pieces.count == 2, let addr = IPv4Address(pieces[0]) else { return .failure(.notCIDR(text)) }
        let len: Int
        if let n = Int(pieces[1]), pieces[1].allSatisfy(\.isNumber), (0...32).contains(n) {
            len = n
        } else if let mask = IPv4Address(pieces[1]) {
            let ones = mask.value.nonzeroBitCount
            guard mask.value == Self.maskValue(ones) else { return .failure(.badMask(text)) }
            len = ones
        } else {
            return .failure(.notCIDR(text))
        }
        if strict, addr.value & ~Self.maskValue(len) != 0 { return .failure(.hostBitsSet(text)) }
        return .success(IPv4Prefix(network: addr, length: len)!)
    }

    public static func maskValue(_ length: Int) -> UInt32 {
        length == 0 ? 0 : UInt32.max << UInt32(32 - length)
    }

    public var mask: IPv4Address { IPv4Address(Self.maskValue(length)) }
    public var size: UInt64 { 1 << UInt64(32 - length) }
    public var last: IPv4Address { IPv4Address(network.value | ~Self.maskValue(length)) }

    public func contains(_ a: IPv4Address) -> Bool { a.value & Self.maskValue(length) == network.value }

    public func overlaps(_ other: IPv4Prefix) -> Bool {
        let len = min(length, other.length)
        return network.value & Self.maskValue(len) == other.network.value & Self.maskValue(len)
    }

    public var description: String { "\(network)/\(length)" }
    /// `a.b.c.d/m.m.m.m`, the form ocserv sends and every client accepts.
    public var dottedMaskForm: String { "\(network)/\(mask)" }
}

public struct IPv6Prefix: Hashable, Sendable, CustomStringConvertible {
    public let network: IPv6Address
    public let length: Int

    public static func parse(_ text: String, strict: Bool = true) -> Result<IPv6Prefix, PrefixError> {
        let pieces = text.split(separator: "/", omittingEmptySubsequences: false)
        guard pieces.count == 2, let addr = IPv6Address(pieces[0]), let len = Int(pieces[1]),
              pieces[1].allSatisfy(\.isNumber), (0...128).contains(len)
        else { return .failure(.notCIDR(text)) }
        let masked = Self.apply(addr, len)
        if strict, masked != addr { return .failure(.hostBitsSet(text)) }
        return .success(IPv6Prefix(network: masked, length: len))
    }

    init(network: IPv6Address, length: Int) {
        self.network = network
        self.length = length
    }

    static func apply(_ a: IPv6Address, _ len: Int) -> IPv6Address {
        let hm: UInt64 = len >= 64 ? .max : (len == 0 ? 0 : UInt64.max << UInt64(64 - len))
        let lm: UInt64 = len <= 64 ? 0 : (len >= 128 ? .max : UInt64.max << UInt64(128 - len))
        return IPv6Address(high: a.high & hm, low: a.low & lm)
    }

    public func contains(_ a: IPv6Address) -> Bool { Self.apply(a, length) == network }

    public func overlaps(_ other: IPv6Prefix) -> Bool {
        let len = min(length, other.length)
        return Self.apply(network, len) == Self.apply(other.network, len)
    }

    public var description: String { "\(network)/\(length)" }
}

public enum IPPrefix: Hashable, Sendable, CustomStringConvertible {
    case v4(IPv4Prefix)
    case v6(IPv6Prefix)

    public static func parse(_ text: String, strict: Bool = true) -> Result<IPPrefix, PrefixError> {
        if text.contains(":") { return IPv6Prefix.parse(text, strict: strict).map { .v6($0) } }
        return IPv4Prefix.parse(text, strict: strict).map { .v4($0) }
    }

    public var description: String {
        switch self {
        case .v4(let p): return p.description
        case .v6(let p): return p.description
        }
    }
}

public enum PrefixError: Error, Equatable, Sendable, CustomStringConvertible {
    case notCIDR(String)
    case badMask(String)
    case hostBitsSet(String)

    public var description: String {
        switch self {
        case .notCIDR(let t): return "'\(t)' is not an address/prefix-length (CIDR)"
        case .badMask(let t): return "'\(t)' has a netmask that is not contiguous"
        case .hostBitsSet(let t): return "'\(t)' has host bits set (did you mean the network address?)"
        }
    }
}
