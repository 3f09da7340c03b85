import Foundation
import GatewayAgentAPI
import GatewayAuth
import GatewayCore
@testable import GatewayControlPlane
import Hummingbird
import HummingbirdTesting
import Testing

/// The Site's rolling upgrade (docs/site.md, "Rolling upgrade"): one server at a time, the
/// next only once the previous one checked in on the new tag with the updater's success; a
/// failure or a timeout stops it until asked again; only inside the upgrade window.
@Suite struct RollingUpgradeTests {
    static let t0 = Date(timeIntervalSince1970: 1_900_000_000)
    typealias P = RollingUpgradePolicy

    static func server(_ id: String, tag: String?, live: Bool = true, checkin: TimeInterval = 0, up: Bool = true,
                       report: UpgradeReport? = nil) -> P.Server {
        P.Server(id: id, displayName: "gw-\(id)", live: live, lastCheckin: t0.addingTimeInterval(checkin), imageTag: tag, gatewayUp: up, report: report)
    }
    static func decide(_ state: SiteUpgradeState?, _ servers: [P.Server], at t: TimeInterval, requested: Bool = true, automatic: Bool = false,
                       inWindow: Bool = true, release: String = "2.0") -> P.Outcome {
        var n = 0
        return P.decide(state: state, release: release, requestedAt: requested ? t0 : nil, automatic: automatic, inWindow: inWindow,
                        servers: servers, now: t0.addingTimeInterval(t), newId: { n += 1; return "attempt-\(n)" })
    }

    @Test func oneServerAtATimeTheNextOnlyAfterTheUpdatersSuccessOnTheNewTag() throws {
        var servers = [Self.server("b", tag: "1.0"), Self.server("a", tag: "1.0"), Self.server("c", tag: "2.0")]
        var o = Self.decide(nil, servers, at: 1)
        #expect(o.available)
        #expect(o.events == [.started(target: "2.0"), .serverStarted(serverId: "a", target: "2.0")])
        let first = try #require(o.instruction(for: "a"))
        #expect(first.tag == "2.0" && first.id == "attempt-1")
        #expect(o.instruction(for: "b") == nil && o.instruction(for: "c") == nil)

        // a is back on 2.0 but the updater has not said "succeeded" yet: still a.
        servers[1] = Self.server("a", tag: "2.0", checkin: 30, report: UpgradeReport(id: "attempt-1", tag: "2.0", state: .requested, dateTime: "t"))
        o = Self.decide(o.state, servers, at: 30)
        #expect(o.state?.serverId == "a" && o.events.isEmpty)
        // The gateway does not answer yet: still a.
        servers[1] = Self.server("a", tag: "2.0", checkin: 40, up: false, report: UpgradeReport(id: "attempt-1", tag: "2.0", state: .succeeded, dateTime: "t"))
        #expect(Self.decide(o.state, servers, at: 40).state?.serverId == "a")
        // Everything holds: b next (c already runs the release).
        servers[1] = Self.server("a", tag: "2.0", checkin: 50, report: UpgradeReport(id: "attempt-1", tag: "2.0", state: .succeeded, dateTime: "t"))
        o = Self.decide(o.state, servers, at: 50)
        #expect(o.events == [.serverUpgraded(serverId: "a", target: "2.0"), .serverStarted(serverId: "b", target: "2.0")])
        #expect(o.instruction(for: "b")?.id == "attempt-1")  // this test's id counter restarts per call
        servers[0] = Self.server("b", tag: "2.0", checkin: 90, report: UpgradeReport(id: o.state!.attemptId!, tag: "2.0", state: .succeeded, dateTime: "t"))
        o = Self.decide(o.state, servers, at: 90)
        #expect(o.events == [.serverUpgraded(serverId: "b", target: "2.0"), .completed(target: "2.0", servers: 2)])
        #expect(o.state == nil && o.clearRequest && !o.available)
    }

