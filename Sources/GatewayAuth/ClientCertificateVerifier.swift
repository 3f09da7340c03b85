internal import COpenSSL
import Crypto
import Foundation
import GatewayIPC
import GatewaySystem
import GatewayWire
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// What the plugin read from a presented leaf certificate: for the decision, the log
/// and (the OUs) later group policy. Read before the chain is trusted, so in a rejection
/// these are the certificate's own claims, not facts.
public struct ClientCertificate: Sendable, Equatable {
    /// The subject in one line, in certificate order: `CN=alice, OU=Engineering, O=Corp`.
    public var subject: String
    /// The subject's commonName values.
    public var commonNames: [String]
    /// The issuer in one line.
    public var issuer: String
    public var issuerCommonName: String?
    /// Serial number in upper-case hex, as `openssl x509 -serial` and CRL listings show it.
    public var serialNumber: String
    /// SHA-256 of the leaf's DER, lowercase hex.
    public var sha256: String
    public var notBefore: Int64
    public var notAfter: Int64
    /// The subject's organizationalUnitName values, in order (for group policy).
    public var organizationalUnits: [String]
    /// subjectAltName otherName UPNs (1.3.6.1.4.1.311.20.2.3).
    public var userPrincipalNames: [String]
    /// subjectAltName rfc822Names.
    public var emailAddresses: [String]
    /// The subject's emailAddress (PKCS #9) values.
    public var subjectEmailAddresses: [String]
    /// The subject's userId (UID, 0.9.2342.19200300.100.1.1) values.
    public var userIds: [String]

    /// How reasons name the certificate: `CN=alice (serial 0A11CE, issuer CN=Corp CA)`.
    public var label: String {
        let who = commonNames.last.map { "CN=\(Self.clip($0))" } ?? (subject.isEmpty ? "(empty subject)" : "'\(Self.clip(subject))'")
        let by = issuerCommonName.map { "CN=\(Self.clip($0))" } ?? "'\(Self.clip(issuer))'"
        return "\(who) (serial \(serialNumber), issuer \(by))"
    }

    static func clip(_ s: String, _ limit: Int = 128) -> String {
        s.count <= limit ? s : String(s.prefix(limit)) + "…"
    }
}

/// The outcome of checking one presented chain.
public struct ClientCertificateResult: Sendable, Equatable {
    /// The identity (userId = userName = the mapped name) or the rejection.
    public var response: ValidateTokenResponse
    /// The leaf as read; nil when it did not parse.
    public var certificate: ClientCertificate?
    /// SHA-256 (lowercase hex) of the first element of the chain as sent, parsable or not.
    public var sha256: String?
    /// The user the certificate names under `userFrom`; set when accepted.
    public var user: String?
    /// The rejection is the deployment's problem (no usable CRL), not the client's: logged
    /// as a warning.
    public var operatorProblem: Bool

    public var identity: Identity? { response.identity }
    public var rejection: TokenRejection? { response.rejection }
    /// The subject's OU values (empty when the leaf did not parse).
    public var organizationalUnits: [String] { certificate?.organizationalUnits ?? [] }
}

/// Verifies client certificate chains the gateway forwards (DER, leaf first, as libssl
/// received them: libssl has checked only that the client holds the leaf's key).
///
/// OpenSSL does the path validation: the trusted CAs of `caFile` in an X509_STORE, the
/// rest of the presented chain as untrusted intermediates, purpose SSL client (a leaf
/// whose extendedKeyUsage lacks clientAuth is refused) and, with a `crlFile`, CRL checks
/// on every certificate of the chain (X509_V_FLAG_CRL_CHECK | CRL_CHECK_ALL).
///
/// The CRL file is reloaded when its inode, size or mtime changes, looked at no more than
/// once per `crlCheckInterval`, on validation. A file that does not load leaves the
/// previous CRLs in force; with none ever loaded every certificate is refused.
public final class ClientCertificateVerifier: @unchecked Sendable {
    // @unchecked: `configuration`, `trustedCAs`, `now` and `logger` are immutable; the CRL
    // state (`store`, `crl*`, `lastCheck`) is only touched under `lock`. A TrustStore is
    // immutable once built, and OpenSSL allows concurrent verifications against one store.

