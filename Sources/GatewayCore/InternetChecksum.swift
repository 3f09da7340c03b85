/// RFC 1071 ones'-complement sums for IPv4 and TCP headers. Used when the gateway
/// splits a large TCP segment from the TUN (GSO) into MTU-size packets, and when it
/// merges packets into one large segment for the TUN (GRO).
public enum InternetChecksum {
    /// The sum of `count` bytes at `p` as 16-bit big-endian words, added to `initial`
    /// (unfolded: fold with `fold` or `finish`).
    ///
    /// The words are added in the machine's byte order and the folded result is swapped
    /// once at the end: the one's-complement sum is independent of byte order up to that
    /// swap (RFC 1071 §2(B)). Without a swap per word the loop is a plain widening sum
    /// the compiler vectorizes, ~2.6× faster than byte-swapped 4-byte steps on the
    /// 1,400-byte payloads it mostly sees (it was most of `segmentTCPv4`'s 4.6 % of the
    /// DTLS download profile).
    @inlinable
    public static func sum(_ p: UnsafeRawPointer, _ count: Int, initial: UInt64 = 0) -> UInt64 {
        // Four accumulators of 32-bit words: no carry can be lost below 2^32 words.
        var a0: UInt64 = 0, a1: UInt64 = 0, a2: UInt64 = 0, a3: UInt64 = 0
        var i = 0
        while i + 16 <= count {
            a0 &+= UInt64(p.loadUnaligned(fromByteOffset: i, as: UInt32.self))
            a1 &+= UInt64(p.loadUnaligned(fromByteOffset: i + 4, as: UInt32.self))
            a2 &+= UInt64(p.loadUnaligned(fromByteOffset: i + 8, as: UInt32.self))
            a3 &+= UInt64(p.loadUnaligned(fromByteOffset: i + 12, as: UInt32.self))
            i += 16
        }
        var acc = a0 &+ a1 &+ a2 &+ a3
        while i + 4 <= count {
            acc &+= UInt64(p.loadUnaligned(fromByteOffset: i, as: UInt32.self))
            i += 4
        }
        if i + 2 <= count {
            acc &+= UInt64(p.loadUnaligned(fromByteOffset: i, as: UInt16.self))
            i += 2
        }
        if i < count {
            // A trailing odd byte is the high byte of a big-endian word padded with zero.
            acc &+= UInt64(UInt16(bigEndian: UInt16(p.load(fromByteOffset: i, as: UInt8.self)) << 8))
        }
        return initial &+ UInt64(UInt16(bigEndian: fold(acc)))
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
