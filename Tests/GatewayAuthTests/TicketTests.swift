import Crypto
import Foundation
import GatewayWire
import Testing
@testable import GatewayAuth

/// Resumption tickets (docs/site.md): sealed by one server's auth, opened by a sibling's with
/// the same Site key, refused when forged, damaged, moved to another key id, expired, sealed
/// with a key the opener lacks, or revoked by a logoff; the key file's rules.
@Suite struct TicketTests {
    static let now: Int64 = 1_800_000_000

    static func key(_ id: String, _ byte: UInt8) -> TicketSealer.Key {
        TicketSealer.Key(id: id, key: SymmetricKey(data: Data(repeating: byte, count: 32)))
    }

    static func session(expiresAt: Int64 = now + 3600, certificate: Bool = false) -> StoredSession {
        StoredSession(cookieDigest: String(repeating: "0", count: 64), id: String(repeating: "ab", count: 32),
                      identity: Identity(userId: "u-alice", userName: "alice@corp.test", expiresAt: expiresAt,
                                         certificateSHA256: certificate ? String(repeating: "c", count: 64) : nil, groups: ["g1", "g2"]),
                      transport: .password, address: "100.64.0.7", createdAt: now - 10, deadline: now + 600,
                      certificateChain: certificate ? [Data([1, 2, 3])] : nil, userAgent: "Open AnyConnect VPN Agent v9.12")
    }

    func opened(_ r: TicketSealer.Opened) -> StoredSession? {
        if case .session(let s, _) = r { return s }
        return nil
    }

    func refusal(_ r: TicketSealer.Opened) -> String? {
        if case .refused(let why) = r { return why }
        return nil
    }

    @Test func aSiblingWithTheSiteKeyOpensWhatAnotherSealed() throws {
        let a = TicketSealer(sealing: Self.key("site-1", 7))
        let b = TicketSealer(sealing: Self.key("site-1", 7))
        let ticket = try a.seal(Self.session(), now: Self.now)
        #expect(ticket.hasPrefix("mst.1.site-1."))
        #expect(ticket.split(separator: ".").count == 4)
        let back = try #require(opened(b.open(ticket, now: Self.now)))
        #expect(back.id == Self.session().id)
        #expect(back.address == "100.64.0.7")
        #expect(back.identity == Self.session().identity)
        #expect(back.deadline == Self.now + 600)
        // The digest is the ticket's own, as the gateway computes it from the cookie.
        #expect(back.cookieDigest == SHA256.hash(data: Data(ticket.utf8)).map { String(format: "%02x", $0) }.joined())
        // Nothing readable in the cookie.
        #expect(!ticket.contains("alice") && !ticket.contains("100.64"))
    }

    @Test func theCertificateChainStaysOutOfTheTicket() throws {
        let s = TicketSealer(sealing: Self.key("k", 1))
        let back = try #require(opened(s.open(try s.seal(Self.session(certificate: true), now: Self.now), now: Self.now)))
        #expect(back.certificateChain == nil)
        #expect(back.identity.certificateSHA256 == String(repeating: "c", count: 64))
    }

    @Test func forgedDamagedOrMovedTicketsAreRefused() throws {
        let s = TicketSealer(sealing: Self.key("site-1", 7))
        let ticket = try s.seal(Self.session(), now: Self.now)
        // Another key under the same id: a server outside the Site, or a forger.
        let other = TicketSealer(sealing: Self.key("site-1", 8))
        #expect(refusal(other.open(ticket, now: Self.now))?.contains("forged or damaged") == true)
        // One byte of the sealed part changed.
        var bytes = Array(ticket.utf8)
        let i = bytes.count - 5
        bytes[i] = bytes[i] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        #expect(refusal(s.open(String(decoding: bytes, as: UTF8.self), now: Self.now)) != nil)
        // The same sealed bytes under another key id the opener has: the id is authenticated.
        let two = TicketSealer(sealing: Self.key("site-1", 7), opening: [Self.key("site-2", 7)])
        let moved = ticket.replacingOccurrences(of: "mst.1.site-1.", with: "mst.1.site-2.")
        #expect(refusal(two.open(moved, now: Self.now))?.contains("forged or damaged") == true)
        // A key id the opener does not have.
        #expect(refusal(TicketSealer(sealing: Self.key("other", 7)).open(ticket, now: Self.now))?.contains("does not have") == true)
        for junk in ["mst.1.site-1", "mst.1.site-1.!!!", "mst.1..", "mst.1.site-1.AAAA.extra", "eyJ.a.b", ""] {
            #expect(refusal(s.open(junk, now: Self.now)) != nil, "\(junk)")
        }
    }

