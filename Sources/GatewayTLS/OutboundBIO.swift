internal import COpenSSL

/// A write-only BIO that appends each record OpenSSL produces to an `OutboundBuffer`.
/// OpenSSL 3.0 has no BIO that writes into caller-owned memory without copying it out
/// again, so this small method table is written by hand.
enum OutboundBIO {
    nonisolated(unsafe) static let method: OpaquePointer = {
        let m = RetainingBIO.method("mstunnel-outbound")
        BIO_meth_set_write(m) { bio, data, len in
            guard let data, len >= 0, let out = RetainingBIO.object(of: bio, as: OutboundBuffer.self) else { return -1 }
            return out.append(data, Int(len)) ? len : -1
        }
        BIO_meth_set_ctrl(m) { _, cmd, _, _ in
            // FLUSH is called after each handshake flight: our caller flushes to the
            // socket itself, so "done" is the truthful answer here.
            switch cmd {
            case BIO_CTRL_FLUSH: return 1
            case BIO_CTRL_WPENDING, BIO_CTRL_PENDING: return 0
            default: return 0
            }
        }
        return m
    }()

    static func make(_ output: OutboundBuffer) -> OpaquePointer? { RetainingBIO.make(method, holding: output) }
}
