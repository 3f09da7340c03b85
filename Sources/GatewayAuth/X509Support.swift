internal import COpenSSL
import Foundation

#if canImport(Glibc)
import Glibc
#endif

// OpenSSL's X.509 objects behind small owning wrappers, and the few readers the
// client-certificate verifier needs (PEM bundles, CRL files, DER chains, names). Nothing
// here is public: OpenSSL types never reach GatewayAuth's API.

/// Why a certificate or CRL file could not be used. The message is for a person.
struct PKIError: Error, CustomStringConvertible {
    let message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}

/// One `X509 *`, freed with its wrapper. Immutable once made; OpenSSL's reference count
/// keeps it alive inside any store it is added to.
final class X509Box: @unchecked Sendable {
    // @unchecked: the pointer is never mutated through this wrapper after init.
    let pointer: OpaquePointer
    init(taking pointer: OpaquePointer) { self.pointer = pointer }
    deinit { X509_free(pointer) }
}

/// One `X509_CRL *`, freed with its wrapper.
final class CRLBox: @unchecked Sendable {
    // @unchecked: as X509Box.
    let pointer: OpaquePointer
    init(taking pointer: OpaquePointer) { self.pointer = pointer }
    deinit { X509_CRL_free(pointer) }

    var issuer: String { X509Name.oneLine(X509_CRL_get_issuer(pointer)) }
    var revokedCount: Int {
        guard let list = X509_CRL_get_REVOKED(pointer) else { return 0 }
        return Int(OPENSSL_sk_num(list))
    }
    var nextUpdate: Int64? { X509Time.seconds(X509_CRL_get0_nextUpdate(pointer)) }
}

enum OpenSSLErrors {
    /// Drains the thread's OpenSSL error queue; the most recent reason, for messages.
    static func drain() -> String? {
        var last: String?
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            var buf = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buf, buf.count)
            last = cString(buf)
        }
        return last
    }

    /// Drains the queue; true when the last error was "no more PEM blocks" (a clean end).
    static func drainIsCleanPEMEnd() -> Bool {
        var lastCode: UInt = 0
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            lastCode = code
        }
        return lastCode == 0 || mst_ERR_GET_REASON(lastCode) == PEM_R_NO_START_LINE
    }
}

