import Foundation
import GatewayAgentAPI
import Logging

/// `mstunnel-agent enroll`: join token → pinned CA → key + CSR → certificate → files.
///
/// Nothing is written until the control plane has issued the certificate, so a bad,
/// used or expired token, a wrong URL or a CA mismatch leaves the host as it was.
public struct Enrollment {
    public var controlURL: String
    /// The token text exactly as the operator gave it. Never logged.
    public var joinToken: String
    public var paths: AgentPaths
    public var force: Bool
    public var hostname: String
    public var logger: Logger

    public init(controlURL: String, joinToken: String, paths: AgentPaths, force: Bool, hostname: String? = nil, logger: Logger) {
        self.controlURL = controlURL
        self.joinToken = joinToken
        self.paths = paths
        self.force = force
        self.hostname = hostname ?? HostName.current()
        self.logger = logger
    }

    public func run() throws(AgentError) -> AgentInfo {
        let token: JoinToken
        do {
            token = try JoinToken(parsing: joinToken)
        } catch {
            throw AgentError("invalid join token: \(error.message)")
        }
        if !force, let existing = try? AgentInfo.load(paths) {
            throw AgentError("this host is already enrolled as server \(existing.serverId) in site \(existing.siteId) (\(existing.controlPlaneUrl)); use --force to enroll again")
        }
        let baseURL = try ControlPlaneClient.validateURL(controlURL)
        let client = ControlPlaneClient(baseURL: baseURL, trust: .insecureUnverified, logger: logger)

        // 1. The CA, fetched unverified and accepted only if it hashes to the token's value.
        let servedPEM: Data
        do {
            servedPEM = try client.fetchCAUnverified()
        } catch {
            throw AgentError("cannot fetch the control plane's CA from \(baseURL)\(AgentAPI.basePath)/ca: \(error)")
        }
        let caPEM = try CAPinning.verify(caPEM: String(decoding: servedPEM, as: UTF8.self), expectedSHA256: token.caSHA256)
        logger.info("agent.enroll.ca_pinned", metadata: ["sha256": "\(token.caSHA256.lowercased())"])

        // 2. Our key and CSR; 3. the certificate, now over TLS verified against the pinned CA.
        let keyAndCSR = try AgentKeyAndCSR.generate(commonName: hostname)
        client.trust = .caPEM(Data(caPEM.utf8))
        let response: EnrollmentResponse
        do {
            response = try client.enroll(EnrollmentRequest(joinToken: joinToken.trimmingCharacters(in: .whitespacesAndNewlines),
                                                           csrPEM: keyAndCSR.csrPEM, hostname: hostname,
                                                           agentVersion: AgentVersion.string))
        } catch {
            if case .api(_, let apiError) = error {
                throw AgentError("enrollment refused by the control plane: \(apiError.message) [\(apiError.code)]")
            }
            throw AgentError("enrollment failed: \(error)")
        }
        let info = try Self.checkIssued(response, publicKeyDER: keyAndCSR.publicKeyDER)
        if let returnedCA = try? PEMCertificates.firstDER(response.caCertificatePEM),
           CAPinning.sha256Hex(returnedCA) != token.caSHA256.lowercased() {
            // TLS already proved the server holds the pinned CA's trust; a different CA in
            // the body is a control-plane inconsistency worth a line, not a reason to fail.
            logger.warning("agent.enroll.ca_differs", metadata: ["detail": "the enrollment answer names another CA than the pinned one; keeping the pinned CA"])
        }

        // 4. Files, identity first, agent-info.json last (its presence = enrolled).
        let agentInfo = AgentInfo(serverId: response.serverId, siteId: response.siteId, controlPlaneUrl: baseURL,
                                  enrolledDateTime: GraphDate.string(Date()))
        try AgentFiles.install(paths, caPEM: caPEM, keyPEM: keyAndCSR.privateKeyPEM,
                               chainPEM: Self.normalizedChain(response.certificateChainPEM), info: agentInfo)
        logger.info("agent.enrolled", metadata: [
            "server.id": "\(agentInfo.serverId)", "site.id": "\(agentInfo.siteId)", "control_plane": "\(baseURL)",
            "certificate.not_after": "\(GraphDate.string(info.notAfter))",
        ])
        return agentInfo
    }

    /// The issued chain must parse and its leaf must carry our public key (a control plane
    /// bug that signs the wrong key would otherwise only show at the first check-in).
    static func checkIssued(_ response: EnrollmentResponse, publicKeyDER: [UInt8]) throws(AgentError) -> AgentCertificateInfo {
        guard !response.serverId.isEmpty, !response.siteId.isEmpty else {
            throw AgentError("the control plane's answer has no serverId/siteId")
        }
        let info: AgentCertificateInfo
        do {
            info = try AgentCertificateInfo.load(certificatePEM: response.certificateChainPEM)
        } catch {
            throw AgentError("the certificate issued by the control plane does not parse: \(error.message)")
        }
        guard info.publicKeyDER == publicKeyDER else {
            throw AgentError("the certificate issued by the control plane is not for the key this agent generated")
        }
        return info
    }

