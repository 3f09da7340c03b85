/// Malformed tunnel input the gateway dropped since it started, by class (added in 0.1.7;
/// docs/security.md, "Malformed tunnel input"). Each is a running count. A malformed input
/// on a TLS connection closes that connection; a malformed datagram is dropped; nothing
/// else happens to any session.
///
/// Every field decodes as 0 when absent, so a newer gateway may add classes without an
/// older `mst-cli` or agent failing to read the status.
public struct MalformedInputCounts: Codable, Sendable, Equatable {
    /// TLS handshakes that failed: bytes that are not TLS, a bad handshake record, an alert
    /// from the client. The connection is closed.
    public var tlsHandshake: UInt64 = 0
    /// After the handshake, a TLS record that does not decrypt or parse. Closed.
    public var tlsRecord: UInt64 = 0
    /// A CSTP frame that does not start with `STF\x01` (or whose reserved byte is not 0).
    /// Closed: the stream cannot be resynchronised.
    public var cstpBadHeader: UInt64 = 0
    /// A CSTP frame whose length is over the largest payload (16,376 bytes). Closed.
    public var cstpOversize: UInt64 = 0
    /// A CSTP frame of an unknown type, or TERMINATE (a server's frame). Closed.
    public var cstpUnknownType: UInt64 = 0
    /// A CSTP frame on a connection whose CONNECT was not accepted (yet). Answered 400 and
    /// closed; scores against the address like any malformed request.
    public var cstpBeforeConnect: UInt64 = 0
    /// A datagram that is not a DTLS record, from an address no session's DTLS uses.
    public var dtlsNotDTLS: UInt64 = 0
    /// A DTLS record other than a ClientHello (application data, a later handshake
    /// message, an alert) from an address no session's DTLS uses: records before (or
    /// without) a handshake.
    public var dtlsBeforeHandshake: UInt64 = 0
    /// A ClientHello whose session id names no live session.
    public var dtlsNoSession: UInt64 = 0
    /// On a session's DTLS channel: a record whose header does not parse, or that fails
    /// authentication (a forged or corrupted record).
    public var dtlsBadRecord: UInt64 = 0
    /// On a session's DTLS channel: a record received before (or older than the 64-record
    /// replay window), dropped by the replay check.
    public var dtlsReplayed: UInt64 = 0
    /// DTLS handshakes that failed (the channel is dropped; the session goes on over TLS).
    public var dtlsHandshake: UInt64 = 0
    /// An IP packet inside the tunnel that is not one: shorter than an IPv4 header, an IP
    /// version that is neither 4 nor 6, or IPv4 header lengths the packet contradicts.
    public var ipMalformed: UInt64 = 0

    public init() {}

    /// Every class together.
    public var total: UInt64 {
        tlsHandshake &+ tlsRecord &+ cstpBadHeader &+ cstpOversize &+ cstpUnknownType &+ cstpBeforeConnect
            &+ dtlsNotDTLS &+ dtlsBeforeHandshake &+ dtlsNoSession &+ dtlsBadRecord &+ dtlsReplayed &+ dtlsHandshake
            &+ ipMalformed
    }

    /// Each class by its JSON name, in the order `CodingKeys` lists them (what the agent
    /// reports to the control plane).
    public var byClass: [(name: String, count: UInt64)] {
        [(.tlsHandshake, tlsHandshake), (.tlsRecord, tlsRecord), (.cstpBadHeader, cstpBadHeader), (.cstpOversize, cstpOversize),
         (.cstpUnknownType, cstpUnknownType), (.cstpBeforeConnect, cstpBeforeConnect), (.dtlsNotDTLS, dtlsNotDTLS),
         (.dtlsBeforeHandshake, dtlsBeforeHandshake), (.dtlsNoSession, dtlsNoSession), (.dtlsBadRecord, dtlsBadRecord),
         (.dtlsReplayed, dtlsReplayed), (.dtlsHandshake, dtlsHandshake), (.ipMalformed, ipMalformed)]
            .map { (key: CodingKeys, count: UInt64) in (key.stringValue, count) }
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case tlsHandshake, tlsRecord, cstpBadHeader, cstpOversize, cstpUnknownType, cstpBeforeConnect
        case dtlsNotDTLS, dtlsBeforeHandshake, dtlsNoSession, dtlsBadRecord, dtlsReplayed, dtlsHandshake, ipMalformed
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func value(_ key: CodingKeys) throws -> UInt64 { try c.decodeIfPresent(UInt64.self, forKey: key) ?? 0 }
        tlsHandshake = try value(.tlsHandshake)
        tlsRecord = try value(.tlsRecord)
        cstpBadHeader = try value(.cstpBadHeader)
        cstpOversize = try value(.cstpOversize)
        cstpUnknownType = try value(.cstpUnknownType)
        cstpBeforeConnect = try value(.cstpBeforeConnect)
        dtlsNotDTLS = try value(.dtlsNotDTLS)
        dtlsBeforeHandshake = try value(.dtlsBeforeHandshake)
        dtlsNoSession = try value(.dtlsNoSession)
        dtlsBadRecord = try value(.dtlsBadRecord)
        dtlsReplayed = try value(.dtlsReplayed)
        dtlsHandshake = try value(.dtlsHandshake)
        ipMalformed = try value(.ipMalformed)
    }
}
