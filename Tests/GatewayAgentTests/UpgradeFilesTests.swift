import Foundation
import GatewayAgentAPI
import Testing
@testable import GatewayAgent

/// The files the agent and the host's updater exchange (deploy/mstunnel-updater writes
/// `result` with printf; these are the shapes it writes, and what a hostile or broken file
/// must not become).
@Suite struct UpgradeFilesTests {
    @Test func theUpdatersResultAsItWritesIt() throws {
        let text = "id=3f2a-77\ntag=0.2.0\nstate=failed\nprevious=0.1.0\nmessage=0.2.0: ru-server (health check failing) within 40 s; rolled back to 0.1.0\ndate=2026-12-07T10:00:00Z\n"
        let r = try #require(UpgradeFiles.result(from: text))
        #expect(r.id == "3f2a-77" && r.tag == "0.2.0" && r.state == .failed)
        #expect(r.message == "0.2.0: ru-server (health check failing) within 40 s; rolled back to 0.1.0")
        #expect(r.dateTime == "2026-12-07T10:00:00Z")
        let ok = try #require(UpgradeFiles.result(from: "id=a\ntag=t\nstate=succeeded\nmessage=\ndate=d\n"))
        #expect(ok.state == .succeeded && ok.message == nil)
    }

    @Test func whatIsNotAResult() {
        #expect(UpgradeFiles.result(from: "") == nil)
        #expect(UpgradeFiles.result(from: "id=a\ntag=t\nstate=requested\n") == nil)          // only the updater's two outcomes
        #expect(UpgradeFiles.result(from: "id=a b\ntag=t\nstate=failed\n") == nil)          // not an attempt id
        #expect(UpgradeFiles.result(from: "id=a\ntag=-x\nstate=failed\n") == nil)           // not an image tag
        #expect(UpgradeFiles.result(from: "id=a\ntag=t:latest\nstate=failed\n") == nil)
        // A long message is cut to the API's limit, never refused by the control plane.
        let long = UpgradeFiles.result(from: "id=a\ntag=t\nstate=failed\nmessage=" + String(repeating: "x", count: 10_000) + "\n")
        #expect((long?.message?.utf8.count ?? 0) <= AgentAPILimits.reason)
    }

    @Test func theRequestRoundTripsThroughTheUpdatersReader() {
        let text = UpgradeFiles.desiredText(id: "3f2a", tag: "0.2.0", requested: "2026-12-07T10:00:00Z")
        let v = UpgradeFiles.parse(text)
        #expect(v["id"] == "3f2a" && v["tag"] == "0.2.0" && v["requested"] == "2026-12-07T10:00:00Z")
    }

    @Test func imageTags() {
        for good in ["0.1.0", "latest", "ru-2", "v1_2.3-rc.1", String(repeating: "a", count: 128)] { #expect(UpgradeReport.isValidTag(good)) }
        for bad in ["", ".x", "-x", "a/b", "a:b", "a b", String(repeating: "a", count: 129), "é"] { #expect(!UpgradeReport.isValidTag(bad)) }
    }
}