    static func normalizedChain(_ pem: String) -> String {
        pem.hasSuffix("\n") ? pem : pem + "\n"
    }
}

/// Directory layout and the renewal swap of the agent's key + certificate pair.
enum AgentFiles {
    static func prepareDirectories(_ paths: AgentPaths) throws(AgentError) {
        if !FileManager.default.fileExists(atPath: paths.stateDirectory) {
            try AtomicFile.ensureDirectory(paths.stateDirectory, mode: 0o755)
        }
        try AtomicFile.ensureDirectory(paths.certsDirectory, mode: 0o755)
        try AtomicFile.ensurePrivateDirectory(paths.privateDirectory)
    }

    /// The enrollment's files, identity first and `agent-info.json` last (its presence
    /// means enrolled). `agent-info.json` is 0600: only the agent reads it (the installer
    /// and the scripts read it as root).
    static func install(_ paths: AgentPaths, caPEM: String, keyPEM: String, chainPEM: String, info: AgentInfo) throws(AgentError) {
        try prepareDirectories(paths)
        try AtomicFile.write(Data(caPEM.utf8), to: paths.controlCA, mode: 0o644)
        try AtomicFile.write(Data(keyPEM.utf8), to: paths.agentKey, mode: 0o600)
        try AtomicFile.write(Data(chainPEM.utf8), to: paths.agentCertificate, mode: 0o644)
        removePendingRenewal(paths)
        try AtomicFile.write(info.encoded(), to: paths.agentInfo, mode: 0o600)
    }

    static func pendingKey(_ paths: AgentPaths) -> String { paths.agentKey + ".new" }
    static func pendingCertificate(_ paths: AgentPaths) -> String { paths.agentCertificate + ".new" }

    static func removePendingRenewal(_ paths: AgentPaths) {
        unlink(pendingKey(paths))
        unlink(pendingCertificate(paths))
    }

    /// Installs a renewed pair. Two renames cannot be one atomic step, so the new pair is
    /// first written completely beside the old one (`*.new`), then the key and the
    /// certificate are renamed in that order; `recoverPendingRenewal` finishes the job if
    /// the process died between the two renames.
    static func installRenewed(_ paths: AgentPaths, keyPEM: String, chainPEM: String) throws(AgentError) {
        try AtomicFile.write(Data(keyPEM.utf8), to: pendingKey(paths), mode: 0o600)
        try AtomicFile.write(Data(Enrollment.normalizedChain(chainPEM).utf8), to: pendingCertificate(paths), mode: 0o644)
        try AtomicFile.move(pendingKey(paths), to: paths.agentKey)
        try AtomicFile.move(pendingCertificate(paths), to: paths.agentCertificate)
    }

    /// At start: completes or discards a renewal interrupted between its steps, so the key
    /// and the certificate in use always belong together.
    static func recoverPendingRenewal(_ paths: AgentPaths) -> String? {
        let fm = FileManager.default
        let newKey = pendingKey(paths), newCert = pendingCertificate(paths)
        guard fm.fileExists(atPath: newKey) || fm.fileExists(atPath: newCert) else { return nil }
        func keyDER(_ path: String) -> [UInt8]? {
            AtomicFile.read(path).flatMap { AgentCertificateInfo.publicKeyDER(ofPrivateKeyPEM: String(decoding: $0, as: UTF8.self)) }
        }
        func certDER(_ path: String) -> [UInt8]? {
            AtomicFile.read(path).flatMap { try? AgentCertificateInfo.load(certificatePEM: String(decoding: $0, as: UTF8.self)).publicKeyDER }
        }
        if fm.fileExists(atPath: newCert), let c = certDER(newCert) {
            if fm.fileExists(atPath: newKey), keyDER(newKey) == c {
                // Died before either rename: do both.
                if (try? AtomicFile.move(newKey, to: paths.agentKey)) != nil, (try? AtomicFile.move(newCert, to: paths.agentCertificate)) != nil {
                    return "completed an interrupted certificate renewal"
                }
            } else if keyDER(paths.agentKey) == c {
                // Died between the renames: the key is already the new one.
                if (try? AtomicFile.move(newCert, to: paths.agentCertificate)) != nil {
                    return "completed an interrupted certificate renewal"
                }
            }
        }
        removePendingRenewal(paths)
        return "discarded an incomplete certificate renewal"
    }
}
