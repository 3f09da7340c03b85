/// CSTP framing on the TLS channel:
///
///     'S' 'T' 'F' 0x01 | length (u16 BE, payload only) | type | 0x00 | payload
///
/// openconnect reads one frame per TLS record and drops anything else, so writers must
/// send exactly one frame per `SSL_write`.
public enum CSTP {
    public static let headerSize = 8
    /// Largest payload we accept or send (a full-size TLS record minus our header).
    public static let maxPayload = 16384 - headerSize

    public enum PacketType: UInt8, Sendable {
        case data = 0x00
        case dpdRequest = 0x03
        case dpdResponse = 0x04
        case disconnect = 0x05
        case keepalive = 0x07
        case compressed = 0x08
        case terminate = 0x09
    }

    /// The DISCONNECT reason byte openconnect sends on logoff (SIGINT/SIGTERM).
    public static let logoffReason: UInt8 = 0xB0

    /// Writes a header for a payload of `length` bytes at `p` (8 writable bytes).
    @inlinable
    public static func writeHeader(_ p: UnsafeMutableRawPointer, type: PacketType, length: Int) {
        p.storeBytes(of: 0x53, toByteOffset: 0, as: UInt8.self)
        p.storeBytes(of: 0x54, toByteOffset: 1, as: UInt8.self)
        p.storeBytes(of: 0x46, toByteOffset: 2, as: UInt8.self)
        p.storeBytes(of: 0x01, toByteOffset: 3, as: UInt8.self)
        p.storeBytes(of: UInt8(truncatingIfNeeded: length >> 8), toByteOffset: 4, as: UInt8.self)
        p.storeBytes(of: UInt8(truncatingIfNeeded: length), toByteOffset: 5, as: UInt8.self)
        p.storeBytes(of: type.rawValue, toByteOffset: 6, as: UInt8.self)
        p.storeBytes(of: 0x00, toByteOffset: 7, as: UInt8.self)
    }

    /// A whole control frame as bytes (for the rare non-data frames).
    public static func frame(_ type: PacketType, payload: [UInt8] = []) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: headerSize + payload.count)
        out.withUnsafeMutableBytes { writeHeader($0.baseAddress!, type: type, length: payload.count) }
        out.replaceSubrange(headerSize..., with: payload)
        return out
    }

    public enum HeaderResult: Equatable, Sendable {
        /// Fewer than 8 bytes.
        case incomplete
        /// A valid header: frame type (raw, may be unknown) and payload length.
        case header(type: UInt8, length: Int)
        /// Not a CSTP header: the stream is broken and must be closed.
        case invalid
    }

    @inlinable
    public static func parseHeader(_ p: UnsafeRawBufferPointer) -> HeaderResult {
        guard p.count >= headerSize else { return .incomplete }
        guard p[0] == 0x53, p[1] == 0x54, p[2] == 0x46, p[3] == 0x01, p[7] == 0x00 else { return .invalid }
        let length = Int(p[4]) << 8 | Int(p[5])
        guard length <= maxPayload else { return .invalid }
        return .header(type: p[6], length: length)
    }
}
