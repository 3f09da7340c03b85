import Crypto
import Foundation
import GatewayAgentAPI
import Testing
import X509
@testable import GatewayAgent

@Suite struct EnrollmentTests {
    @Test func pinnedCAMatchingTheTokenIsAccepted() throws {
        let now = Date()
        let ca = try TestCerts.make(subject: "Control CA", sans: nil, notBefore: now - day, notAfter: now + 365 * day, isCA: true)
        let pem = try TestCerts.pem([ca])
        let hash = CAPinning.sha256Hex(try TestCerts.der(ca))
        let token = try JoinToken(parsing: "mstj1.tok.secret.\(hash.uppercased())")
        let accepted = try CAPinning.verify(caPEM: pem, expectedSHA256: token.caSHA256)
        #expect(try PEMCertificates.firstDER(accepted) == TestCerts.der(ca))
    }

    @Test func pinnedCAMismatchIsRefused() throws {
        let now = Date()
        let ca = try TestCerts.make(subject: "Control CA", sans: nil, notBefore: now - day, notAfter: now + 365 * day, isCA: true)
        let other = try TestCerts.make(subject: "Attacker CA", sans: nil, notBefore: now - day, notAfter: now + 365 * day, isCA: true)
        let token = try JoinToken(parsing: "mstj1.tok.secret.\(CAPinning.sha256Hex(try TestCerts.der(ca)))")
        let error = #expect(throws: AgentError.self) {
            try CAPinning.verify(caPEM: try TestCerts.pem([other]), expectedSHA256: token.caSHA256)
        }
        #expect(error?.message.contains("does not match the join token") == true)
        #expect(throws: AgentError.self) { try CAPinning.verify(caPEM: "<html>not a cert</html>", expectedSHA256: token.caSHA256) }
    }

    @Test func enrollWritesNothingWhenTheControlPlaneIsUnreachable() throws {
        // A real enrollment against a listener that is not there: the token parses, the
        // CA fetch fails, and the state directory stays empty.
        let dir = TempDir()
        let enrollment = Enrollment(controlURL: "https://127.0.0.1:1", joinToken: "mstj1.a.b.\(String(repeating: "0", count: 64))",
                                    paths: AgentPaths(stateDirectory: dir.path), force: false, hostname: "gw1",
                                    logger: .init(label: "test"))
        #expect(throws: AgentError.self) { try enrollment.run() }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
    }

    @Test func badJoinTokenIsRefused() {
        let dir = TempDir()
        let enrollment = Enrollment(controlURL: "https://127.0.0.1:1", joinToken: "not-a-token",
                                    paths: AgentPaths(stateDirectory: dir.path), force: false, hostname: "gw1", logger: .init(label: "test"))
        let error = #expect(throws: AgentError.self) { try enrollment.run() }
        #expect(error?.message.contains("invalid join token") == true)
    }

    @Test func csrParsesAndItsSignatureVerifies() throws {
        let generated = try AgentKeyAndCSR.generate(commonName: "gw-01.example.test")
        let csr = try CertificateSigningRequest(pemEncoded: generated.csrPEM)
        #expect(csr.publicKey.isValidSignature(csr.signature, for: csr))
        #expect(csr.subject.description.contains("gw-01.example.test"))
        // The key file belongs to the CSR's public key.
        let key = try P256.Signing.PrivateKey(pemRepresentation: generated.privateKeyPEM)
        #expect(Certificate.PublicKey(key.publicKey) == csr.publicKey)
        #expect(generated.privateKeyPEM.contains("BEGIN PRIVATE KEY"))
    }

    @Test func issuedCertificateMustCarryOurKey() throws {
        let now = Date()
        let generated = try AgentKeyAndCSR.generate(commonName: "gw")
        let caKey = P256.Signing.PrivateKey()
        let ours = try P256.Signing.PrivateKey(pemRepresentation: generated.privateKeyPEM)
        let good = try TestCerts.make(subject: "srv-1", sans: nil, notBefore: now, notAfter: now + 90 * day, key: ours, issuer: ("CA", caKey))
        let bad = try TestCerts.make(subject: "srv-1", sans: nil, notBefore: now, notAfter: now + 90 * day, issuer: ("CA", caKey))
        func response(_ c: Certificate) throws -> EnrollmentResponse {
            EnrollmentResponse(serverId: "srv-1", siteId: "site-1", certificateChainPEM: try TestCerts.pem([c]), caCertificatePEM: "", notAfter: "")
        }
        _ = try Enrollment.checkIssued(response(good), publicKeyDER: generated.publicKeyDER)
        #expect(throws: AgentError.self) { try Enrollment.checkIssued(try response(bad), publicKeyDER: generated.publicKeyDER) }
    }

    @Test func controlURLMustBeHTTPS() throws {
        #expect(try ControlPlaneClient.validateURL("https://127.0.0.1:8443/") == "https://127.0.0.1:8443")
        for bad in ["http://127.0.0.1:8443", "127.0.0.1:8443", "https://user:pw@127.0.0.1", "https://127.0.0.1?x=1", ""] {
            #expect(throws: AgentError.self) { try ControlPlaneClient.validateURL(bad) }
        }
    }

    @Test func interruptedRenewalIsCompleted() throws {
        let dir = TempDir()
        let paths = AgentPaths(stateDirectory: dir.path)
        try AgentFiles.prepareDirectories(paths)
        let now = Date()
        let caKey = P256.Signing.PrivateKey()
        let oldKey = P256.Signing.PrivateKey(), newKey = P256.Signing.PrivateKey()
        let oldCert = try TestCerts.make(subject: "srv", sans: nil, notBefore: now, notAfter: now + day, key: oldKey, issuer: ("CA", caKey))
        let newCert = try TestCerts.make(subject: "srv", sans: nil, notBefore: now, notAfter: now + 90 * day, key: newKey, issuer: ("CA", caKey))
        // Died between the two renames: the key is new, the certificate still old.
        try AtomicFile.write(Data(newKey.pemRepresentation.utf8), to: paths.agentKey, mode: 0o600)
        try AtomicFile.write(Data(try TestCerts.pem([oldCert]).utf8), to: paths.agentCertificate, mode: 0o644)
        try AtomicFile.write(Data(try TestCerts.pem([newCert]).utf8), to: AgentFiles.pendingCertificate(paths), mode: 0o644)
        #expect(AgentFiles.recoverPendingRenewal(paths) == "completed an interrupted certificate renewal")
        let installed = try AgentCertificateInfo.load(certificatePEM: String(decoding: AtomicFile.read(paths.agentCertificate)!, as: UTF8.self))
        #expect(installed.publicKeyDER == Array(newKey.publicKey.derRepresentation))
        #expect(!FileManager.default.fileExists(atPath: AgentFiles.pendingCertificate(paths)))
    }
}
