import Foundation
import GatewayCore
import GatewayTLS

/// The gateway's view of the state directory (`/etc/mstunnel` by default):
/// `admin-settings.json`, `certs/site.crt` + `private/site.key`, or `private/site.pfx`.
public struct StateDirectory: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    public var adminSettingsPath: String { path + "/admin-settings.json" }

    /// Reads and validates `admin-settings.json`.
    public func loadSettings() throws -> GatewaySettings {
        guard let data = FileManager.default.contents(atPath: adminSettingsPath) else {
            throw ConfigurationError("cannot read \(adminSettingsPath) (the Server configuration; see docs/configuration.md)")
        }
        let admin = try AdminSettings.decode(data)
        switch GatewaySettings.validate(admin) {
        case .success(let s): return s
        case .failure(let e): throw ConfigurationError("\(adminSettingsPath): \(e.message)")
        }
    }

    /// The TLS identity: PEM chain + key if present, else PKCS#12 with its password from
    /// `private/site.pfx.pass` or `MSTUNNEL_PFX_PASSWORD`.
    public func certificateSource() throws -> TLSServerContext.CertificateSource {
        let fm = FileManager.default
        let crt = path + "/certs/site.crt", key = path + "/private/site.key", pfx = path + "/private/site.pfx"
        if fm.fileExists(atPath: crt) || fm.fileExists(atPath: key) {
            guard fm.fileExists(atPath: crt) else { throw ConfigurationError("\(key) exists but \(crt) (the full chain, leaf first) is missing") }
            guard fm.fileExists(atPath: key) else { throw ConfigurationError("\(crt) exists but \(key) (unencrypted PEM) is missing") }
            return .pem(chain: crt, key: key)
        }
        if fm.fileExists(atPath: pfx) {
            var password = ProcessInfo.processInfo.environment["MSTUNNEL_PFX_PASSWORD"] ?? ""
            if let data = fm.contents(atPath: pfx + ".pass") {
                password = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)
            }
            return .pkcs12(path: pfx, password: password)
        }
        throw ConfigurationError("no TLS certificate: put the chain in \(crt) and the key in \(key), or a PKCS#12 file in \(pfx)")
    }
}
