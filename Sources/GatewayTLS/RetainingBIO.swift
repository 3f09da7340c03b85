internal import COpenSSL

/// What our BIOs over a Swift object share (`InboundBIO`, `OutboundBIO`): the object is
/// retained while the BIO lives and released when OpenSSL frees the BIO (with the SSL).
enum RetainingBIO {
    /// A source/sink method table named `name`, with create and destroy set; the caller
    /// adds read or write and ctrl.
    static func method(_ name: String) -> OpaquePointer {
        let m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, name)!
        BIO_meth_set_create(m) { bio in
            BIO_set_init(bio, 1)
            return 1
        }
        BIO_meth_set_destroy(m) { bio in
            guard let bio else { return 0 }
            if let raw = BIO_get_data(bio) {
                Unmanaged<AnyObject>.fromOpaque(raw).release()
                BIO_set_data(bio, nil)
            }
            return 1
        }
        return m
    }

    /// A BIO of `method` holding `object`.
    static func make(_ method: OpaquePointer, holding object: AnyObject) -> OpaquePointer? {
        guard let bio = BIO_new(method) else { return nil }
        BIO_set_data(bio, Unmanaged.passRetained(object).toOpaque())
        return bio
    }

    /// The object a BIO of ours holds (per record: no retain).
    @inline(__always)
    static func object<T: AnyObject>(of bio: OpaquePointer?, as _: T.Type) -> T? {
        guard let bio, let raw = BIO_get_data(bio) else { return nil }
        return Unmanaged<T>.fromOpaque(raw).takeUnretainedValue()
    }
}
