import Crypto
import Foundation
import FuzzSupport
import GatewayAuth
import GatewayWire

/// Resumption tickets (GatewayAuth/TicketSealer.swift): any client can send any cookie, and
/// mstunnel-auth opens what has a ticket's shape. Two modes, by the first byte:
/// - even: the rest is a cookie as a client sends it;
/// - odd: the rest is a session the fuzzer makes up (its id, user, address, times from the
///   bytes); it is sealed, then one byte of the ticket is changed where the next byte says.
///
/// Invariants:
/// - a cookie the fuzzer did not seal never opens (AES-GCM: forging one is the fuzzer finding
///   the key); a refusal's reason stays short and never repeats the cookie;
/// - a sealed session opens back to itself (digest set to the ticket's SHA-256, certificate
///   chain left out), and with one byte changed it does not open — unless the change lands
///   in a spot that cannot alter what was sealed (none: every byte is prefix, key id or
///   authenticated ciphertext);
/// - an expired ticket does not open.
let sealer = TicketSealer(sealing: TicketSealer.Key(id: "site-1", key: SymmetricKey(data: Data(repeating: 7, count: 32))),
                          opening: [TicketSealer.Key(id: "old", key: SymmetricKey(data: Data(repeating: 9, count: 32)))])
let now: Int64 = 1_800_000_000

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    if input.byte() % 2 == 0 {
        let cookie = String(decoding: input.rest(), as: UTF8.self)
        switch sealer.open(cookie, now: now) {
        case .session:
            invariant(false, "a cookie the fuzzer did not seal opened: \(cookie.prefix(80))")
        case .refused(let why):
            invariant(why.utf8.count < 200, "refusal reason of \(why.utf8.count) bytes")
            invariant(cookie.utf8.count < 24 || !why.contains(cookie), "the refusal repeats the cookie")
        }
        return 0
    }
    let flip = input.u16()
    let lifetime = Int64(input.u16())
    let hexId = input.take(32).map { String(format: "%02x", $0) }.joined()
    let id = hexId.count == 64 ? hexId : String(repeating: "a", count: 64)
    let user = String(decoding: input.take(Int(input.byte() % 64)), as: UTF8.self)
    let groups = (0..<Int(input.byte() % 8)).map { _ in String(decoding: input.take(Int(input.byte() % 40)), as: UTF8.self) }
    let session = StoredSession(cookieDigest: "", id: id,
                                identity: Identity(userId: user, userName: user, expiresAt: now + lifetime, groups: groups),
                                transport: .bearer, address: "100.64.\(input.byte()).\(input.byte())", createdAt: now - 5,
                                deadline: now + 600, certificateChain: [Data(input.take(8))])
    let ticket: String
    do { ticket = try sealer.seal(session, now: now) } catch { return 0 }
    switch sealer.open(ticket, now: now) {
    case .session(let back, _):
        invariant(lifetime > 0, "a ticket whose credential expired at sealing time opened")
        var expected = session
        expected.cookieDigest = SHA256.hash(data: Data(ticket.utf8)).map { String(format: "%02x", $0) }.joined()
        expected.certificateChain = nil
        invariant(back == expected, "the session does not open back to itself")
    case .refused(let why):
        invariant(lifetime == 0, "a fresh ticket was refused: \(why)")
    }
    var bytes = Array(ticket.utf8)
    let at = flip % bytes.count
    let original = bytes[at]
    bytes[at] = original == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
    if case .session = sealer.open(String(decoding: bytes, as: UTF8.self), now: now) {
        // base64url's last character may carry unused low bits: changing only those leaves
        // the bytes as they were.
        let tail = at == bytes.count - 1
        invariant(tail, "a ticket with byte \(at) changed (\(original) → \(bytes[at])) still opened")
    }
    invariant(sealer.open(ticket, now: now + 400 * 86_400).isRefused, "an expired ticket opened")
    return 0
}

extension TicketSealer.Opened {
    var isRefused: Bool { if case .refused = self { return true } else { return false } }
}

/// The entry point a debug build links as `main` (see CFuzzDriver/include/fuzz_driver.h).
@_cdecl("fuzz_ticket_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runLibFuzzer(argc, argv)
}
