internal import CCurl
import GatewayCurl
import Foundation

/// Why a key fetch failed. Never the client's fault: the gateway answers 503 for these.
public struct KeySourceError: Error, CustomStringConvertible, Sendable, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// HTTP(S) GET through libcurl (the project's rule: real libcurl, so proxies, TLS and
/// CA handling behave like every other curl on the host).
///
/// Each fetch runs on its own short-lived thread: curl's easy interface blocks, and
/// blocking a Swift concurrency worker (there are only as many as cores) would stall
/// every other validation while an issuer is slow.
public struct HTTPFetcher: Sendable {
    /// Extra trusted CA bundle (PEM file), passed as CURLOPT_CAINFO.
    public var caBundle: String?
    public var connectTimeoutSeconds: Int = 5
    public var totalTimeoutSeconds: Int = 15
    /// Largest body accepted; a JWKS or discovery document is a few kilobytes.
    public var maxBytes: Int = 1 << 20

    public init(caBundle: String? = nil) {
        self.caBundle = caBundle
    }


    public func get(_ url: String) async throws(KeySourceError) -> Data {
        let result: Result<Data, KeySourceError> = await withCheckedContinuation { continuation in
            let thread = Thread {
                continuation.resume(returning: self.getBlocking(url))
            }
            thread.name = "mst-auth-http"
            thread.start()
        }
        return try result.get()
    }

    /// The blocking fetch; public for callers that are already on their own thread.
    public func getBlocking(_ url: String) -> Result<Data, KeySourceError> {
        guard Curl.globalInit == CURLE_OK else {
            return .failure(KeySourceError("GET \(url): curl_global_init failed"))
        }
        guard let curl = curl_easy_init() else {
            return .failure(KeySourceError("GET \(url): curl_easy_init failed"))
        }
        defer { curl_easy_cleanup(curl) }

        let sink = CurlBodySink(limit: maxBytes)
        let sinkPointer = Unmanaged.passRetained(sink)
        defer { sinkPointer.release() }
        var errorBuffer = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        let isHTTPS = url.lowercased().hasPrefix("https://")

        let code: CURLcode = errorBuffer.withUnsafeMutableBufferPointer { errBuf in
            var rc = CURLE_OK
            func set(_ r: CURLcode) { if rc == CURLE_OK { rc = r } }
            set(mst_curl_setopt_string(curl, CURLOPT_URL, url))
            set(mst_curl_setopt_pointer(curl, CURLOPT_ERRORBUFFER, errBuf.baseAddress))
            // No signals from curl: we are multi-threaded and use our own timeouts.
            set(mst_curl_setopt_long(curl, CURLOPT_NOSIGNAL, 1))
            set(mst_curl_setopt_string(curl, CURLOPT_PROTOCOLS_STR, "http,https"))
            // Never follow a redirect from https down to plain http.
            set(mst_curl_setopt_string(curl, CURLOPT_REDIR_PROTOCOLS_STR, isHTTPS ? "https" : "http,https"))
            set(mst_curl_setopt_long(curl, CURLOPT_FOLLOWLOCATION, 1))
            set(mst_curl_setopt_long(curl, CURLOPT_MAXREDIRS, 3))
            set(mst_curl_setopt_long(curl, CURLOPT_CONNECTTIMEOUT, connectTimeoutSeconds))
            set(mst_curl_setopt_long(curl, CURLOPT_TIMEOUT, totalTimeoutSeconds))
            set(mst_curl_setopt_long(curl, CURLOPT_MAXFILESIZE, maxBytes))
            set(mst_curl_setopt_long(curl, CURLOPT_SSL_VERIFYPEER, 1))
            set(mst_curl_setopt_long(curl, CURLOPT_SSL_VERIFYHOST, 2))
            set(mst_curl_setopt_string(curl, CURLOPT_USERAGENT, "mstunnel-auth/\(AuthVersion.string)"))
            set(mst_curl_setopt_string(curl, CURLOPT_ACCEPT_ENCODING, ""))
            if let bundle = caBundle {
                set(mst_curl_setopt_string(curl, CURLOPT_CAINFO, bundle))
                // CAINFO replaces curl's default bundle; keep the system directory so a
                // private issuer's extra CA adds to the public roots instead of replacing them.
                var isDir: ObjCBool = false
                if FileManager.default.fileExists(atPath: "/etc/ssl/certs", isDirectory: &isDir), isDir.boolValue {
                    set(mst_curl_setopt_string(curl, CURLOPT_CAPATH, "/etc/ssl/certs"))
                }
            }
            set(mst_curl_setopt_write_function(curl, curlBodySinkWrite))
            set(mst_curl_setopt_pointer(curl, CURLOPT_WRITEDATA, sinkPointer.toOpaque()))
            if rc != CURLE_OK { return rc }
            return curl_easy_perform(curl)
        }

        // Either our write callback refused more bytes, or curl saw a Content-Length over MAXFILESIZE.
        if sink.overflowed || code == CURLE_FILESIZE_EXCEEDED {
            return .failure(KeySourceError("GET \(url): response larger than \(maxBytes) bytes"))
        }
        if code != CURLE_OK {
            let detail = errorBuffer.withUnsafeBufferPointer { p -> String in
                let s = p.baseAddress.map { String(cString: $0) } ?? ""
                return s.isEmpty ? String(cString: curl_easy_strerror(code)) : s
            }
            return .failure(KeySourceError("GET \(url): \(detail) (curl error \(code.rawValue))"))
        }
        var status = 0
        _ = mst_curl_getinfo_long(curl, CURLINFO_RESPONSE_CODE, &status)
        guard status == 200 else {
            return .failure(KeySourceError("GET \(url): HTTP \(status)"))
        }
        return .success(Data(sink.body))
    }
}
