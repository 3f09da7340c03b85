import FuzzSupport
import GatewayCore
import GatewaySessionCore
import GatewaySystem

/// The UDP side's demultiplexer (GatewayDataplane/Gateway+DTLS.swift handleDatagram):
/// DTLSClientHello.sessionID (GatewayCore/DTLSClientHello.swift) reads the session id out
/// of a raw datagram, DatagramRoute (GatewaySessionCore/DatagramRoute.swift) decides where it
/// goes, SessionDirectory binds the session's DTLS channel to the sender. Three sessions;
/// channels become "established" after their second datagram.
///
/// Input: control byte (which sessions offered DTLS / are connected; UDP disabled), then
/// datagrams, each as [sender byte][length u16][bytes].
///
/// Invariants:
/// - a session id is returned exactly when the datagram is a first-fragment DTLS ClientHello
///   with a 32-byte session id (offsets of docs: 0 = 22, 1 = 0xfe, 13 = 1, 19…21 = 0,
///   59 = 32), and it is the 32 bytes at 60;
/// - a handshake is started only for the session the ClientHello names, only if it offered
///   DTLS and is connected and UDP is on;
/// - the directory's peer bindings stay one-to-one (a session has one peer, a peer one
///   session) whatever the datagrams, and its handshakes are the sessions' own (one per
///   address, at most `maxHandshakesPerSession` per session);
/// - application data from an established channel's peer goes to that channel;
/// - a ClientHello never moves or drops an established channel (a replayed hello costs the
///   session nothing): only a handshake that completes does.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let control = input.byte()
    let udpDisabled = control & 0x80 != 0

    var directory = SessionDirectory<FakeSession>()
    var sessions: [FakeSession] = []
    for i in 0..<3 {
        let s = FakeSession(slot: directory.reserveSlot(), index: i,
                            hasKey: control & (1 << i) != 0, connected: control & (8 << i) != 0)
        directory.insert(s)
        sessions.append(s)
    }

    while !input.isEmpty {
        let sender = input.byte()
        let datagram = input.take(input.u16())
        let peer = SocketAddress.Key(high: 0, low: 0xFFFF_0000_0000 | UInt64(0xC633_6400 | UInt32(sender & 0x0F)),
                                     port: 40000 + UInt16(sender >> 4))
        datagram.withUnsafeBytes { d in
            route(d, from: peer, directory: &directory, udpDisabled: udpDisabled)
        }
        checkBindings(directory, sessions)
    }
    return 0
}

private final class FakeSession: SessionEntry {
    let slot: Int32
    let cookieKey: CookieKey
    let appID: CookieKey
    let appIDBytes: [UInt8]
    let userId: String
    let createdAt: Int64 = 0
    let hasKey: Bool
    let isConnected: Bool
    /// The peer of its established channel, and the datagrams fed to that channel.
    var channel: SocketAddress.Key?
    var fedEstablished = 0
    /// Handshakes in progress: their peer, the ClientHello's random, datagrams fed.
    var handshakes: [(peer: SocketAddress.Key, random: [UInt8], fed: Int)] = []

    init(slot: Int32, index: Int, hasKey: Bool, connected: Bool) {
        self.slot = slot
        appIDBytes = sessionID(index)
        appID = CookieKey(digest: appIDBytes)
        cookieKey = CookieKey(digest: [UInt8](repeating: UInt8(index), count: 32))
        userId = "user\(index)"
        self.hasKey = hasKey
        isConnected = connected
    }
}

/// The session ids the seeds use: 32 bytes of 0x11, 0x22, 0x33 (the first) or a pattern.
func sessionID(_ i: Int) -> [UInt8] {
    i == 0 ? [UInt8](repeating: 0x11, count: 32) : (0..<32).map { UInt8(truncatingIfNeeded: $0 * (i + 1) + 0x40) }
}

/// The reference reading of docs/openconnect-protocol.md §6.3.
private func referenceSessionID(_ d: UnsafeRawBufferPointer) -> [UInt8]? {
    guard d.count >= 93, d[0] == 22, d[1] == 0xFE, d[13] == 1, d[19] == 0, d[20] == 0, d[21] == 0, d[59] == 32 else { return nil }
    return Array(d[60..<92])
}

