import Foundation
import Logging

/// Where the issuer's signing keys come from. The validator asks for the whole JWKS
/// document each time it (re)loads keys; caching and rate limiting are the validator's.
public protocol JWKSSource: Sendable {
    /// For logs: where the keys come from.
    var description: String { get }
    /// The JWKS document (`{"keys":[…]}`) as bytes.
    func fetchJWKS() async throws(KeySourceError) -> Data
}

/// A JWKS on disk (air-gapped issuers, tests). Re-read on every load so an operator can
/// rotate keys by replacing the file.
public struct FileJWKSSource: JWKSSource {
    public let path: String
    public init(path: String) { self.path = path }
    public var description: String { "file \(path)" }

    public func fetchJWKS() async throws(KeySourceError) -> Data {
        do {
            return try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw KeySourceError("cannot read JWKS file \(path): \(AuthConfiguration.describe(error))")
        }
    }
}

/// A JWKS at a fixed URL.
public struct URLJWKSSource: JWKSSource {
    public let url: String
    public let fetcher: HTTPFetcher
    public init(url: String, fetcher: HTTPFetcher = HTTPFetcher()) {
        self.url = url
        self.fetcher = fetcher
    }
    public var description: String { "JWKS \(url)" }

    public func fetchJWKS() async throws(KeySourceError) -> Data {
        try await fetcher.get(url)
    }
}

/// OpenID Connect discovery: the discovery document names `jwks_uri`. The document is
/// read on every key load (at most once per `jwksMinRefreshSeconds`), so an issuer that
/// moves its JWKS is followed without a restart.
public struct DiscoveryJWKSSource: JWKSSource {
    public let discoveryURL: String
    public let expectedIssuer: String
    public let fetcher: HTTPFetcher
    let logger: Logger

    public init(discoveryURL: String, expectedIssuer: String, fetcher: HTTPFetcher = HTTPFetcher(), logger: Logger) {
        self.discoveryURL = discoveryURL
        self.expectedIssuer = expectedIssuer
        self.fetcher = fetcher
        self.logger = logger
    }
    public var description: String { "discovery \(discoveryURL)" }

    public func fetchJWKS() async throws(KeySourceError) -> Data {
        let document = try await fetcher.get(discoveryURL)
        guard let object = JSONValue.parseObject(document) else {
            throw KeySourceError("discovery document \(discoveryURL) is not a JSON object")
        }
        guard let jwksURI = object["jwks_uri"]?.stringValue, AuthConfiguration.isHTTPURL(jwksURI) else {
            throw KeySourceError("discovery document \(discoveryURL) has no usable 'jwks_uri'")
        }
        // A discovery document served over https must not send us to plain http for the keys.
        if discoveryURL.lowercased().hasPrefix("https://"), !jwksURI.lowercased().hasPrefix("https://") {
            throw KeySourceError("discovery document \(discoveryURL) points 'jwks_uri' at non-https \(jwksURI)")
        }
        // Entra's multi-tenant documents carry a templated issuer ("{tenantid}"), so a
        // mismatch is worth a warning, not a failure: `iss` is still checked exactly per token.
        if let advertised = object["issuer"]?.stringValue, advertised != expectedIssuer {
            logger.warning("auth.discovery.issuer_mismatch", metadata: [
                "discovery": "\(discoveryURL)", "advertised": "\(advertised)", "configured": "\(expectedIssuer)",
            ])
        }
        return try await fetcher.get(jwksURI)
    }
}

extension IssuerConfiguration {
    /// The key source this issuer describes.
    public func makeJWKSSource(logger: Logger) -> any JWKSSource {
        let fetcher = HTTPFetcher(caBundle: caBundle)
        switch keyLocation {
        case .file(let path): return FileJWKSSource(path: path)
        case .jwksURL(let url): return URLJWKSSource(url: url, fetcher: fetcher)
        case .discovery(let url): return DiscoveryJWKSSource(discoveryURL: url, expectedIssuer: issuer, fetcher: fetcher, logger: logger)
        }
    }
}

extension AuthConfiguration {
    /// The first issuer's key source (see `issuers`; `TokenValidator` makes one per issuer).
    public func makeJWKSSource(logger: Logger) -> any JWKSSource {
        (issuers.first ?? IssuerConfiguration(issuer: issuer)).makeJWKSSource(logger: logger)
    }
}
