import Crypto
import Foundation
import SwiftASN1
import X509

public struct PKIError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The control plane's own CA: signs the agents' client certificates and, unless the
/// operator brings one, the control plane's TLS certificate. P-256 ECDSA, self-signed,
/// ten years, kept as `ca.key` (0600) and `ca.crt` in the state directory.
public struct CertificateAuthority: Sendable {
    public let certificate: Certificate
    let privateKey: Certificate.PrivateKey

    public static let lifetime: TimeInterval = 10 * 365 * 24 * 3600
    /// Certificates are back-dated this much so a gateway whose clock is a little behind
    /// accepts them at once.
    static let backdate: TimeInterval = 300

    public init(certificate: Certificate, privateKey: Certificate.PrivateKey) {
        self.certificate = certificate
        self.privateKey = privateKey
    }

    /// Loads `ca.key`/`ca.crt` from `directory`, creating them on first start.
    public static func loadOrCreate(directory: String, now: Date = Date()) throws -> CertificateAuthority {
        if let existing = try loadIfPresent(directory: directory) { return existing }
        let ca = try create(now: now)
        try StateFiles.write(Data(ca.privateKey.serializeAsPEM().pemString.utf8), to: directory + "/ca.key", mode: 0o600)
        try StateFiles.write(Data(ca.certificatePEM.utf8), to: directory + "/ca.crt", mode: 0o644)
        return ca
    }

    /// The CA in `directory` (`ca.key` and `ca.crt`), nil when neither file is there.
    public static func loadIfPresent(directory: String) throws -> CertificateAuthority? {
        let keyPath = directory + "/ca.key"
        let certPath = directory + "/ca.crt"
        let fm = FileManager.default
        guard fm.fileExists(atPath: keyPath) || fm.fileExists(atPath: certPath) else { return nil }
        guard let keyPEM = try? String(contentsOfFile: keyPath, encoding: .utf8),
              let certPEM = try? String(contentsOfFile: certPath, encoding: .utf8) else {
            throw PKIError("\(directory): ca.key and ca.crt must both exist and be readable (remove both to create a new CA)")
        }
        return try parse(keyPEM: keyPEM, certificatePEM: certPEM, source: directory)
    }

    static func parse(keyPEM: String, certificatePEM: String, source: String) throws -> CertificateAuthority {
        do {
            let key = try Certificate.PrivateKey(pemEncoded: keyPEM)
            let cert = try Certificate(pemEncoded: certificatePEM)
            guard key.publicKey == cert.publicKey else { throw PKIError("\(source): the CA key does not match the CA certificate") }
            return CertificateAuthority(certificate: cert, privateKey: key)
        } catch let e as PKIError {
            throw e
        } catch {
            throw PKIError("cannot read the CA in \(source): \(error)")
        }
    }

    /// Key and certificate as one PEM text (key first): how the CA is kept in a shared
    /// store (`ControlStore.sharedSecret`, several instances).
    public var pemBundle: String {
        get throws { try privateKey.serializeAsPEM().pemString + "\n" + certificatePEM + "\n" }
    }

    public init(pemBundle: String, source: String) throws {
        let documents = try PEMDocument.parseMultiple(pemString: pemBundle)
        guard documents.count == 2, let key = documents.first(where: { $0.discriminator.hasSuffix("PRIVATE KEY") }),
              let cert = documents.first(where: { $0.discriminator == "CERTIFICATE" }) else {
            throw PKIError("\(source): expected the CA's private key and certificate")
        }
        self = try Self.parse(keyPEM: key.pemString, certificatePEM: cert.pemString, source: source)
    }

