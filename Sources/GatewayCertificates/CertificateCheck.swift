import Crypto
import Foundation
import SwiftASN1
import X509

/// Checks a gateway TLS certificate before it is put in use (the installer, `mst-cli
/// import_cert`): a chain in PEM, leaf first, and its private key. Each problem is one
/// sentence an operator can act on; the first one found is returned. No I/O: the caller
/// reads the files and the trusted roots (for a chain that ends in an intermediate).
public enum CertificateCheck {
    /// Clients refuse server certificates valid for longer (CA/Browser Forum: 398 days for
    /// public CAs; Microsoft Tunnel checks at most 2 years). A day of slack for leap years.
    public static let maximumValidity: TimeInterval = 731 * 86_400

    public struct Problem: Error, Equatable, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    public struct Summary: Equatable, Sendable {
        public var subject: String
        public var names: [String]
        public var notAfter: Date
        public var chainLength: Int
        /// `openconnect --servercert pin-sha256:…` of the leaf.
        public var pin: String
    }

    public static func check(chainPEM: String, keyPEM: String, now: Date, trustedRoots: [Certificate]) -> Result<Summary, Problem> {
        let chain: [Certificate]
        do {
            chain = try PEMDocument.parseMultiple(pemString: chainPEM).filter { $0.discriminator == "CERTIFICATE" }.map { try Certificate(pemDocument: $0) }
        } catch {
            return .failure(Problem("The certificate file cannot be read as PEM certificates (\(error))."))
        }
        guard let leaf = chain.first else { return .failure(Problem("The certificate file holds no PEM certificate.")) }
        let key: Certificate.PrivateKey
        do {
            key = try Certificate.PrivateKey(pemEncoded: keyPEM)
        } catch {
            return .failure(Problem("The key is not an unencrypted private key in PEM (decrypt it first: openssl pkey -in KEY -out KEY.plain)."))
        }
        guard key.publicKey == leaf.publicKey else {
            return .failure(Problem("The private key does not belong to the certificate (their public keys differ)."))
        }
        let names = sanNames(leaf)
        guard !names.isEmpty else {
            return .failure(Problem("The certificate has no subject alternative name (SAN): clients check the name against the SAN, so add the gateway's DNS name."))
        }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "MMM d HH:mm:ss yyyy 'GMT'"
        guard leaf.notValidAfter > now else { return .failure(Problem("The certificate expired on \(formatter.string(from: leaf.notValidAfter)).")) }
        guard leaf.notValidBefore <= now else { return .failure(Problem("The certificate is not valid yet (from \(formatter.string(from: leaf.notValidBefore))).")) }
        let validity = leaf.notValidAfter.timeIntervalSince(leaf.notValidBefore)
        guard validity <= maximumValidity else {
            return .failure(Problem("The certificate is valid for \(Int(validity / 86_400)) days; at most 2 years (731 days) is accepted, as clients refuse longer ones."))
        }
        for i in 0..<(chain.count - 1) {
            let (this, next) = (chain[i], chain[i + 1])
            guard this.issuer == next.subject, next.publicKey.isValidSignature(this.signature, for: this) else {
                return .failure(Problem("The chain is out of order: certificate \(i + 2) did not issue certificate \(i + 1). Put the leaf first, then each issuer after the certificate it signed."))
            }
        }
        for (i, cert) in chain.enumerated() where i > 0 && (cert.notValidAfter <= now || cert.notValidBefore > now) {
            return .failure(Problem("Certificate \(i + 1) of the chain (\(cert.subject)) is expired or not valid yet."))
        }
        let last = chain[chain.count - 1]
        let selfSigned = last.issuer == last.subject && last.publicKey.isValidSignature(last.signature, for: last)
        if !selfSigned {
            let issuer = trustedRoots.first { $0.subject == last.issuer && $0.publicKey.isValidSignature(last.signature, for: last) }
            guard issuer != nil else {
                return .failure(Problem("The chain is incomplete: the certificate that issued '\(last.issuer)' is missing. Append the intermediate (and root) certificates after the leaf."))
            }
        }
        return .success(Summary(subject: "\(leaf.subject)", names: names, notAfter: leaf.notValidAfter, chainLength: chain.count, pin: pin(leaf)))
    }

    static func sanNames(_ cert: Certificate) -> [String] {
        guard let san = try? cert.extensions.subjectAlternativeNames else { return [] }
        return san.compactMap { name in
            switch name {
            case .dnsName(let d): return "DNS:\(d)"
            case .ipAddress(let bytes):
                let b = Array(bytes.bytes)
                if b.count == 4 { return "IP:" + b.map(String.init).joined(separator: ".") }
                return "IP:" + stride(from: 0, to: b.count, by: 2).map { String(format: "%x", Int(b[$0]) << 8 | Int(b[$0 + 1])) }.joined(separator: ":")
            default: return nil
            }
        }
    }

    /// base64 of the SHA-256 of the leaf's SubjectPublicKeyInfo, as openconnect pins it.
    static func pin(_ cert: Certificate) -> String {
        var serializer = DER.Serializer()
        guard (try? serializer.serialize(cert.publicKey)) != nil else { return "" }
        return "pin-sha256:" + Data(SHA256.hash(data: serializer.serializedBytes)).base64EncodedString()
    }

    /// Every certificate in a PEM bundle (the system's trusted roots); unreadable ones skipped.
    public static func certificates(inBundle pem: String) -> [Certificate] {
        ((try? PEMDocument.parseMultiple(pemString: pem)) ?? []).compactMap { try? Certificate(pemDocument: $0) }
    }
}
