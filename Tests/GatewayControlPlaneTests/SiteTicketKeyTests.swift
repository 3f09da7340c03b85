import Foundation
import GatewayAgentAPI
import GatewayCore
@testable import GatewayControlPlane
import Hummingbird
import HummingbirdTesting
import Testing

/// The Site's ticket keys (docs/site.md, "Site keys"): a first key at the first check-in, a
/// rotation that seals only once every live server's auth has the new key, the old key kept
/// for a ticket lifetime, one rotation at a time.
@Suite struct SiteTicketKeyTests {
    static let t0 = Date(timeIntervalSince1970: 1_900_000_000)
    static func key(_ id: String, _ created: TimeInterval, sealing: TimeInterval? = nil) -> TicketKeyRecord {
        TicketKeyRecord(id: id, key: "k", createdAt: t0.addingTimeInterval(created), sealingSince: sealing.map { t0.addingTimeInterval($0) })
    }

    @Test func aNewKeySealsOnlyWhenEveryLiveServerHasIt() {
        let keys = [Self.key("old", 0, sealing: 0), Self.key("new", 100)]
        let waiting = SiteTicketKeyPolicy.decide(keys: keys, acknowledged: [["old", "new"], ["old"]], now: Self.t0.addingTimeInterval(200))
        #expect(waiting.sealing == "old" && waiting.promoted == nil && waiting.keys.count == 2)
        let now = Self.t0.addingTimeInterval(300)
        let promoted = SiteTicketKeyPolicy.decide(keys: keys, acknowledged: [["old", "new"], ["new", "old", "local-1"]], now: now)
        #expect(promoted.sealing == "new" && promoted.promoted == "new")
        #expect(promoted.keys.first { $0.id == "new" }?.sealingSince == now)
        // The old key still opens: tickets it sealed live up to a lifetime.
        #expect(promoted.keys.map(\.id) == ["old", "new"] && promoted.retired.isEmpty)
        // No live server reporting (all down, or older agents): the newest key seals.
        #expect(SiteTicketKeyPolicy.decide(keys: keys, acknowledged: [], now: now).sealing == "new")
    }

    @Test func anOldKeyGoesALifetimeAfterItsSuccessorBeganToSeal() {
        let keys = [Self.key("old", 0, sealing: 0), Self.key("new", 100, sealing: 300)]
        let before = SiteTicketKeyPolicy.decide(keys: keys, acknowledged: [["new"]], now: Self.t0.addingTimeInterval(300 + SiteTicketKeyPolicy.lifetime - 1))
        #expect(before.keys.map(\.id) == ["old", "new"] && before.retired.isEmpty)
        let after = SiteTicketKeyPolicy.decide(keys: keys, acknowledged: [["new"]], now: Self.t0.addingTimeInterval(300 + SiteTicketKeyPolicy.lifetime))
        #expect(after.keys.map(\.id) == ["new"] && after.retired == ["old"] && after.sealing == "new")
        // A server that lost the new key does not bring the old one back.
        #expect(SiteTicketKeyPolicy.decide(keys: keys, acknowledged: [["old"]], now: Self.t0.addingTimeInterval(400)).sealing == "new")
    }

    @Test func checkinsCarryTheSiteKeysAndRotationWaitsForEveryServer() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let (_, siteId) = try await Fixtures.siteWithConfiguration(client)
            let a = try await env.enroll(client: client, siteId: siteId, hostname: "gw-a")
            let b = try await env.enroll(client: client, siteId: siteId, hostname: "gw-b")
            func checkin(_ e: Enrolled, has ids: [String]?) async throws -> SiteTicketKeys {
                let server = try #require(try await env.store.server(id: e.server.id))
                let r = try await env.controlPlane.checkin(server: server, certificate: e.certificate, request: CheckinRequest(
                    agentVersion: "t", serverVersion: "t", appliedConfigurationVersion: 0, lastApply: nil, ticketKeyIds: ids))
                return try #require(r.ticketKeys)
            }
            let first = try await checkin(a, has: nil)
            #expect(first.keys.count == 1 && first.sealing == first.keys[0].id)
            #expect(Data(base64Encoded: first.keys[0].key)?.count == 32)
            #expect(first.lifetimeSeconds == 86_400)
            // The same key for every server of the Site.
            let k1 = first.sealing
            #expect(try await checkin(b, has: [k1, "local-1"]) == first)

