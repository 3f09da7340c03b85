internal import COpenSSL
import Glibc

/// Seals outgoing DTLS 1.2 application-data records with the connection's own AEAD
/// key, straight into the datagram batch, instead of through `SSL_write`.
///
/// Why by hand: on DTLS downloads OpenSSL 3.0's record layer cost ~5 % of the gateway's
/// CPU on top of the cipher itself (per record: `EVP_CIPHER_CTX_ctrl` building and
/// looking up parameters by name, a `malloc`/`free`, a copy through the BIO), and
/// OpenSSL has no API that seals a record without it. The cipher work stays in OpenSSL:
/// the same EVP "TLS AEAD" mode libssl itself uses (the provider makes the explicit
/// nonce for GCM and mixes the sequence number into ChaCha20-Poly1305's). Only the
/// 13-byte header, the AAD and the sequence number are ours (RFC 6347 §4.1,
/// RFC 5288 §3, RFC 7905 §2). Records from the client still go through `SSL_read`.
///
/// The key block is derived from the session's master secret as TLS 1.2 does
/// (RFC 5246 §6.3) with OpenSSL's TLS1-PRF KDF. The sequence continues from the last
/// record OpenSSL wrote, so the client sees one unbroken stream.
final class DTLSRecordSealer {
    enum Kind { case gcm, chacha20Poly1305 }

    static let headerSize = 13
    static let tagSize = 16
    static let maxSequence: UInt64 = (1 << 48) - 1

    let kind: Kind
    let epoch: UInt16
    /// The next record's sequence number (48 bits).
    @exclusivity(unchecked) private(set) var sequence: UInt64  // bumped per record; see DatagramBatch.count
    private let ctx: OpaquePointer
    /// The 13-byte AAD and the one-entry parameter list that hands it to the cipher,
    /// built once: per record only the bytes change.
    private let aad: UnsafeMutablePointer<UInt8>
    private let params: UnsafeMutablePointer<OSSL_PARAM>

    /// Bytes before the plaintext: header, and GCM's explicit nonce.
    var prefix: Int { Self.headerSize + (kind == .gcm ? 8 : 0) }

    private init(ctx: OpaquePointer, kind: Kind, epoch: UInt16, sequence: UInt64) {
        self.ctx = ctx
        self.kind = kind
        self.epoch = epoch
        self.sequence = sequence
        aad = .allocate(capacity: 13)
        aad.initialize(repeating: 0, count: 13)
        params = .allocate(capacity: 2)
        params[0] = OSSL_PARAM_construct_octet_string(Self.aadParamName, aad, 13)
        params[1] = OSSL_PARAM_construct_end()
    }

    deinit {
        EVP_CIPHER_CTX_free(ctx)
        aad.deallocate()
        params.deallocate()
    }

    // Never written after initialisation; the name must outlive every OSSL_PARAM
    // pointing at it, so it is allocated once for the process.
    nonisolated(unsafe) private static let aadParamName = UnsafePointer(strdup("tlsaad")!)

    enum SetupError: Error, CustomStringConvertible {
        case unsupportedCipher(String)
        case keyDerivation(String)
        var description: String {
            switch self {
            case .unsupportedCipher(let c): "no direct record path for cipher \(c)"
            case .keyDerivation(let why): "server write key derivation failed: \(why)"
            }
        }
    }

