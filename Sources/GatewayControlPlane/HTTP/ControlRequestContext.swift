import Hummingbird
import NIOCore
import NIOSSL
import X509

/// The request context of both APIs: the channel (to read the TLS peer certificate) and
/// the admin principal once the auth middleware accepted the request.
public struct ControlRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let channel: any Channel
    public var admin: AdminPrincipal?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
    }

    /// JSON bodies are small; the one large upload (logs) streams with its own limit.
    public var maxUploadSize: Int { GraphBody.maxBytes }

    /// The client certificate the TLS handshake verified against our CA, nil when the
    /// client presented none (or the connection is not TLS).
    func verifiedPeerCertificate() async -> Certificate? {
        guard let nio = try? await channel.nioSSL_peerCertificate().get(),
              let der = try? nio.toDERBytes() else { return nil }
        return try? Certificate(derEncoded: der)
    }
}
