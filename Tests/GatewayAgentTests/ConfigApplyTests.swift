import Foundation
import GatewayAgentAPI
import GatewayCore
import GatewayWire
import Testing
@testable import GatewayAgent

@Suite struct ConfigApplyTests {
    func settings(network: String = "100.64.0.0/16") -> AdminSettings {
        var s = AdminSettings()
        s.displayName = "lab"
        s.network = network
        s.dnsServers = ["198.18.0.53"]
        s.routeIncludes = ["198.18.0.0/15"]
        return s
    }

    func response(version: Int64, _ s: AdminSettings?) -> CheckinResponse {
        CheckinResponse(serverId: "srv", siteId: "site", configurationVersion: version, configuration: s, internalNetworkProbeUrl: nil,
                        checkinIntervalSeconds: 60, reportIntervalSeconds: 60, actions: [], renewAfter: nil)
    }

    @Test func sameVersionDoesNothing() {
        #expect(ApplyDecision.decide(response: response(version: 3, settings()), appliedVersion: 3, lastApply: nil, lastApplyPermanent: false) == .nothing)
        #expect(ApplyDecision.decide(response: response(version: 0, nil), appliedVersion: 2, lastApply: nil, lastApplyPermanent: false) == .nothing)
        #expect(ApplyDecision.decide(response: response(version: 4, nil), appliedVersion: 3, lastApply: nil, lastApplyPermanent: false) == .missingBody(version: 4))
        #expect(ApplyDecision.decide(response: response(version: 4, settings()), appliedVersion: 3, lastApply: nil, lastApplyPermanent: false)
            == .apply(version: 4, settings: settings()))
    }

    @Test func aRejectedVersionIsNotRetriedButATransientFailureIs() {
        let failed = ConfigurationApplyResult(version: 4, success: false, message: "bad", dateTime: "x")
        #expect(ApplyDecision.decide(response: response(version: 4, settings()), appliedVersion: 3, lastApply: failed, lastApplyPermanent: true)
            == .alreadyRejected(version: 4))
        #expect(ApplyDecision.decide(response: response(version: 4, settings()), appliedVersion: 3, lastApply: failed, lastApplyPermanent: false)
            == .apply(version: 4, settings: settings()))
        #expect(ApplyDecision.decide(response: response(version: 5, settings()), appliedVersion: 3, lastApply: failed, lastApplyPermanent: true)
            == .apply(version: 5, settings: settings()))
    }

    @Test func invalidConfigurationIsRefusedLocallyAndNothingIsWritten() {
        let dir = TempDir()
        let paths = AgentPaths(stateDirectory: dir.path)
        var gatewayCalled = false
        let applier = ConfigApplier(paths: paths, logger: .init(label: "test")) { _ in
            gatewayCalled = true
            return .success(ApplySettingsResponse(applied: true))
        }
        var bad = settings(network: "100.64.0.0/33")
        bad.routeIncludes = (0 ..< 501).map { "10.\($0 / 256).\($0 % 256).0/24" }
        let outcome = applier.apply(version: 7, settings: bad)
        #expect(!outcome.inForce)
        #expect(outcome.permanent)
        #expect(outcome.result.success == false)
        #expect(outcome.result.version == 7)
        #expect(outcome.result.message?.contains("network") == true)
        #expect(outcome.result.message?.contains("at most 500") == true)
        #expect(!gatewayCalled)
        #expect(!FileManager.default.fileExists(atPath: paths.adminSettings))
    }

    @Test func gatewayRefusalIsReportedWithItsTextAndNothingIsWritten() {
        let dir = TempDir()
        let paths = AgentPaths(stateDirectory: dir.path)
        let applier = ConfigApplier(paths: paths, logger: .init(label: "test")) { _ in
            .success(ApplySettingsResponse(applied: false, error: "listenPort: cannot change while running"))
        }
        let outcome = applier.apply(version: 8, settings: settings())
        #expect(!outcome.inForce)
        #expect(outcome.result.message?.contains("listenPort: cannot change while running") == true)
        #expect(!FileManager.default.fileExists(atPath: paths.adminSettings))
    }

    @Test func appliedOrGatewayDownWritesTheFileTheGatewayCanLoad() throws {
        for answer in [Result<ApplySettingsResponse, GatewayCallError>.success(ApplySettingsResponse(applied: true, sessionsKept: 3)),
                       .failure(.notRunning("no socket"))] {
            let dir = TempDir()
            let paths = AgentPaths(stateDirectory: dir.path)
            var sent: ApplySettingsRequest?
            let applier = ConfigApplier(paths: paths, logger: .init(label: "test")) { request in
                sent = request
                return answer
            }
            let outcome = applier.apply(version: 9, settings: settings())
            #expect(outcome.inForce)
            #expect(outcome.result.success)
            #expect(sent?.version == 9)
            let data = try #require(FileManager.default.contents(atPath: paths.adminSettings))
            #expect(String(decoding: data, as: UTF8.self) == sent?.settingsJSON)
            // What the gateway's loader does with the file.
            let reloaded = try AdminSettings.decode(data)
            #expect(reloaded == settings())
            #expect((try? GatewaySettings.validate(reloaded).get()) != nil)
            var st = stat()
            #expect(stat(paths.adminSettings, &st) == 0)
            // Owner and the state directory's group (the gateway's, in the images) only.
            #expect(st.st_mode & 0o777 == 0o640)
            #expect(st.st_gid == AtomicFile.group(of: dir.path))
        }
    }

    @Test(arguments: [Bool?.none, false])
    func aRefusedDocumentIsPermanent(_ retryable: Bool?) {
        let dir = TempDir()
        let paths = AgentPaths(stateDirectory: dir.path)
        let applier = ConfigApplier(paths: paths, logger: .init(label: "test")) { _ in
            .success(ApplySettingsResponse(applied: false, error: "dnsServers: not an address", retryable: retryable))
        }
        let outcome = applier.apply(version: 11, settings: settings())
        #expect(!outcome.inForce)
        #expect(outcome.permanent)
        #expect(outcome.result.message?.contains("dnsServers: not an address") == true)
        #expect(!FileManager.default.fileExists(atPath: paths.adminSettings))
    }

    /// `applied: false, retryable: true`: the document was fine but a host step failed;
    /// the same version is applied again at the next check-in.
    @Test func aRetryableGatewayFailureIsNotPermanent() throws {
        let dir = TempDir()
        let paths = AgentPaths(stateDirectory: dir.path)
        let applier = ConfigApplier(paths: paths, logger: .init(label: "test")) { _ in
            .success(ApplySettingsResponse(applied: false, error: "nft: table inet mstunnel: Operation not permitted", retryable: true))
        }
        let outcome = applier.apply(version: 12, settings: settings())
        #expect(!outcome.inForce)
        #expect(!outcome.permanent)
        #expect(!outcome.result.success)
        #expect(outcome.result.message?.contains("Operation not permitted") == true)
        #expect(!FileManager.default.fileExists(atPath: paths.adminSettings))

        let db = try AgentDatabase(path: dir.path + "/agent/agent.sqlite")
        try db.recordApply(outcome)
        #expect(ApplyDecision.decide(response: response(version: 12, settings()), appliedVersion: 3, lastApply: db.lastApply,
                                     lastApplyPermanent: db.lastApplyPermanent) == .apply(version: 12, settings: settings()))
    }

    /// The check-in that follows an apply 1 s later only reports the outcome; a failure
    /// that may pass is applied again at the next regular check-in, not every second.
    @Test func aRetryableFailureWaitsForTheNextRegularCheckin() throws {
        let dir = TempDir()
        let paths = AgentPaths(stateDirectory: dir.path)
        let runner = AgentRunner(options: RunOptions(paths: paths, runDirectory: dir.path + "/run"), logger: .init(label: "test"), stop: StopSignal())
        runner.database = try AgentDatabase(path: dir.path + "/agent/agent.sqlite")
        var calls = 0
        var answer = ApplySettingsResponse(applied: false, error: "ip route: Network is unreachable", retryable: true)
        runner.applier = ConfigApplier(paths: paths, logger: .init(label: "test")) { _ in
            calls += 1
            return .success(answer)
        }
        runner.checkinInterval = 60
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)
        runner.applyConfiguration(from: response(version: 13, settings()), now: t0)
        #expect(calls == 1)
        #expect(runner.database.lastApplyPermanent == false)
        runner.applyConfiguration(from: response(version: 13, settings()), now: t0.addingTimeInterval(1))
        #expect(calls == 1)
        // A different version is not held back.
        runner.applyConfiguration(from: response(version: 14, settings()), now: t0.addingTimeInterval(2))
        #expect(calls == 2)
        answer = ApplySettingsResponse(applied: true)
        runner.applyConfiguration(from: response(version: 14, settings()), now: t0.addingTimeInterval(2 + 54))
        #expect(calls == 3)
        #expect(runner.database.appliedConfigurationVersion == 14)
        runner.applyConfiguration(from: response(version: 14, settings()), now: t0.addingTimeInterval(2 + 55))
        #expect(calls == 3)
    }

    @Test func transientGatewayErrorIsRetryable() {
        let dir = TempDir()
        let applier = ConfigApplier(paths: AgentPaths(stateDirectory: dir.path), logger: .init(label: "test")) { _ in
            .failure(.refused(code: 1, message: "unknown request type 'applySettings'"))
        }
        let outcome = applier.apply(version: 10, settings: settings())
        #expect(!outcome.inForce)
        #expect(!outcome.permanent)
        #expect(outcome.result.message?.contains("applySettings") == true)
    }

    @Test func applyResultIsRecordedDurably() throws {
        let dir = TempDir()
        let db = try AgentDatabase(path: dir.path + "/agent/agent.sqlite")
        try db.recordApply(ApplyOutcome(result: ConfigurationApplyResult(version: 5, success: true, dateTime: "t"), inForce: true, permanent: false))
        try db.recordApply(ApplyOutcome(result: ConfigurationApplyResult(version: 6, success: false, message: "bad", dateTime: "t"), inForce: false, permanent: true))
        let reopened = try AgentDatabase(path: dir.path + "/agent/agent.sqlite")
        #expect(reopened.appliedConfigurationVersion == 5)
        #expect(reopened.lastApply?.version == 6)
        #expect(reopened.lastApplyPermanent)
        #expect(!reopened.lastApplyReported)
    }
}

