import Crypto
import Foundation
import GatewayAgentAPI
import GatewayAuth
@testable import GatewayControlPlane
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import SwiftASN1
import X509

/// A clock tests move by hand, so nothing waits for real time.
final class TestClock: @unchecked Sendable {
    private let lock = NSLock()
    private var current: Date
    init(_ start: Date = Date(timeIntervalSince1970: 1_800_000_000)) { current = start }
    func now() -> Date { lock.withLock { current } }
    func advance(_ seconds: TimeInterval) { lock.withLock { current = current.addingTimeInterval(seconds) } }
}

/// The store a test's control plane gets: SQLite in memory, or, when `MST_TEST_POSTGRES`
/// holds a postgres:// address (scripts/test.sh sets one up), a fresh schema of its own in
/// that PostgreSQL database, so the whole suite runs against both stores.
enum TestStore {
    static let postgresURL = ProcessInfo.processInfo.environment["MST_TEST_POSTGRES"].flatMap { $0.isEmpty ? nil : $0 }

    static func make() throws -> SQLControlStore {
        guard let url = postgresURL else { return try SQLControlStore.sqliteInMemory() }
        return try postgres(url: url, schema: newSchema())
    }

    /// Two stores on one database, as two control-plane instances see it: one SQLite file
    /// opened twice (in `directory`), or one PostgreSQL schema through two pools.
    static func pair(directory: String) throws -> (SQLControlStore, SQLControlStore) {
        guard let url = postgresURL else {
            let path = directory + "/shared.sqlite"
            return (try SQLControlStore.sqlite(path: path), try SQLControlStore.sqlite(path: path))
        }
        let schema = newSchema()
        return (try postgres(url: url, schema: schema), try postgres(url: url, schema: schema))
    }

    static func newSchema() -> String { "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased() }

    static func postgres(url: String, schema: String) throws -> SQLControlStore {
        var settings = try PostgresSettings(url: url)
        settings.schema = schema
        settings.maximumConnections = 4
        return SQLControlStore(database: try PostgresDatabase(settings, logger: quietLogger))
    }
}

/// A control plane in memory: SQLite in memory (or PostgreSQL, see `TestStore`), a CA made in memory, a temp state dir for
/// uploaded logs (removed with the environment), a known admin token and a test clock.
final class TestEnv: Sendable {
    static let adminToken = "mstadm_test-token-0123456789abcdefghijklmnopqrstuvwxyz"
    let controlPlane: ControlPlane
    let clock: TestClock
    let stateDirectory: String

    init(validator: TokenValidator? = nil, certLifetime: TimeInterval = 3600, sharedCA: CertificateAuthority? = nil,
         devIssuer: DevIssuer? = nil, configure: (inout ControlPlaneOptions) -> Void = { _ in }) throws {
        clock = TestClock()
        stateDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("mstc-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
        var options = ControlPlaneOptions(stateDirectory: stateDirectory, publicBaseURL: "https://localhost:8443")
        options.agentCertificateLifetime = certLifetime
        configure(&options)
        let clock = self.clock
        controlPlane = ControlPlane(
            store: try TestStore.make(), ca: try sharedCA ?? CertificateAuthority.create(now: clock.now()),
            authenticator: AdminAuthenticator(localToken: Self.adminToken, validator: validator),
            options: options, logger: quietLogger, devIssuer: devIssuer, now: { clock.now() })
    }

    deinit { try? FileManager.default.removeItem(atPath: stateDirectory) }

    func app() -> some ApplicationProtocol {
        Application(router: controlPlane.router())
    }

    var store: any ControlStore { controlPlane.store }
}

extension HTTPFields {
    static var admin: HTTPFields {
        [.authorization: "Bearer \(TestEnv.adminToken)", .contentType: "application/json"]
    }
}

extension TestClientProtocol {
    /// An admin request with a JSON body; returns status and parsed JSON (nil if none).
    @discardableResult
    func admin(_ method: HTTPRequest.Method, _ uri: String, _ body: String? = nil, headers: HTTPFields = .admin) async throws -> (HTTPResponse.Status, JSONValue?) {
        try await execute(uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) }) { response in
            let data = Data(buffer: response.body)
            return (response.status, data.isEmpty ? nil : try? JSONDecoder().decode(JSONValue.self, from: data))
        }
    }
}

