import Foundation
import Testing
@testable import GatewayCore

@Suite struct GroupPolicyTests {
    static let base = """
    "network":"100.64.0.0/24","dnsServers":["198.18.1.2"],"defaultDomainSuffix":"corp.test",
    "routeIncludes":["198.18.1.0/24"],"splitDNS":["corp.test"]
    """

    func settings(_ policies: String, base: String = Self.base) -> Result<GatewaySettings, ConfigurationError> {
        do {
            return GatewaySettings.validate(try AdminSettings.decode(Data("{\(base),\"groupPolicies\":\(policies)}".utf8)))
        } catch {
            return .failure(error)
        }
    }

    func problems(_ policies: String, base: String = Self.base) -> String {
        if case .failure(let e) = settings(policies, base: base) { return e.message }
        return ""
    }

    static let engineering = "a1b2c3d4-0000-4000-8000-00000000e001"

    @Test func firstMatchingPolicyAppliesOverServerWideSettings() throws {
        let s = try settings("""
        [{"displayName":"Engineering","groups":["\(Self.engineering.uppercased())"],"routeIncludes":["198.18.2.0/24","198.18.3.0/24"],
          "dnsServers":["198.18.2.53"]},
         {"displayName":"Admins","roles":["Tunnel.Admin"],"routeIncludes":[]},
         {"displayName":"Contractors","organizationalUnits":["Contractors"],"deny":true}]
        """).get()
        #expect(s.groupPolicies.count == 3)

        // Group ids match without regard to case; unset fields keep the server-wide value.
        let eng = s.effectivePolicy(for: PolicySubject(groups: [Self.engineering], roles: ["Tunnel.Admin"]))
        #expect(eng.policyName == "Engineering" && !eng.denied)
        #expect(eng.routeIncludes.map(\.description) == ["198.18.2.0/24", "198.18.3.0/24"])
        #expect(eng.dnsServers.map(\.description) == ["198.18.2.53"])
        #expect(eng.splitDNS == ["corp.test"] && eng.defaultDomainSuffix == "corp.test")

        // An empty list is a value: Admins tunnel everything.
        let admin = s.effectivePolicy(for: PolicySubject(roles: ["tunnel.admin"]))
        #expect(admin.policyName == "Admins" && admin.routeIncludes.isEmpty)
        #expect(admin.dnsServers.map(\.description) == ["198.18.1.2"])

        let contractor = s.effectivePolicy(for: PolicySubject(organizationalUnits: ["contractors"]))
        #expect(contractor.policyName == "Contractors" && contractor.denied)

        let nobody = s.effectivePolicy(for: PolicySubject(groups: ["other"]))
        #expect(nobody.policyName == nil && !nobody.denied)
        #expect(nobody == s.serverWidePolicy)
        #expect(nobody.routeIncludes.map(\.description) == ["198.18.1.0/24"])
    }

    @Test func aUserWithTooManyGroupsIsDeniedByADenyOnGroupsAndNotGivenAnAllowOnGuess() throws {
        let s = try settings("""
        [{"displayName":"Engineering","groups":["g-eng"],"routeIncludes":["198.18.2.0/24"]},
         {"displayName":"Contractors","groups":["g-con"],"deny":true},
         {"displayName":"Admins","roles":["Tunnel.Admin"]}]
        """).get()
        // Overage: Engineering (allow) is passed over, Contractors (deny on groups) denies.
        let overage = s.effectivePolicy(for: PolicySubject(roles: ["Tunnel.Admin"], groupsOverage: true))
        #expect(overage.denied)
        #expect(overage.policyName == "Contractors (groups unknown: overage)")
        // A role that matches before any deny on groups still decides.
        let t = try settings("""
        [{"displayName":"Admins","roles":["Tunnel.Admin"]},{"displayName":"Contractors","groups":["g-con"],"deny":true}]
        """).get()
        #expect(t.effectivePolicy(for: PolicySubject(roles: ["tunnel.admin"], groupsOverage: true)).policyName == "Admins")
        // Without overage nothing changes.
        #expect(!s.effectivePolicy(for: PolicySubject(roles: ["Tunnel.Admin"])).denied)
    }

    @Test func everyoneAsTheLastPolicyDeniesAllOthers() throws {
        let s = try settings("""
        [{"displayName":"VPN users","groups":["g1"]},{"displayName":"Everyone else","everyone":true,"deny":true}]
        """).get()
        #expect(!s.effectivePolicy(for: PolicySubject(groups: ["g1"])).denied)
        #expect(s.effectivePolicy(for: PolicySubject()).denied)
        #expect(s.effectivePolicy(for: PolicySubject(roles: ["g1"])).denied)
        // The server-wide settings are what no policy gives; they never deny.
        #expect(!s.serverWidePolicy.denied)
    }

