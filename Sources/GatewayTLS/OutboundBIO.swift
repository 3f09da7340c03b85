internal import COpenSSL

/// A write-only BIO that appends each record OpenSSL produces to an `OutboundBuffer`.
/// OpenSSL 3.0 has no BIO that writes into caller-owned memory without copying it out
/// again, so this small method table is written by hand.
enum OutboundBIO {
    nonisolated(unsafe) static let method: OpaquePointer = {
        let m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "mstunnel-outbound")!
        BIO_meth_set_write(m) { bio, data, len in
            guard let bio, let data, len >= 0, let raw = BIO_get_data(bio) else { return -1 }
            let out = Unmanaged<OutboundBuffer>.fromOpaque(raw).takeUnretainedValue()
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
        BIO_meth_set_create(m) { bio in
            BIO_set_init(bio, 1)
            return 1
        }
        BIO_meth_set_destroy(m) { bio in
            guard let bio else { return 0 }
            if let raw = BIO_get_data(bio) {
                Unmanaged<OutboundBuffer>.fromOpaque(raw).release()
                BIO_set_data(bio, nil)
            }
            return 1
        }
        return m
    }()

    static func make(_ output: OutboundBuffer) -> OpaquePointer? {
        guard let bio = BIO_new(method) else { return nil }
        // The BIO keeps the buffer alive; released in the destroy callback.
        BIO_set_data(bio, Unmanaged.passRetained(output).toOpaque())
        return bio
    }
}