extension JSONValue {
    subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }
    var array: [JSONValue] {
        if case .array(let a) = self { return a }
        return []
    }
    var string: String? { stringValue }
    var errorMessage: String { self["error"]?["message"]?.stringValue ?? "" }
    var errorCode: String { self["error"]?["code"]?.stringValue ?? "" }
}

/// An agent key and CSR, as the agent makes them.
struct AgentKey {
    let key = P256.Signing.PrivateKey()

    func csrPEM(commonName: String = "gw1.example.test") throws -> String {
        let csr = try CertificateSigningRequest(
            version: .v1, subject: try DistinguishedName { CommonName(commonName) },
            privateKey: Certificate.PrivateKey(key), attributes: CertificateSigningRequest.Attributes(),
            signatureAlgorithm: .ecdsaWithSHA256)
        return try csr.serializeAsPEM().pemString
    }
}

/// The leaf of a PEM chain (leaf first).
func firstCertificate(_ pem: String) throws -> Certificate {
    guard let first = try PEMDocument.parseMultiple(pemString: pem).first else { throw PKIError("no certificate in the chain") }
    return try Certificate(pemDocument: first)
}

/// Quiet logs in tests: failures show in the test output, not between the lines of log.
var quietLogger: Logger {
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    return logger
}

enum Fixtures {
    static let configuration = """
        {"displayName":"Main","network":"100.64.0.0/16","dnsServers":["198.18.0.53"],"routeIncludes":["198.18.0.0/16"],
         "splitDNS":["corp.example.test"],"listenPort":443,"advancedSettings":[{"name":"session-timeout","value":"3600"}]}
        """

    /// Creates a configuration and a site using it through the API; returns their ids.
    static func siteWithConfiguration(_ client: some TestClientProtocol, probeURL: String? = nil) async throws -> (configurationId: String, siteId: String) {
        let (_, config) = try await client.admin(.post, ControlPlane.configurationsPath, configuration)
        let cid = config?["id"]?.string ?? ""
        let probe = probeURL.map { ",\"internalNetworkProbeUrl\":\"\($0)\"" } ?? ""
        let (_, site) = try await client.admin(.post, ControlPlane.sitesPath,
                                               "{\"displayName\":\"Site A\",\"publicAddress\":\"vpn.example.test\",\"microsoftTunnelConfiguration\":{\"id\":\"\(cid)\"}\(probe)}")
        return (cid, site?["id"]?.string ?? "")
    }

    /// A join token for `siteId`, through the API.
    static func joinToken(_ client: some TestClientProtocol, siteId: String, minutes: Int = 60) async throws -> String {
        let (_, body) = try await client.admin(.post, ControlPlane.sitesPath + "/\(siteId)/createJoinToken", "{\"expirationMinutes\":\(minutes)}")
        return body?["joinToken"]?.string ?? ""
    }

    static func healthReport(cpu: Double = 10, memory: Double = 20, diskFree: Int64 = 50_000_000_000, latency: Double = 5,
                             applied: Int64 = 1, probe: ProbeReport? = nil, gatewayReachable: Bool = true,
                             tlsNotAfter: String = "2099-01-01T00:00:00Z") -> HealthReport {
        HealthReport(cpuUsagePercent: cpu, memoryUsagePercent: memory, diskFreeBytes: diskFree, currentConnections: 3,
                     throughputBytesPerSecond: 1000, latencyMilliseconds: latency,
                     tlsCertificate: CertificateReport(subject: "CN=vpn", notBefore: "2026-01-01T00:00:00Z", notAfter: tlsNotAfter,
                                                       dnsNames: ["vpn.example.test"], problems: []),
                     agentCertificateNotAfter: nil, internalNetworkProbe: probe,
                     gateway: GatewayReport(reachable: gatewayReachable, version: ControlPlaneVersion.string, poolSize: 100, poolInUse: 10, authReachable: true),
                     appliedConfigurationVersion: applied)
    }
}
