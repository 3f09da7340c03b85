import FuzzSupport
import GatewayCore
import GatewaySessionCore
import GatewayTUN

/// The CSTP stream from a connected client (GatewayCore/CSTP.swift, TunnelFrame and
/// SourceCheck in GatewaySessionCore/TunnelFrames.swift), decoded the way the gateway does
/// (Gateway+Receive.swift: frames out of whatever TLS delivered, the rest kept for the next
/// read), and each data packet taken down the gateway's path to the TUN: source check, the
/// TCP ACK filter (GatewayCore/TCPAckFilter.swift), the TUN's TCP merge (GatewayTUN,
/// TCPCoalescer in GatewayCore/TUNOffload.swift) on a MemoryTUN with offload.
///
/// Input: control byte 0 (how the stream is cut into TLS records), then the stream.
///
/// Invariants:
/// - the decoder never consumes more than it holds, and yields the same frames however the
///   stream is cut; a frame's payload never exceeds CSTP.maxPayload;
/// - a DISCONNECT's logoff words are printable ASCII, at most 128 bytes;
/// - every data packet that passes the source check reaches the TUN exactly once or is
///   counted as a superseded ACK (which must be a pure ACK);
/// - what the TUN receives, split again as the kernel splits a merged segment, is the
///   packets the client sent (up to the fields a merge rewrites: length, id, checksums).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let seed = input.byte()
    let stream = input.rest()

    let whole = decode([stream[...]])
    let pieces = decode(chunks(stream, seed: seed))
    invariant(whole.frames == pieces.frames, "frames differ when the stream is cut (seed \(seed)): \(whole.frames.count) vs \(pieces.frames.count)")
    invariant(whole.closed == pieces.closed, "the stream is invalid cut one way and not the other")
    invariant(pieces.consumed <= stream.count, "consumed \(pieces.consumed) of \(stream.count) bytes")

    // Encoding round trip for every frame the stream held.
    for f in whole.frames {
        guard let type = CSTP.PacketType(rawValue: f.type) else { continue }
        let bytes = CSTP.frame(type, payload: f.payload)
        let parsed = bytes.withUnsafeBytes { CSTP.parseHeader($0) }
        invariant(parsed == .header(type: f.type, length: f.payload.count), "CSTP.frame → parseHeader gave \(parsed)")
    }

    tunPath(pieces)
    return 0
}

private let sessionAddress = IPv4Address(100, 64, 0, 2)
/// Its IPv6 address (`IPv6Leases`: the IPv4 one in the last 32 bits of fd00:198:18:64::/64).
private let sessionAddress6 = IPv6Address(high: 0xfd00_0198_0018_0064, low: 0x6440_0002)

private struct Frame: Equatable {
    var type: UInt8
    var payload: [UInt8]
    /// The read (TLS record) the frame completed in.
    var turn: Int

    /// The same frame, whichever read completed it.
    static func == (a: Frame, b: Frame) -> Bool { a.type == b.type && a.payload == b.payload }
}

private struct Decoded {
    var frames: [Frame] = []
    /// The stream ended the connection (an invalid header, DISCONNECT, TERMINATE…).
    var closed = false
    var consumed = 0
}

/// Gateway.receiveCSTP/processFrames: whole frames out of what arrived, the rest kept.
private func decode(_ reads: [ArraySlice<UInt8>]) -> Decoded {
    var out = Decoded()
    var partial: [UInt8] = []
    for (turn, read) in reads.enumerated() {
        partial.append(contentsOf: read)
        var offset = 0
        var stop = false
        partial.withUnsafeBytes { p in
            while !stop {
                let rest = UnsafeRawBufferPointer(rebasing: p[offset...])
                switch CSTP.parseHeader(rest) {
                case .incomplete:
                    invariant(rest.count < CSTP.headerSize, "incomplete with \(rest.count) bytes")
                    stop = true
                case .invalid:
                    out.closed = true
                    stop = true
                case .header(let type, let length):
                    invariant(length <= CSTP.maxPayload, "a payload of \(length) bytes")
                    guard rest.count >= CSTP.headerSize + length else {
                        stop = true
                        break
                    }
                    let payload = UnsafeRawBufferPointer(rebasing: rest[CSTP.headerSize..<(CSTP.headerSize + length)])
                    offset += CSTP.headerSize + length
                    invariant(offset <= p.count, "consumed \(offset) of \(p.count)")
                    out.frames.append(Frame(type: type, payload: Array(payload), turn: turn))
                    let step = TunnelFrame.step(type: type, payload: payload)
                    switch step {
                    case .logoff(let reason):
                        invariant(reason.utf8.count <= 128 && reason.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F }, "logoff words '\(reason)'")
                        invariant(payload.first == CSTP.logoffReason, "logoff without the logoff reason byte")
                        out.closed = true  // the session ends, the connection closes
                        stop = true
                    case .detach, .close:
                        out.closed = true  // the connection closes
                        stop = true
                    case .forward:
                        invariant(type == CSTP.PacketType.data.rawValue, "forward for type \(type)")
                    default:
                        break
                    }
                }
            }
        }
        out.consumed += offset
        partial.removeFirst(offset)
        if out.closed { break }
    }
    return out
}