/// The text of a NUL-terminated C buffer.
func cString(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

enum PKIFiles {
    /// Reads a file whole; the message names the path.
    static func read(_ path: String) throws(PKIError) -> Data {
        do {
            return try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw PKIError("cannot read \(path): \(AuthConfiguration.describe(error))")
        }
    }

    /// Every `CERTIFICATE` block of a PEM bundle, in order. At least one, or an error.
    static func certificates(pem data: Data) throws(PKIError) -> [X509Box] {
        var certificates: [X509Box] = []
        var failure: String?
        ERR_clear_error()
        withMemoryBIO(data) { bio in
            while let x = PEM_read_bio_X509(bio, nil, nil, nil) {
                certificates.append(X509Box(taking: x))
            }
            let clean = OpenSSLErrors.drainIsCleanPEMEnd()
            if !clean { failure = "PEM block \(certificates.count + 1) is not a valid certificate" }
        }
        if let failure { throw PKIError(failure) }
        if certificates.isEmpty { throw PKIError("no PEM certificate (-----BEGIN CERTIFICATE-----) in it") }
        return certificates
    }

    /// Every CRL of a file: PEM (one or more `X509 CRL` blocks) or DER (one or more
    /// concatenated CRLs). At least one, or an error; the whole file must parse.
    static func crls(_ data: Data) throws(PKIError) -> [CRLBox] {
        var crls: [CRLBox] = []
        ERR_clear_error()
        defer { ERR_clear_error() }
        if data.range(of: Data("-----BEGIN".utf8)) != nil {
            var failure: String?
            withMemoryBIO(data) { bio in
                while let c = PEM_read_bio_X509_CRL(bio, nil, nil, nil) {
                    crls.append(CRLBox(taking: c))
                }
                if !OpenSSLErrors.drainIsCleanPEMEnd() { failure = "PEM block \(crls.count + 1) is not a valid CRL" }
            }
            if let failure { throw PKIError(failure) }
            if crls.isEmpty { throw PKIError("no PEM CRL (-----BEGIN X509 CRL-----) in it") }
            return crls
        }
        var failure: String?
        data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            guard let base = raw.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
            var cursor: UnsafePointer<UInt8>? = UnsafePointer(base)
            let end = UnsafePointer(base) + raw.count
            while let at = cursor, at < end {
                guard let crl = d2i_X509_CRL(nil, &cursor, end - at) else {
                    failure = "neither PEM nor DER: CRL \(crls.count + 1) at byte \(at - UnsafePointer(base)) does not parse (\(OpenSSLErrors.drain() ?? "unknown error"))"
                    return
                }
                crls.append(CRLBox(taking: crl))
            }
        }
        if let failure { throw PKIError(failure) }
        if crls.isEmpty { throw PKIError("the file is empty") }
        return crls
    }

    /// One DER certificate that must fill `data` exactly (no trailing bytes).
    static func certificate(der data: Data) -> X509Box? {
        guard !data.isEmpty else { return nil }
        defer { ERR_clear_error() }
        return data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> X509Box? in
            guard let base = raw.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return nil }
            var cursor: UnsafePointer<UInt8>? = UnsafePointer(base)
            guard let x = d2i_X509(nil, &cursor, raw.count) else { return nil }
            let box = X509Box(taking: x)
            guard cursor == UnsafePointer(base) + raw.count else { return nil }
            return box
        }
    }

    /// Runs `body` with a read-only memory BIO over `data` (valid only inside `body`).
    private static func withMemoryBIO(_ data: Data, _ body: (OpaquePointer) -> Void) {
        guard !data.isEmpty else { return }
        data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(clamping: raw.count)) else { return }
            defer { BIO_free(bio) }
            body(bio)
        }
    }
}

enum X509Time {
    /// An ASN1_TIME as seconds since 1970.
    static func seconds(_ time: UnsafePointer<ASN1_TIME>?) -> Int64? {
        guard let time else { return nil }
        var t = tm()
        guard ASN1_TIME_to_tm(time, &t) == 1 else { return nil }
        return Int64(timegm(&t))
    }
}

enum X509Name {
    /// Every value of attribute `nid` in `name`, in DER order, as UTF-8 (unconvertible
    /// values are skipped).
    static func values(_ name: OpaquePointer?, nid: Int32) -> [String] {
        guard let name else { return [] }
        var out: [String] = []
        for i in 0..<X509_NAME_entry_count(name) {
            guard let entry = X509_NAME_get_entry(name, i), OBJ_obj2nid(X509_NAME_ENTRY_get_object(entry)) == nid,
                  let text = utf8(X509_NAME_ENTRY_get_data(entry)) else { continue }
            out.append(text)
        }
        return out
    }

    /// The name in one line, attributes in certificate order as `openssl x509 -subject`
    /// shows them, values escaped as in RFC 4514: `CN=alice, OU=Engineering, O=Corp`.
    /// For logs and reasons only.
    static func oneLine(_ name: OpaquePointer?) -> String {
        guard let name else { return "" }
        var parts: [String] = []
        for i in 0..<X509_NAME_entry_count(name) {
            guard let entry = X509_NAME_get_entry(name, i) else { continue }
            let object = X509_NAME_ENTRY_get_object(entry)
            let nid = OBJ_obj2nid(object)
            let key: String
            if nid != NID_undef, let sn = OBJ_nid2sn(nid) {
                key = String(cString: sn)
            } else {
                key = oid(object) ?? "?"
            }
            let value = utf8(X509_NAME_ENTRY_get_data(entry)) ?? "#(unreadable)"
            parts.append(key + "=" + escape(value))
        }
        return parts.joined(separator: ", ")
    }