    @Test func anEmptyDomainSuffixClearsTheServerWideOne() throws {
        let s = try settings(#"[{"displayName":"A","groups":["g"],"defaultDomainSuffix":""}]"#).get()
        #expect(s.effectivePolicy(for: PolicySubject(groups: ["g"])).defaultDomainSuffix == nil)
        #expect(s.serverWidePolicy.defaultDomainSuffix == "corp.test")
    }

    @Test func everyMistakeIsNamedWithItsPolicy() {
        let p = problems("""
        [{"groups":["g"]},
         {"displayName":"Twice","groups":["g"]},{"displayName":"twice","roles":["r"]},
         {"displayName":"Nobody"},
         {"displayName":"Both","everyone":true,"groups":["g"]},
         {"displayName":"All","everyone":true},
         {"displayName":"Shadowed","groups":["x"],"routeIncludes":["198.18.9.0/33"]},
         {"displayName":"Deny with routes","groups":["y"],"deny":true,"routeIncludes":["198.18.9.0/24"]},
         {"displayName":"Bad","groups":["z",""],"dnsServers":["dns.corp"],"splitDNS":["-bad"],"defaultDomainSuffix":"a..b",
          "routeExcludes":["100.64.0.128/25"]}]
        """)
        for expected in [
            "groupPolicies[0].displayName: required",
            "groupPolicies[2].displayName: 'twice' is the name of an earlier policy too",
            "groupPolicies[3] ('Nobody'): matches nobody",
            "groupPolicies[4] ('Both'): 'everyone' matches every user",
            "groupPolicies[6] ('Shadowed'): can never match, groupPolicies[4] before it sets 'everyone'",
            "groupPolicies[6] ('Shadowed').routeIncludes[0]:",
            "groupPolicies[7] ('Deny with routes'): a policy that denies the tunnel cannot also set routes or DNS",
            "groupPolicies[8] ('Bad').groups[1]: must be 1-256 bytes",
            "groupPolicies[8] ('Bad').dnsServers[0]: 'dns.corp' is not an IP address",
            "groupPolicies[8] ('Bad').splitDNS[0]: '-bad' is not a domain name",
            "groupPolicies[8] ('Bad').defaultDomainSuffix: 'a..b' is not a domain name",
            "route 100.64.0.128/25 overlaps the client pool 100.64.0.0/24",
        ] {
            #expect(p.contains(expected), "missing: \(expected)\nin: \(p)")
        }
    }

    @Test func theRuleLimitCountsEveryPolicysRules() {
        func routes(_ n: Int, third: Int) -> String {
            "[" + (0..<n).map { "\"198.\(18 + third).\($0 / 256).\($0 % 256)/32\"" }.joined(separator: ",") + "]"
        }
        // 300 server-wide + 200 in policies = 500: allowed.
        let atLimit = "\"network\":\"100.64.0.0/24\",\"routeIncludes\":\(routes(300, third: 0))"
        let ok = settings("""
        [{"displayName":"A","groups":["a"],"routeIncludes":\(routes(150, third: 1))},
         {"displayName":"B","groups":["b"],"routeExcludes":\(routes(50, third: 1))}]
        """, base: atLimit)
        #expect((try? ok.get()) != nil)
        // One more in a policy: refused, and the message says where the rules are.
        let p = problems("""
        [{"displayName":"A","groups":["a"],"routeIncludes":\(routes(151, third: 1))},
         {"displayName":"B","groups":["b"],"routeExcludes":\(routes(50, third: 1))}]
        """, base: atLimit)
        #expect(p.contains("501 rules (300 server-wide, 201 in groupPolicies), at most 500 allowed"), "\(p)")
    }

    @Test func unknownKeysInAPolicyAreRefused() {
        let p = problems(#"[{"displayName":"A","group":["g"]}]"#)
        #expect(p.contains("groupPolicies[0]: unknown key(s) group"), "\(p)")
    }

    @Test func connectHeadCarriesThePolicysRoutesAndDNS() throws {
        let s = try settings("""
        [{"displayName":"Engineering","groups":["g"],"routeIncludes":["198.18.2.0/24"],"routeExcludes":["198.18.2.128/25"],
          "dnsServers":["198.18.2.53"],"splitDNS":["eng.corp.test"]}]
        """).get()
        var parser = HTTPRequestParser()
        parser.append(Array("CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nX-CSTP-Base-MTU: 1500\r\n\r\n".utf8))
        let r = try #require(try parser.next())
        let address = try #require(IPv4Address("100.64.0.9"))
        let eng = TunnelParameters(settings: s, address: address, sessionTimeoutRemaining: 0, request: r,
                                   policy: s.effectivePolicy(for: PolicySubject(groups: ["G"])))
            .responseHead(serverName: "t")
        for line in ["X-CSTP-Split-Include: 198.18.2.0/255.255.255.0", "X-CSTP-Split-Exclude: 198.18.2.128/255.255.255.128",
                     "X-CSTP-DNS: 198.18.2.53", "X-CSTP-Split-DNS: eng.corp.test", "X-CSTP-Default-Domain: corp.test"] {
            #expect(eng.contains(line + "\r\n"), "missing \(line)")
        }
        #expect(!eng.contains("198.18.1.0") && !eng.contains("198.18.1.2"))
        // Without a policy: the server-wide routes.
        let other = TunnelParameters(settings: s, address: address, sessionTimeoutRemaining: 0, request: r).responseHead(serverName: "t")
        #expect(other.contains("X-CSTP-Split-Include: 198.18.1.0/255.255.255.0\r\n") && other.contains("X-CSTP-DNS: 198.18.1.2\r\n"))
    }
}
