internal import COpenSSL

/// The few primitives the dataplane needs outside TLS itself, from the same OpenSSL.
public enum GatewayCrypto {
    /// Cryptographically strong random bytes (session cookies, DTLS app ids).
    public static func randomBytes(_ n: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: n)
        // RAND_bytes only fails when the DRBG cannot be seeded: nothing safe can be
        // done without randomness, so stopping the process is the correct response.
        precondition(RAND_bytes(&out, Int32(n)) == 1, "OpenSSL RAND_bytes failed")
        return out
    }

    public static func sha256(_ bytes: some Collection<UInt8>) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 32)
        let input = Array(bytes)
        _ = input.withUnsafeBytes { raw in
            EVP_Digest(raw.baseAddress, raw.count, &digest, nil, EVP_sha256(), nil)
        }
        return digest
    }
}
