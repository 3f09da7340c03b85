import Foundation
import Testing
@testable import GatewayAgentAPI

/// The limits both sides share: the control plane checks them, the agent clamps to them.
@Suite struct LimitsTests {
    let now = "2026-11-21T10:00:00.000Z"

    @Test func truncationKeepsWholeCharactersAndMarksTheCut() {
        #expect(AgentAPILimits.truncated("short", toBytes: 10) == "short")
        let cut = AgentAPILimits.truncated(String(repeating: "é", count: 100), toBytes: 10)
        #expect(cut.utf8.count <= 10)
        #expect(cut == "ééé…")
        #expect(AgentAPILimits.truncated("👩‍👩‍👧‍👦👩‍👩‍👧‍👦", toBytes: 20).utf8.count <= 20)
        #expect(AgentAPILimits.truncated("abcdef", toBytes: 2) == "")
    }

    @Test func oversizedEventIsClampedIntoTheLimits() throws {
        let event = AgentEvent(type: .loginRejected, dateTime: now, userId: String(repeating: "i", count: 5000),
                               userName: String(repeating: "u", count: 1 << 20), deviceId: "d", sessionId: String(repeating: "s", count: 300),
                               clientAddress: "192.0.2.1:4433", reason: String(repeating: "r", count: 8 << 20))
        let item = ReportItem(id: "x", createdDateTime: now, event: event)
        let error = #expect(throws: FieldLimitError.self) { try item.checkLimits("items[0]") }
        #expect(error?.field == "items[0].event.userId")
        let clamped = item.clampedToLimits()
        try clamped.checkLimits("items[0]")
        #expect(clamped.event?.userName?.utf8.count ?? 0 <= AgentAPILimits.userName)
        #expect(clamped.event?.reason?.hasSuffix("…") == true)
        #expect(clamped.event?.clientAddress == "192.0.2.1:4433")
    }

    @Test func oversizedHealthReportIsClampedIntoTheLimits() throws {
        let report = HealthReport(tlsCertificate: CertificateReport(subject: "CN=x", notBefore: now, notAfter: now,
                                                                    dnsNames: (0..<500).map { "h\($0).example.test" },
                                                                    problems: (0..<40).map { String(repeating: "p", count: 2000 + $0) }),
                                  internalNetworkProbe: ProbeReport(url: "https://intranet.example.test/" + String(repeating: "a", count: 5000),
                                                                    reachable: false, error: String(repeating: "e", count: 3000)),
                                  gateway: GatewayReport(reachable: false, version: String(repeating: "9", count: 100), error: String(repeating: "g", count: 3000)),
                                  appliedConfigurationVersion: 1)
        let error = #expect(throws: FieldLimitError.self) { try report.checkLimits("health") }
        #expect(error?.description == "health.tlsCertificate.dnsNames: 500 entries, at most 100 allowed")
        let clamped = report.clampedToLimits()
        try clamped.checkLimits("health")
        #expect(clamped.tlsCertificate?.dnsNames.count == AgentAPILimits.dnsNames)
        #expect(clamped.tlsCertificate?.problems.count == AgentAPILimits.problems)
    }

    @Test func refusedInputClassesAreBounded() throws {
        var malformed = Dictionary(uniqueKeysWithValues: (0..<100).map { ("class\($0)", Int64($0)) })
        malformed[String(repeating: "k", count: 200)] = 1_000
        let report = HealthReport(gateway: GatewayReport(reachable: true, refused: RefusedInputReport(malformed: malformed)),
                                  appliedConfigurationVersion: 1)
        let error = #expect(throws: FieldLimitError.self) { try report.checkLimits("health") }
        #expect(error?.description == "health.gateway.refused.malformed: 101 entries, at most 64 allowed")
        let clamped = report.clampedToLimits()
        try clamped.checkLimits("health")
        // The largest counts stay; a name over the limit goes.
        #expect(clamped.gateway.refused?.malformed.count == AgentAPILimits.malformedClasses)
        #expect(clamped.gateway.refused?.malformed["class99"] == 99 && clamped.gateway.refused?.malformed["class0"] == nil)
        // What a gateway really sends passes untouched.
        let real = HealthReport(gateway: GatewayReport(reachable: true, refused: RefusedInputReport(malformed: ["dtlsReplayed": 4], bans: 2)),
                                appliedConfigurationVersion: 1)
        try real.checkLimits("health")
        #expect(real.clampedToLimits() == real)
    }

    @Test func applyResultAndRequestsAreChecked() throws {
        let apply = ConfigurationApplyResult(version: 3, success: false, message: String(repeating: "m", count: 9000), dateTime: now)
        let checkin = CheckinRequest(agentVersion: "0.1.0", serverVersion: nil, appliedConfigurationVersion: 2, lastApply: apply)
        let error = #expect(throws: FieldLimitError.self) { try checkin.checkLimits() }
        #expect(error?.description == "lastApply.message: 9000 bytes, at most 4096 allowed")
        try CheckinRequest(agentVersion: "0.1.0", serverVersion: nil, appliedConfigurationVersion: 2, lastApply: apply.clampedToLimits()).checkLimits()
        #expect(throws: FieldLimitError.self) {
            try EnrollmentRequest(joinToken: "t", csrPEM: String(repeating: "c", count: 20_000), hostname: "h", agentVersion: "1").checkLimits()
        }
        #expect(throws: FieldLimitError.self) { try LogCollectionFailure(message: String(repeating: "f", count: 5000)).checkLimits() }
    }
}