    public static let crlCheckInterval: TimeInterval = 1
    /// More than any real chain (leaf, two or three intermediates, maybe the root).
    public static let maxChainLength = 8
    /// Per certificate; real ones are 1–4 KiB.
    public static let maxCertificateBytes = 64 * 1024
    /// Longest user name a certificate may map to.
    public static let maxUserNameLength = 256

    public let configuration: ClientCertificateConfiguration
    private let trustedCAs: [X509Box]
    private let now: @Sendable () -> Date
    private let logger: Logger

    private let lock = Mutex()
    /// The store verifications use; nil only while a crlFile is set and none ever loaded.
    private var store: TrustStore?
    private var crlSummary: CRLSummary?
    private var crlLastSeen: FileIdentity?
    private var crlLastError: String?
    private var lastCheck: Date?

    struct CRLSummary {
        var identity: FileIdentity
        var count: Int
        var revoked: Int
        var nextUpdate: Int64?
        var loadedAt: Date
    }

    /// Loads the trusted CAs (an error if `caFile` holds none) and the CRL file. A CRL file
    /// that does not load is not an error here: it is logged, and certificates are refused
    /// until it loads.
    public init(configuration: ClientCertificateConfiguration, now: @escaping @Sendable () -> Date = { Date() },
                logger: Logger) throws(AuthConfigurationError) {
        self.configuration = configuration
        self.now = now
        self.logger = logger
        do {
            trustedCAs = try PKIFiles.certificates(pem: PKIFiles.read(configuration.caFile))
        } catch {
            throw AuthConfigurationError("clientCertificates.caFile \(configuration.caFile): \(error.message)")
        }
        if configuration.crlFile == nil {
            do {
                store = try TrustStore(cas: trustedCAs, crls: nil)
            } catch {
                throw AuthConfigurationError("clientCertificates: \(error.message)")
            }
        } else {
            lock.withLock { refreshCRL(at: now(), force: true) }
        }
    }

    /// How many CAs `caFile` holds.
    public var trustedCACount: Int { trustedCAs.count }

    /// One line for `--check-config` and the start-up log.
    public var summary: String {
        let cas = "\(trustedCAs.count) trusted CA\(trustedCAs.count == 1 ? "" : "s") from \(configuration.caFile), user from \(configuration.userFrom.rawValue)"
        guard let crlFile = configuration.crlFile else { return cas + ", no CRL (revocation not checked)" }
        return lock.withLock {
            guard let s = crlSummary else { return cas + ", CRL \(crlFile) NOT loaded (\(crlLastError ?? "unknown error")): every certificate is refused" }
            return cas + ", CRL \(crlFile): \(s.count) list\(s.count == 1 ? "" : "s"), \(s.revoked) revoked, next update \(s.nextUpdate.map(Self.time) ?? "none")"
        }
    }

    /// Revoked serials in the CRLs in force (nil when no CRL is configured or loaded).
    public var revokedCount: Int? { lock.withLock { crlSummary?.revoked } }

    // MARK: - Verification

