import Foundation
import Testing
@testable import GatewayCore

@Suite struct GatewaySettingsTests {
    func settings(_ json: String) -> Result<GatewaySettings, ConfigurationError> {
        do {
            return GatewaySettings.validate(try AdminSettings.decode(Data(json.utf8)))
        } catch {
            return .failure(error)
        }
    }

    @Test func validConfigurationWithGraphNames() throws {
        let s = try settings("""
        {"displayName":"x","network":"100.64.0.0/16","dnsServers":["198.18.1.2"],"defaultDomainSuffix":"corp.test",
         "routeIncludes":["198.18.1.0/24"],"routeExcludes":["198.18.1.128/25"],"splitDNS":["corp.test"],"listenPort":8443,
         "advancedSettings":[{"name":"session-timeout","value":"600"},{"name":"mtu","value":"1400"}],"disableUdpConnections":true}
        """).get()
        #expect(s.pool.description == "100.64.0.0/16")
        #expect(s.listenPort == 8443)
        #expect(s.advanced.sessionTimeout == 600)
        #expect(s.advanced.mtu == 1400)
        #expect(s.disableUdpConnections)
        #expect(s.routeIncludes.count == 1 && s.routeExcludes.count == 1)
    }

    @Test func defaults() throws {
        let s = try settings(#"{"network":"100.64.0.0/24"}"#).get()
        #expect(s.listenPort == 443)
        #expect(s.advanced.sessionTimeout == 3600)
        #expect(s.advanced.reconnectTimeout == 300)
        #expect(s.listenAddress == "::")
    }

    @Test func reportsEveryProblem() {
        guard case .failure(let e) = settings("""
        {"network":"100.64.0.1/24","dnsServers":["nope"],"routeIncludes":["300.1.1.0/24"],"listenPort":70000,
         "advancedSettings":[{"name":"dpd","value":"x"},{"name":"frobnicate","value":"1"}]}
        """) else { Issue.record("should fail"); return }
        #expect(e.message.contains("network: '100.64.0.1/24' has host bits set"))
        #expect(e.message.contains("dnsServers[0]"))
        #expect(e.message.contains("routeIncludes[0]"))
        #expect(e.message.contains("listenPort"))
        #expect(e.message.contains("advancedSettings.dpd"))
        #expect(e.message.contains("unknown setting 'frobnicate'"))
    }

    @Test func fiveHundredRulesAllowedFiveHundredOneRefused() throws {
        func routes(_ n: Int) -> String {
            (0..<n).map { "\"10.\($0 / 256).\($0 % 256).0/24\"" }.joined(separator: ",")
        }
        #expect((try? settings(#"{"network":"100.64.0.0/24","routeIncludes":[\#(routes(400))],"routeExcludes":["172.16.0.0/12"#
                                + #"","192.0.2.0/24"\#((0..<98).map { ",\"198.19.\($0).0/24\"" }.joined())]}"#).get()) != nil)
        guard case .failure(let e) = settings(#"{"network":"100.64.0.0/24","routeIncludes":[\#(routes(501))]}"#) else {
            Issue.record("501 rules must be refused"); return
        }
        #expect(e.message.contains("501 rules, at most 500"))
    }

    @Test func poolOverlappingARouteIsRefused() {
        guard case .failure(let e) = settings(#"{"network":"100.64.0.0/24","routeIncludes":["100.64.0.0/16"]}"#) else {
            Issue.record("should fail"); return
        }
        #expect(e.message.contains("overlaps the client pool"))
    }

    @Test func poolSizeBounds() {
        guard case .failure(let e) = settings(#"{"network":"0.0.0.0/1"}"#) else { Issue.record("/1 must be refused"); return }
        #expect(e.message.contains("larger than a pool can be"))
        #expect((try? settings(#"{"network":"100.64.0.0/10"}"#).get()) != nil)
        guard case .failure(let e2) = settings(#"{"network":"100.64.0.0/31"}"#) else { Issue.record("/31 must be refused"); return }
        #expect(e2.message.contains("too small"))
    }

    @Test func perUserLimit() throws {
        #expect(try settings(#"{"network":"100.64.0.0/24"}"#).get().advanced.maxSessionsPerUser == 10)
        let s = try settings(#"{"network":"100.64.0.0/24","advancedSettings":[{"name":"max-sessions-per-user","value":"2"}]}"#).get()
        #expect(s.advanced.maxSessionsPerUser == 2)
    }

    @Test func unknownKeysAndBadJSON() {
        guard case .failure(let e1) = settings(#"{"network":"100.64.0.0/24","dnsServer":["1.1.1.1"]}"#) else { Issue.record("x"); return }
        #expect(e1.message.contains("unknown key(s) dnsServer"))
        guard case .failure(let e2) = settings("{not json") else { Issue.record("x"); return }
        #expect(e2.message.contains("not valid JSON"))
        guard case .failure(let e3) = settings(#"{"network":5}"#) else { Issue.record("x"); return }
        #expect(e3.message.contains("wrong type for 'network'"))
        guard case .failure(let e4) = settings("[]") else { Issue.record("x"); return }
        #expect(e4.message.contains("must be a JSON object"))
    }
}
