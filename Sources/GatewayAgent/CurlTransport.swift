internal import CCurl
import GatewayCurl
import Foundation

/// How the peer's TLS certificate is checked.
public enum TLSTrust: Sendable, Equatable {
    /// Only this CA file (the pinned control-plane CA); the system store is not consulted.
    case caFile(String)
    /// Only this CA, in memory (enrollment, before anything is written to disk).
    case caPEM(Data)
    /// The host's default CA store.
    case system
    /// No verification at all. Used for exactly two requests: fetching the control plane's
    /// CA at enrollment, whose bytes are then checked against the join token's hash; and the
    /// internal network probe (`NetworkProbe`), which only measures reachability and sends
    /// nothing but a bare GET.
    case insecureUnverified
}

public enum ProxyMode: Sendable, Equatable {
    /// libcurl's own environment handling (`https_proxy`, `no_proxy`, …).
    case environment
    /// Always direct, whatever the environment says.
    case direct
}

public struct CurlRequest: Sendable {
    public var method: String = "GET"
    public var url: String
    public var headers: [String] = []
    public var body: Data?
    public var trust: TLSTrust = .system
    /// PEM files for mutual TLS: certificate chain (leaf first) and private key.
    public var clientCertificateFile: String?
    public var clientKeyFile: String?
    public var proxy: ProxyMode = .environment
    public var connectTimeoutSeconds = 10
    public var totalTimeoutSeconds = 30
    public var maxResponseBytes = 4 << 20
    public var allowedProtocols = "https"

    public init(method: String = "GET", url: String) {
        self.method = method
        self.url = url
    }
}

public struct CurlResponse: Sendable {
    public var status: Int
    public var body: Data
    /// Total time of the request, connection set-up included, in milliseconds.
    public var roundTripMilliseconds: Double
}

/// One blocking libcurl easy transfer.
///
/// Threading: the agent is a plain thread loop (see `AgentRunner`), so a blocking
/// `curl_easy_perform` here blocks only the agent's own thread, never a Swift concurrency
/// worker. Nothing in the agent runs on the cooperative pool.
public enum CurlTransport {
    public static func perform(_ request: CurlRequest, userAgent: String = "mstunnel-agent/\(AgentVersion.string)") -> Result<CurlResponse, ControlPlaneError> {
        guard Curl.globalInit == CURLE_OK else { return .failure(.transport("curl_global_init failed")) }
        guard let curl = curl_easy_init() else { return .failure(.transport("curl_easy_init failed")) }
        defer { curl_easy_cleanup(curl) }

        let sink = CurlBodySink(limit: request.maxResponseBytes)
        let sinkPointer = Unmanaged.passRetained(sink)
        defer { sinkPointer.release() }
        var errorBuffer = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)

        var headerList: UnsafeMutablePointer<curl_slist>?
        defer { if let headerList { curl_slist_free_all(headerList) } }
        // "Expect:" stops curl from waiting for a 100-continue before a large PUT.
        for h in request.headers + ["Expect:"] { headerList = curl_slist_append(headerList, h) }