    /// A server's sessions move to its siblings: it starts only when their max-sessions leave
    /// room for them; the Site says why it waits (logged once), and goes on when room appears.
    @Test func theNextServerWaitsForRoomAtItsSiblings() {
        func srv(_ id: String, tag: String, sessions: Int?, limit: Int?) -> P.Server {
            P.Server(id: id, displayName: "gw-\(id)", live: true, lastCheckin: Self.t0, imageTag: tag, gatewayUp: true, report: nil,
                     sessions: sessions, sessionLimit: limit)
        }
        // a has 900 sessions; b and c may take 1000 each and hold 700 and 500: room 800.
        var servers = [srv("a", tag: "1.0", sessions: 900, limit: 1000), srv("b", tag: "2.0", sessions: 700, limit: 1000),
                       srv("c", tag: "2.0", sessions: 500, limit: 1000)]
        var o = Self.decide(nil, servers, at: 1)
        #expect(o.state?.phase == .inProgress && o.state?.serverId == nil)
        #expect(o.state?.message == "waiting for room: the siblings of gw-a can take fewer sessions (max-sessions) than it has")
        #expect(o.events == [.started(target: "2.0"), .waiting(serverId: "a", message: "gw-a has 900 sessions, its siblings room for 800")])
        #expect(o.instruction(for: "a") == nil)
        // Still short, with other counts: no second log line, and no change to store.
        let waiting = o.state
        servers[1] = srv("b", tag: "2.0", sessions: 650, limit: 1000)
        o = Self.decide(o.state, servers, at: 60)
        #expect(o.events.isEmpty && o.state?.serverId == nil && o.state == waiting)
        // Room enough now (c emptied): a starts, and the message goes.
        servers[2] = srv("c", tag: "2.0", sessions: 300, limit: 1000)
        o = Self.decide(o.state, servers, at: 120)
        #expect(o.state?.serverId == "a" && o.state?.message == nil)
        #expect(o.events == [.serverStarted(serverId: "a", target: "2.0")])
        // No limit at a sibling, or no live sibling at all: no wait.
        let unlimited = [srv("a", tag: "1.0", sessions: 900, limit: 1000), srv("b", tag: "2.0", sessions: 700, limit: 0)]
        #expect(Self.decide(nil, unlimited, at: 1).state?.serverId == "a")
        #expect(Self.decide(nil, [srv("a", tag: "1.0", sessions: 900, limit: 1000)], at: 1).state?.serverId == "a")
    }

    @Test func aFailedUpdateStopsTheSiteUntilAskedAgain() {
        let servers = [Self.server("a", tag: "1.0", report: UpgradeReport(id: "attempt-1", tag: "2.0", state: .failed,
                                                                             message: "mstunnel-server did not become healthy; rolled back to 1.0", dateTime: "t")),
                       Self.server("b", tag: "1.0")]
        let asked = SiteUpgradeState(phase: .inProgress, target: "2.0", startedAt: Self.t0, serverId: "a", attemptId: "attempt-1", serverSince: Self.t0)
        let o = Self.decide(asked, servers, at: 60)
        #expect(o.state?.phase == .failed && o.state?.serverId == "a")
        #expect(o.state?.message?.contains("rolled back to 1.0") == true)
        #expect(o.instruction(for: "a") == nil && o.instruction(for: "b") == nil)
        // Failed stays failed, also with upgradeAutomatically, while the old request stands.
        #expect(Self.decide(o.state, servers, at: 120, automatic: true).state?.phase == .failed)
        // A new requestUpgrade after the failure starts over.
        let again = P.decide(state: o.state, release: "2.0", requestedAt: Self.t0.addingTimeInterval(200), automatic: false, inWindow: true,
                             servers: [Self.server("a", tag: "1.0"), Self.server("b", tag: "1.0")], now: Self.t0.addingTimeInterval(201), newId: { "attempt-2" })
        #expect(again.state?.phase == .inProgress && again.instruction(for: "a")?.id == "attempt-2")
        // A report of another attempt is not this one's failure.
        let stale = [Self.server("a", tag: "1.0", report: UpgradeReport(id: "old", tag: "2.0", state: .failed, dateTime: "t"))]
        #expect(Self.decide(asked, stale, at: 60).state?.phase == .inProgress)
    }

    @Test func aServerThatNeverComesBackTimesOut() {
        let asked = SiteUpgradeState(phase: .inProgress, target: "2.0", startedAt: Self.t0, serverId: "a", attemptId: "attempt-1", serverSince: Self.t0)
        let gone = [Self.server("a", tag: "1.0", live: false), Self.server("b", tag: "1.0")]
        #expect(Self.decide(asked, gone, at: P.timeout - 1).state?.phase == .inProgress)
        let o = Self.decide(asked, gone, at: P.timeout + 1)
        #expect(o.state?.phase == .failed && o.state?.message?.contains("did not check in on 2.0") == true)
    }

