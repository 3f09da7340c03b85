import GatewaySystem
import Testing
@testable import GatewaySessionCore

/// The session directory in memory: logins filling and freeing slots, cookie and session-id
/// lookups, max-sessions-per-user against live and idle sessions, and DTLS peers bound,
/// roamed and released as `DatagramRoute` and the gateway use them.
@Suite struct SessionDirectoryTests {
    final class S: SessionEntry, Equatable {
        static func == (l: S, r: S) -> Bool { l === r }

        let slot: Int32
        let cookieKey: CookieKey
        let appID: CookieKey
        let userId: String
        let createdAt: Int64
        var isConnected = false
        var hasKey = true

        init(slot: Int32, user: String, n: UInt8, at: Int64) {
            self.slot = slot
            cookieKey = CookieKey(digest: [UInt8](repeating: n, count: 32))
            appID = CookieKey(digest: [UInt8](repeating: n &+ 128, count: 32))
            userId = user
            createdAt = at
        }
    }

    var dir = SessionDirectory<S>()
    var n: UInt8 = 0

    mutating func login(_ user: String, at: Int64 = 0) -> S {
        n += 1
        let s = S(slot: dir.reserveSlot(), user: user, n: n, at: at)
        dir.insert(s)
        return s
    }

    func peer(_ last: UInt8, _ port: UInt16) -> SocketAddress.Key {
        SocketAddress(literal: "198.18.0.\(last)", port: port)!.key
    }

    @Test mutating func slotsAreReusedAndLookupsFollowTheSession() {
        let a = login("alice"), b = login("bob")
        #expect((a.slot, b.slot) == (0, 1))
        #expect(dir.count == 2)
        #expect(dir.lookup(cookie: a.cookieKey) === a)
        #expect(dir.lookup(appID: b.appID) === b)
        #expect(dir.lookup(cookie: b.appID) == nil)
        dir.remove(a)
        #expect(dir.count == 1 && dir.lookup(cookie: a.cookieKey) == nil && dir.session(at: 0) == nil)
        // Removing twice, or a session the directory no longer holds, changes nothing.
        dir.remove(a)
        #expect(dir.count == 1)
        let c = login("carol")
        #expect(c.slot == 0)
        #expect(dir.session(at: 0) === c)
        // A reserved slot given back (no address left, say) is the next one used.
        let reserved = dir.reserveSlot()
        dir.unreserve(reserved)
        #expect(login("dave").slot == reserved)
    }

    @Test mutating func maxSessionsPerUserReplacesTheOldestIdleNeverALiveOne() {
        let limits = SessionAdmission.Limits(maxSessions: 0, maxSessionsPerUser: 2)
        let first = login("alice", at: 10), second = login("alice", at: 20)
        _ = login("bob", at: 5)
        first.isConnected = true
        second.isConnected = true
        guard case .refuse(_, let reason) = dir.admission(ofUser: "alice", limits) else {
            Issue.record("two live sessions: a third login must be refused")
            return
        }
        #expect(reason == "max-sessions-per-user reached")
        second.isConnected = false
        #expect(dir.admission(ofUser: "alice", limits) == .admitReplacing(slot: second.slot))
        first.isConnected = false
        // Both idle: the oldest goes.
        #expect(dir.admission(ofUser: "alice", limits) == .admitReplacing(slot: first.slot))
        #expect(dir.admission(ofUser: "bob", limits) == .admit)
        #expect(dir.sessions(ofUser: "alice").map(\.slot) == [first.slot, second.slot])
        let total = SessionAdmission.Limits(maxSessions: 3, maxSessionsPerUser: 0)
        guard case .refuse = dir.admission(ofUser: "carol", total) else {
            Issue.record("max-sessions reached: refused")
            return
        }
    }