        let body = request.body ?? Data()
        let code: CURLcode = errorBuffer.withUnsafeMutableBufferPointer { errBuf in
            body.withUnsafeBytes { bodyBytes in
                var rc = CURLE_OK
                func set(_ r: CURLcode) { if rc == CURLE_OK { rc = r } }
                set(mst_curl_setopt_string(curl, CURLOPT_URL, request.url))
                set(mst_curl_setopt_pointer(curl, CURLOPT_ERRORBUFFER, errBuf.baseAddress))
                // No signals from curl: the process has several threads and its own timeouts.
                set(mst_curl_setopt_long(curl, CURLOPT_NOSIGNAL, 1))
                set(mst_curl_setopt_string(curl, CURLOPT_PROTOCOLS_STR, request.allowedProtocols))
                // The API never redirects; following one could leak the client certificate's use elsewhere.
                set(mst_curl_setopt_long(curl, CURLOPT_FOLLOWLOCATION, 0))
                set(mst_curl_setopt_long(curl, CURLOPT_CONNECTTIMEOUT, request.connectTimeoutSeconds))
                set(mst_curl_setopt_long(curl, CURLOPT_TIMEOUT, request.totalTimeoutSeconds))
                set(mst_curl_setopt_long(curl, CURLOPT_MAXFILESIZE, request.maxResponseBytes))
                set(mst_curl_setopt_string(curl, CURLOPT_USERAGENT, userAgent))
                switch request.trust {
                case .insecureUnverified:
                    set(mst_curl_setopt_long(curl, CURLOPT_SSL_VERIFYPEER, 0))
                    set(mst_curl_setopt_long(curl, CURLOPT_SSL_VERIFYHOST, 0))
                case .system:
                    set(mst_curl_setopt_long(curl, CURLOPT_SSL_VERIFYPEER, 1))
                    set(mst_curl_setopt_long(curl, CURLOPT_SSL_VERIFYHOST, 2))
                case .caFile(let path):
                    set(mst_curl_setopt_long(curl, CURLOPT_SSL_VERIFYPEER, 1))
                    set(mst_curl_setopt_long(curl, CURLOPT_SSL_VERIFYHOST, 2))
                    set(mst_curl_setopt_string(curl, CURLOPT_CAINFO, path))
                    // Pinning means the pinned CA only: no system directory beside it.
                    set(mst_curl_setopt_null(curl, CURLOPT_CAPATH))
                case .caPEM(let pem):
                    set(mst_curl_setopt_long(curl, CURLOPT_SSL_VERIFYPEER, 1))
                    set(mst_curl_setopt_long(curl, CURLOPT_SSL_VERIFYHOST, 2))
                    set(pem.withUnsafeBytes { mst_curl_setopt_blob(curl, CURLOPT_CAINFO_BLOB, $0.baseAddress, $0.count) })
                    set(mst_curl_setopt_null(curl, CURLOPT_CAINFO))
                    set(mst_curl_setopt_null(curl, CURLOPT_CAPATH))
                }
                if let cert = request.clientCertificateFile, let key = request.clientKeyFile {
                    set(mst_curl_setopt_string(curl, CURLOPT_SSLCERT, cert))
                    set(mst_curl_setopt_string(curl, CURLOPT_SSLCERTTYPE, "PEM"))
                    set(mst_curl_setopt_string(curl, CURLOPT_SSLKEY, key))
                    set(mst_curl_setopt_string(curl, CURLOPT_SSLKEYTYPE, "PEM"))
                }
                if request.proxy == .direct {
                    // An empty CURLOPT_PROXY disables every proxy, environment included.
                    set(mst_curl_setopt_string(curl, CURLOPT_PROXY, ""))
                }
                // .environment: CURLOPT_PROXY is deliberately left unset so libcurl reads
                // https_proxy / no_proxy itself.
                switch request.method {
                case "GET":
                    set(mst_curl_setopt_long(curl, CURLOPT_HTTPGET, 1))
                case "POST":
                    set(mst_curl_setopt_long(curl, CURLOPT_POST, 1))
                default:
                    set(mst_curl_setopt_string(curl, CURLOPT_CUSTOMREQUEST, request.method))
                }
                if request.method != "GET" {
                    // POSTFIELDS points into `body`, alive for the whole perform below.
                    set(mst_curl_setopt_pointer(curl, CURLOPT_POSTFIELDS, UnsafeMutableRawPointer(mutating: bodyBytes.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!)))
                    set(mst_curl_setopt_off_t(curl, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(bodyBytes.count)))
                }
                if let headerList { set(mst_curl_setopt_pointer(curl, CURLOPT_HTTPHEADER, UnsafeMutableRawPointer(headerList))) }
                set(mst_curl_setopt_write_function(curl, curlBodySinkWrite))
                set(mst_curl_setopt_pointer(curl, CURLOPT_WRITEDATA, sinkPointer.toOpaque()))
                if rc != CURLE_OK { return rc }
                return curl_easy_perform(curl)
            }
        }

        // A proxy that wants credentials answers CONNECT with 407; whatever curl's error
        // code says, this is the message the operator needs.
        var connectCode = 0
        _ = mst_curl_getinfo_long(curl, CURLINFO_HTTP_CONNECTCODE, &connectCode)
        if connectCode == 407 {
            let proxy = ProxyEnvironment.proxy(for: request.url, environment: ProcessInfo.processInfo.environment).map(ProxyEnvironment.redacted) ?? "(from the environment)"
            return .failure(.refused("proxy at \(proxy) requires authentication (407); authenticated proxies are not supported"))
        }
        if sink.overflowed || code == CURLE_FILESIZE_EXCEEDED {
            return .failure(.invalidResponse("\(request.method) \(request.url): response larger than \(request.maxResponseBytes) bytes"))
        }
        if code != CURLE_OK {
            let detail = errorBuffer.withUnsafeBufferPointer { p -> String in
                let s = p.baseAddress.map { String(cString: $0) } ?? ""
                return s.isEmpty ? String(cString: curl_easy_strerror(code)) : s
            }
            return .failure(.transport("\(request.method) \(request.url): \(detail) (curl error \(code.rawValue))"))
        }
        var status = 0
        _ = mst_curl_getinfo_long(curl, CURLINFO_RESPONSE_CODE, &status)
        var totalMicros: curl_off_t = 0
        _ = mst_curl_getinfo_off_t(curl, CURLINFO_TOTAL_TIME_T, &totalMicros)
        return .success(CurlResponse(status: status, body: Data(sink.body), roundTripMilliseconds: Double(totalMicros) / 1000))
    }
}