    public func verify(_ chain: [Data]) -> ClientCertificateResult {
        var result = ClientCertificateResult(response: .rejected(.certificateRequired, "no client certificate was presented"),
                                             certificate: nil, sha256: nil, user: nil, operatorProblem: false)
        guard let first = chain.first else { return result }
        result.sha256 = Self.hex(SHA256.hash(data: first))

        func untrusted(_ reason: String) -> ClientCertificateResult {
            var r = result
            r.response = .rejected(.certificateUntrusted, reason)
            return r
        }

        // Parse everything before trusting anything; bounded work for a hostile peer.
        if chain.count > Self.maxChainLength {
            return untrusted("the client sent a chain of \(chain.count) certificates; at most \(Self.maxChainLength) are accepted")
        }
        var parsed: [X509Box] = []
        for (i, der) in chain.enumerated() {
            if der.count > Self.maxCertificateBytes {
                return untrusted("certificate \(i + 1) of the client's chain is \(der.count) bytes; the limit is \(Self.maxCertificateBytes)")
            }
            guard let x = PKIFiles.certificate(der: der) else {
                return untrusted("certificate \(i + 1) of the client's chain is not a DER X.509 certificate (\(der.count) bytes)")
            }
            parsed.append(x)
        }
        let leaf = parsed[0]
        let details = Self.details(leaf.pointer, der: first)
        result.certificate = details

        // The CRL file may have changed; then take the store in force now.
        let current: TrustStore? = lock.withLock {
            if configuration.crlFile != nil { refreshCRL(at: now(), force: false) }
            return store
        }
        guard let current else {
            var r = untrusted("certificate \(details.label) is refused: CRL unavailable (crlFile \(configuration.crlFile ?? "") has never loaded: \(lock.withLock { crlLastError } ?? "unknown error"))")
            r.operatorProblem = true
            r.response = .rejected(.issuerUnavailable, r.rejection?.reason ?? "CRL unavailable")
            return r
        }

        let time = now()
        switch Self.pathValidate(leaf: leaf, intermediates: Array(parsed.dropFirst()), store: current, at: time) {
        case .success:
            break
        case .failure(let failure):
            var r = result
            let code: TokenRejection.Code = failure.error == X509_V_ERR_CERT_REVOKED ? .certificateRevoked : .certificateUntrusted
            r.response = .rejected(code, Self.reason(for: failure, leaf: details))
            r.operatorProblem = [X509_V_ERR_CRL_HAS_EXPIRED, X509_V_ERR_UNABLE_TO_GET_CRL, X509_V_ERR_CRL_NOT_YET_VALID].contains(failure.error)
            // Not the client's fault: the gateway answers 503 and adds nothing to the
            // address's ban score (a NAT full of good users must not be banned for it).
            if r.operatorProblem { r.response = .rejected(.issuerUnavailable, Self.reason(for: failure, leaf: details)) }
            return r
        }

        // Trusted: who is it?
        switch Self.user(from: details, mapping: configuration.userFrom) {
        case .failure(let why):
            var r = result
            r.response = .rejected(.certificateNoUser, "certificate \(details.label) names no user: \(why)")
            return r
        case .success(let user):
            // The OUs go to the gateway for group policy: the same bounds as a token's
            // `groups` (TokenValidator.maxClaimValues), for the same reasons.
            let units: [String]
            switch TokenValidator.boundedStrings(details.organizationalUnits, what: "the subject's OU values of certificate \(details.label)") {
            case .success(let list): units = list
            case .failure(let rejection):
                var r = result
                r.response = .rejected(rejection.code, rejection.reason)
                return r
            }
            result.user = user
            result.response = .accepted(Identity(userId: user, userName: user, tenantId: nil, deviceId: nil,
                                                 expiresAt: details.notAfter, certificateSHA256: details.sha256,
                                                 organizationalUnits: units.isEmpty ? nil : units))
            return result
        }
    }

    // MARK: - User mapping

