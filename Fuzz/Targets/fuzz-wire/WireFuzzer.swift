import Foundation
import FuzzSupport
import GatewayCore
import GatewayHostNetwork
import GatewayWire

/// The wire module (GatewayWire): WireFrameDecoder, the incremental reader of the
/// length-prefixed JSON frames every process exchanges over its Unix sockets, and
/// WireCodec/WireEnvelope, the Codable messages. Plus what the receivers of two messages
/// do first with them: the privileged host-network helper's check of a `hostNetwork`
/// request (HostNetworkPlan), and the gateway's reading of an `applySettings` body
/// (AdminSettings.decode + GatewaySettings.validate).
///
/// Input: control byte 0 — bit 0 set: the rest is one frame's JSON payload (the header is
/// made here, so mutations work on the JSON); clear: the rest is a raw byte stream. Bits
/// 1–7 seed how the stream is cut into reads.
///
/// Invariants:
/// - the envelopes and the final error are the same however the stream is cut, and the
///   decoder never holds more than it was given;
/// - every envelope that decodes encodes, and its frame decodes to an equal envelope whose
///   encoding is byte-for-byte the same (the encoding is deterministic);
/// - a host-network state the helper accepts names addresses and prefixes with only the
///   characters of addresses (they become `ip` arguments), and the plan's steps, applied,
///   reach it;
/// - settings that validate have a pool of /10…/30 and at most 500 split rules.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let control = input.byte()
    var stream = input.rest()
    if control & 1 != 0 {
        let n = UInt32(stream.count)
        stream = [WireFrame.magic.0, WireFrame.magic.1, WireFrame.magic.2, WireFrame.version,
                  UInt8(truncatingIfNeeded: n >> 24), UInt8(truncatingIfNeeded: n >> 16),
                  UInt8(truncatingIfNeeded: n >> 8), UInt8(truncatingIfNeeded: n)] + stream
    }

    let whole = decode([stream[...]])
    let pieces = decode(chunks(stream, seed: control >> 1))
    invariant(whole.envelopes == pieces.envelopes, "envelopes differ when the stream is cut: \(whole.envelopes.count) vs \(pieces.envelopes.count)")
    invariant(whole.error == pieces.error, "errors differ when the stream is cut: \(String(describing: whole.error)) vs \(String(describing: pieces.error))")

    var hostState: HostNetworkState?
    for envelope in whole.envelopes {
        roundTrip(envelope)
        switch envelope.message {
        case .request(.hostNetwork(let r)):
            hostNetwork(r, current: &hostState)
        case .request(.applySettings(let r)):
            settings(r.settingsJSON)
        default:
            break
        }
    }
    return 0
}

private struct Decoded {
    var envelopes: [WireEnvelope] = []
    var error: WireFrameError?
}

private func decode(_ reads: [ArraySlice<UInt8>]) -> Decoded {
    var decoder = WireFrameDecoder()
    var out = Decoded()
    var given = 0
    for read in reads {
        decoder.append(read)
        given += read.count
        invariant(decoder.buffered >= 0 && decoder.buffered <= given, "decoder holds \(decoder.buffered) of \(given) bytes")
        do {
            while let e = try decoder.next() {
                out.envelopes.append(e)
                invariant(decoder.buffered >= 0 && decoder.buffered <= given, "decoder holds \(decoder.buffered) of \(given) bytes")
            }
        } catch {
            out.error = error
            return out
        }
    }
    return out
}

private func roundTrip(_ envelope: WireEnvelope) {
    let frame: [UInt8]
    do {
        frame = try WireCodec.encode(envelope)
    } catch {
        invariant(false, "an envelope that decoded does not encode: \(error)")
        return
    }
    var decoder = WireFrameDecoder()
    decoder.append(frame)
    let again: WireEnvelope?
    do {
        again = try decoder.next()
    } catch {
        invariant(false, "an encoded envelope does not decode: \(error)\n\(String(decoding: frame.dropFirst(8), as: UTF8.self))")
        return
    }
    invariant(again == envelope, "round trip changed the envelope:\n\(envelope)\nvs\n\(String(describing: again))")
    invariant(decoder.buffered == 0, "bytes left after one frame")
    let frame2 = try? WireCodec.encode(again!)
    invariant(frame2 == frame, "the encoding is not deterministic")
}

private let addressBytes = Set("0123456789abcdefABCDEF.:/".utf8)

private func hostNetwork(_ r: HostNetworkRequest, current: inout HostNetworkState?) {
    if let desired = r.state {
        guard HostNetworkPlan.problem(in: desired) == nil else { return }
        for a in desired.addresses {
            invariant(!a.isEmpty && a.utf8.allSatisfy(addressBytes.contains), "the helper accepts the address '\(a)' (an `ip` argument)")
        }
        for p in desired.natPrefixes {
            invariant(!p.isEmpty && p.utf8.allSatisfy(addressBytes.contains), "the helper accepts the NAT prefix '\(p)'")
        }
    }
    let steps = HostNetworkPlan.steps(from: current, to: r.state)
    var reached = current
    for step in steps { reached = HostNetworkPlan.state(after: step, from: reached) }
    if let desired = r.state {
        invariant(reached?.mtu == desired.mtu && Set(reached?.addresses ?? []) == Set(desired.addresses)
                  && reached?.natPrefixes == desired.natPrefixes,
                  "the plan's steps do not reach the state: \(steps) from \(String(describing: current)) reach \(String(describing: reached)), not \(desired)")
    } else {
        invariant(reached == nil || current == nil, "tearing down leaves \(String(describing: reached))")
    }
    current = r.state
}

private func settings(_ json: String) {
    guard let admin = try? AdminSettings.decode(Data(json.utf8)) else { return }
    guard case .success(let s) = GatewaySettings.validate(admin) else { return }
    invariant((GatewaySettings.minPoolPrefixLength...30).contains(s.pool.length), "a pool of /\(s.pool.length) validated")
    invariant(s.routeIncludes.count + s.routeExcludes.count <= GatewaySettings.maxSplitRules, "too many split rules validated")
    invariant(s.dnsServers.count <= 3, "\(s.dnsServers.count) DNS servers validated")
}

/// The entry point a debug build links as `main` (see CFuzzDriver/include/fuzz_driver.h).
@_cdecl("fuzz_wire_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runLibFuzzer(argc, argv)
}
