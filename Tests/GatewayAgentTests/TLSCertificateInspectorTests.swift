import Crypto
import Foundation
import Testing
import X509
@testable import GatewayAgent

@Suite struct TLSCertificateInspectorTests {
    let now = Date()

    func chain(leafSANs: [String]? = ["vpn.example.test"], notBefore: Date? = nil, notAfter: Date? = nil) throws -> (leaf: Certificate, intermediate: Certificate, rootKey: P256.Signing.PrivateKey) {
        let rootKey = P256.Signing.PrivateKey(), intKey = P256.Signing.PrivateKey()
        let intermediate = try TestCerts.make(subject: "Intermediate", sans: nil, notBefore: now - 10 * day, notAfter: now + 1000 * day,
                                              key: intKey, issuer: ("Root", rootKey), isCA: true)
        let leaf = try TestCerts.make(subject: "vpn.example.test", sans: leafSANs, notBefore: notBefore ?? now - day,
                                      notAfter: notAfter ?? now + 300 * day, issuer: ("Intermediate", intKey))
        return (leaf, intermediate, rootKey)
    }

    @Test func goodChainHasNoProblems() throws {
        let c = try chain()
        let report = TLSCertificateInspector.report(chainPEM: try TestCerts.pem([c.leaf, c.intermediate]), now: now)
        #expect(report.problems == [])
        #expect(report.dnsNames == ["vpn.example.test"])
        #expect(report.subject?.contains("vpn.example.test") == true)
        #expect(report.notAfter != nil)
    }

    @Test func expired() throws {
        let c = try chain(notBefore: now - 400 * day, notAfter: now - day)
        let report = TLSCertificateInspector.report(chainPEM: try TestCerts.pem([c.leaf, c.intermediate]), now: now)
        #expect(report.problems.count == 1)
        #expect(report.problems.first?.hasPrefix("expired at") == true)
    }

    @Test func notYetValid() throws {
        let c = try chain(notBefore: now + day, notAfter: now + 30 * day)
        let report = TLSCertificateInspector.report(chainPEM: try TestCerts.pem([c.leaf, c.intermediate]), now: now)
        #expect(report.problems.contains { $0.hasPrefix("not yet valid") })
    }

    @Test func noSAN() throws {
        let c = try chain(leafSANs: nil)
        let report = TLSCertificateInspector.report(chainPEM: try TestCerts.pem([c.leaf, c.intermediate]), now: now)
        #expect(report.problems.count == 1)
        #expect(report.problems.first?.hasPrefix("no subjectAltName") == true)
    }

    @Test func validityOverTwoYears() throws {
        let c = try chain(notBefore: now - day, notAfter: now + 900 * day)
        let report = TLSCertificateInspector.report(chainPEM: try TestCerts.pem([c.leaf, c.intermediate]), now: now)
        #expect(report.problems.count == 1)
        #expect(report.problems.first?.contains("exceeds 2 years") == true)
        // 825 days exactly is still fine.
        let ok = try chain(notBefore: now - day, notAfter: now - day + 825 * day)
        #expect(TLSCertificateInspector.report(chainPEM: try TestCerts.pem([ok.leaf, ok.intermediate]), now: now).problems == [])
    }

    @Test func chainOutOfOrderOrWrongSignerIsReported() throws {
        let c = try chain()
        let reversed = TLSCertificateInspector.report(chainPEM: try TestCerts.pem([c.intermediate, c.leaf]), now: now)
        #expect(reversed.problems.contains { $0.hasPrefix("chain does not verify") })
        // Same issuer name, different key: the signature check catches it.
        let impostor = try TestCerts.make(subject: "Intermediate", sans: nil, notBefore: now - day, notAfter: now + 100 * day,
                                          issuer: ("Root", c.rootKey), isCA: true)
        let forged = TLSCertificateInspector.report(chainPEM: try TestCerts.pem([c.leaf, impostor]), now: now)
        #expect(forged.problems.contains { $0.contains("signature") })
    }

    @Test func garbageIsAProblemNotACrash() {
        let report = TLSCertificateInspector.report(chainPEM: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", now: now)
        #expect(report.problems.count == 1)
        #expect(TLSCertificateInspector.report(chainPEM: "", now: now).problems.count == 1)
    }

    @Test func pfxIsNotInspected() throws {
        let dir = TempDir()
        let paths = AgentPaths(stateDirectory: dir.path)
        try FileManager.default.createDirectory(atPath: paths.privateDirectory, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: paths.sitePFX, contents: Data([0x30]))
        let (report, note) = TLSCertificateInspector.report(paths: paths, now: now)
        #expect(report == nil)
        #expect(note?.contains("PKCS#12") == true)
    }
}