private func route(_ d: UnsafeRawBufferPointer, from peer: SocketAddress.Key,
                   directory: inout SessionDirectory<FakeSession>, udpDisabled: Bool) {
    let id = DTLSClientHello.sessionID(in: d)
    invariant(id.map(Array.init) == referenceSessionID(d), "session id \(id.map { hex($0) } ?? "nil") for \(hex(d, limit: 96))")
    if let id { invariant(id.count == 32, "a session id of \(id.count) bytes") }
    let helloKey = id.map { CookieKey(digest: Array($0)) }
    let isApplicationData = d.first == 23

    // Gateway.handleDatagram, in the same order.
    let bound = directory.session(boundTo: peer).flatMap { $0.channel == peer ? $0 : nil }
    let handshake = directory.session(handshakeAt: peer).flatMap { s in s.handshakes.firstIndex { $0.peer == peer }.map { (s, $0) } }
    invariant(directory.session(handshakeAt: peer) == nil || handshake != nil, "the directory has a handshake at a peer its session does not")
    var parsedHello = 0
    let target = DatagramRoute.target(bound: bound != nil, handshake: handshake != nil, isApplicationData: isApplicationData) {
        parsedHello += 1
        guard helloKey != nil else { return nil }
        return handshake.map { DTLSClientHello.random(in: d) == $0.0.handshakes[$0.1].random } ?? false
    }
    if isApplicationData { invariant(parsedHello == 0, "application data parsed as a ClientHello") }
    if isApplicationData, bound != nil { invariant(target == .bound, "application data from a bound peer went to \(target)") }
    if helloKey != nil { invariant(target == .handshake || target == .newHandshake, "a ClientHello went to \(target)") }

    switch target {
    case .bound:
        let s = bound!
        s.fedEstablished += 1
        if d.count > 0 {
            // A DTLS record's plaintext is a type byte and a payload (§6.5).
            let step = TunnelFrame.step(type: d[0], payload: UnsafeRawBufferPointer(rebasing: d[1...]))
            if case .logoff(let words) = step {
                invariant(words.utf8.count <= 128 && words.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F }, "logoff words '\(words)'")
            }
        }
        return
    case .handshake:
        let (s, i) = handshake!
        s.handshakes[i].fed += 1
        guard s.handshakes[i].fed >= 2 else { return }
        // Completed: Gateway.completeHandshake.
        let others = s.handshakes.map(\.peer).filter { $0 != peer }
        let done = directory.completeHandshake(s, at: peer)
        invariant(done.abandoned == others, "completing at \(peer) abandoned \(done.abandoned), not \(others)")
        s.handshakes.removeAll()
        s.channel = peer
        s.fedEstablished = 0
        if let displaced = done.displaced, displaced !== s {
            invariant(displaced.channel == peer, "displaced a session that was not at this peer")
            displaced.channel = nil
        }
        invariant(directory.session(boundTo: peer) === s && directory.peer(of: s) == peer, "a completed handshake did not bind")
        return
    case .newHandshake, .unknown:
        break
    }
    var looked: FakeSession?
    let decision = DatagramRoute.newChannel(helloSessionID: target == .newHandshake ? helloKey : nil, udpDisabled: udpDisabled) { (key: CookieKey) in
        directory.lookup(appID: key).map { s in
            looked = s
            return (s, DatagramRoute.Candidate(hasKey: s.hasKey, connected: s.isConnected))
        }
    }
    switch decision {
    case .drop:
        return
    case .handshake(let s):
        invariant(!udpDisabled, "a handshake with UDP disabled")
        invariant(s === looked && Array(id!) == s.appIDBytes, "a handshake for a session the ClientHello does not name")
        invariant(s.hasKey && s.isConnected, "a handshake for a session that did not offer DTLS or has no connection")
        let channels = directory.all.map { ($0.slot, $0.channel) }
        let discarded = directory.addHandshake(s, at: peer)
        for (owner, p) in discarded {
            invariant(owner.handshakes.contains { $0.peer == p }, "discarded a handshake session \(owner.slot) did not have")
            owner.handshakes.removeAll { $0.peer == p }
        }
        s.handshakes.append((peer, DTLSClientHello.random(in: d), 1))
        // A ClientHello alone moves no channel, whoever sent it.
        invariant(directory.all.map { ($0.slot, $0.channel) }.elementsEqual(channels) { $0.0 == $1.0 && $0.1 == $1.1 },
                  "a ClientHello moved or dropped an established channel")
        invariant(directory.session(handshakeAt: peer) === s, "the handshake is not at its peer")
    }
}

private func checkBindings(_ directory: SessionDirectory<FakeSession>, _ sessions: [FakeSession]) {
    var bound = 0
    var handshakes = 0
    for s in sessions {
        if let p = directory.peer(of: s) {
            bound += 1
            invariant(directory.session(boundTo: p) === s, "session \(s.slot) is bound to \(p), which leads elsewhere")
            invariant(s.channel == p, "session \(s.slot)'s channel is not at its bound peer")
        } else {
            invariant(s.channel == nil, "session \(s.slot) has a channel the directory does not bind")
        }
        let peers = directory.handshakePeers(of: s)
        invariant(peers == s.handshakes.map(\.peer), "session \(s.slot): handshakes \(s.handshakes.map(\.peer)), directory \(peers)")
        invariant(peers.count <= SessionDirectory<FakeSession>.maxHandshakesPerSession, "session \(s.slot) has \(peers.count) handshakes")
        for p in peers { invariant(directory.session(handshakeAt: p) === s, "handshake peer \(p) leads elsewhere") }
        handshakes += peers.count
    }
    invariant(directory.boundPeers == bound, "\(directory.boundPeers) peers bound, \(bound) sessions have one")
    invariant(directory.handshakesInProgress == handshakes, "\(directory.handshakesInProgress) handshakes, \(handshakes) in the sessions")
}

/// The entry point a debug build links as `main` (see CFuzzDriver/include/fuzz_driver.h).
@_cdecl("fuzz_dtls_hello_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runLibFuzzer(argc, argv)
}
