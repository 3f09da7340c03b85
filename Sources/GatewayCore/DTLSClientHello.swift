/// Reading the session id out of a raw DTLS ClientHello datagram, before any DTLS
/// state exists: it is the X-DTLS-App-ID the CONNECT response gave, and the only way
/// to tell which session a handshake from a new address belongs to.
///
///     0  content type 22 (handshake)     13 handshake type 1 (ClientHello)
///     1  record version 0xfe??           19 fragment offset (0)
///     59 session_id length (32)          60 session_id
public enum DTLSClientHello {
    public static let sessionIDOffset = 60
    public static let sessionIDLength = 32

    /// The 32-byte session id, or nil if `d` is not the first fragment of a
    /// ClientHello carrying one.
    public static func sessionID(in d: UnsafeRawBufferPointer) -> ArraySlice<UInt8>? {
        guard d.count >= sessionIDOffset + sessionIDLength + 1, d[0] == 0x16, d[1] == 0xFE, d[13] == 0x01,
              d[19] == 0, d[20] == 0, d[21] == 0, d[59] == UInt8(sessionIDLength) else { return nil }
        return Array(d[sessionIDOffset..<(sessionIDOffset + sessionIDLength)])[...]
    }

    /// Where the client's 32-byte random sits (after the record header, the handshake
    /// header and the version).
    public static let randomOffset = 27

    /// The ClientHello's random, read from a datagram `sessionID(in:)` accepted: the same in
    /// every copy of one hello (its retransmissions, the second hello after a
    /// HelloVerifyRequest), new in each hello the client makes.
    public static func random(in d: UnsafeRawBufferPointer) -> [UInt8] {
        precondition(d.count >= randomOffset + 32, "DTLSClientHello.random: not a ClientHello")
        return Array(d[randomOffset..<(randomOffset + 32)])
    }
}
