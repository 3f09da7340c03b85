import GatewayCore
import GatewayWire

/// A class of malformed tunnel input: what the gateway counts (`MalformedInputCounts`, in
/// `mst-cli server show status`) and logs at most once a minute per address (`LogThrottle`).
/// The raw value is the counter's name in the status, and the `class` of the log line.
public enum MalformedInput: String, CaseIterable, Sendable {
    case tlsHandshake, tlsRecord
    case cstpBadHeader, cstpOversize, cstpUnknownType, cstpBeforeConnect
    case dtlsNotDTLS, dtlsBeforeHandshake, dtlsNoSession, dtlsBadRecord, dtlsReplayed, dtlsHandshake
    case ipMalformed

    /// Which layer it belongs to: the log event is `<area>.malformed`.
    public enum Area: Sendable { case tls, cstp, dtls, packet }

    public var area: Area {
        switch self {
        case .tlsHandshake, .tlsRecord: return .tls
        case .cstpBadHeader, .cstpOversize, .cstpUnknownType, .cstpBeforeConnect: return .cstp
        case .dtlsNotDTLS, .dtlsBeforeHandshake, .dtlsNoSession, .dtlsBadRecord, .dtlsReplayed, .dtlsHandshake: return .dtls
        case .ipMalformed: return .packet
        }
    }

    /// What the gateway did with it, for the log line.
    public var action: String {
        switch self {
        case .tlsHandshake, .tlsRecord, .cstpBadHeader, .cstpOversize, .cstpUnknownType: return "connection closed"
        case .cstpBeforeConnect: return "400, connection closed"
        case .dtlsHandshake: return "DTLS channel dropped, session goes on over TLS"
        case .dtlsNotDTLS, .dtlsBeforeHandshake, .dtlsNoSession, .dtlsBadRecord, .dtlsReplayed: return "datagram dropped"
        case .ipMalformed: return "packet dropped"
        }
    }
}

extension MalformedInputCounts {
    /// One more of `kind`.
    @inlinable
    public mutating func count(_ kind: MalformedInput) {
        self[kind] &+= 1
    }

    public subscript(kind: MalformedInput) -> UInt64 {
        get {
            switch kind {
            case .tlsHandshake: return tlsHandshake
            case .tlsRecord: return tlsRecord
            case .cstpBadHeader: return cstpBadHeader
            case .cstpOversize: return cstpOversize
            case .cstpUnknownType: return cstpUnknownType
            case .cstpBeforeConnect: return cstpBeforeConnect
            case .dtlsNotDTLS: return dtlsNotDTLS
            case .dtlsBeforeHandshake: return dtlsBeforeHandshake
            case .dtlsNoSession: return dtlsNoSession
            case .dtlsBadRecord: return dtlsBadRecord
            case .dtlsReplayed: return dtlsReplayed
            case .dtlsHandshake: return dtlsHandshake
            case .ipMalformed: return ipMalformed
            }
        }
        set {
            switch kind {
            case .tlsHandshake: tlsHandshake = newValue
            case .tlsRecord: tlsRecord = newValue
            case .cstpBadHeader: cstpBadHeader = newValue
            case .cstpOversize: cstpOversize = newValue
            case .cstpUnknownType: cstpUnknownType = newValue
            case .cstpBeforeConnect: cstpBeforeConnect = newValue
            case .dtlsNotDTLS: dtlsNotDTLS = newValue
            case .dtlsBeforeHandshake: dtlsBeforeHandshake = newValue
            case .dtlsNoSession: dtlsNoSession = newValue
            case .dtlsBadRecord: dtlsBadRecord = newValue
            case .dtlsReplayed: dtlsReplayed = newValue
            case .dtlsHandshake: dtlsHandshake = newValue
            case .ipMalformed: ipMalformed = newValue
            }
        }
    }
}

extension TunnelFrame {
    /// Why `CSTP.parseHeader` called a header `.invalid`: a length over the largest payload
    /// behind a good magic, or anything else (bad magic, reserved byte not 0).
    public static func invalidHeaderClass(_ p: UnsafeRawBufferPointer) -> MalformedInput {
        guard p.count >= CSTP.headerSize, p[0] == 0x53, p[1] == 0x54, p[2] == 0x46, p[3] == 0x01, p[7] == 0x00,
              Int(p[4]) << 8 | Int(p[5]) > CSTP.maxPayload else { return .cstpBadHeader }
        return .cstpOversize
    }
}