    @Test func onlyInsideTheWindowAndOnlyWhenAskedOrAutomatic() {
        let servers = [Self.server("a", tag: "1.0")]
        #expect(Self.decide(nil, servers, at: 1, requested: false).state == nil)
        #expect(Self.decide(nil, servers, at: 1, requested: false).available)
        #expect(Self.decide(nil, servers, at: 1, requested: false, automatic: true).state?.serverId == "a")
        #expect(Self.decide(nil, servers, at: 1, inWindow: false).state == nil)
        // A server under way finishes after the window closes; the next waits for it.
        let two = [Self.server("a", tag: "2.0", checkin: 10, report: UpgradeReport(id: "x", tag: "2.0", state: .succeeded, dateTime: "t")),
                   Self.server("b", tag: "1.0")]
        let asked = SiteUpgradeState(phase: .inProgress, target: "2.0", startedAt: Self.t0, serverId: "a", attemptId: "x", serverSince: Self.t0)
        let o = Self.decide(asked, two, at: 20, inWindow: false)
        #expect(o.events == [.serverUpgraded(serverId: "a", target: "2.0")] && o.state?.serverId == nil && o.state?.phase == .inProgress)
        #expect(Self.decide(o.state, two, at: 30, inWindow: true).state?.serverId == "b")
        // Nothing to do: the request is fulfilled at once. Offline and tag-less servers are not upgraded.
        let none = Self.decide(nil, [Self.server("a", tag: "2.0"), Self.server("b", tag: "1.0", live: false), Self.server("c", tag: nil)], at: 1)
        #expect(none.state == nil && none.clearRequest && !none.available)
        // A new release supersedes an upgrade under way — once the server in flight is done
        // (its updater is switching it: no second server may start beside it).
        let inFlight = Self.decide(asked, [Self.server("a", tag: "1.0"), Self.server("b", tag: "1.0")], at: 5, release: "3.0")
        #expect(inFlight.events.isEmpty && inFlight.state?.serverId == "a" && inFlight.state?.target == "2.0")
        let between = SiteUpgradeState(phase: .inProgress, target: "2.0", startedAt: Self.t0, upgraded: 1)
        let superseded = Self.decide(between, [Self.server("a", tag: "2.0"), Self.server("b", tag: "1.0")], at: 5, release: "3.0")
        #expect(superseded.events.first == .superseded(old: "2.0", new: "3.0") && superseded.state?.target == "3.0")
        #expect(superseded.state?.serverId == "a")
    }

    @Test func theUpgradeWindow() {
        func at(_ h: Int, _ m: Int) -> Date { Date(timeIntervalSince1970: TimeInterval(1_900_000_000 / 86_400 * 86_400 + h * 3600 + m * 60)) }
        #expect(P.inWindow(now: at(3, 0), start: "02:00:00", end: "04:00:00", offsetMinutes: 0))
        #expect(!P.inWindow(now: at(4, 0), start: "02:00:00", end: "04:00:00", offsetMinutes: 0))
        // 23:00–01:00 local spans midnight.
        #expect(P.inWindow(now: at(23, 30), start: "23:00", end: "01:00", offsetMinutes: 0))
        #expect(P.inWindow(now: at(0, 30), start: "23:00", end: "01:00", offsetMinutes: 0))
        #expect(!P.inWindow(now: at(12, 0), start: "23:00", end: "01:00", offsetMinutes: 0))
        // 02:00–04:00 at UTC+2 is 00:00–02:00 UTC.
        #expect(P.inWindow(now: at(1, 0), start: "02:00:00", end: "04:00:00", offsetMinutes: 120))
        #expect(!P.inWindow(now: at(3, 0), start: "02:00:00", end: "04:00:00", offsetMinutes: 120))
        // No window, or an empty one: always.
        #expect(P.inWindow(now: at(12, 0), start: nil, end: "04:00", offsetMinutes: 0))
        #expect(P.inWindow(now: at(12, 0), start: "04:00", end: "04:00", offsetMinutes: 0))
    }

