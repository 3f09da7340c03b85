import GatewayCore
import GatewaySystem

/// The PROXY protocol header (HAProxy's specification, versions 1 and 2) that a trusted L4
/// proxy — HAProxy `send-proxy-v2`, nginx `proxy_protocol on` — puts before the client's
/// first byte, so the gateway logs, limits and bans the client's address rather than the
/// proxy's (docs/operations.md, "A Site behind a balancer").
///
/// Parsing only, no I/O: `Gateway` peeks at the socket, hands the bytes here, and reads off
/// exactly the header's length, so the TLS bytes behind it are never taken. Every byte
/// before `complete` belongs to the header — a caller may consume what it has on
/// `needMore` without ever reading into the TLS stream.
public enum ProxyHeader {
    /// Version 2 starts with these 12 bytes; version 1 with "PROXY ".
    public static let v2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
    static let v1Prefix: [UInt8] = Array("PROXY ".utf8)
    /// A version 1 line is at most 107 bytes with its CRLF (the specification's bound).
    public static let v1MaxLength = 107
    /// A version 2 header with more TLVs than this carries (the gateway reads none of them)
    /// is refused, which bounds what one connection can make the gateway hold.
    public static let v2MaxLength = 16 + 512
    /// The most bytes a header can take: what a caller peeks at.
    public static let maxLength = v2MaxLength

    public enum Outcome: Equatable, Sendable {
        /// More bytes are needed; every byte so far belongs to the header.
        case needMore
        /// The header is `length` bytes. `source` is the client's address and port; nil when
        /// the proxy speaks for itself (v1 `UNKNOWN`, v2 `LOCAL`: its own health checks) or
        /// the client is not on IP — the connection keeps the proxy's address.
        case complete(length: Int, source: SocketAddress.Key?)
        /// Not a PROXY header, or a malformed one: the connection is closed.
        case invalid(String)
    }

    public static func parse(_ bytes: [UInt8]) -> Outcome {
        guard let first = bytes.first else { return .needMore }
        if first == v2Signature[0] { return parseV2(bytes) }
        if first == v1Prefix[0] { return parseV1(bytes) }
        return .invalid("no PROXY protocol header (first byte 0x\(String(first, radix: 16)))")
    }

    // MARK: - Version 2 (binary)

    static func parseV2(_ b: [UInt8]) -> Outcome {
        let signed = min(b.count, v2Signature.count)
        guard b[0..<signed].elementsEqual(v2Signature[0..<signed]) else { return .invalid("not a PROXY v2 signature") }
        guard b.count >= 16 else { return .needMore }
        let version = b[12] >> 4, command = b[12] & 0x0F
        guard version == 2 else { return .invalid("PROXY v2 header of version \(version)") }
        let length = 16 + (Int(b[14]) << 8 | Int(b[15]))
        guard length <= v2MaxLength else { return .invalid("PROXY v2 header of \(length) bytes (at most \(v2MaxLength))") }
        guard b.count >= length else { return .needMore }
        switch command {
        case 0x0: return .complete(length: length, source: nil)  // LOCAL: the proxy's own connection
        case 0x1: break
        default: return .invalid("PROXY v2 command \(command)")
        }
        let family = b[13] >> 4, transport = b[13] & 0x0F
        guard transport == 1 || family == 0 else { return .invalid("PROXY v2 transport \(transport) on a TCP connection") }
        switch family {
        case 1:  // IPv4: source, destination, source port, destination port
            guard length >= 16 + 12 else { return .invalid("PROXY v2 IPv4 addresses cut short") }
            let address = UInt64(b[16]) << 24 | UInt64(b[17]) << 16 | UInt64(b[18]) << 8 | UInt64(b[19])
            return .complete(length: length, source: SocketAddress.Key(high: 0, low: 0xFFFF_0000_0000 | address,
                                                                        port: UInt16(b[24]) << 8 | UInt16(b[25])))
        case 2:  // IPv6
            guard length >= 16 + 36 else { return .invalid("PROXY v2 IPv6 addresses cut short") }
            var high: UInt64 = 0, low: UInt64 = 0
            for i in 16..<24 { high = high << 8 | UInt64(b[i]) }
            for i in 24..<32 { low = low << 8 | UInt64(b[i]) }
            return .complete(length: length, source: SocketAddress.Key(high: high, low: low, port: UInt16(b[48]) << 8 | UInt16(b[49])))
        case 0, 3:  // unspecified, Unix: nothing to put in place of the proxy's address
            return .complete(length: length, source: nil)
        default:
            return .invalid("PROXY v2 address family \(family)")
        }
    }

    // MARK: - Version 1 (text)

    static func parseV1(_ b: [UInt8]) -> Outcome {
        let prefixed = min(b.count, v1Prefix.count)
        guard b[0..<prefixed].elementsEqual(v1Prefix[0..<prefixed]) else { return .invalid("not a PROXY v1 line") }
        guard let lf = b.prefix(v1MaxLength).firstIndex(of: 0x0A) else {
            return b.count >= v1MaxLength ? .invalid("PROXY v1 line longer than \(v1MaxLength) bytes") : .needMore
        }
        guard lf > 0, b[lf - 1] == 0x0D else { return .invalid("PROXY v1 line not ended by CRLF") }
        let line = String(decoding: b[v1Prefix.count..<(lf - 1)], as: UTF8.self)
        let fields = line.split(separator: " ", omittingEmptySubsequences: false)
        let length = lf + 1
        guard let proto = fields.first else { return .invalid("empty PROXY v1 line") }
        if proto == "UNKNOWN" { return .complete(length: length, source: nil) }
        guard fields.count == 5, proto == "TCP4" || proto == "TCP6" else {
            return .invalid("PROXY v1 line is not 'TCP4|TCP6 SRC DST SPORT DPORT' or 'UNKNOWN'")
        }
        guard let sourcePort = port(fields[3]), port(fields[4]) != nil else { return .invalid("PROXY v1 port out of range") }
        if proto == "TCP4" {
            guard let a = IPv4Address(fields[1]), IPv4Address(fields[2]) != nil else { return .invalid("PROXY v1 TCP4 address") }
            return .complete(length: length, source: SocketAddress.Key(high: 0, low: 0xFFFF_0000_0000 | UInt64(a.value), port: sourcePort))
        }
        guard let a = IPv6Address(fields[1]), IPv6Address(fields[2]) != nil else { return .invalid("PROXY v1 TCP6 address") }
        return .complete(length: length, source: SocketAddress.Key(high: a.high, low: a.low, port: sourcePort))
    }

    /// A decimal port, 0–65535, without a sign or a leading zero (the specification's form).
    static func port(_ text: Substring) -> UInt16? {
        guard !text.isEmpty, text.count <= 5, text.allSatisfy({ $0.isASCII && $0.isNumber }),
              text == "0" || !text.hasPrefix("0"), let v = Int(text), v <= 65535 else { return nil }
        return UInt16(v)
    }

    // MARK: - Who may send one

    /// True when `peer` is inside one of `proxies`: only those connections are asked for a
    /// header (anyone else could otherwise claim any address).
    public static func isTrusted(_ peer: SocketAddress.Key, proxies: [IPPrefix]) -> Bool {
        for prefix in proxies {
            switch prefix {
            case .v4(let p) where peer.isIPv4:
                if p.contains(IPv4Address(UInt32(truncatingIfNeeded: peer.low))) { return true }
            case .v6(let p) where !peer.isIPv4:
                if p.contains(IPv6Address(high: peer.high, low: peer.low)) { return true }
            default: continue
            }
        }
        return false
    }
}