    /// A sealer for the server's side of `ssl` (handshake complete), whose next record
    /// is (`epoch`, `sequence`).
    static func make(ssl: OpaquePointer, epoch: UInt16, sequence: UInt64) throws -> DTLSRecordSealer {
        guard let cipher = SSL_get_current_cipher(ssl) else { throw SetupError.unsupportedCipher("none") }
        let name = String(cString: SSL_CIPHER_get_name(cipher))
        let evp: OpaquePointer?
        let kind: Kind
        let keyLength: Int, ivLength: Int
        switch SSL_CIPHER_get_cipher_nid(cipher) {
        case NID_aes_256_gcm: (evp, kind, keyLength, ivLength) = (EVP_aes_256_gcm(), .gcm, 32, 4)
        case NID_aes_128_gcm: (evp, kind, keyLength, ivLength) = (EVP_aes_128_gcm(), .gcm, 16, 4)
        case NID_chacha20_poly1305: (evp, kind, keyLength, ivLength) = (EVP_chacha20_poly1305(), .chacha20Poly1305, 32, 12)
        default: throw SetupError.unsupportedCipher(name)
        }
        guard let evp, let md = SSL_CIPHER_get_handshake_digest(cipher), let mdName = EVP_MD_get0_name(md),
              let session = SSL_get_session(ssl) else {
            throw SetupError.unsupportedCipher(name)
        }
        // key_block = PRF(master_secret, "key expansion", server_random + client_random):
        // client key, server key, client IV, server IV (AEAD suites have no MAC keys).
        var master = [UInt8](repeating: 0, count: 48)
        let masterLength = SSL_SESSION_get_master_key(session, &master, master.count)
        var seed = Array("key expansion".utf8) + [UInt8](repeating: 0, count: 64)
        seed.withUnsafeMutableBufferPointer { b in
            _ = SSL_get_server_random(ssl, b.baseAddress! + 13, 32)
            _ = SSL_get_client_random(ssl, b.baseAddress! + 45, 32)
        }
        var block = [UInt8](repeating: 0, count: 2 * keyLength + 2 * ivLength)
        defer {
            // The key material must not linger on the heap.
            OPENSSL_cleanse(&master, master.count)
            OPENSSL_cleanse(&block, block.count)
        }
        guard masterLength > 0 else { throw SetupError.keyDerivation("no master secret") }
        try derive(into: &block, digest: mdName, secret: &master, secretLength: masterLength, seed: &seed)

        ERR_clear_error()
        guard let ctx = EVP_CIPHER_CTX_new() else { throw SetupError.keyDerivation(OpenSSLErrors.drain()) }
        let ok = block.withUnsafeMutableBufferPointer { b -> Bool in
            let key = b.baseAddress! + keyLength              // server write key
            let iv = b.baseAddress! + 2 * keyLength + ivLength  // server write IV
            return EVP_EncryptInit_ex(ctx, evp, nil, key, nil) == 1
                && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IV_FIXED, Int32(ivLength), iv) > 0
        }
        guard ok else {
            EVP_CIPHER_CTX_free(ctx)
            throw SetupError.keyDerivation(OpenSSLErrors.drain())
        }
        return DTLSRecordSealer(ctx: ctx, kind: kind, epoch: epoch, sequence: sequence)
    }

    private static func derive(into block: inout [UInt8], digest: UnsafePointer<CChar>, secret: inout [UInt8], secretLength: Int,
                               seed: inout [UInt8]) throws {
        ERR_clear_error()
        guard let kdf = EVP_KDF_fetch(nil, "TLS1-PRF", nil) else { throw SetupError.keyDerivation(OpenSSLErrors.drain()) }
        defer { EVP_KDF_free(kdf) }
        guard let kctx = EVP_KDF_CTX_new(kdf) else { throw SetupError.keyDerivation(OpenSSLErrors.drain()) }
        defer { EVP_KDF_CTX_free(kctx) }
        let rc: Int32 = "digest".withCString { digestKey in
            "secret".withCString { secretKey in
                "seed".withCString { seedKey in
                    secret.withUnsafeMutableBytes { s in
                        seed.withUnsafeMutableBytes { sd in
                            var params = [
                                OSSL_PARAM_construct_utf8_string(digestKey, UnsafeMutablePointer(mutating: digest), 0),
                                OSSL_PARAM_construct_octet_string(secretKey, s.baseAddress, secretLength),
                                OSSL_PARAM_construct_octet_string(seedKey, sd.baseAddress, sd.count),
                                OSSL_PARAM_construct_end(),
                            ]
                            return block.withUnsafeMutableBufferPointer { out in
                                EVP_KDF_derive(kctx, out.baseAddress, out.count, &params)
                            }
                        }
                    }
                }
            }
        }
        guard rc == 1 else { throw SetupError.keyDerivation(OpenSSLErrors.drain()) }
    }

    /// The datagram size a record of `n` plaintext bytes takes.
    @inline(__always)
    func sealedSize(_ n: Int) -> Int { prefix + n + Self.tagSize }

    /// Seals `n` bytes of content `type` whose plaintext is already at
    /// `out + prefix`, writing the header (and nonce) before it and the tag after it.
    /// Returns the record's size, or nil when the sequence is exhausted or the cipher
    /// fails (the channel must then end).
    @inline(__always)
    func seal(type: UInt8, at out: UnsafeMutableRawPointer, plaintextLength n: Int) -> Int? {
        guard sequence <= Self.maxSequence else { return nil }
        let bodyLength = sealedSize(n) - Self.headerSize
        // Header: type, DTLS 1.2 (FE FD), epoch, 48-bit sequence, length.
        let es = UInt64(epoch) << 48 | sequence
        out.storeBytes(of: type, as: UInt8.self)
        out.storeBytes(of: UInt16(0xFEFD).bigEndian, toByteOffset: 1, as: UInt16.self)
        out.storeBytes(of: es.bigEndian, toByteOffset: 3, as: UInt64.self)
        out.storeBytes(of: UInt16(bodyLength).bigEndian, toByteOffset: 11, as: UInt16.self)
        // AAD: epoch+sequence, type, version, length. In the TLS mode the length given
        // to GCM counts its explicit nonce (the provider takes it off); ChaCha's is the
        // plaintext's.
        let aadLength = kind == .gcm ? n + 8 : n
        UnsafeMutableRawPointer(aad).copyMemory(from: out + 3, byteCount: 8)
        aad[8] = type
        aad[9] = 0xFE
        aad[10] = 0xFD
        aad[11] = UInt8(truncatingIfNeeded: aadLength >> 8)
        aad[12] = UInt8(truncatingIfNeeded: aadLength)
        guard EVP_CIPHER_CTX_set_params(ctx, params) == 1 else {
            ERR_clear_error()
            return nil
        }
        let body = (out + Self.headerSize).assumingMemoryBound(to: UInt8.self)
        guard EVP_Cipher(ctx, body, body, UInt32(bodyLength)) == Int32(bodyLength) else {
            ERR_clear_error()
            return nil
        }
        sequence += 1
        return Self.headerSize + bodyLength
    }
}
