internal import COpenSSL

/// A read-only BIO over an `InboundBuffer`: OpenSSL reads exactly the bytes the
/// connection's owner put there, and hears "retry" when there are none yet. Written by
/// hand because OpenSSL 3.0's memory BIO would be one more copy of every record, and its
/// socket BIO makes libssl read ahead (see `InboundBuffer`).
enum InboundBIO {
    nonisolated(unsafe) static let method: OpaquePointer = {
        let m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "mstunnel-inbound")!
        BIO_meth_set_read(m) { bio, data, len in
            guard let bio, let data, len > 0, let raw = BIO_get_data(bio) else { return -1 }
            let input = Unmanaged<InboundBuffer>.fromOpaque(raw).takeUnretainedValue()
            mst_BIO_clear_retry_flags(bio)
            let n = input.read(into: data, max: Int(len))
            if n < 0 { mst_BIO_set_retry_read(bio) }
            return Int32(n)
        }
        BIO_meth_set_ctrl(m) { bio, cmd, _, _ in
            guard let bio, let raw = BIO_get_data(bio) else { return 0 }
            let input = Unmanaged<InboundBuffer>.fromOpaque(raw).takeUnretainedValue()
            switch cmd {
            case BIO_CTRL_PENDING: return input.count
            case BIO_CTRL_EOF: return input.isEmpty && input.endOfStream ? 1 : 0
            case BIO_CTRL_FLUSH: return 1
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
                Unmanaged<InboundBuffer>.fromOpaque(raw).release()
                BIO_set_data(bio, nil)
            }
            return 1
        }
        return m
    }()

    static func make(_ input: InboundBuffer) -> OpaquePointer? {
        guard let bio = BIO_new(method) else { return nil }
        // The BIO keeps the buffer alive; released in the destroy callback.
        BIO_set_data(bio, Unmanaged.passRetained(input).toOpaque())
        return bio
    }
}
