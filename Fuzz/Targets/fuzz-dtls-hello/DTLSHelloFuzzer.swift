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
///   session) whatever the datagrams;
/// - an established channel's datagram that is not a ClientHello goes to that channel.
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
    /// Its DTLS channel: the peer it was started from, and datagrams fed to it.
    var channel: (peer: SocketAddress.Key, fed: Int)?

    init(slot: Int32, index: Int, hasKey: Bool, connected: Bool) {
        self.slot = slot
        appIDBytes = sessionID(index)
        appID = CookieKey(digest: appIDBytes)
        cookieKey = CookieKey(digest: [UInt8](repeating: UInt8(index), count: 32))
        userId = "user\(index)"
        self.hasKey = hasKey
        isConnected = connected
    }

    var established: Bool { (channel?.fed ?? 0) >= 2 }
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

    if let s = directory.session(boundTo: peer), let ch = s.channel, ch.peer == peer {
        let feeds = DatagramRoute.feedsBoundChannel(established: s.established, isClientHello: helloKey != nil)
        invariant(feeds == !(s.established && helloKey != nil), "feedsBoundChannel(\(s.established), \(helloKey != nil)) = \(feeds)")
        if feeds {
            s.channel?.fed += 1
            if s.established, d.count > 0 {
                // A DTLS record's plaintext is a type byte and a payload (§6.5).
                let step = TunnelFrame.step(type: d[0], payload: UnsafeRawBufferPointer(rebasing: d[1...]))
                if case .logoff(let words) = step {
                    invariant(words.utf8.count <= 128 && words.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F }, "logoff words '\(words)'")
                }
            }
            return
        }
    }
    var looked: FakeSession?
    let decision = DatagramRoute.newChannel(helloSessionID: helloKey, udpDisabled: udpDisabled) { (key: CookieKey) in
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
        // Gateway.handleDatagram: the old channel goes, the new one is bound to the sender.
        directory.unbindPeer(of: s)
        s.channel = (peer, 1)
        if let displaced = directory.bind(s, to: peer), displaced !== s {
            invariant(displaced.channel?.peer == peer, "displaced a session that was not at this peer")
            displaced.channel = nil
        }
        invariant(directory.session(boundTo: peer) === s && directory.peer(of: s) == peer, "bind did not bind")
    }
}

private func checkBindings(_ directory: SessionDirectory<FakeSession>, _ sessions: [FakeSession]) {
    var bound = 0
    for s in sessions {
        if let p = directory.peer(of: s) {
            bound += 1
            invariant(directory.session(boundTo: p) === s, "session \(s.slot) is bound to \(p), which leads elsewhere")
            invariant(s.channel?.peer == p, "session \(s.slot)'s channel is not at its bound peer")
        }
    }
    invariant(directory.boundPeers == bound, "\(directory.boundPeers) peers bound, \(bound) sessions have one")
}

/// The entry point a debug build links as `main` (see CFuzzDriver/include/fuzz_driver.h).
@_cdecl("fuzz_dtls_hello_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runLibFuzzer(argc, argv)
}
