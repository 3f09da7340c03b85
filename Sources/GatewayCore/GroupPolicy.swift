import Foundation

/// Group policy: an extension of the Server configuration (beyond Graph's
/// `microsoftTunnelConfiguration`) that gives users in some groups, app roles or
/// certificate OUs their own split tunnel and DNS, or no tunnel at all. docs/group-policy.md
/// is the operator's guide; this file is the rule book.
///
/// The policies form an ordered list and the **first** that matches a user applies, the
/// way firewall rules read: an operator can always say which one a user got by reading
/// from the top, and `mst-cli server show user` prints it. A field the policy leaves out
/// keeps the server-wide value. A user no policy matches gets the server-wide settings.
extension AdminSettings {
    /// One entry of `groupPolicies` in `admin-settings.json`.
    public struct GroupPolicySettings: Codable, Sendable, Equatable {
        public var displayName: String?
        /// Matches a user whose token's `groups` claim holds one of these (Entra group
        /// object ids, or names where the issuer sends names).
        public var groups: [String]?
        /// Matches a user whose token's `roles` claim holds one of these (app roles).
        public var roles: [String]?
        /// Matches a certificate user whose subject has one of these `OU` values.
        public var organizationalUnits: [String]?
        /// Matches every user; only sensible as the last policy (e.g. to deny all others).
        public var everyone: Bool?
        /// Users this policy matches get no tunnel.
        public var deny: Bool?
        public var routeIncludes: [String]?
        public var routeExcludes: [String]?
        public var dnsServers: [String]?
        public var splitDNS: [String]?
        public var defaultDomainSuffix: String?

        public init(displayName: String? = nil, groups: [String]? = nil, roles: [String]? = nil,
                    organizationalUnits: [String]? = nil, everyone: Bool? = nil, deny: Bool? = nil,
                    routeIncludes: [String]? = nil, routeExcludes: [String]? = nil, dnsServers: [String]? = nil,
                    splitDNS: [String]? = nil, defaultDomainSuffix: String? = nil) {
            self.displayName = displayName
            self.groups = groups
            self.roles = roles
            self.organizationalUnits = organizationalUnits
            self.everyone = everyone
            self.deny = deny
            self.routeIncludes = routeIncludes
            self.routeExcludes = routeExcludes
            self.dnsServers = dnsServers
            self.splitDNS = splitDNS
            self.defaultDomainSuffix = defaultDomainSuffix
        }

        public static let knownKeys: Set<String> = [
            "displayName", "groups", "roles", "organizationalUnits", "everyone", "deny", "routeIncludes",
            "routeExcludes", "dnsServers", "splitDNS", "defaultDomainSuffix",
        ]
    }
}

/// A validated group policy.
public struct GroupPolicy: Sendable, Equatable {
    public static let maxPolicies = 100
    /// Names one policy may match on, over its groups, roles and OUs together.
    public static let maxMembersPerPolicy = 1000
    public static let maxNameLength = 200

    public var name: String
    /// Lowercased: Entra group ids are GUIDs whose case varies between tools, and X.500
    /// matches OUs without regard to case.
    public var groups: Set<String>
    public var roles: Set<String>
    public var organizationalUnits: Set<String>
    public var everyone: Bool
    public var deny: Bool
    /// nil: the server-wide value applies.
    public var routeIncludes: [IPPrefix]?
    public var routeExcludes: [IPPrefix]?
    public var dnsServers: [IPAddress]?
    public var splitDNS: [String]?
    /// "" clears the server-wide suffix for this policy's users; nil keeps it.
    public var defaultDomainSuffix: String?

    /// Whether a user with these claims is one this policy is for.
    public func matches(_ member: PolicySubject) -> Bool {
        if everyone { return true }
        return member.groups.contains { groups.contains($0) }
            || member.roles.contains { roles.contains($0) }
            || member.organizationalUnits.contains { organizationalUnits.contains($0) }
    }
}

