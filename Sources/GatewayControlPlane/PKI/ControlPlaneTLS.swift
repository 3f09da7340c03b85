import Crypto
import Foundation
import NIOSSL
import SwiftASN1
import X509

/// The control plane's HTTPS identity and its TLS server configuration.
///
/// One listener serves the admin API, enrollment and the mTLS agent API: the server asks
/// every client for a certificate but does not require one (`optionalVerification`); a
/// certificate that is presented must be signed by our CA, or the handshake fails
/// (`ClientCertificateVerifier`). The agent routes then require that one was presented and
/// check its serial, server and validity.
public struct ControlPlaneTLS: Sendable {
    public var certificateChain: [Certificate]
    let keyPEM: String

    /// Re-issue our own TLS certificate when it has less than this left.
    static let renewWithin: TimeInterval = 30 * 24 * 3600

    /// `tls.crt`/`tls.key` in the state directory, issued by `ca` for `hostnames`; issued
    /// again when missing, for other names, or close to expiry.
    public static func loadOrIssue(stateDirectory: String, ca: CertificateAuthority, hostnames: [String], now: Date = Date()) throws -> ControlPlaneTLS {
        let certPath = stateDirectory + "/tls.crt"
        let keyPath = stateDirectory + "/tls.key"
        let wanted = Set(expectedNames(hostnames))
        if let chainPEM = try? String(contentsOfFile: certPath, encoding: .utf8),
           let keyPEM = try? String(contentsOfFile: keyPath, encoding: .utf8),
           let chain = try? PEMDocument.parseMultiple(pemString: chainPEM).map({ try Certificate(pemDocument: $0) }),
           let leaf = chain.first, let key = try? Certificate.PrivateKey(pemEncoded: keyPEM),
           key.publicKey == leaf.publicKey, ca.signed(leaf),
           leaf.notValidAfter.timeIntervalSince(now) > renewWithin,
           let sans = try? leaf.extensions.subjectAlternativeNames, Set(sans) == wanted {
            return ControlPlaneTLS(certificateChain: [leaf, ca.certificate], keyPEM: keyPEM)
        }
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let leaf = try ca.issueServerCertificate(hostnames: hostnames, key: key, now: now)
        let keyPEM = try key.serializeAsPEM().pemString
        try StateFiles.write(Data(keyPEM.utf8), to: keyPath, mode: 0o600)
        try StateFiles.write(Data((leaf.pemString + "\n" + ca.certificatePEM + "\n").utf8), to: certPath, mode: 0o644)
        return ControlPlaneTLS(certificateChain: [leaf, ca.certificate], keyPEM: keyPEM)
    }

    /// An operator's certificate chain (leaf first) and key, PEM files.
    public static func load(certificatePath: String, keyPath: String) throws -> ControlPlaneTLS {
        guard let chainPEM = try? String(contentsOfFile: certificatePath, encoding: .utf8) else {
            throw PKIError("cannot read --tls-cert \(certificatePath)")
        }
        guard let keyPEM = try? String(contentsOfFile: keyPath, encoding: .utf8) else {
            throw PKIError("cannot read --tls-key \(keyPath)")
        }
        let chain: [Certificate]
        do {
            chain = try PEMDocument.parseMultiple(pemString: chainPEM).map { try Certificate(pemDocument: $0) }
        } catch {
            throw PKIError("--tls-cert \(certificatePath): not a PEM certificate chain (\(error))")
        }
        guard let leaf = chain.first else { throw PKIError("--tls-cert \(certificatePath) holds no certificate") }
        guard let key = try? Certificate.PrivateKey(pemEncoded: keyPEM) else {
            throw PKIError("--tls-key \(keyPath): not a PEM private key (PKCS#8, SEC1 or PKCS#1)")
        }
        guard key.publicKey == leaf.publicKey else { throw PKIError("--tls-key does not match the first certificate of --tls-cert") }
        return ControlPlaneTLS(certificateChain: chain, keyPEM: keyPEM)
    }

    static func expectedNames(_ hostnames: [String]) -> [GeneralName] {
        hostnames.map { h in
            if let ip = IPBytes.parse(h) { return .ipAddress(ASN1OctetString(contentBytes: ArraySlice(ip))) }
            return .dnsName(h)
        }
    }

    /// The NIOSSL server configuration: TLS 1.2+, our chain, client certificates optional
    /// but verified against `clientCA` when presented.
    public func serverConfiguration(clientCA: CertificateAuthority) throws -> TLSConfiguration {
        let chain = try certificateChain.map { cert -> NIOSSLCertificateSource in
            var serializer = DER.Serializer()
            try serializer.serialize(cert)
            return .certificate(try NIOSSLCertificate(bytes: serializer.serializedBytes, format: .der))
        }
        let key = try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem)
        var config = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
        config.minimumTLSVersion = .tlsv12
        config.certificateVerification = .optionalVerification
        config.trustRoots = .certificates([try NIOSSLCertificate(bytes: clientCA.certificateDER, format: .der)])
        config.applicationProtocols = ["http/1.1"]
        return config
    }
}
