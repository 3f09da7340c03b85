import ArgumentParser
import Foundation
import GatewayCertificates
import GatewaySystem

/// The certificate files an operator names: a PEM chain and key, or a PFX.
struct CertificateFiles: ParsableArguments {
    @Option(help: "Certificate chain, PEM, leaf first.") var cert: String?
    @Option(help: "Private key of the leaf, PEM, unencrypted.") var key: String?
    @Option(help: "A PKCS#12 file instead of --cert/--key.") var pfx: String?
    @Option(help: "File holding the PFX password (not on the command line: arguments are visible in ps).") var pfxPasswordFile: String?

    func validate() throws {
        guard (cert != nil && key != nil && pfx == nil) || (pfx != nil && cert == nil && key == nil) else {
            throw ValidationError("give --cert and --key, or --pfx (with --pfx-password-file)")
        }
    }

    /// The chain and key as PEM text; a PFX is opened with openssl (leaf, then its issuers in order).
    func load() throws -> (chain: String, key: String) {
        if let cert, let key {
            guard let c = FileManager.default.contents(atPath: cert) else { throw CLIError("cannot read \(cert)") }
            guard let k = FileManager.default.contents(atPath: key) else { throw CLIError("cannot read \(key)") }
            return (String(decoding: c, as: UTF8.self), String(decoding: k, as: UTF8.self))
        }
        guard let pfx else { throw CLIError("no certificate given") }
        let passArg = pfxPasswordFile.map { "file:" + $0 } ?? "pass:"
        let leaf = try Command.run(["openssl", "pkcs12", "-in", pfx, "-passin", passArg, "-clcerts", "-nokeys"])
        let cas = try Command.run(["openssl", "pkcs12", "-in", pfx, "-passin", passArg, "-cacerts", "-nokeys"])
        let key = try Command.run(["openssl", "pkcs12", "-in", pfx, "-passin", passArg, "-nocerts", "-nodes"])
        guard leaf.status == 0, cas.status == 0, key.status == 0 else {
            throw CLIError("The PFX cannot be opened: wrong password, or not a PKCS#12 file.")
        }
        // A PFX keeps its CA certificates in no particular order: leaf first, then each issuer.
        var rest = CertificateCheck.certificates(inBundle: cas.stdout)
        guard var current = CertificateCheck.certificates(inBundle: leaf.stdout).first else { throw CLIError("The PFX holds no certificate for its key.") }
        var ordered = [current]
        while let i = rest.firstIndex(where: { $0.subject == current.issuer && $0.subject != current.subject }) {
            current = rest.remove(at: i)
            ordered.append(current)
        }
        ordered += rest
        return (try ordered.map { try $0.serializeAsPEM().pemString }.joined(separator: "\n") + "\n", key.stdout)
    }

    static let systemRoots = "/etc/ssl/certs/ca-certificates.crt"

    /// Prints `ok …` or the problem; throws ExitCode(1) on a problem.
    func check() throws -> (chain: String, key: String, summary: CertificateCheck.Summary) {
        let (chain, key) = try load()
        let roots = (try? String(contentsOfFile: Self.systemRoots, encoding: .utf8)).map(CertificateCheck.certificates(inBundle:)) ?? []
        switch CertificateCheck.check(chainPEM: chain, keyPEM: key, now: Date(), trustedRoots: roots) {
        case .success(let s):
            print("  ok   \(s.subject), \(s.names.joined(separator: ", ")), until \(GraphStyle.date(s.notAfter)), chain of \(s.chainLength), \(s.pin)")
            return (chain, key, s)
        case .failure(let problem):
            print("  \(problem)")
            throw ExitCode(1)
        }
    }
}

enum GraphStyle {
    static func date(_ d: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f.string(from: d)
    }
}

struct CheckCertificate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-certificate",
        abstract: "Check a gateway TLS certificate: SAN, chain complete and in order, key matches, valid now, at most 2 years (exit 1 with the reason).")
    @OptionGroup var files: CertificateFiles
    @Option(help: "When it passes, write the chain (in order) and key there as site.crt and site.key (the installer's use).")
    var out: String?

    func run() throws {
        let (chain, key, _) = try files.check()
        if let out {
            guard FileManager.default.createFile(atPath: out + "/site.crt", contents: Data(chain.utf8), attributes: [.posixPermissions: 0o644]),
                  FileManager.default.createFile(atPath: out + "/site.key", contents: Data(key.utf8), attributes: [.posixPermissions: 0o600]) else {
                throw CLIError("cannot write site.crt and site.key in \(out)")
            }
        }
    }
}

/// `import_cert [delay N]`: checks the new certificate, puts it in the state directory (the
/// previous one kept as `.previous`), and tells the gateway (SIGHUP): new connections get
/// the new certificate, no connected session is dropped.
struct ImportCert: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import_cert",
        abstract: "Rotate the gateway's TLS certificate: new connections get the new one, no session is dropped.",
        discussion: "`import_cert delay N` waits N seconds before the gateway switches (e.g. while clients learn a new pin).")
    @OptionGroup var files: CertificateFiles
    @Argument(help: "Optional: delay N") var delayWords: [String] = []

    func validate() throws {
        guard delayWords.isEmpty || (delayWords.count == 2 && delayWords[0] == "delay" && Int(delayWords[1]).map({ $0 >= 0 }) == true) else {
            throw ValidationError("the only argument is 'delay N' (N seconds, 0 or more)")
        }
    }

    func run() throws {
        let install = Install.load()
        let (chain, key, summary) = try files.check()
        let crt = install.stateDirectory + "/certs/site.crt", keyPath = install.stateDirectory + "/private/site.key"
        try place(Data(chain.utf8), at: crt, mode: 0o644, owner: 992)
        try place(Data(key.utf8), at: keyPath, mode: 0o640, owner: 0)
        print("installed:  \(crt), \(keyPath) (the previous ones as .previous)")
        if delayWords.count == 2, let n = UInt32(delayWords[1]), n > 0 {
            print("the gateway switches in \(n) s …")
            sleep(n)
        }
        let hup = try Command.run([install.engine, "kill", "--signal", "HUP", ServerContainer.name])
        guard hup.status == 0 else {
            throw CLIError("the files are in place but the gateway was not told (\(hup.stderr.trimmingCharacters(in: .whitespacesAndNewlines))): mst-cli server restart loads them (and ends every session)")
        }
        print("gateway:    new connections get \(summary.subject) (\(summary.pin)); connected sessions keep theirs")
    }

    /// Temp file with its mode and owner, the old file kept as `.previous`, then rename.
    func place(_ data: Data, at path: String, mode: mode_t, owner: uid_t) throws {
        let tmp = path + ".new"
        unlink(tmp)
        guard FileManager.default.createFile(atPath: tmp, contents: nil, attributes: [.posixPermissions: 0o600]) else {
            throw CLIError("cannot write \(tmp)")
        }
        guard let handle = FileHandle(forWritingAtPath: tmp) else { throw CLIError("cannot open \(tmp)") }
        handle.write(data)
        try handle.close()
        guard chown(tmp, owner, 990) == 0, chmod(tmp, mode) == 0 else { throw CLIError("cannot set owner and mode of \(tmp): \(SystemError.reason(errno))") }
        if FileManager.default.fileExists(atPath: path) {
            unlink(path + ".previous")
            guard link(path, path + ".previous") == 0 else { throw CLIError("cannot keep \(path).previous: \(SystemError.reason(errno))") }
        }
        guard rename(tmp, path) == 0 else { throw CLIError("cannot replace \(path): \(SystemError.reason(errno))") }
    }
}
