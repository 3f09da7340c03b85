import GatewayCore
import GatewayWire

extension Identity {
    /// What group policy matches on (GatewayCore's GroupPolicy.swift).
    public var policySubject: PolicySubject {
        PolicySubject(groups: groups ?? [], roles: roles ?? [], organizationalUnits: organizationalUnits ?? [],
                      groupsOverage: groupsOverage ?? false)
    }
}

extension EffectivePolicy {
    /// The wire form `mst-cli server show user` prints.
    public var info: SessionPolicyInfo {
        SessionPolicyInfo(policyName: policyName, routeIncludes: routeIncludes.map { "\($0)" },
                          routeExcludes: routeExcludes.map { "\($0)" }, dnsServers: dnsServers.map { "\($0)" },
                          splitDNS: splitDNS, defaultDomainSuffix: defaultDomainSuffix)
    }
}