    /// A new CA in memory.
    public static func create(now: Date = Date(), commonName: String = "mstunnel control plane CA") throws -> CertificateAuthority {
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let name = try DistinguishedName {
            OrganizationName("mstunnel")
            CommonName(commonName)
        }
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
            Critical(KeyUsage(digitalSignature: true, keyCertSign: true, cRLSign: true))
            SubjectKeyIdentifier(hash: key.publicKey)
        }
        let cert = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: key.publicKey,
            notValidBefore: now.addingTimeInterval(-backdate), notValidAfter: now.addingTimeInterval(lifetime),
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256, extensions: extensions, issuerPrivateKey: key)
        return CertificateAuthority(certificate: cert, privateKey: key)
    }

    public var certificatePEM: String {
        (try? certificate.serializeAsPEM().pemString) ?? ""
    }

    public var certificateDER: [UInt8] {
        var serializer = DER.Serializer()
        return (try? serializer.serialize(certificate)).map { serializer.serializedBytes } ?? []
    }

    /// Hex SHA-256 of the CA certificate's DER: what a join token carries for pinning.
    public var sha256Hex: String { Secrets.sha256Hex(certificateDER) }

    var subjectKeyIdentifier: ArraySlice<UInt8>? {
        (try? certificate.extensions.subjectKeyIdentifier)??.keyIdentifier
    }

    // MARK: - Issuing

    /// An agent's client certificate for the key in `csrPEM`: subject CN = server id, a URI
    /// SAN `urn:mstunnel:server:<id>`, clientAuth only. The CSR's own subject and requested
    /// extensions are ignored: the control plane decides who the agent is.
    public func issueAgentCertificate(csrPEM: String, serverId: String, lifetime: TimeInterval, now: Date = Date()) throws(PKIError) -> Certificate {
        let csr: CertificateSigningRequest
        do {
            csr = try CertificateSigningRequest(pemEncoded: csrPEM)
        } catch {
            throw PKIError("csrPEM is not a PEM-encoded PKCS#10 certificate request")
        }
        guard csr.publicKey.isValidSignature(csr.signature, for: csr) else {
            throw PKIError("the CSR's signature does not verify with its own public key (proof of possession failed)")
        }
        do {
            let extensions = try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.clientAuth])
                SubjectAlternativeNames([.uniformResourceIdentifier("urn:mstunnel:server:\(serverId)")])
                SubjectKeyIdentifier(hash: csr.publicKey)
                if let ski = subjectKeyIdentifier {
                    AuthorityKeyIdentifier(keyIdentifier: ski)
                }
            }
            return try Certificate(
                version: .v3, serialNumber: .init(), publicKey: csr.publicKey,
                notValidBefore: now.addingTimeInterval(-min(Self.backdate, lifetime)), notValidAfter: now.addingTimeInterval(lifetime),
                issuer: certificate.subject, subject: try DistinguishedName { CommonName(serverId) },
                signatureAlgorithm: .ecdsaWithSHA256, extensions: extensions, issuerPrivateKey: privateKey)
        } catch {
            throw PKIError("cannot issue the agent certificate: \(error)")
        }
    }

    /// The control plane's TLS server certificate for `hostnames` (DNS names and IP
    /// addresses), one year.
    public func issueServerCertificate(hostnames: [String], key: Certificate.PrivateKey, now: Date = Date(),
                                       lifetime: TimeInterval = 365 * 24 * 3600) throws -> Certificate {
        var names: [GeneralName] = []
        for h in hostnames {
            if let ip = IPBytes.parse(h) {
                names.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(ip))))
            } else {
                names.append(.dnsName(h))
            }
        }
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(KeyUsage(digitalSignature: true))
            try ExtendedKeyUsage([.serverAuth])
            SubjectAlternativeNames(names)
            SubjectKeyIdentifier(hash: key.publicKey)
            if let ski = subjectKeyIdentifier {
                AuthorityKeyIdentifier(keyIdentifier: ski)
            }
        }
        return try Certificate(
            version: .v3, serialNumber: .init(), publicKey: key.publicKey,
            notValidBefore: now.addingTimeInterval(-Self.backdate), notValidAfter: now.addingTimeInterval(lifetime),
            issuer: certificate.subject, subject: try DistinguishedName { CommonName(hostnames.first ?? "localhost") },
            signatureAlgorithm: .ecdsaWithSHA256, extensions: extensions, issuerPrivateKey: privateKey)
    }

    /// Whether `cert` was signed by this CA's key.
    public func signed(_ cert: Certificate) -> Bool {
        cert.issuer == certificate.subject && certificate.publicKey.isValidSignature(cert.signature, for: cert)
    }
}

extension Certificate {
    /// Lowercase hex of the serial number (the key of `issued_certificates`).
    var serialHex: String {
        // Leading zero bytes are dropped so the text is the same whoever parsed the DER.
        Secrets.hex(serialNumber.bytes.drop(while: { $0 == 0 }))
    }

    var pemString: String { (try? serializeAsPEM().pemString) ?? "" }
}

/// IPv4/IPv6 text → network-order bytes, for IP SANs.
enum IPBytes {
    static func parse(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        return nil
    }
}