    static func user(from c: ClientCertificate, mapping: CertificateUserMapping) -> Result<String, MappingFailure> {
        let candidates: [String]
        let what: String
        switch mapping {
        case .cn:
            candidates = c.commonNames
            what = "subject commonName (CN)"
        case .upn:
            candidates = c.userPrincipalNames
            what = "subjectAltName UPN (otherName 1.3.6.1.4.1.311.20.2.3)"
        case .email:
            if c.emailAddresses.contains(where: { !$0.isEmpty }) {
                candidates = c.emailAddresses
                what = "subjectAltName email (rfc822Name)"
            } else {
                candidates = c.subjectEmailAddresses
                what = "subjectAltName email (rfc822Name) or subject emailAddress"
            }
        case .uid:
            candidates = c.userIds
            what = "subject userId (UID, 0.9.2342.19200300.100.1.1)"
        }
        var distinct: [String] = []
        for v in candidates where !v.isEmpty && !distinct.contains(v) { distinct.append(v) }
        guard let user = distinct.first else {
            return .failure(MappingFailure("it has no \(what) (userFrom is \(mapping.rawValue))"))
        }
        // Several different values: picking one would let whoever ordered them choose.
        guard distinct.count == 1 else {
            return .failure(MappingFailure("it has \(distinct.count) different values for \(what) (\(distinct.prefix(4).map { "'\(ClientCertificate.clip($0, 64))'" }.joined(separator: ", "))); exactly one is required"))
        }
        if user.utf8.count > maxUserNameLength {
            return .failure(MappingFailure("its \(what) is longer than \(maxUserNameLength) bytes"))
        }
        if user.unicodeScalars.contains(where: { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) }) {
            return .failure(MappingFailure("its \(what) contains control characters"))
        }
        return .success(user)
    }

    struct MappingFailure: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }

    // MARK: - OpenSSL

    struct PathFailure: Error {
        var error: Int32
        var depth: Int32
        var message: String
        /// The certificate the error is about, when it is not the leaf.
        var subject: ClientCertificate?
        /// The issuer of the certificate the error is about (for CRL errors: whose CRL).
        var issuer: String = ""
        /// For an expired CRL: its nextUpdate.
        var crlNextUpdate: Int64?
    }

    static func pathValidate(leaf: X509Box, intermediates: [X509Box], store: TrustStore, at time: Date) -> Result<Void, PathFailure> {
        ERR_clear_error()
        defer { ERR_clear_error() }
        guard let ctx = X509_STORE_CTX_new() else {
            return .failure(PathFailure(error: X509_V_ERR_UNSPECIFIED, depth: 0, message: "out of memory"))
        }
        defer { X509_STORE_CTX_free(ctx) }
        guard let untrusted = OPENSSL_sk_new_null() else {
            return .failure(PathFailure(error: X509_V_ERR_UNSPECIFIED, depth: 0, message: "out of memory"))
        }
        defer { OPENSSL_sk_free(untrusted) }  // the certificates stay owned by their boxes
        for x in intermediates { _ = OPENSSL_sk_push(untrusted, UnsafeRawPointer(x.pointer)) }

        guard X509_STORE_CTX_init(ctx, store.pointer, leaf.pointer, untrusted) == 1 else {
            return .failure(PathFailure(error: X509_V_ERR_UNSPECIFIED, depth: 0, message: "cannot set up verification (\(OpenSSLErrors.drain() ?? "unknown error"))"))
        }
        _ = X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT)
        X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx), time_t(time.timeIntervalSince1970.rounded(.down)))

        let ok = X509_verify_cert(ctx)
        // Keep the boxes alive until OpenSSL is done with their certificates.
        withExtendedLifetime((leaf, intermediates)) {}
        if ok == 1 { return .success(()) }

        let error = X509_STORE_CTX_get_error(ctx)
        let depth = X509_STORE_CTX_get_error_depth(ctx)
        let text = X509_verify_cert_error_string(Int(error)).map { String(cString: $0) } ?? "verify error \(error)"
        var failure = PathFailure(error: error == X509_V_OK ? X509_V_ERR_UNSPECIFIED : error, depth: depth, message: text)
        if let x = X509_STORE_CTX_get_current_cert(ctx) {
            if depth > 0 { failure.subject = details(x, der: nil) }
            let issuerName = X509_get_issuer_name(x)
            failure.issuer = X509Name.values(issuerName, nid: NID_commonName).last.map { "CN=\(ClientCertificate.clip($0))" }
                ?? "'\(ClientCertificate.clip(X509Name.oneLine(issuerName)))'"
            // OpenSSL has let go of the CRL by now: find the issuer's in the store's list.
            failure.crlNextUpdate = store.crls
                .filter { X509_NAME_cmp(X509_CRL_get_issuer($0.pointer), issuerName) == 0 }
                .compactMap(\.nextUpdate).min()
        }
        return .failure(failure)
    }

    static func reason(for f: PathFailure, leaf: ClientCertificate) -> String {
        let at = f.depth > 0 ? " at depth \(f.depth)\(f.subject.map { " (\($0.label))" } ?? "")" : ""
        let head: String
        if f.error == X509_V_ERR_CERT_REVOKED {
            head = f.depth == 0
                ? "certificate \(leaf.label) is revoked (listed in its issuer's CRL)"
                : "certificate \(leaf.label) is refused: a CA certificate of its chain is revoked\(at)"
            return head
        }
        var hint = ""
        switch f.error {
        case X509_V_ERR_CERT_HAS_EXPIRED:
            if f.depth == 0 { hint = "; notAfter \(time(leaf.notAfter))" } else if let s = f.subject { hint = "; notAfter \(time(s.notAfter))" }
        case X509_V_ERR_CERT_NOT_YET_VALID:
            if f.depth == 0 { hint = "; notBefore \(time(leaf.notBefore))" } else if let s = f.subject { hint = "; notBefore \(time(s.notBefore))" }
        case X509_V_ERR_INVALID_PURPOSE:
            hint = "; its extendedKeyUsage does not allow TLS client authentication (clientAuth)"
        case X509_V_ERR_CRL_HAS_EXPIRED:
            hint = "; the CRL from \(f.issuer) expired\(f.crlNextUpdate.map { " at \(time($0))" } ?? "") (its nextUpdate has passed): put a current CRL in crlFile; until then certificates from that issuer are refused"
        case X509_V_ERR_UNABLE_TO_GET_CRL:
            hint = "; crlFile has no CRL from \(f.issuer) (with crlFile set, every CA of the chain needs a current CRL there)"
        case X509_V_ERR_CRL_NOT_YET_VALID:
            hint = "; the CRL from \(f.issuer) is not valid yet (lastUpdate in the future)"
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT,
             X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN, X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
            hint = "; the chain does not lead to a CA of caFile"
        default:
            break
        }
        return "certificate \(leaf.label) is not trusted: \(f.message) (OpenSSL verify error \(f.error)\(f.depth > 0 ? at : " at depth 0"))\(hint)"
    }

    /// Reads what the plugin needs from a certificate. `der`, when given, is hashed (the
    /// bytes exactly as sent); otherwise the certificate is re-encoded to hash it.
    static func details(_ x: OpaquePointer, der: Data?) -> ClientCertificate {
        let subject = X509_get_subject_name(x)
        let issuer = X509_get_issuer_name(x)
        let sans = X509Fields.subjectAltNames(x)
        var digest = ""
        if let der {
            digest = hex(SHA256.hash(data: der))
        } else {
            var out: UnsafeMutablePointer<UInt8>?
            let n = i2d_X509(x, &out)
            if n > 0, let out {
                digest = hex(SHA256.hash(data: UnsafeRawBufferPointer(start: out, count: Int(n))))
                CRYPTO_free(out, #fileID, #line)
            }
        }
        return ClientCertificate(
            subject: X509Name.oneLine(subject),
            commonNames: X509Name.values(subject, nid: NID_commonName),
            issuer: X509Name.oneLine(issuer),
            issuerCommonName: X509Name.values(issuer, nid: NID_commonName).last,
            serialNumber: X509Fields.serialHex(x),
            sha256: digest,
            notBefore: X509Time.seconds(X509_get0_notBefore(x)) ?? 0,
            notAfter: X509Time.seconds(X509_get0_notAfter(x)) ?? 0,
            organizationalUnits: X509Name.values(subject, nid: NID_organizationalUnitName),
            userPrincipalNames: sans.upns,
            emailAddresses: sans.emails,
            subjectEmailAddresses: X509Name.values(subject, nid: NID_pkcs9_emailAddress),
            userIds: X509Name.values(subject, nid: NID_userId))
    }

    // MARK: - CRL file

    /// What identifies one version of the CRL file (a missing file is a version too).
    struct FileIdentity: Equatable {
        var device: UInt64 = 0
        var inode: UInt64 = 0
        var size: Int64 = -1
        var mtimeSeconds: Int = 0
        var mtimeNanoseconds: Int = 0
        var errno: Int32 = 0

        init(path: String) {
            var st = stat()
            if stat(path, &st) != 0 {
                errno = Glibc.errno
                return
            }
            device = UInt64(st.st_dev)
            inode = UInt64(st.st_ino)
            size = Int64(st.st_size)
            mtimeSeconds = Int(st.st_mtim.tv_sec)
            mtimeNanoseconds = Int(st.st_mtim.tv_nsec)
        }
    }

    /// Under `lock`. Looks at the file when due (or forced) and reloads it if it changed.
    private func refreshCRL(at time: Date, force: Bool) {
        guard let path = configuration.crlFile else { return }
        if !force, let last = lastCheck, time >= last, time.timeIntervalSince(last) < Self.crlCheckInterval { return }
        lastCheck = time
        let identity = FileIdentity(path: path)
        if !force, identity == crlLastSeen { return }
        crlLastSeen = identity
        let reason = force ? "startup" : "file changed"

        let outcome: Result<(TrustStore, [CRLBox]), PKIError>
        if identity.errno != 0 {
            outcome = .failure(PKIError("cannot read \(path): \(SystemError.reason(identity.errno))"))
        } else {
            do {
                let crls = try PKIFiles.crls(PKIFiles.read(path))
                outcome = .success((try TrustStore(cas: trustedCAs, crls: crls), crls))
            } catch {
                outcome = .failure(error)
            }
        }
        switch outcome {
        case .success(let (newStore, crls)):
            let revoked = crls.reduce(0) { $0 + $1.revokedCount }
            let nextUpdate = crls.compactMap(\.nextUpdate).min()
            store = newStore
            crlSummary = CRLSummary(identity: identity, count: crls.count, revoked: revoked, nextUpdate: nextUpdate, loadedAt: time)
            crlLastError = nil
            var meta: Logger.Metadata = [
                "file": "\(path)", "reason": "\(reason)", "crls": "\(crls.count)", "revoked": "\(revoked)",
                "next_update": "\(nextUpdate.map(Self.time) ?? "none")",
                "issuers": "\(crls.map(\.issuer).joined(separator: "; "))",
            ]
            let expired = crls.filter { ($0.nextUpdate ?? .max) <= Int64(time.timeIntervalSince1970) }
            if expired.isEmpty {
                logger.info("auth.crl.loaded", metadata: meta)
            } else {
                meta["warning"] = "\(expired.count) CRL\(expired.count == 1 ? "" : "s") past nextUpdate (\(expired.map(\.issuer).joined(separator: "; "))): certificates from \(expired.count == 1 ? "that issuer" : "those issuers") are refused until crlFile is renewed"
                logger.warning("auth.crl.loaded", metadata: meta)
            }
        case .failure(let error):
            crlLastError = error.message
            var meta: Logger.Metadata = ["file": "\(path)", "reason": "\(reason)", "error": "\(error.message)"]
            if let s = crlSummary {
                meta["action"] = "keeping the CRLs loaded at \(Self.time(Int64(s.loadedAt.timeIntervalSince1970))) (\(s.count) lists, \(s.revoked) revoked)"
            } else {
                meta["action"] = "no CRL has loaded: every client certificate is refused until one does"
            }
            logger.error("auth.crl.failed", metadata: meta)
        }
    }

    // MARK: - Helpers

    static func hex(_ digest: some Sequence<UInt8>) -> String {
        digest.map { String(format: "%02x", $0) }.joined()
    }

    static func time(_ seconds: Int64) -> String {
        Date(timeIntervalSince1970: TimeInterval(seconds)).ISO8601Format()
    }
}