/// What group policy looks at in a user's identity, lowercased once here rather than at
/// every policy a configuration change makes the gateway look at again.
public struct PolicySubject: Sendable, Equatable {
    public var groups: [String]
    public var roles: [String]
    public var organizationalUnits: [String]
    /// The issuer left the groups out (too many): a policy on groups cannot be decided.
    public var groupsOverage: Bool

    public init(groups: [String] = [], roles: [String] = [], organizationalUnits: [String] = [], groupsOverage: Bool = false) {
        self.groups = groups.map { $0.lowercased() }
        self.roles = roles.map { $0.lowercased() }
        self.organizationalUnits = organizationalUnits.map { $0.lowercased() }
        self.groupsOverage = groupsOverage
    }
}

/// What one user gets: the server-wide settings with the matching policy's fields over them.
public struct EffectivePolicy: Sendable, Equatable {
    /// The policy that matched; nil when none did (server-wide settings).
    public var policyName: String?
    public var denied: Bool
    public var routeIncludes: [IPPrefix]
    public var routeExcludes: [IPPrefix]
    public var dnsServers: [IPAddress]
    public var splitDNS: [String]
    public var defaultDomainSuffix: String?

    public init(policyName: String?, denied: Bool, routeIncludes: [IPPrefix], routeExcludes: [IPPrefix],
                dnsServers: [IPAddress], splitDNS: [String], defaultDomainSuffix: String?) {
        self.policyName = policyName
        self.denied = denied
        self.routeIncludes = routeIncludes
        self.routeExcludes = routeExcludes
        self.dnsServers = dnsServers
        self.splitDNS = splitDNS
        self.defaultDomainSuffix = defaultDomainSuffix
    }
}

extension GatewaySettings {
    /// What a user no policy matches gets.
    public var serverWidePolicy: EffectivePolicy { apply(nil) }

    /// The first policy that matches `subject`, over the server-wide settings.
    ///
    /// A user whose groups the issuer left out (overage) cannot be judged by a policy on
    /// groups. Reading down the list, such a policy that denies the tunnel denies this user
    /// too (fail closed: a contractor in 300 groups must not slip past "Contractors: deny");
    /// one that allows is passed over (its routes are not given on a guess).
    public func effectivePolicy(for subject: PolicySubject) -> EffectivePolicy {
        for policy in groupPolicies {
            if policy.matches(subject) { return apply(policy) }
            if subject.groupsOverage, policy.deny, !policy.groups.isEmpty {
                var denied = apply(policy)
                denied.policyName = "\(policy.name) (groups unknown: overage)"
                return denied
            }
        }
        return apply(nil)
    }

    private func apply(_ policy: GroupPolicy?) -> EffectivePolicy {
        return EffectivePolicy(
            policyName: policy?.name, denied: policy?.deny ?? false,
            routeIncludes: policy?.routeIncludes ?? routeIncludes, routeExcludes: policy?.routeExcludes ?? routeExcludes,
            dnsServers: policy?.dnsServers ?? dnsServers, splitDNS: policy?.splitDNS ?? splitDNS,
            defaultDomainSuffix: policy?.defaultDomainSuffix.map { $0.isEmpty ? nil : $0 } ?? defaultDomainSuffix)
    }