    /// The dotted text of an OID.
    static func oid(_ object: OpaquePointer?) -> String? {
        guard let object else { return nil }
        var buf = [CChar](repeating: 0, count: 128)
        let n = OBJ_obj2txt(&buf, Int32(buf.count), object, 1)
        guard n > 0, Int(n) < buf.count else { return nil }
        return cString(buf)
    }

    /// An ASN.1 string (any of the string types) as UTF-8.
    static func utf8(_ string: UnsafePointer<ASN1_STRING>?) -> String? {
        guard let string else { return nil }
        var out: UnsafeMutablePointer<UInt8>?
        let n = ASN1_STRING_to_UTF8(&out, string)
        guard n >= 0, let out else {
            ERR_clear_error()
            return nil
        }
        defer { CRYPTO_free(out, #fileID, #line) }
        return String(validating: UnsafeBufferPointer(start: out, count: Int(n)), as: UTF8.self)
    }

    /// RFC 4514 escaping, plus control characters as `\XX`, so a name is one safe line.
    static func escape(_ value: String) -> String {
        var out = ""
        for (i, scalar) in value.unicodeScalars.enumerated() {
            switch scalar {
            case ",", "+", "\"", "\\", "<", ">", ";":
                out += "\\" + String(scalar)
            case "#" where i == 0, " " where i == 0:
                out += "\\" + String(scalar)
            default:
                if scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) {
                    out += String(format: "\\%02X", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        if out.hasSuffix(" ") { out = String(out.dropLast()) + "\\ " }
        return out
    }
}

enum X509Fields {
    static let upnOID = "1.3.6.1.4.1.311.20.2.3"

    /// The serial number in hex (upper case, as `openssl x509 -serial` prints it).
    static func serialHex(_ x: OpaquePointer) -> String {
        guard let serial = X509_get0_serialNumber(x), let bn = ASN1_INTEGER_to_BN(serial, nil) else { return "?" }
        defer { BN_free(bn) }
        guard let hex = BN_bn2hex(bn) else { return "?" }
        defer { CRYPTO_free(hex, #fileID, #line) }
        return String(cString: hex)
    }

    /// The subjectAltName entries: UPN otherNames and rfc822Names, in order.
    static func subjectAltNames(_ x: OpaquePointer) -> (upns: [String], emails: [String]) {
        var critical: Int32 = 0
        guard let raw = X509_get_ext_d2i(x, NID_subject_alt_name, &critical, nil) else {
            ERR_clear_error()
            return ([], [])
        }
        let names = OpaquePointer(raw)
        defer { GENERAL_NAMES_free(names) }
        var upns: [String] = [], emails: [String] = []
        for i in 0..<OPENSSL_sk_num(names) {
            guard let entry = OPENSSL_sk_value(names, i) else { continue }
            let name = UnsafePointer(entry.assumingMemoryBound(to: GENERAL_NAME.self))
            var type: Int32 = -1
            let value = GENERAL_NAME_get0_value(name, &type)
            switch type {
            case GEN_EMAIL:
                if let value, let text = X509Name.utf8(UnsafePointer(value.assumingMemoryBound(to: ASN1_STRING.self))) {
                    emails.append(text)
                }
            case GEN_OTHERNAME:
                var oid: OpaquePointer?
                var other: UnsafeMutablePointer<ASN1_TYPE>?
                guard GENERAL_NAME_get0_otherName(name, &oid, &other) == 1, X509Name.oid(oid) == upnOID,
                      let other, other.pointee.type == V_ASN1_UTF8STRING,
                      let text = X509Name.utf8(UnsafePointer(other.pointee.value.utf8string)) else { continue }
                upns.append(text)
            default:
                continue
            }
        }
        return (upns, emails)
    }
}
