import Foundation
import GatewayAgentAPI
import Glibc
import Testing
@testable import GatewayAgent

/// The agent's own state is owner-only: the database and its WAL companions 0600 in a 0700
/// directory, `agent-info.json` 0600; `admin-settings.json`, which the gateway reads as
/// another user of the stack's group, 0640.
@Suite struct FileModeTests {
    func mode(_ path: String) throws -> mode_t {
        var st = stat()
        try #require(stat(path, &st) == 0, "stat \(path)")
        return st.st_mode & 0o7777
    }

    func item(_ n: Int) -> ReportItem {
        ReportItem(id: "id-\(n)", createdDateTime: "2026-11-21T10:00:00.000Z",
                   event: AgentEvent(type: .sessionConnected, dateTime: "2026-11-21T10:00:00.000Z", userName: "user\(n)@corp.example"))
    }

    @Test func databaseAndItsCompanionsAreOwnerOnly() throws {
        let dir = TempDir()
        let paths = AgentPaths(stateDirectory: dir.path)
        let database = try AgentDatabase(path: paths.database)
        // A write, so the WAL and the shared-memory index exist while the pool is open.
        try Outbox(database: database, maxRows: 100).enqueue((0 ..< 3).map(item))
        #expect(try mode(paths.agentDirectory) == 0o700)
        for file in [paths.database, paths.database + "-wal", paths.database + "-shm"] {
            #expect(FileManager.default.fileExists(atPath: file), "\(file) exists")
            #expect(try mode(file) == 0o600, "\(file)")
        }
    }

    @Test func anExistingLooseDatabaseIsTightenedAtOpen() throws {
        let dir = TempDir()
        let paths = AgentPaths(stateDirectory: dir.path)
        do {
            let first = try AgentDatabase(path: paths.database)
            try Outbox(database: first, maxRows: 100).enqueue([item(1)])
        }
        // As an older agent (or a loose umask) left them.
        for file in [paths.database, paths.database + "-wal", paths.database + "-shm"] where FileManager.default.fileExists(atPath: file) {
            #expect(chmod(file, 0o644) == 0)
        }
        #expect(chmod(paths.agentDirectory, 0o755) == 0)
        let reopened = try AgentDatabase(path: paths.database)
        try Outbox(database: reopened, maxRows: 100).enqueue([item(2)])
        #expect(try mode(paths.agentDirectory) == 0o700)
        for file in [paths.database, paths.database + "-wal", paths.database + "-shm"] {
            #expect(try mode(file) == 0o600, "\(file)")
        }
        #expect(Outbox(database: reopened, maxRows: 100).depth() == 2)
    }

    @Test func enrollmentWritesAgentInfoOwnerOnly() throws {
        let dir = TempDir()
        let paths = AgentPaths(stateDirectory: dir.path + "/state")
        let info = AgentInfo(serverId: "srv-1", siteId: "site-1", controlPlaneUrl: "https://cp.example.test:8443",
                             enrolledDateTime: "2026-11-21T10:00:00.000Z")
        try AgentFiles.install(paths, caPEM: "ca\n", keyPEM: "key\n", chainPEM: "chain\n", info: info)
        #expect(try mode(paths.agentInfo) == 0o600)
        #expect(try mode(paths.agentKey) == 0o600)
        #expect(try mode(paths.privateDirectory) == 0o700)
        #expect(try AgentInfo.load(paths) == info)
    }

    @Test func restrictOnlyTakesBitsAway() throws {
        let dir = TempDir()
        let path = dir.path + "/agent-info.json"
        try AtomicFile.write(Data("{}".utf8), to: path, mode: 0o644)
        #expect(AtomicFile.restrict(path, to: 0o600))
        #expect(try mode(path) == 0o600)
        // Never widens: a 0400 file stays 0400.
        #expect(chmod(path, 0o400) == 0)
        #expect(AtomicFile.restrict(path, to: 0o600))
        #expect(try mode(path) == 0o400)
        // A missing file is fine; a symlink is not followed.
        #expect(AtomicFile.restrict(dir.path + "/missing", to: 0o600))
        #expect(symlink(path, dir.path + "/link") == 0)
        #expect(!AtomicFile.restrict(dir.path + "/link", to: 0o600))
    }

    @Test func adminSettingsIsGroupReadableOnly() throws {
        let dir = TempDir()
        let paths = AgentPaths(stateDirectory: dir.path)
        try AtomicFile.write(Data("{}".utf8), to: paths.adminSettings, mode: 0o640, group: AtomicFile.group(of: dir.path))
        #expect(try mode(paths.adminSettings) == 0o640)
    }
}