    /// A ClientHello from an unknown address names a session (its App-ID); the channel
    /// binds there. The client roams: a ClientHello from a new address moves the binding,
    /// and the old address finds nothing any more.
    @Test mutating func dtlsBindingAndRoaming() {
        let a = login("alice"), b = login("bob")
        a.isConnected = true
        b.isConnected = true
        let home = peer(2, 40000), cafe = peer(77, 51000)

        func route(helloFor s: S?) -> DatagramRoute.NewChannel<S> {
            let dir = self.dir
            return DatagramRoute.newChannel(helloSessionID: s?.appID, udpDisabled: false) { id in
                dir.lookup(appID: id).map { ($0, DatagramRoute.Candidate(hasKey: $0.hasKey, connected: $0.isConnected)) }
            }
        }

        #expect(dir.session(boundTo: home) == nil)
        guard case .handshake(let found) = route(helloFor: a), found === a else {
            Issue.record("the ClientHello names alice's session")
            return
        }
        dir.bind(a, to: home)
        #expect(dir.session(boundTo: home) === a && dir.peer(of: a) == home)

        // Roaming: alice's ClientHello now comes from the café.
        guard case .handshake(let again) = route(helloFor: a), again === a else {
            Issue.record("a ClientHello from a new address names the same session")
            return
        }
        dir.bind(a, to: cafe)
        #expect(dir.session(boundTo: cafe) === a)
        #expect(dir.session(boundTo: home) == nil)
        #expect(dir.boundPeers == 1)

        // Bob binds at home, then his channel comes from the café's address (a NAT reused
        // it): the café is bob's now, alice's channel is unbound, home is free again.
        let none = dir.bind(b, to: home)
        #expect(none == nil)
        let displaced = dir.bind(b, to: cafe)
        // The caller drops alice's channel: it leads to bob now.
        #expect(displaced === a)
        #expect(dir.session(boundTo: cafe) === b && dir.peer(of: a) == nil)
        #expect(dir.session(boundTo: home) == nil)

        // Not a ClientHello, from an address no session uses; a session without DTLS key;
        // a session with no TLS connection: all dropped, with the reason.
        #expect(route(helloFor: nil) == .drop(reason: "not a ClientHello, from an address no session uses"))
        a.hasKey = false
        #expect(route(helloFor: a) == .drop(reason: "the session's client did not offer DTLS"))
        a.hasKey = true
        a.isConnected = false
        #expect(route(helloFor: a) == .drop(reason: "the session has no TLS connection"))

        // A session that ends takes its binding with it.
        dir.remove(b)
        #expect(dir.session(boundTo: cafe) == nil && dir.boundPeers == 0)
        let gone = S(slot: 99, user: "x", n: 250, at: 0)
        #expect(route(helloFor: gone) == .drop(reason: "the ClientHello names no session"))
    }

    /// Handshakes run beside the established channel: a replayed ClientHello from the
    /// client's own address or from another one starts a handshake that never completes,
    /// and the channel stays bound throughout; a handshake that completes takes its place.
    @Test mutating func handshakesBesideTheChannel() {
        let a = login("alice"), b = login("bob")
        let home = peer(2, 40000), attacker = peer(66, 1234), cafe = peer(77, 51000)
        dir.bind(a, to: home)

        // A replay at home (spoofed source) and one from the attacker's address.
        #expect(dir.addHandshake(a, at: home).isEmpty)
        #expect(dir.addHandshake(a, at: attacker).isEmpty)
        #expect(dir.session(boundTo: home) === a && dir.peer(of: a) == home)
        #expect(dir.session(handshakeAt: home) === a && dir.session(handshakeAt: attacker) === a)
        #expect(dir.handshakePeers(of: a) == [home, attacker])

        // They time out: the channel never moved.
        dir.removeHandshake(a, at: home)
        dir.removeHandshake(a, at: attacker)
        #expect(dir.handshakesInProgress == 0 && dir.handshakePeers(of: a).isEmpty)
        #expect(dir.session(boundTo: home) === a)

        // At most four at once: the oldest is given back to be discarded.
        let p = (1...5).map { peer(100 + UInt8($0), 9000) }
        for q in p.prefix(4) { #expect(dir.addHandshake(a, at: q).isEmpty) }
        let dropped = dir.addHandshake(a, at: p[4])
        #expect(dropped.count == 1 && dropped[0].0 === a && dropped[0].1 == p[0])
        #expect(dir.session(handshakeAt: p[0]) == nil && dir.handshakePeers(of: a) == Array(p[1...4]))

        // One handshake per address: bob's ClientHello from p[1] replaces alice's there.
        let replaced = dir.addHandshake(b, at: p[1])
        #expect(replaced.count == 1 && replaced[0].0 === a && replaced[0].1 == p[1])
        #expect(dir.handshakePeers(of: a) == Array(p[2...4]))

        // Alice roams to the café and her handshake there completes: the channel moves,
        // her other handshakes end, home is free.
        _ = dir.addHandshake(a, at: cafe)
        let done = dir.completeHandshake(a, at: cafe)
        #expect(done.displaced == nil && done.abandoned == Array(p[2...4]))
        #expect(dir.session(boundTo: cafe) === a && dir.session(boundTo: home) == nil)
        #expect(dir.handshakePeers(of: a).isEmpty && dir.session(handshakeAt: cafe) == nil)

        // Bob's completes at the café (a NAT gave him alice's address and port): alice's
        // channel is displaced.
        _ = dir.addHandshake(b, at: cafe)
        let bobs = dir.completeHandshake(b, at: cafe)
        #expect(bobs.displaced === a && bobs.abandoned == [p[1]])

        // A session that ends takes its handshakes with it.
        _ = dir.addHandshake(a, at: home)
        dir.remove(a)
        #expect(dir.session(handshakeAt: home) == nil && dir.handshakesInProgress == 0)
    }
}
