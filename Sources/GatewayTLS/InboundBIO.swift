internal import COpenSSL

/// A read-only BIO over an `InboundBuffer`: OpenSSL reads exactly the bytes the
/// connection's owner put there, and hears "retry" when there are none yet. Written by
/// hand because OpenSSL 3.0's memory BIO would be one more copy of every record, and its
/// socket BIO makes libssl read ahead (see `InboundBuffer`).
enum InboundBIO {
    nonisolated(unsafe) static let method: OpaquePointer = {
        let m = RetainingBIO.method("mstunnel-inbound")
        BIO_meth_set_read(m) { bio, data, len in
            guard let data, len > 0, let input = RetainingBIO.object(of: bio, as: InboundBuffer.self) else { return -1 }
            mst_BIO_clear_retry_flags(bio)
            let n = input.read(into: data, max: Int(len))
            if n < 0 { mst_BIO_set_retry_read(bio) }
            return Int32(n)
        }
        BIO_meth_set_ctrl(m) { bio, cmd, _, _ in
            guard let input = RetainingBIO.object(of: bio, as: InboundBuffer.self) else { return 0 }
            switch cmd {
            case BIO_CTRL_PENDING: return input.count
            case BIO_CTRL_EOF: return input.isEmpty && input.endOfStream ? 1 : 0
            case BIO_CTRL_FLUSH: return 1
            default: return 0
            }
        }
        return m
    }()

    static func make(_ input: InboundBuffer) -> OpaquePointer? { RetainingBIO.make(method, holding: input) }
}
