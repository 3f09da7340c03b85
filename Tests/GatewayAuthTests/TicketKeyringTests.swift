import Foundation
import GatewayWire
import Testing
@testable import GatewayAuth

/// Where auth's ticket keys come from: its own key (made once), the Site's keys from the
/// agent (kept in its directory, back after a restart, its own key still opening), or a file
/// the operator gave (installs refused).
@Suite struct TicketKeyringTests {
    func dir() throws -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("mst-keyring-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }

    static func site(_ sealing: String, _ ids: [String]) -> TicketKeyFile {
        TicketKeyFile(sealing: sealing, keys: ids.map { TicketKeyFile.Entry(id: $0, key: Data(repeating: UInt8($0.count), count: 32).base64EncodedString()) })
    }

    @Test func siteKeysFromTheAgentSealSurviveARestartAndTheOwnKeyStillOpens() throws {
        let d = try dir()
        defer { try? FileManager.default.removeItem(at: d) }
        let local = d.appendingPathComponent("ticket-keys.json").path, siteFile = d.appendingPathComponent("site-keys.json").path
        let ring = try TicketKeyring(localFile: local, siteFile: siteFile, logger: quietLogger)
        #expect(ring.summary.source == "local" && ring.summary.sealing == "local-1")
        let before = try ring.sealer.seal(TicketTests.session(), now: TicketTests.now)

        let r = try ring.install(Self.site("s-1", ["s-1"]))
        #expect(r == TicketKeysResponse(sealing: "s-1", keyIds: ["local-1", "s-1"], source: "site"))
        #expect((try FileManager.default.attributesOfItem(atPath: siteFile)[.posixPermissions] as? Int) == 0o600)
        #expect(try ring.sealer.seal(TicketTests.session(), now: TicketTests.now).hasPrefix("mst.1.s-1."))
        // A ticket sealed with the own key before the Site's arrived still opens here.
        if case .refused(let why) = ring.sealer.open(before, now: TicketTests.now) { Issue.record("own ticket refused: \(why)") }

        let again = try TicketKeyring(localFile: local, siteFile: siteFile, logger: quietLogger)
        #expect(again.summary == r)
        #expect(throws: (any Error).self) { try again.install(TicketKeyFile(sealing: "x", keys: [])) }
        #expect(again.summary == r)  // a bad set changes nothing
    }

    @Test func aKeyFileFromTheOperatorIsNotReplacedByTheAgent() throws {
        let ring = TicketKeyring(fixed: try Self.site("f", ["f"]).sealer(), logger: quietLogger)
        #expect(throws: (any Error).self) { try ring.install(Self.site("s-1", ["s-1"])) }
        #expect(ring.summary.sealing == "f")
    }

    @Test func keysNeverReachAStringOrALog() {
        let keys = Self.site("s-1", ["s-1"])
        #expect(!"\(keys)".contains(keys.keys[0].key))
        #expect(!String(reflecting: keys).contains(keys.keys[0].key))
    }
}
