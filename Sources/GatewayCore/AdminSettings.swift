import Foundation

/// `admin-settings.json`: the Server configuration in force, with Microsoft Graph's
/// field names (`microsoftTunnelConfiguration`). This is the file format; `GatewaySettings`
/// is the validated, typed form the gateway runs on.
public struct AdminSettings: Codable, Sendable, Equatable {
    public var id: String?
    public var displayName: String?
    public var description: String?
    public var network: String?
    public var ipv6Network: String?
    public var dnsServers: [String]?
    public var defaultDomainSuffix: String?
    public var routeIncludes: [String]?
    public var routeExcludes: [String]?
    /// Graph's older spelling of `routeIncludes`; read, merged, never written.
    public var routesInclude: [String]?
    /// Graph's older spelling of `routeExcludes`.
    public var routesExclude: [String]?
    public var splitDNS: [String]?
    public var listenPort: Int?
    public var advancedSettings: [KeyValuePair]?
    public var disableUdpConnections: Bool?
    public var roleScopeTagIds: [String]?
    public var lastUpdateDateTime: String?
    /// Extension beyond Graph: per-group routes, DNS or denial (GroupPolicy.swift).
    public var groupPolicies: [GroupPolicySettings]?

    public init() {}

    /// Graph's `keyValuePair`.
    public struct KeyValuePair: Codable, Sendable, Equatable {
        public var name: String
        public var value: String
        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    static let knownKeys: Set<String> = [
        "id", "displayName", "description", "network", "ipv6Network", "dnsServers", "defaultDomainSuffix",
        "routeIncludes", "routeExcludes", "routesInclude", "routesExclude", "splitDNS", "listenPort",
        "advancedSettings", "disableUdpConnections", "roleScopeTagIds", "lastUpdateDateTime", "@odata.type",
        "groupPolicies",
    ]

    /// Decodes the file, refusing unknown top-level keys (a typo such as `dnsServer`
    /// would otherwise be silently ignored).
    public static func decode(_ data: Data) throws(ConfigurationError) -> AdminSettings {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw ConfigurationError("admin-settings.json is not valid JSON: \(error.localizedDescription)")
        }
        guard let dict = object as? [String: Any] else {
            throw ConfigurationError("admin-settings.json must be a JSON object")
        }
        let unknown = Set(dict.keys).subtracting(knownKeys).sorted()
        if !unknown.isEmpty {
            throw ConfigurationError("admin-settings.json: unknown key(s) \(unknown.joined(separator: ", "))")
        }
        if let policies = dict["groupPolicies"] as? [Any] {
            for (i, item) in policies.enumerated() {
                guard let policy = item as? [String: Any] else { continue }
                let unknown = Set(policy.keys).subtracting(GroupPolicySettings.knownKeys).sorted()
                if !unknown.isEmpty {
                    throw ConfigurationError("admin-settings.json: groupPolicies[\(i)]: unknown key(s) \(unknown.joined(separator: ", "))")
                }
            }
        }
        do {
            return try JSONDecoder().decode(AdminSettings.self, from: data)
        } catch let DecodingError.typeMismatch(_, ctx), let DecodingError.valueNotFound(_, ctx) {
            let path = ctx.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
            throw ConfigurationError("admin-settings.json: wrong type for '\(path)'")
        } catch let DecodingError.keyNotFound(key, ctx) {
            let path = (ctx.codingPath + [key]).map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
            throw ConfigurationError("admin-settings.json: missing '\(path)'")
        } catch {
            throw ConfigurationError("admin-settings.json: \(error)")
        }
    }
}

public struct ConfigurationError: Error, Equatable, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
