import Crypto
import Foundation
import X509
@testable import GatewayAgent

/// Certificates made on the spot, so every TLS test states exactly what it checks.
enum TestCerts {
    static func make(subject: String, sans: [String]? = ["gw.example.test"], notBefore: Date, notAfter: Date,
                     key: P256.Signing.PrivateKey = P256.Signing.PrivateKey(),
                     issuer: (name: String, key: P256.Signing.PrivateKey)? = nil, isCA: Bool = false) throws -> Certificate {
        let subjectName = try DistinguishedName { CommonName(subject) }
        let issuerName = try issuer.map { i in try DistinguishedName { CommonName(i.name) } } ?? subjectName
        let signer = issuer?.key ?? key
        let extensions = try Certificate.Extensions {
            if isCA {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
            }
            if let sans {
                SubjectAlternativeNames(sans.map { GeneralName.dnsName($0) })
            }
        }
        return try Certificate(version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(key.publicKey),
                               notValidBefore: notBefore, notValidAfter: notAfter, issuer: issuerName, subject: subjectName,
                               signatureAlgorithm: .ecdsaWithSHA256, extensions: extensions, issuerPrivateKey: .init(signer))
    }

    static func pem(_ certs: [Certificate]) throws -> String {
        try certs.map { try $0.serializeAsPEM().pemString }.joined(separator: "\n") + "\n"
    }

    static func der(_ cert: Certificate) throws -> [UInt8] {
        try cert.serializeAsPEM().derBytes
    }
}

/// A fresh directory per test, removed at the end.
final class TempDir {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "mstunnel-agent-test-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

let day: TimeInterval = 86_400
