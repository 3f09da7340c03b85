import Foundation
import GatewayWire
import Testing
@testable import GatewayAuth

/// The sessions mstunnel-auth keeps for a gateway restart: saved, replaced, forgotten,
/// written to a 0600 file and read back by a new store; expired ones dropped; bad input
/// refused; an unreadable file set aside.
@Suite struct SessionStoreTests {
    func tempPath() -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mst-store-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.appendingPathComponent("sessions.json").path
    }

    func session(_ n: Int, deadline: Int64 = 0, expiresAt: Int64 = 2_000_000_000) -> StoredSession {
        StoredSession(cookieDigest: String(repeating: String(n % 10), count: 64), id: String(repeating: "a", count: 64),
                      identity: Identity(userId: "u\(n)", userName: "user\(n)@corp.test", expiresAt: expiresAt, groups: ["g"]),
                      transport: .bearer, address: "100.64.0.\(n + 10)", createdAt: 1_700_000_000, deadline: deadline)
    }

    func kept(_ r: WireResponse?) -> Int? {
        if case .sessionStore(let s) = r { return s.kept }
        return nil
    }

    func restored(_ store: SessionStore) -> [StoredSession] {
        if case .restoreSessions(let r) = store.respond(to: .restoreSessions(RestoreSessionsRequest())) { return r.sessions }
        return []
    }

    /// With ticket keys, each restored session says until when its ticket opens on a sibling
    /// (the gateway quarantines its address that long if its client does not come back).
    @Test func aRestorePageSaysUntilWhenEachTicketOpens() throws {
        let now: Int64 = 1_800_000_000
        let sealer = TicketSealer(sealing: TicketTests.key("site-1", 7), lifetime: 3_600)
        let store = SessionStore(path: tempPath(), sealer: sealer, logger: quietLogger, now: { now })
        var young = session(1, expiresAt: now + 86_400)
        young.createdAt = now - 60
        _ = store.respond(to: .saveSession(SaveSessionRequest(session: young)))
        var short = session(2, expiresAt: now + 600)
        short.createdAt = now - 60
        _ = store.respond(to: .saveSession(SaveSessionRequest(session: short)))
        let back = restored(store)
        #expect(back.first { $0.identity.userId == "u1" }?.ticketNotAfter == now - 60 + 3_600)
        #expect(back.first { $0.identity.userId == "u2" }?.ticketNotAfter == now + 600)
        let plain = SessionStore(path: tempPath(), logger: quietLogger, now: { now })
        _ = plain.respond(to: .saveSession(SaveSessionRequest(session: young)))
        #expect(restored(plain).first?.ticketNotAfter == nil)
    }

    @Test func savedSessionsSurviveANewStoreAndForgottenOnesDoNot() throws {
        let path = tempPath()
        let now: Int64 = 1_800_000_000
        let store = SessionStore(path: path, logger: quietLogger, now: { now })
        #expect(kept(store.respond(to: .saveSession(SaveSessionRequest(session: session(1))))) == 1)
        #expect(kept(store.respond(to: .saveSession(SaveSessionRequest(session: session(2, deadline: now + 30, expiresAt: now + 60))))) == 2)
        // The same cookie again replaces (a renewal), it does not add.
        var renewed = session(1)
        renewed.deadline = now + 3600
        #expect(kept(store.respond(to: .saveSession(SaveSessionRequest(session: renewed)))) == 2)
        #expect(kept(store.respond(to: .saveSession(SaveSessionRequest(session: session(3)))) ) == 3)
        #expect(kept(store.respond(to: .forgetSession(ForgetSessionRequest(cookieDigest: session(3).cookieDigest)))) == 2)
        store.flush()

        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)

        let again = SessionStore(path: path, logger: quietLogger, now: { now })
        let back = restored(again)
        #expect(back.map(\.identity.userId) == ["u1", "u2"] || back.map(\.identity.userId) == ["u2", "u1"])
        #expect(back.first { $0.identity.userId == "u1" }?.deadline == now + 3600)
        #expect(back.first { $0.identity.userId == "u1" }?.identity.groups == ["g"])

        // Past its deadline but with its credential good: given back (the gateway re-checks
        // it at once). Past its credential's expiry: gone.
        let later = SessionStore(path: path, logger: quietLogger, now: { now + 45 })
        #expect(restored(later).count == 2)
        let muchLater = SessionStore(path: path, logger: quietLogger, now: { now + 120 })
        #expect(restored(muchLater).map(\.identity.userId) == ["u1"])
    }

    @Test func restoreComesInPagesInDigestOrder() {
        let store = SessionStore(path: tempPath(), logger: quietLogger)
        for n in 0..<7 {
            var s = session(n)
            s.cookieDigest = String(format: "%064x", 7 - n)
            _ = store.respond(to: .saveSession(SaveSessionRequest(session: s)))
        }
        var seen: [String] = []
        var after: String?
        var pages = 0
        repeat {
            guard case .restoreSessions(let page) = store.respond(to: .restoreSessions(RestoreSessionsRequest(after: after, limit: 3))) else {
                Issue.record("no page"); return
            }
            pages += 1
            seen += page.sessions.map(\.cookieDigest)
            after = page.more ? page.sessions.last?.cookieDigest : nil
        } while after != nil && pages < 10
        #expect(pages == 3)
        #expect(seen == seen.sorted() && Set(seen).count == 7)
    }

    @Test func aMalformedDigestIsRefused() {
        let store = SessionStore(path: tempPath(), logger: quietLogger)
        var bad = session(1)
        bad.cookieDigest = "not-a-digest"
        guard case .error(let e) = store.respond(to: .saveSession(SaveSessionRequest(session: bad))) else {
            Issue.record("a malformed digest was kept"); return
        }
        #expect(e.code == WireErrorResponse.malformed)
        #expect(store.count == 0)
        #expect(store.respond(to: .ping(PingRequest())) == nil)
    }

    @Test func anUnreadableFileIsSetAsideNotFatal() throws {
        let path = tempPath()
        try Data("{not json".utf8).write(to: URL(fileURLWithPath: path))
        let store = SessionStore(path: path, logger: quietLogger)
        #expect(store.count == 0)
        #expect(FileManager.default.fileExists(atPath: path + ".unreadable"))
        #expect(!FileManager.default.fileExists(atPath: path))
    }
}
