/// RFC 1071 ones'-complement sums for IPv4 and TCP headers. Used when the gateway
/// splits a large TCP segment from the TUN (GSO) into MTU-size packets, and when it
/// merges packets into one large segment for the TUN (GRO).
public enum InternetChecksum {
    /// The unfolded 32-bit-carry sum of `count` bytes at `p`, added to `initial`.
    @inlinable
    public static func sum(_ p: UnsafeRawPointer, _ count: Int, initial: UInt64 = 0) -> UInt64 {
        var acc = initial
        var i = 0
        // 4 bytes at a time into a 64-bit accumulator: carries collect in the high half
        // and are folded once at the end.
        while i + 4 <= count {
            let w = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: i, as: UInt32.self))
            acc &+= UInt64(w)
            i += 4
        }
        if i + 2 <= count {
            acc &+= UInt64(UInt16(bigEndian: p.loadUnaligned(fromByteOffset: i, as: UInt16.self)))
            i += 2
        }
        if i < count {
            acc &+= UInt64(p.load(fromByteOffset: i, as: UInt8.self)) << 8
        }
        return acc
    }

    /// Folds a sum to 16 bits (not complemented).
    @inlinable
    public static func fold(_ s: UInt64) -> UInt16 {
        var x = s
        while x >> 16 != 0 { x = (x & 0xFFFF) &+ (x >> 16) }
        return UInt16(x)
    }

    /// The checksum to store: the complement of the folded sum.
    @inlinable
    public static func finish(_ s: UInt64) -> UInt16 { ~fold(s) }

    /// The IPv4 pseudo-header sum for a TCP/UDP segment of `length` bytes.
    @inlinable
    public static func pseudoHeaderV4(_ ip: UnsafeRawPointer, protocolNumber: UInt8, length: Int) -> UInt64 {
        sum(ip + 12, 8) &+ UInt64(protocolNumber) &+ UInt64(length)
    }

    @inlinable
    static func store(_ value: UInt16, _ p: UnsafeMutableRawPointer, at offset: Int) {
        p.storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt16.self)
    }

    /// Recomputes the IPv4 header checksum in place.
    @inlinable
    public static func fixIPv4Header(_ ip: UnsafeMutableRawPointer, headerLength: Int) {
        store(0, ip, at: 10)
        store(finish(sum(ip, headerLength)), ip, at: 10)
    }
}