/// An X509_STORE holding the trusted CAs and, when a CRL file is configured, its CRLs
/// with CRL checking on every certificate of a chain. Immutable once built; a changed
/// CRL file gets a new store.
final class TrustStore: @unchecked Sendable {
    // @unchecked: never mutated after init; OpenSSL locks its own lookups.
    let pointer: OpaquePointer
    /// The CRLs in the store (empty without a crlFile), for reasons.
    let crls: [CRLBox]

    init(cas: [X509Box], crls: [CRLBox]?) throws(PKIError) {
        guard let s = X509_STORE_new() else { throw PKIError("cannot create an X509_STORE") }
        pointer = s
        self.crls = crls ?? []
        for ca in cas where X509_STORE_add_cert(s, ca.pointer) != 1 {
            let why = OpenSSLErrors.drain() ?? "unknown error"
            throw PKIError("cannot add a CA certificate to the store (\(why))")
        }
        if let crls {
            for crl in crls where X509_STORE_add_crl(s, crl.pointer) != 1 {
                let why = OpenSSLErrors.drain() ?? "unknown error"
                throw PKIError("cannot add the CRL of \(crl.issuer) to the store (\(why))")
            }
            _ = X509_STORE_set_flags(s, UInt(X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL))
        }
    }

    deinit { X509_STORE_free(pointer) }
}