            let path = ControlPlane.sitesPath + "/\(siteId)/rotateTicketKey"
            #expect(try await client.admin(.post, path).0 == .noContent)
            #expect(try await client.admin(.post, path).0 == .conflict)  // one at a time
            #expect(try await client.admin(.post, ControlPlane.sitesPath + "/nope/rotateTicketKey").0 == .notFound)

            let offered = try await checkin(a, has: [k1, "local-1"])
            #expect(offered.keys.count == 2 && offered.sealing == k1)
            let k2 = try #require(offered.keys.map(\.id).first { $0 != k1 })
            // A has it, B not yet: still the old key.
            #expect(try await checkin(a, has: [k1, k2]).sealing == k1)
            #expect(try await checkin(b, has: [k1]).sealing == k1)
            // B has it now: the new key seals, for both.
            #expect(try await checkin(b, has: [k1, k2]).sealing == k2)
            #expect(try await checkin(a, has: [k1, k2]).sealing == k2)
            #expect(try await checkin(a, has: [k1, k2]).keys.map(\.id) == [k1, k2])
            // A second rotation may start now.
            #expect(try await client.admin(.post, path).0 == .noContent)
        }
    }

    @Test func aRevocationReportedByOneServerReachesTheOthersOnce() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let (_, siteId) = try await Fixtures.siteWithConfiguration(client)
            let a = try await env.enroll(client: client, siteId: siteId, hostname: "gw-a")
            let b = try await env.enroll(client: client, siteId: siteId, hostname: "gw-b")
            func checkin(_ e: Enrolled, revoked: [RevokedTicketEntry] = [], after: Int64) async throws -> CheckinResponse {
                let server = try #require(try await env.store.server(id: e.server.id))
                return try await env.controlPlane.checkin(server: server, certificate: e.certificate, request: CheckinRequest(
                    agentVersion: "t", serverVersion: "t", appliedConfigurationVersion: 0, lastApply: nil,
                    revokedTickets: revoked, revocationsAfter: after))
            }
            let until = Int64(env.clock.now().timeIntervalSince1970) + 3600
            let id = String(repeating: "ab", count: 32)
            let fromA = try await checkin(a, revoked: [RevokedTicketEntry(sessionId: id, until: until),
                                                       RevokedTicketEntry(sessionId: "not hex", until: until),
                                                       RevokedTicketEntry(sessionId: String(repeating: "cd", count: 32), until: 5)], after: 0)
            // A does not get its own back, but its cursor moves past it.
            #expect(fromA.revokedTickets == [])
            let cursorA = try #require(fromA.revocationsCursor)
            #expect(cursorA > 0)
            let toB = try await checkin(b, after: 0)
            // The malformed id and the expired one were not stored.
            #expect(toB.revokedTickets == [RevokedTicketEntry(sessionId: id, until: until)])
            let again = try await checkin(b, after: toB.revocationsCursor ?? -1)
            #expect(again.revokedTickets == [])
            #expect(try await checkin(a, after: cursorA).revokedTickets == [])
        }
    }

    @Test func anAdministratorsDrainReachesTheAgentAtCheckin() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let (_, siteId) = try await Fixtures.siteWithConfiguration(client)
            let a = try await env.enroll(client: client, siteId: siteId, hostname: "gw-a")
            let path = ControlPlane.sitesPath + "/\(siteId)/microsoftTunnelServers/\(a.server.id)"
            #expect(try await env.checkin(a, applied: 1).drain == nil)
            #expect(try await client.admin(.post, path + "/drain", #"{"handOverAfterSeconds":5}"#).0 == .noContent)
            #expect(try await env.checkin(a, applied: 1).drain == DrainInstruction(handOverAfterSeconds: 5))
            let (_, shown) = try await client.admin(.get, path)
            #expect(shown?["drainRequested"] == .bool(true) && shown?["drainHandOverAfterSeconds"] == .int(5))
            #expect(try await client.admin(.post, path + "/drain", #"{"wait":true}"#).0 == .noContent)
            #expect(try await env.checkin(a, applied: 1).drain == DrainInstruction(handOverAfterSeconds: nil))
            #expect(try await client.admin(.post, path + "/drain", #"{"handOverAfterSeconds":-3}"#).0 == .badRequest)
            #expect(try await client.admin(.post, path + "/undrain").0 == .noContent)
            #expect(try await env.checkin(a, applied: 1).drain == nil)
            #expect(try await client.admin(.post, ControlPlane.sitesPath + "/\(siteId)/microsoftTunnelServers/nope/drain").0 == .notFound)
        }
    }

    @Test func everyServerOfASiteGetsItsOwnSliceOfThePool() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let (_, siteId) = try await Fixtures.siteWithConfiguration(client)
            var servers: [Enrolled] = []
            for i in 0..<9 { servers.append(try await env.enroll(client: client, siteId: siteId, hostname: "gw-\(i)")) }
            var slices: [Int] = []
            for e in servers.prefix(8) {
                let r = try await env.checkin(e, applied: 1)
                let slice = try #require(r.poolSlice)
                #expect(slice.count == 8)
                slices.append(slice.index)
            }
            #expect(slices.sorted() == Array(0..<8))
            // The same slice at every check-in.
            #expect(try await env.checkin(servers[3], applied: 1).poolSlice?.index == slices[3])
            // A ninth server gets none (the whole pool), until a server leaves.
            #expect(try await env.checkin(servers[8], applied: 1).poolSlice == nil)
            let path = ControlPlane.sitesPath + "/\(siteId)/microsoftTunnelServers/\(servers[2].server.id)"
            #expect(try await client.admin(.delete, path).0 == .noContent)
            #expect(try await env.checkin(servers[8], applied: 1).poolSlice?.index == slices[2])
        }
    }

    @Test func addressesASiblingHoldsAreReservedInTheirHomeSlice() async throws {
        let env = try TestEnv()
        try await env.app().test(.router) { client in
            let (_, siteId) = try await Fixtures.siteWithConfiguration(client)  // pool 100.64.0.0/16
            let a = try await env.enroll(client: client, siteId: siteId, hostname: "gw-a")
            let b = try await env.enroll(client: client, siteId: siteId, hostname: "gw-b")
            func checkin(_ e: Enrolled, leases: [String]?) async throws -> CheckinResponse {
                let server = try #require(try await env.store.server(id: e.server.id))
                var request = CheckinRequest(agentVersion: "t", serverVersion: "t", appliedConfigurationVersion: 1, lastApply: nil)
                request.foreignLeases = leases
                return try await env.controlPlane.checkin(server: server, certificate: e.certificate, request: request)
            }
            let network = try IPv4Prefix.parse("100.64.0.0/16").get()
            func address(inSliceOf r: CheckinResponse, offset: Int) throws -> String {
                let slice = try #require(r.poolSlice)
                let range = try #require(PoolSlice(index: slice.index, count: slice.count)?.range(poolSize: Int(network.size)))
                return "\(IPv4Address(network.network.value + UInt32(range.lowerBound + offset)))"
            }
            let first = try await checkin(b, leases: nil)
            #expect(first.reservedAddresses == [], "nothing held elsewhere yet")
            let own = try address(inSliceOf: try await checkin(a, leases: nil), offset: 3)
            let bobs = try address(inSliceOf: first, offset: 5)
            // A holds bob's address (his session resumed there from B), and reports it;
            // what is not an address of B's slice is not B's concern.
            let atA = try await checkin(a, leases: [bobs, own, "10.9.9.9", "not-an-ip"])
            #expect(atA.reservedAddresses == [], "a server's own leases are never reserved for it")
            #expect(try await checkin(b, leases: nil).reservedAddresses == [bobs])
            // A reports it no longer holds it (bob logged off): B may use it again.
            _ = try await checkin(a, leases: [])
            #expect(try await checkin(b, leases: nil).reservedAddresses == [])
            // A silent server (not checked in for three intervals) holds nothing back.
            _ = try await checkin(a, leases: [bobs])
            #expect(try await checkin(b, leases: nil).reservedAddresses == [bobs])
            env.clock.advance(4 * 60)
            #expect(try await checkin(b, leases: nil).reservedAddresses == [])
            // More than the limit is a 400 naming the field.
            let tooMany = (0..<(AgentAPILimits.foreignLeases + 1)).map { "100.64.0.\($0 % 250)" }
            await #expect(throws: GraphError.self) { _ = try await checkin(a, leases: tooMany) }
        }
    }
}
