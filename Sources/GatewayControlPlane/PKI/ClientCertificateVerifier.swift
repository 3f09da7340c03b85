import NIOCore
import NIOSSL
import X509

/// The TLS handshake's check of a client certificate: it must be signed by our CA. Its
/// validity period, revocation and server are checked per request by the agent routes,
/// so an expired or revoked agent certificate gets a 401 saying so (and what to do)
/// instead of a bare TLS alert. Clients without a certificate (admins, enrollment) never
/// reach this: the listener asks for one but does not require it.
enum ClientCertificateVerifier {
    static func verify(_ chain: [NIOSSLCertificate], ca: CertificateAuthority) -> NIOSSLVerificationResult {
        guard let leaf = chain.first, let der = try? leaf.toDERBytes(), let cert = try? Certificate(derEncoded: der),
              ca.signed(cert) else {
            return .failed
        }
        return .certificateVerified
    }

    static func callback(ca: CertificateAuthority) -> @Sendable ([NIOSSLCertificate], EventLoopPromise<NIOSSLVerificationResult>) -> Void {
        { chain, promise in promise.succeed(verify(chain, ca: ca)) }
    }
}
