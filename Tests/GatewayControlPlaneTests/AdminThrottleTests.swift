import Foundation
@testable import GatewayControlPlane
import Hummingbird
import HummingbirdTesting
import Testing

/// Failed admin authentication is throttled per source address: after `maxFailures`
/// wrong credentials within the window, every admin request from that address is answered
/// 429 with Retry-After (a correct token too) for a lockout that grows with each repeat;
/// other addresses are not affected.
@Suite struct AdminThrottleTests {
    static let sites = ControlPlane.sitesPath

    func get(_ server: LiveServer, from source: String, token: String) async throws -> RawResponse {
        let connection = try await RawConnection.open(port: server.port, from: source, tlsTrusting: server.ca)
        let response = try await connection.request("GET", Self.sites, headers: [("Authorization", "Bearer \(token)")])
        await connection.close()
        return response
    }

    @Test func wrongTokensFromOneAddressLockItOutAndNobodyElse() async throws {
        try await LiveServer.run({ config in
            config.adminAuthThrottle.maxFailures = 10
            config.adminAuthThrottle.lockout = 2
        }) { server in
            let attacker = "127.0.0.2"
            for i in 0..<10 {
                let r = try await get(server, from: attacker, token: "mstadm_wrong-\(i)")
                #expect(r.status == 401, "attempt \(i + 1)")
            }
            // The 11th: locked out, Graph-shaped error, Retry-After.
            let locked = try await get(server, from: attacker, token: "mstadm_wrong-again")
            #expect(locked.status == 429)
            #expect(locked.json?.errorCode == "TooManyRequests")
            #expect(locked.json?.errorMessage.contains("failed admin authentications") == true)
            let retry = try #require(locked.headers["retry-after"].flatMap(Int.init))
            #expect((1...2).contains(retry))
            // The correct token from that address is refused as well during the lockout.
            let correctButLocked = try await get(server, from: attacker, token: server.adminToken)
            #expect(correctButLocked.status == 429)
            // Nothing in the answer echoes a token.
            #expect(!correctButLocked.body.contains(server.adminToken))

            // Another address is not affected: its correct token works, its wrong one is a plain 401.
            #expect(try await get(server, from: "127.0.0.3", token: server.adminToken).status == 200)
            #expect(try await get(server, from: "127.0.0.3", token: "mstadm_wrong").status == 401)
            let admin = try server.client()
            let viaTestClient = try await admin.execute(TestClient.Request(Self.sites, method: .get, authority: "localhost",
                                                                           headers: server.adminHeaders))
            #expect(viaTestClient.status == .ok)
            try await admin.shutdown()

            // After the lockout the correct token works from the attacker's address again.
            try await Task.sleep(for: .milliseconds(2300))
            #expect(try await get(server, from: attacker, token: server.adminToken).status == 200)

            // Ten more wrong ones: a second, longer lockout (doubled: 4 s).
            for i in 0..<10 { _ = try await get(server, from: attacker, token: "mstadm_wrong-2-\(i)") }
            let again = try await get(server, from: attacker, token: server.adminToken)
            #expect(again.status == 429)
            let retryAgain = try #require(again.headers["retry-after"].flatMap(Int.init))
            #expect((3...4).contains(retryAgain))
        }
    }

    @Test func requestsWithoutCredentialsDoNotCount() async throws {
        let env = try TestEnv { options in
            options.adminAuthThrottle.maxFailures = 3
        }
        try await env.app().test(.router) { client in
            for _ in 0..<10 {
                let (status, _) = try await client.admin(.get, Self.sites, headers: [:])
                #expect(status == .unauthorized)
            }
            #expect(try await client.admin(.get, Self.sites).0 == .ok)
            for _ in 0..<3 {
                #expect(try await client.admin(.get, Self.sites, headers: [.authorization: "Bearer nope"]).0 == .unauthorized)
            }
            let (status, body) = try await client.admin(.get, Self.sites)
            #expect(status == .tooManyRequests)
            #expect(body?.errorCode == "TooManyRequests")
        }
    }

    @Test func lockoutsGrowAndAreForgotten() throws {
        var settings = AdminAuthThrottle.Settings()
        settings.maxFailures = 3
        settings.window = 60
        settings.lockout = 10
        settings.maxLockout = 35
        settings.forgetAfter = 600
        let throttle = AdminAuthThrottle(settings: settings)
        var now = Date(timeIntervalSince1970: 1_800_000_000)
        func fail(_ n: Int) -> Int? {
            var started: Int?
            for _ in 0..<n { started = throttle.recordFailure("a", now: now) ?? started }
            return started
        }
        #expect(fail(2) == nil)
        #expect(throttle.retryAfter("a", now: now) == nil)
        #expect(fail(1) == 10)
        #expect(throttle.retryAfter("a", now: now) == 10)
        #expect(throttle.retryAfter("b", now: now) == nil)
        now += 10
        #expect(throttle.retryAfter("a", now: now) == nil)
        #expect(fail(3) == 20)
        now += 20
        #expect(fail(3) == 35)  // capped at maxLockout
        // Failures spread wider than the window never lock.
        now += 35
        for _ in 0..<5 {
            #expect(throttle.recordFailure("slow", now: now) == nil)
            now += 61
        }
        // Quiet for longer than forgetAfter: back to the first lockout.
        now += 601
        #expect(fail(3) == 10)
    }

    @Test func theTableIsBounded() throws {
        var settings = AdminAuthThrottle.Settings()
        settings.maxFailures = 2
        settings.maxSources = 100
        settings.lockout = 60
        let throttle = AdminAuthThrottle(settings: settings)
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        // One source locked out, then a spray of single failures from 10,000 others.
        _ = throttle.recordFailure("locked", now: now)
        _ = throttle.recordFailure("locked", now: now)
        for i in 0..<10_000 {
            _ = throttle.recordFailure("spray-\(i)", now: now.addingTimeInterval(Double(i) / 1000))
        }
        #expect(throttle.trackedSources <= 100)
        // The lockout survived the spray (unlocked entries went first).
        #expect(throttle.retryAfter("locked", now: now.addingTimeInterval(11)) != nil)
    }
}
