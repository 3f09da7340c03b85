import Crypto
import Foundation
@testable import GatewayCertificates
import SwiftASN1
import Testing
import X509

/// Certificates made here, as a CA would: a root, an intermediate, leaves good and bad.
struct TestPKI {
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    let rootKey = P256.Signing.PrivateKey(), interKey = P256.Signing.PrivateKey()
    let root: Certificate, inter: Certificate

    init() throws {
        root = try Self.make(subject: "test root", issuer: "test root", key: rootKey.publicKey, signer: rootKey, ca: true,
                             from: now.addingTimeInterval(-86_400), days: 3650)
        inter = try Self.make(subject: "test intermediate", issuer: "test root", key: interKey.publicKey, signer: rootKey, ca: true,
                              from: now.addingTimeInterval(-86_400), days: 1825)
    }

    static func make(subject: String, issuer: String, key: P256.Signing.PublicKey, signer: P256.Signing.PrivateKey, ca: Bool,
                     from: Date, days: Double, san: Bool = true) throws -> Certificate {
        try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key), notValidBefore: from,
            notValidAfter: from.addingTimeInterval(days * 86_400), issuer: try DistinguishedName { CommonName(issuer) },
            subject: try DistinguishedName { CommonName(subject) }, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                if !ca && san { SubjectAlternativeNames([.dnsName("gw.corp.test"), .ipAddress(ASN1OctetString(contentBytes: [198, 18, 0, 1]))]) }
            }.self,
            issuerPrivateKey: .init(signer))
    }

    func leaf(key: P256.Signing.PrivateKey, from: Date? = nil, days: Double = 90, san: Bool = true) throws -> Certificate {
        try Self.make(subject: "gw.corp.test", issuer: "test intermediate", key: key.publicKey, signer: interKey, ca: false,
                      from: from ?? now.addingTimeInterval(-86_400), days: days, san: san)
    }

    static func pem(_ certs: [Certificate]) throws -> String {
        try certs.map { try $0.serializeAsPEM().pemString }.joined(separator: "\n")
    }
}

@Suite struct CertificateCheckTests {
    func run(_ chain: [Certificate], key: P256.Signing.PrivateKey, pki: TestPKI, roots: [Certificate] = []) throws -> Result<CertificateCheck.Summary, CertificateCheck.Problem> {
        CertificateCheck.check(chainPEM: try TestPKI.pem(chain), keyPEM: key.pemRepresentation, now: pki.now, trustedRoots: roots)
    }

    @Test func aGoodChainPassesWithItsNamesAndPin() throws {
        let pki = try TestPKI(), key = P256.Signing.PrivateKey()
        let summary = try run([try pki.leaf(key: key), pki.inter, pki.root], key: key, pki: pki).get()
        #expect(summary.names == ["DNS:gw.corp.test", "IP:198.18.0.1"])
        #expect(summary.chainLength == 3)
        #expect(summary.pin.hasPrefix("pin-sha256:") && summary.pin.count == "pin-sha256:".count + 44)
    }

    @Test func endingInAnIntermediateNeedsItsIssuerAmongTheTrustedRoots() throws {
        let pki = try TestPKI(), key = P256.Signing.PrivateKey()
        let chain = [try pki.leaf(key: key), pki.inter]
        #expect(throws: Never.self) { try run(chain, key: key, pki: pki, roots: [pki.root]).get() }
        guard case .failure(let p) = try run(chain, key: key, pki: pki, roots: []) else { Issue.record("accepted"); return }
        #expect(p.description.hasPrefix("The chain is incomplete"))
        guard case .failure(let leafOnly) = try run([try pki.leaf(key: key)], key: key, pki: pki) else { Issue.record("accepted"); return }
        #expect(leafOnly.description.contains("test intermediate"))
    }

    @Test(arguments: ["expired", "notYet", "mismatch", "noSAN", "long", "misordered", "notPEM", "badKey"])
    func eachProblemIsOneSentence(_ kind: String) throws {
        let pki = try TestPKI(), key = P256.Signing.PrivateKey()
        let expected: String
        let result: Result<CertificateCheck.Summary, CertificateCheck.Problem>
        switch kind {
        case "expired":
            result = try run([try pki.leaf(key: key, from: pki.now.addingTimeInterval(-100 * 86_400), days: 90), pki.inter, pki.root], key: key, pki: pki)
            expected = "The certificate expired on"
        case "notYet":
            result = try run([try pki.leaf(key: key, from: pki.now.addingTimeInterval(86_400)), pki.inter, pki.root], key: key, pki: pki)
            expected = "The certificate is not valid yet"
        case "mismatch":
            result = CertificateCheck.check(chainPEM: try TestPKI.pem([try pki.leaf(key: key), pki.inter, pki.root]),
                                            keyPEM: P256.Signing.PrivateKey().pemRepresentation, now: pki.now, trustedRoots: [])
            expected = "The private key does not belong to the certificate"
        case "noSAN":
            result = try run([try pki.leaf(key: key, san: false), pki.inter, pki.root], key: key, pki: pki)
            expected = "The certificate has no subject alternative name"
        case "long":
            result = try run([try pki.leaf(key: key, days: 3 * 365), pki.inter, pki.root], key: key, pki: pki)
            expected = "at most 2 years"
        case "misordered":
            result = try run([try pki.leaf(key: key), pki.root, pki.inter], key: key, pki: pki)
            expected = "The chain is out of order: certificate 2 did not issue certificate 1"
        case "notPEM":
            result = CertificateCheck.check(chainPEM: "hello", keyPEM: key.pemRepresentation, now: pki.now, trustedRoots: [])
            expected = "holds no PEM certificate"
        default:
            result = CertificateCheck.check(chainPEM: try TestPKI.pem([try pki.leaf(key: key)]), keyPEM: "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
                                            now: pki.now, trustedRoots: [])
            expected = "not an unencrypted private key"
        }
        guard case .failure(let problem) = result else { Issue.record("\(kind) was accepted"); return }
        #expect(problem.description.contains(expected), "\(problem)")
        #expect(problem.description.hasSuffix(".") || problem.description.hasSuffix(")."))
    }

    @Test func theLimitIsTwoYearsToTheDay() throws {
        let pki = try TestPKI(), key = P256.Signing.PrivateKey()
        #expect(throws: Never.self) { try run([try pki.leaf(key: key, days: 731), pki.inter, pki.root], key: key, pki: pki).get() }
        guard case .failure = try run([try pki.leaf(key: key, days: 732), pki.inter, pki.root], key: key, pki: pki) else { Issue.record("732 days accepted"); return }
    }
}