    @Test func aTicketEndsWithItsCredentialOrItsLifetime() throws {
        let s = TicketSealer(sealing: Self.key("k", 1), lifetime: 3600)
        let short = try s.seal(Self.session(expiresAt: Self.now + 60), now: Self.now)
        #expect(opened(s.open(short, now: Self.now + 59)) != nil)
        #expect(refusal(s.open(short, now: Self.now + 60)) == "expired")
        // A long credential: the ticket still ends `lifetime` after the session began.
        let long = try s.seal(Self.session(expiresAt: Self.now + 86400 * 365), now: Self.now)
        #expect(opened(s.open(long, now: Self.now - 10 + 3599)) != nil)
        #expect(refusal(s.open(long, now: Self.now - 10 + 3600)) == "expired")
    }

    @Test func rotationOpensWithTheOldKeyAndSealsWithTheNew() throws {
        let old = TicketSealer(sealing: Self.key("k1", 1))
        let rotated = TicketSealer(sealing: Self.key("k2", 2), opening: [Self.key("k1", 1)])
        let before = try old.seal(Self.session(), now: Self.now)
        #expect(opened(rotated.open(before, now: Self.now)) != nil)
        let after = try rotated.seal(Self.session(), now: Self.now)
        #expect(after.hasPrefix("mst.1.k2."))
        #expect(refusal(old.open(after, now: Self.now)) != nil)
    }

    @Test func theStoreSealsKeepsOpensAndRevokes() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mst-tickets-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("sessions.json").path
        let sealer = TicketSealer(sealing: Self.key("site-1", 7))
        let store = SessionStore(path: path, sealer: sealer, logger: quietLogger, now: { Self.now })
        guard case .sealSession(let sealed) = store.respond(to: .sealSession(SealSessionRequest(session: Self.session()))) else {
            Issue.record("no ticket"); return
        }
        #expect(store.count == 1)
        // A sibling's store (same Site key, no sessions) opens it.
        let sibling = SessionStore(path: dir.appendingPathComponent("sibling.json").path, sealer: sealer, logger: quietLogger, now: { Self.now })
        guard case .openTicket(let answer) = sibling.respond(to: .openTicket(OpenTicketRequest(ticket: sealed.ticket))) else {
            Issue.record("no answer"); return
        }
        #expect(answer.session?.cookieDigest == sealed.cookieDigest)
        #expect(answer.keyId == "site-1")

