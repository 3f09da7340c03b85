/// Holds pure TCP ACKs back for the rest of one loop turn so that, of several ACKs of one
/// flow that arrive together, only those that still say something reach the TUN.
///
/// Why: a client receiving a download acknowledges every second segment (every segment
/// while it recovers from a loss), and each ACK written to the TUN costs a system call
/// plus a pass through routing, conntrack, NAT and the server's TCP stack. When one batch
/// of datagrams (or one TLS read) carries several ACKs of the same flow, an older one
/// tells the sender nothing the newer one does not: the acknowledgment number is
/// cumulative, and the newer SACK blocks cover the older ones. Dropping the superseded
/// ones is the "ACK filtering" of RFC 3449 §5.2.2, with the rules of Linux's CAKE qdisc
/// (`ack-filter`), kept conservative so that no signal TCP relies on is lost:
/// - only packets that are nothing but an ACK are held: IPv4 without options or
///   fragments, no payload, flags exactly ACK (no SYN/FIN/RST/PSH/URG/ECE/CWR), TCP
///   options only NOP/EOL/timestamps/SACK;
/// - a held ACK is dropped only for a later one of the same flow (addresses and ports)
///   with the same sequence number, an acknowledgment number at least as far on, SACK
///   blocks covering every held SACK block, timestamps not older, and something new
///   (a further ACK number or more SACKed data). An identical duplicate ACK is never
///   dropped (without SACK, duplicate ACKs are how the sender learns of a loss), nor is a
///   pure window update;
/// - anything else of that flow writes the held ACK first (order within a flow is kept);
/// - everything still held is written at the end of the loop turn (`drain`), so an ACK
///   is never delayed beyond the batch it arrived in.
///
/// The gateway runs one filter on the way into the TUN (clients' ACKs) and one on the way
/// out of it (ACKs from the network to clients, before they are encrypted). No I/O here:
/// the caller passes the function that writes a packet out.
public struct TCPAckFilter: ~Copyable {
    public static let slotCount = 8
    /// IPv4 header (20, no options) + the largest TCP header (60).
    public static let maxPacket = 80

    /// Bytes kept free in front of each held packet, so that the caller can put a
    /// header there when it writes one out (the CSTP header or the DTLS type byte).
    public let headroom: Int
    private let slotSize: Int
    private let storage: UnsafeMutableRawPointer
    private let lengths: UnsafeMutablePointer<Int>
    private var held = 0
    /// ACKs dropped because a later ACK of the same flow superseded them.
    public private(set) var superseded: UInt64 = 0

    public init(headroom: Int = 0) {
        self.headroom = headroom
        slotSize = (headroom + Self.maxPacket + 15) & ~15
        storage = .allocate(byteCount: Self.slotCount * slotSize, alignment: 16)
        lengths = .allocate(capacity: Self.slotCount)
        lengths.initialize(repeating: 0, count: Self.slotCount)
    }

    /// Where slot `i`'s packet starts.
    private func packet(_ i: Int) -> UnsafeMutableRawPointer { storage + i * slotSize + headroom }

    deinit {
        storage.deallocate()
        lengths.deallocate()
    }

    /// ACKs currently held.
    public var heldCount: Int { held }

    /// Offers `p`, an IP packet about to be written. Returns true when the filter took it
    /// (copied; the caller writes nothing now). Before returning, it may `write` a held
    /// ACK that has to go out ahead of `p`.
    public mutating func offer(_ p: UnsafeRawBufferPointer, write: (UnsafeRawBufferPointer) -> Void) -> Bool {
        // Only TCP/IPv4 without IP options and not a fragment has a flow we can name;
        // everything else cannot be ordered against a held ACK and passes untouched.
        guard p.count >= 40, p[0] == 0x45, p[9] == 6, p[6] & 0x3F == 0, p[7] == 0 else { return false }
        let pure = Self.isPureAck(p)
        if let i = slot(ofFlow: p) {
            let h = UnsafeRawBufferPointer(start: packet(i), count: lengths[i])
            if pure, Self.supersedes(p, h) {
                superseded &+= 1
                store(p, at: i)
                return true
            }
            write(h)
            remove(at: i)
        }
        guard pure else { return false }
        if held == Self.slotCount { drain(write: write) }
        store(p, at: held)
        held += 1
        return true
    }

    /// Writes every held ACK (in the order they were first held) and empties the filter.
    public mutating func drain(write: (UnsafeRawBufferPointer) -> Void) {
        for i in 0..<held {
            write(UnsafeRawBufferPointer(start: packet(i), count: lengths[i]))
        }
        held = 0
    }

