import CCurl

/// The pieces of libcurl plumbing every HTTP user in the project shares (the auth
/// plugin's JWKS fetcher and the agent's control-plane client).
public enum Curl {
    /// libcurl's global state must be set up once per process before any thread uses
    /// it; a static let is initialised exactly once, thread-safely.
    public static let globalInit: CURLcode = curl_global_init(Int(CURL_GLOBAL_DEFAULT))
}

/// Accumulates a response body for the C write callback, which only gets a raw pointer.
/// Pass it retained as CURLOPT_WRITEDATA with `curlBodySinkWrite` as the write function.
public final class CurlBodySink {
    public private(set) var body: [UInt8] = []
    /// Set when the body outgrew `limit` and the transfer was aborted.
    public private(set) var overflowed = false
    public let limit: Int

    public init(limit: Int) { self.limit = limit }

    fileprivate func append(_ data: UnsafeMutablePointer<CChar>?, _ n: Int) -> Int {
        if body.count + n > limit {
            overflowed = true
            return 0
        }
        if let data, n > 0 {
            data.withMemoryRebound(to: UInt8.self, capacity: n) { body.append(contentsOf: UnsafeBufferPointer(start: $0, count: n)) }
        }
        return n
    }
}

/// curl's write callback for a `CurlBodySink`. Returning fewer bytes than given aborts
/// the transfer, which is how the size limit holds when the server sends no Content-Length.
public let curlBodySinkWrite: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = { data, size, count, user in
    guard let user else { return 0 }
    return Unmanaged<CurlBodySink>.fromOpaque(user).takeUnretainedValue().append(data, size * count)
}