        // A session that moved on (reconnect window) is forgotten without revoking: the
        // ticket still opens. A logoff revokes it, across a restart of the store too.
        _ = store.respond(to: .forgetSession(ForgetSessionRequest(cookieDigest: sealed.cookieDigest, sessionId: Self.session().id, revoke: false)))
        guard case .openTicket(let still) = store.respond(to: .openTicket(OpenTicketRequest(ticket: sealed.ticket))) else { Issue.record("no answer"); return }
        #expect(still.session != nil)
        _ = store.respond(to: .forgetSession(ForgetSessionRequest(cookieDigest: sealed.cookieDigest, sessionId: Self.session().id)))
        guard case .openTicket(let refused) = store.respond(to: .openTicket(OpenTicketRequest(ticket: sealed.ticket))) else { Issue.record("no answer"); return }
        #expect(refused.session == nil && refused.refusal?.contains("ended") == true)
        store.flush()
        let again = SessionStore(path: path, sealer: sealer, logger: quietLogger, now: { Self.now })
        #expect(again.revokedCount == 1)
        guard case .openTicket(let stillRefused) = again.respond(to: .openTicket(OpenTicketRequest(ticket: sealed.ticket))) else { Issue.record("no answer"); return }
        #expect(stillRefused.session == nil)
        // Forgotten once the ticket would have expired anyway (the session was no longer
        // kept when it was revoked, so its credential's expiry was unknown: a whole lifetime).
        let later = SessionStore(path: path, sealer: sealer, logger: quietLogger, now: { Self.now + TicketSealer.defaultLifetime })
        #expect(later.revokedCount == 0)
    }

    @Test func aStoreWithoutKeysSaysSo() {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mst-tickets-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let store = SessionStore(path: dir.appendingPathComponent("s.json").path, logger: quietLogger)
        guard case .error(let e) = store.respond(to: .sealSession(SealSessionRequest(session: Self.session()))) else {
            Issue.record("sealed without keys"); return
        }
        #expect(e.code == WireErrorResponse.unknownRequest)
    }

    @Test func theKeyFileRulesAndTheLocalKey() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mst-keys-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let local = dir.appendingPathComponent("ticket-keys.json").path
        let (first, created) = try TicketKeyFile.load(path: local, create: true)
        #expect(created)
        #expect((try FileManager.default.attributesOfItem(atPath: local)[.posixPermissions] as? Int) == 0o600)
        let (second, createdAgain) = try TicketKeyFile.load(path: local, create: true)
        #expect(!createdAgain)
        #expect(opened(second.open(try first.seal(Self.session(), now: Self.now), now: Self.now)) != nil)
        // A Site key file is never made up.
        #expect(throws: TicketSealer.TicketError.self) { try TicketKeyFile.load(path: dir.appendingPathComponent("site.json").path, create: false) }

        let good = Data(repeating: 9, count: 32).base64EncodedString()
        func rule(_ f: TicketKeyFile) -> String {
            do { _ = try f.sealer(); return "ok" } catch { return "\(error)" }
        }
        #expect(rule(TicketKeyFile(sealing: "k", keys: [.init(id: "k", key: good)])) == "ok")
        #expect(rule(TicketKeyFile(sealing: "k", keys: [])).contains("1 to 16"))
        #expect(rule(TicketKeyFile(sealing: "x", keys: [.init(id: "k", key: good)])).contains("not among"))
        #expect(rule(TicketKeyFile(sealing: "k", keys: [.init(id: "k", key: "c2hvcnQ=")])).contains("32 bytes"))
        #expect(rule(TicketKeyFile(sealing: "k.1", keys: [.init(id: "k.1", key: good)])).contains("letters, digits"))
        #expect(rule(TicketKeyFile(sealing: "k", keys: [.init(id: "k", key: good), .init(id: "k", key: good)])).contains("twice"))
        #expect(rule(TicketKeyFile(sealing: "k", keys: [.init(id: "k", key: good)], lifetimeSeconds: 5)).contains("lifetimeSeconds"))
    }

    @Test func revocationsAreExchangedWithTheAgentInOrderAndOnce() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mst-revoke-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("sessions.json").path
        let sealer = TicketSealer(sealing: Self.key("site-1", 7))
        let store = SessionStore(path: path, sealer: sealer, logger: quietLogger, now: { Self.now })
        let first = store.exchangeRevocations(TicketRevocationsRequest(after: 0))
        #expect(first.revoked.isEmpty)
        // A logoff here: reported once.
        let mine = String(repeating: "11", count: 32)
        _ = store.respond(to: .forgetSession(ForgetSessionRequest(cookieDigest: String(repeating: "0", count: 64), sessionId: mine)))
        let out = store.exchangeRevocations(TicketRevocationsRequest(after: first.next, epoch: first.epoch))
        #expect(out.revoked.map(\.sessionId) == [mine])
        #expect(store.exchangeRevocations(TicketRevocationsRequest(after: out.next, epoch: out.epoch)).revoked.isEmpty)
        // Another epoch (auth lost its file since): from the start.
        #expect(store.exchangeRevocations(TicketRevocationsRequest(after: out.next, epoch: "other")).revoked.map(\.sessionId) == [mine])
        // A sibling's revocation comes in: the ticket no longer opens here, and it is not
        // reported back.
        guard case .sealSession(let sealed) = store.respond(to: .sealSession(SealSessionRequest(session: Self.session()))) else {
            Issue.record("no ticket"); return
        }
        let theirs = RevokedTicket(sessionId: Self.session().id, until: Self.now + 3600)
        #expect(store.exchangeRevocations(TicketRevocationsRequest(add: [theirs, RevokedTicket(sessionId: "bad", until: Self.now + 9)])).added == 1)
        guard case .openTicket(let refused) = store.respond(to: .openTicket(OpenTicketRequest(ticket: sealed.ticket))) else { Issue.record("no answer"); return }
        #expect(refused.session == nil)
        #expect(store.exchangeRevocations(TicketRevocationsRequest(after: out.next, epoch: out.epoch)).revoked.isEmpty)
        // A copy renewed on a gateway afterwards does not bring the session back.
        var renewed = Self.session()
        renewed.cookieDigest = String(repeating: "e", count: 64)
        guard case .error(let e) = store.respond(to: .saveSession(SaveSessionRequest(session: renewed))) else { Issue.record("a revoked session was kept"); return }
        #expect(e.code == WireErrorResponse.notAllowed)
        // The log and the epoch survive a restart of auth.
        store.flush()
        let again = SessionStore(path: path, sealer: sealer, logger: quietLogger, now: { Self.now })
        let reread = again.exchangeRevocations(TicketRevocationsRequest(after: first.next, epoch: first.epoch))
        #expect(reread.epoch == first.epoch && reread.revoked.map(\.sessionId) == [mine])
    }
}

