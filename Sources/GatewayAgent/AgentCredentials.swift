import Crypto
import Foundation
import SwiftASN1
import X509

/// A fresh agent key and the CSR the control plane signs. The key never leaves the host.
public struct AgentKeyAndCSR: Sendable {
    /// PKCS#8 PEM ("PRIVATE KEY"), which both libcurl/OpenSSL and swift-crypto read.
    public let privateKeyPEM: String
    public let csrPEM: String
    public let publicKeyDER: [UInt8]

    /// P-256 key, CSR signed with ECDSA-SHA256, subject CN = `commonName` (the hostname;
    /// the control plane puts the server id in the certificate it issues).
    public static func generate(commonName: String) throws(AgentError) -> AgentKeyAndCSR {
        let key = P256.Signing.PrivateKey()
        do {
            let subject = try DistinguishedName { CommonName(commonName.isEmpty ? "mstunnel-gateway" : commonName) }
            let csr = try CertificateSigningRequest(
                version: .v1, subject: subject, privateKey: Certificate.PrivateKey(key),
                attributes: CertificateSigningRequest.Attributes(), signatureAlgorithm: .ecdsaWithSHA256)
            return AgentKeyAndCSR(privateKeyPEM: key.pemRepresentation, csrPEM: try csr.serializeAsPEM().pemString,
                                  publicKeyDER: Array(key.publicKey.derRepresentation))
        } catch {
            throw AgentError("cannot create the certificate signing request: \(error)")
        }
    }
}

/// PEM helpers for certificates.
public enum PEMCertificates {
    /// Every CERTIFICATE block of a PEM text, in order; other blocks are ignored.
    public static func parse(_ pem: String) throws(AgentError) -> [Certificate] {
        let documents: [PEMDocument]
        do {
            documents = try PEMDocument.parseMultiple(pemString: pem)
        } catch {
            throw AgentError("not a PEM certificate file: \(error)")
        }
        var out: [Certificate] = []
        for d in documents where d.discriminator == "CERTIFICATE" {
            do {
                out.append(try Certificate(derEncoded: d.derBytes))
            } catch {
                throw AgentError("certificate \(out.count + 1) does not parse: \(error)")
            }
        }
        guard !out.isEmpty else { throw AgentError("no CERTIFICATE block found") }
        return out
    }

    /// DER bytes of the first CERTIFICATE block.
    public static func firstDER(_ pem: String) throws(AgentError) -> [UInt8] {
        let documents: [PEMDocument]
        do {
            documents = try PEMDocument.parseMultiple(pemString: pem)
        } catch {
            throw AgentError("not a PEM certificate: \(error)")
        }
        guard let d = documents.first(where: { $0.discriminator == "CERTIFICATE" }) else {
            throw AgentError("no CERTIFICATE block found")
        }
        return d.derBytes
    }
}

/// Trust on first contact, made safe by the join token: the CA the control plane serves
/// must hash (SHA-256 over its DER) to the value the operator copied with the token.
public enum CAPinning {
    public static func sha256Hex(_ der: [UInt8]) -> String {
        SHA256.hash(data: der).map { String(format: "%02x", $0) }.joined()
    }

    /// Returns the CA's PEM (just that one certificate, re-encoded) when it matches.
    public static func verify(caPEM: String, expectedSHA256: String) throws(AgentError) -> String {
        let der: [UInt8]
        do {
            der = try PEMCertificates.firstDER(caPEM)
        } catch {
            throw AgentError("the control plane's CA is not a PEM certificate (\(error.message)); is --control-url right?")
        }
        do {
            _ = try Certificate(derEncoded: der)
        } catch {
            throw AgentError("the control plane's CA certificate does not parse: \(error)")
        }
        let actual = sha256Hex(der)
        guard actual == expectedSHA256.lowercased() else {
            throw AgentError("the control plane's CA certificate does not match the join token (SHA-256 \(actual), token expects \(expectedSHA256.lowercased())); refusing to trust it. Check --control-url, or someone is intercepting the connection")
        }
        return PEMDocument(type: "CERTIFICATE", derBytes: der).pemString + "\n"
    }
}

/// The enrolled agent's certificate, read for its expiry and for key/cert consistency.
public struct AgentCertificateInfo: Sendable {
    public let notBefore: Date
    public let notAfter: Date
    public let subject: String
    public let publicKeyDER: [UInt8]

    public static func load(certificatePEM: String) throws(AgentError) -> AgentCertificateInfo {
        let chain = try PEMCertificates.parse(certificatePEM)
        let leaf = chain[0]
        let spki: [UInt8]
        do {
            var serializer = DER.Serializer()
            try serializer.serialize(leaf.publicKey)
            spki = serializer.serializedBytes
        } catch {
            throw AgentError("agent certificate's public key does not encode: \(error)")
        }
        return AgentCertificateInfo(notBefore: leaf.notValidBefore, notAfter: leaf.notValidAfter,
                                    subject: leaf.subject.description, publicKeyDER: spki)
    }

    /// DER SubjectPublicKeyInfo of a PEM private key, to check it belongs with a certificate.
    public static func publicKeyDER(ofPrivateKeyPEM pem: String) -> [UInt8]? {
        guard let key = try? P256.Signing.PrivateKey(pemRepresentation: pem) else { return nil }
        return Array(key.publicKey.derRepresentation)
    }
}