@Suite struct SitePoolSettingsTests {
    @Test func theSliceAndTheSiblingsAddressesAreMergedIntoTheConfiguration() {
        var s = AdminSettings()
        s.network = "100.64.0.0/24"
        s.advancedSettings = [AdminSettings.KeyValuePair(name: "pool-reserved", value: "100.64.0.9"),
                              AdminSettings.KeyValuePair(name: "dpd", value: "30")]
        let merged = AgentRunner.withPoolSlice(s, "1/4", reserved: "100.64.0.70,100.64.0.71,10.0.0.1")
        let advanced = Dictionary((merged.advancedSettings ?? []).map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
        #expect(advanced["pool-slice"] == "1/4")
        #expect(advanced["pool-reserved"] == "100.64.0.70,100.64.0.71", "only the pool's addresses, replacing the Site's own")
        #expect(advanced["dpd"] == "30")
        #expect(GatewaySettings.validate(merged).isSuccess, "what the gateway will be given validates")
        // No slice (a small pool, an older control plane): nothing reserved either.
        let whole = AgentRunner.withPoolSlice(s, "", reserved: "100.64.0.70")
        #expect(!(whole.advancedSettings ?? []).contains { $0.name == "pool-reserved" || $0.name == "pool-slice" })
    }
}

extension Result {
    var isSuccess: Bool { if case .success = self { return true } else { return false } }
}