    /// Nothing but an acknowledgment: see the type's comment for the exact rule.
    public static func isPureAck(_ p: UnsafeRawBufferPointer) -> Bool {
        guard p.count >= 40, p.count <= maxPacket, p[0] == 0x45, p[9] == 6, p[6] & 0x3F == 0, p[7] == 0 else { return false }
        guard Int(p[2]) << 8 | Int(p[3]) == p.count else { return false }
        let tcpHL = Int(p[32] >> 4) * 4
        guard tcpHL >= 20, 20 + tcpHL == p.count, p[32] & 0x0F == 0, p[33] == 0x10 else { return false }
        return options(p) != nil
    }

    /// The timestamp option's offset and the SACK option's offset and block count, or nil
    /// when an option is malformed or of another kind.
    struct Options {
        var timestamp = -1
        var sack = -1
        var sackBlocks = 0
    }

    static func options(_ p: UnsafeRawBufferPointer) -> Options? {
        var r = Options()
        var o = 40
        while o < p.count {
            switch p[o] {
            case 0:
                return r  // end of options; the rest is padding
            case 1:
                o += 1
            case 8:
                guard o + 1 < p.count, p[o + 1] == 10, o + 10 <= p.count, r.timestamp < 0 else { return nil }
                r.timestamp = o
                o += 10
            case 5:
                guard o + 1 < p.count else { return nil }
                let len = Int(p[o + 1])
                guard len >= 10, (len - 2) % 8 == 0, o + len <= p.count, r.sack < 0 else { return nil }
                r.sack = o
                r.sackBlocks = (len - 2) / 8
                o += len
            default:
                return nil
            }
        }
        return r
    }

    /// `newer` (a pure ACK) makes `older` (a held pure ACK of the same flow) redundant.
    static func supersedes(_ newer: UnsafeRawBufferPointer, _ older: UnsafeRawBufferPointer) -> Bool {
        for i in 24..<28 where newer[i] != older[i] { return false }  // same sequence number
        let ackAdvance = Int32(bitPattern: word(newer, 28) &- word(older, 28))
        guard ackAdvance >= 0, let on = options(newer), let oo = options(older) else { return false }
        // Timestamps: both or neither, and not going back.
        guard (on.timestamp < 0) == (oo.timestamp < 0) else { return false }
        if on.timestamp >= 0 {
            guard Int32(bitPattern: word(newer, on.timestamp + 2) &- word(older, oo.timestamp + 2)) >= 0,
                  Int32(bitPattern: word(newer, on.timestamp + 6) &- word(older, oo.timestamp + 6)) >= 0 else { return false }
        }
        // Every SACK block of the older ACK below the newer's cumulative ACK or inside
        // one of its SACK blocks.
        var sameSACK = on.sackBlocks == oo.sackBlocks
        let newerAck = word(newer, 28)
        for i in 0..<oo.sackBlocks {
            let s = word(older, oo.sack + 2 + 8 * i), e = word(older, oo.sack + 6 + 8 * i)
            if Int32(bitPattern: newerAck &- e) >= 0 {
                sameSACK = false
                continue
            }
            var covered = false
            for j in 0..<on.sackBlocks {
                let ns = word(newer, on.sack + 2 + 8 * j), ne = word(newer, on.sack + 6 + 8 * j)
                if Int32(bitPattern: s &- ns) >= 0, Int32(bitPattern: ne &- e) >= 0 {
                    covered = true
                    if s != ns || e != ne { sameSACK = false }
                    break
                }
            }
            guard covered else { return false }
        }
        // Something new: an identical (duplicate) ACK is never dropped.
        return ackAdvance > 0 || !sameSACK
    }

    private static func word(_ p: UnsafeRawBufferPointer, _ o: Int) -> UInt32 {
        UInt32(p[o]) << 24 | UInt32(p[o + 1]) << 16 | UInt32(p[o + 2]) << 8 | UInt32(p[o + 3])
    }

    /// The held slot of `p`'s flow: same addresses (12..<20) and ports (20..<24).
    private func slot(ofFlow p: UnsafeRawBufferPointer) -> Int? {
        guard held > 0 else { return nil }
        let b = p.baseAddress! + 12
        let k0 = b.loadUnaligned(as: UInt64.self), k1 = b.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
        for i in 0..<held {
            let h = packet(i) + 12
            if h.loadUnaligned(as: UInt64.self) == k0, h.loadUnaligned(fromByteOffset: 8, as: UInt32.self) == k1 { return i }
        }
        return nil
    }

    private mutating func store(_ p: UnsafeRawBufferPointer, at i: Int) {
        packet(i).copyMemory(from: p.baseAddress!, byteCount: p.count)
        lengths[i] = p.count
    }

    private mutating func remove(at i: Int) {
        if i + 1 < held {
            (storage + i * slotSize).copyMemory(from: storage + (i + 1) * slotSize, byteCount: (held - i - 1) * slotSize)
            (lengths + i).update(from: lengths + i + 1, count: held - i - 1)
        }
        held -= 1
    }
}