    @Test func noReleaseNoUpgrade() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let (_, siteId) = try await Fixtures.siteWithConfiguration(client)
            let (status, body) = try await client.admin(.post, ControlPlane.sitesPath + "/\(siteId)/requestUpgrade")
            #expect(status == .conflict)
            #expect("\(body ?? .null)".contains("--gateway-release"))
            #expect(try await client.admin(.get, ControlPlane.sitesPath + "/\(siteId)").1?["gatewayRelease"] == JSONValue.null)
        }
    }

    /// Through the check-ins, on the store under test (SQLite, or PostgreSQL in the second pass).
    @Test func checkinsDriveTheUpgradeAndTheSiteShowsIt() async throws {
        let env = try TestEnv { $0.gatewayRelease = "2.0" }
        try await env.app().test(.router) { client in
            let (_, siteId) = try await Fixtures.siteWithConfiguration(client)
            let a = try await env.enroll(client: client, siteId: siteId, hostname: "gw-a")
            let b = try await env.enroll(client: client, siteId: siteId, hostname: "gw-b")
            func checkin(_ e: Enrolled, tag: String, report: UpgradeReport? = nil) async throws -> CheckinResponse {
                let server = try #require(try await env.store.server(id: e.server.id))
                var request = CheckinRequest(agentVersion: "t", serverVersion: "t", appliedConfigurationVersion: 0, lastApply: nil)
                request.imageTag = tag
                request.upgrade = report
                return try await env.controlPlane.checkin(server: server, certificate: e.certificate, request: request)
            }
            func site() async throws -> [String: JSONValue] {
                guard case .object(let o)? = try await client.admin(.get, ControlPlane.sitesPath + "/\(siteId)").1 else { return [:] }
                return o
            }
            // The Site is made with upgradeAutomatically true (Graph's default): turn it off
            // to see requestUpgrade start it.
            #expect(try await client.admin(.patch, ControlPlane.sitesPath + "/\(siteId)", #"{"upgradeAutomatically":false}"#).0 == .ok)
            #expect(try await checkin(a, tag: "1.0").upgrade == nil)
            #expect(try await checkin(b, tag: "1.0").upgrade == nil)
            #expect(try await site()["upgradeAvailable"] == .bool(true))
            #expect(try await site()["gatewayRelease"] == .string("2.0"))
            #expect(try await client.admin(.post, ControlPlane.sitesPath + "/\(siteId)/requestUpgrade").0 == .noContent)
            let ia = try #require(try await checkin(a, tag: "1.0").upgrade)
            #expect(ia.tag == "2.0")
            #expect(try await checkin(b, tag: "1.0").upgrade == nil)
            #expect(try await site()["upgradeStatus"] == .string("inProgress"))
            #expect(try await site()["upgradingServerId"] == .string(a.server.id))
            let status = try await client.admin(.get, ControlPlane.sitesPath + "/\(siteId)/microsoftTunnelServers/\(a.server.id)").1
            #expect(status?["tunnelServerHealthStatus"] == .string("upgradeInProgress"))
            // The same attempt until a is back.
            #expect(try await checkin(a, tag: "1.0", report: UpgradeReport(id: ia.id, tag: "2.0", state: .requested, dateTime: "t")).upgrade == ia)
            env.clock.advance(5)
            #expect(try await checkin(a, tag: "2.0", report: UpgradeReport(id: ia.id, tag: "2.0", state: .succeeded, dateTime: "t")).upgrade == nil)
            let ib = try #require(try await checkin(b, tag: "1.0").upgrade)
            #expect(ib.id != ia.id)
            // b's updater rolls back: the Site stops, b shows upgradeFailed.
            env.clock.advance(5)
            _ = try await checkin(b, tag: "1.0", report: UpgradeReport(id: ib.id, tag: "2.0", state: .failed, message: "not healthy; rolled back to 1.0", dateTime: "t"))
            #expect(try await site()["upgradeStatus"] == .string("failed"))
            #expect(try await site()["upgradeMessage"].map { "\($0)".contains("rolled back to 1.0") } == true)
            let failed = try await client.admin(.get, ControlPlane.sitesPath + "/\(siteId)/microsoftTunnelServers/\(b.server.id)").1
            #expect(failed?["tunnelServerHealthStatus"] == .string("upgradeFailed"))
            #expect(try await checkin(b, tag: "1.0").upgrade == nil)
            // Asked again: b again, with a new attempt; done once it succeeds.
            env.clock.advance(5)
            #expect(try await client.admin(.post, ControlPlane.sitesPath + "/\(siteId)/requestUpgrade").0 == .noContent)
            let ib2 = try #require(try await checkin(b, tag: "1.0").upgrade)
            #expect(ib2.id != ib.id)
            env.clock.advance(5)
            #expect(try await checkin(b, tag: "2.0", report: UpgradeReport(id: ib2.id, tag: "2.0", state: .succeeded, dateTime: "t")).upgrade == nil)
            #expect(try await site()["upgradeStatus"] == .string("none"))
            #expect(try await site()["upgradeAvailable"] == .bool(false))
            #expect(try await site()["upgradeRequestedDateTime"] == JSONValue.null)
        }
    }
}