    /// Validates `groupPolicies`, noting each problem with the policy's index and name.
    /// `parseRoutes` is the same route reader the server-wide lists go through, so every
    /// rule a policy adds is held to the same checks (CIDR syntax, no overlap with the pool).
    static func validateGroupPolicies(_ list: [AdminSettings.GroupPolicySettings],
                                      parseRoutes: ([String], String) -> [IPPrefix],
                                      note: (String) -> Void) -> [GroupPolicy] {
        if list.count > GroupPolicy.maxPolicies {
            note("groupPolicies: \(list.count) policies, at most \(GroupPolicy.maxPolicies) allowed")
        }
        var out: [GroupPolicy] = []
        var names = Set<String>()
        var everyoneAt: Int?
        for (i, p) in list.enumerated() {
            let field = "groupPolicies[\(i)]"
            let name = (p.displayName ?? "").trimmingCharacters(in: .whitespaces)
            if name.isEmpty {
                note("\(field).displayName: required (logs and mst-cli name the policy a user got)")
            } else if name.count > GroupPolicy.maxNameLength {
                note("\(field).displayName: at most \(GroupPolicy.maxNameLength) characters")
            } else if !names.insert(name.lowercased()).inserted {
                note("\(field).displayName: '\(name)' is the name of an earlier policy too")
            }
            let label = name.isEmpty ? field : "\(field) ('\(name)')"
            func members(_ list: [String]?, _ what: String) -> Set<String> {
                var set = Set<String>()
                for (j, m) in (list ?? []).enumerated() {
                    let t = m.trimmingCharacters(in: .whitespaces)
                    if t.isEmpty || t.utf8.count > 256 || t.unicodeScalars.contains(where: { $0.value < 0x20 }) {
                        note("\(label).\(what)[\(j)]: must be 1-256 bytes of printable text")
                    } else {
                        set.insert(t.lowercased())
                    }
                }
                return set
            }
            let groups = members(p.groups, "groups")
            let roles = members(p.roles, "roles")
            let ous = members(p.organizationalUnits, "organizationalUnits")
            let everyone = p.everyone ?? false
            let count = groups.count + roles.count + ous.count
            if everyone && count > 0 {
                note("\(label): 'everyone' matches every user; leave out groups, roles and organizationalUnits")
            } else if !everyone && count == 0 {
                note("\(label): matches nobody; give groups, roles or organizationalUnits, or set 'everyone'")
            }
            if count > GroupPolicy.maxMembersPerPolicy {
                note("\(label): \(count) groups, roles and OUs, at most \(GroupPolicy.maxMembersPerPolicy)")
            }
            if let at = everyoneAt {
                note("\(label): can never match, groupPolicies[\(at)] before it sets 'everyone'")
            }
            if everyone && everyoneAt == nil { everyoneAt = i }
            let deny = p.deny ?? false
            let shapesTunnel = p.routeIncludes != nil || p.routeExcludes != nil || p.dnsServers != nil
                || p.splitDNS != nil || p.defaultDomainSuffix != nil
            if deny && shapesTunnel {
                note("\(label): a policy that denies the tunnel cannot also set routes or DNS")
            }
            let includes = p.routeIncludes.map { parseRoutes($0, "\(label).routeIncludes") }
            let excludes = p.routeExcludes.map { parseRoutes($0, "\(label).routeExcludes") }
            var dns: [IPAddress]?
            if let list = p.dnsServers {
                dns = []
                for (j, d) in list.enumerated() {
                    if let a = IPAddress(d) { dns?.append(a) } else { note("\(label).dnsServers[\(j)]: '\(d)' is not an IP address") }
                }
                if list.count > 3 { note("\(label).dnsServers: at most 3 servers (clients keep only 3), got \(list.count)") }
            }
            var splitDNS: [String]?
            if let list = p.splitDNS {
                splitDNS = []
                for (j, d) in list.enumerated() {
                    if isDomainName(d) { splitDNS?.append(d) } else { note("\(label).splitDNS[\(j)]: '\(d)' is not a domain name") }
                }
            }
            if let suffix = p.defaultDomainSuffix, !suffix.isEmpty, !isDomainName(suffix) {
                note("\(label).defaultDomainSuffix: '\(suffix)' is not a domain name")
            }
            out.append(GroupPolicy(
                name: name, groups: groups, roles: roles, organizationalUnits: ous, everyone: everyone, deny: deny,
                routeIncludes: includes, routeExcludes: excludes, dnsServers: dns, splitDNS: splitDNS,
                defaultDomainSuffix: p.defaultDomainSuffix))
        }
        return out
    }
}