/// Gateway.forwardToTUN for every data frame; the filter is drained and the TUN flushed
/// at the end of each read (the end of the gateway's loop turn).
private func tunPath(_ d: Decoded) {
    let tun = MemoryTUN(offload: true)
    var filter = TCPAckFilter()
    var sent: [[UInt8]] = []      // packets written towards the TUN, in order
    var passed = 0
    var turn = 0
    func endTurn(_ filter: inout TCPAckFilter) {
        filter.drain { p in
            sent.append(Array(p))
            invariant(tun.writePacket(p) == 0, "MemoryTUN write failed")
        }
        invariant(tun.flush() == 0, "MemoryTUN flush failed")
    }
    for f in d.frames where f.type == CSTP.PacketType.data.rawValue {
        while turn < f.turn {
            endTurn(&filter)
            turn += 1
        }
        let verdict = f.payload.withUnsafeBytes { SourceCheck.verdict($0, sessionAddress: sessionAddress, sessionAddress6: sessionAddress6) }
        let p = f.payload
        let total = p.count >= 4 ? Int(p[2]) << 8 | Int(p[3]) : 0
        if p.count >= 20, p[0] >> 4 == 4, p[0] & 0x0F >= 5, total >= Int(p[0] & 0x0F) * 4, total <= p.count {
            let source = IPv4Address(p[12], p[13], p[14], p[15])
            invariant(verdict == (source == sessionAddress ? .pass : .spoofed), "verdict \(verdict) for source \(source)")
        } else if p.count >= 40, p[0] >> 4 == 6 {
            let payloadLength = Int(p[4]) << 8 | Int(p[5])
            let source = p.withUnsafeBytes { IPv6Leases.read($0, at: 8) }
            let expected: SourceCheck.Verdict
            if (payloadLength == 0 && p.count != 40) || 40 + payloadLength > p.count {
                expected = .malformed
            } else if source == sessionAddress6 {
                expected = .pass
            } else if p[8] == 0xFE && p[9] & 0xC0 == 0x80 || (source.high == 0 && source.low == 0) {
                expected = .unsupported  // link-local or unspecified: the client's own ND/MLD
            } else {
                expected = .spoofed
            }
            invariant(verdict == expected, "verdict \(verdict) for an IPv6 packet from \(source), payload \(payloadLength) of \(p.count - 40)")
        } else {
            invariant(verdict == .malformed, "verdict \(verdict) for a packet that is not IP")
        }
        guard verdict == .pass else { continue }
        passed += 1
        let superseded = filter.superseded
        let taken = f.payload.withUnsafeBytes { p in
            filter.offer(p) { held in
                sent.append(Array(held))
                invariant(tun.writePacket(held) == 0, "MemoryTUN write failed")
            }
        }
        if filter.superseded != superseded {
            invariant(f.payload.withUnsafeBytes { TCPAckFilter.isPureAck($0) }, "a packet that is not a pure ACK superseded another")
        }
        if !taken {
            sent.append(f.payload)
            f.payload.withUnsafeBytes { invariant(tun.writePacket($0) == 0, "MemoryTUN write failed") }
        }
    }
    endTurn(&filter)
    invariant(sent.count + Int(filter.superseded) == passed,
              "\(passed) packets passed, \(sent.count) written and \(filter.superseded) superseded")

    // Split what the TUN got the way the kernel would, and compare with what was sent.
    var split: [[UInt8]] = []
    for frame in tun.takeWritten() {
        var buffer = [UInt8](repeating: 0, count: 64 + frame.count)
        buffer.replaceSubrange(64..<(64 + frame.count), with: frame)
        let ok = buffer.withUnsafeMutableBytes { b in
            tun.framing.split(b, frameAt: 64, length: frame.count) { off, len in split.append(Array(b[off..<(off + len)])) }
        }
        invariant(ok, "the TUN was given a frame it cannot split: \(hex(frame))")
    }
    invariant(split.count == sent.count, "the TUN frames hold \(split.count) packets, \(sent.count) were written")
    for (a, b) in zip(split, sent) {
        invariant(masked(a) == masked(b), "a packet changed on its way through the TUN merge:\n sent \(hex(b, limit: 120))\n  got \(hex(a, limit: 120))")
    }
}

/// A packet without the fields a merge and split rewrite: IPv4 total length, id and
/// header checksum, the TCP checksum, and the urgent pointer when URG is clear (then it
/// means nothing, RFC 9293 §3.1; Linux's GRO does not compare it either).
private func masked(_ p: [UInt8]) -> [UInt8] {
    var p = p
    guard p.count >= 40, p[0] == 0x45, p[9] == 6 else { return p }
    for i in [2, 3, 4, 5, 10, 11, 36, 37] { p[i] = 0 }
    if p[33] & 0x20 == 0 { p[38] = 0; p[39] = 0 }
    return p
}

/// The entry point a debug build links as `main` (see CFuzzDriver/include/fuzz_driver.h).
@_cdecl("fuzz_cstp_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runLibFuzzer(argc, argv)
}