/// The record layer of a UDP datagram, read before it reaches OpenSSL (which drops bad
/// records silently, so the gateway learns of them only by looking itself).
///
///     0 content type (20…23) | 1 version 0xfe ?? | 3 epoch (u16) | 5 sequence (u48) | 11 length (u16) | 13 fragment
public enum DTLSRecords {
    public static let headerSize = 13

    public struct Shape: Equatable, Sendable {
        /// Records in the datagram (openconnect sends one per datagram).
        public var records: Int
        /// Every record is application data (content type 23).
        public var allApplicationData: Bool
        /// The first record's content type, epoch and sequence number.
        public var firstType: UInt8
        public var firstEpoch: UInt16
        public var firstSequence: UInt64
        /// The first record is a handshake record carrying a ClientHello (handshake type 1).
        public var isClientHello: Bool { firstType == 22 && handshakeType == 1 }
        @usableFromInline var handshakeType: UInt8?

        public init(records: Int, allApplicationData: Bool, firstType: UInt8, firstEpoch: UInt16, firstSequence: UInt64, handshakeType: UInt8? = nil) {
            self.records = records
            self.allApplicationData = allApplicationData
            self.firstType = firstType
            self.firstEpoch = firstEpoch
            self.firstSequence = firstSequence
            self.handshakeType = handshakeType
        }
    }

    /// The datagram's records, or nil when it is not a sequence of whole DTLS records (a
    /// type outside 20…23, a version that is not DTLS's 0xfe??, a length past the end, or
    /// bytes left over that cannot hold a header).
    public static func inspect(_ d: UnsafeRawBufferPointer) -> Shape? {
        guard d.count >= headerSize else { return nil }
        var shape = Shape(records: 0, allApplicationData: true, firstType: d[0],
                          firstEpoch: UInt16(d[3]) << 8 | UInt16(d[4]), firstSequence: 0)
        for i in 5..<11 { shape.firstSequence = shape.firstSequence << 8 | UInt64(d[i]) }
        var off = 0
        while off < d.count {
            guard d.count - off >= headerSize else { return nil }
            let type = d[off]
            guard type >= 20, type <= 23, d[off + 1] == 0xFE else { return nil }
            let length = Int(d[off + 11]) << 8 | Int(d[off + 12])
            guard length <= d.count - off - headerSize else { return nil }
            if type != 23 { shape.allApplicationData = false }
            if off == 0, type == 22, length > 0 { shape.handshakeType = d[headerSize] }
            shape.records += 1
            off += headerSize + length
        }
        return shape
    }
}

/// The sequence numbers already received on one DTLS channel, as RFC 6347 §4.1.2.6 keeps
/// them (a 64-record window below the highest): the same check OpenSSL makes before it
/// drops a record, kept here only to say *why* OpenSSL dropped one. The gateway marks a
/// record only after OpenSSL accepted it, so a forged record never enters the window.
public struct DTLSReplayWindow: Sendable, Equatable {
    public private(set) var epoch: UInt16 = 0
    public private(set) var highest: UInt64 = 0
    /// Bit i: `highest - i` was received.
    public private(set) var bitmap: UInt64 = 0

    public init() {}

    /// Whether a record with this epoch and sequence number would be refused as a replay:
    /// received before, or older than the window. A record of another epoch is not one.
    public func isReplay(epoch e: UInt16, sequence: UInt64) -> Bool {
        guard e == epoch, bitmap != 0 else { return false }
        if sequence > highest { return false }
        let age = highest - sequence
        return age >= 64 || bitmap & (1 << age) != 0
    }

    /// A record OpenSSL accepted.
    public mutating func mark(epoch e: UInt16, sequence: UInt64) {
        if e != epoch || bitmap == 0 {
            if e < epoch { return }
            epoch = e
            highest = sequence
            bitmap = 1
            return
        }
        if sequence > highest {
            let shift = sequence - highest
            bitmap = shift >= 64 ? 1 : bitmap << shift | 1
            highest = sequence
        } else {
            let age = highest - sequence
            if age < 64 { bitmap |= 1 << age }
        }
    }
}

extension DatagramRoute {
    /// The class of a datagram that opens no channel, from an address no channel is bound
    /// to; nil when it is well-formed and names a live session but is not admitted (DTLS
    /// off, a session without a key or a connection: counted as a stray datagram only).
    public static func malformedClass(_ d: UnsafeRawBufferPointer, namesLiveSession: Bool) -> MalformedInput? {
        guard let shape = DTLSRecords.inspect(d) else { return .dtlsNotDTLS }
        if shape.isClientHello { return namesLiveSession ? nil : .dtlsNoSession }
        return .dtlsBeforeHandshake
    }
}
