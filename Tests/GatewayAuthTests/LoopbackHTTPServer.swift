import Foundation
import GatewayIPC

#if canImport(Glibc)
import Glibc
#endif

/// A minimal HTTP/1.1 server on 127.0.0.1 with a kernel-chosen port, so the libcurl
/// fetch path is exercised against a real socket without leaving loopback.
final class LoopbackHTTPServer: @unchecked Sendable {
    // @unchecked: `routes`, `hits` and `stopped` are only touched under `lock`; `fd`
    // and `port` are set in init and never change.
    private let lock = GatewayIPC.Mutex()
    private var routes: [String: (status: Int, body: Data)] = [:]
    private var hits: [String: Int] = [:]
    private var stopped = false
    private let fd: Int32
    let port: UInt16
    private let finished = DispatchSemaphore(value: 0)

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw IPCError("socket", errno: errno) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 16) == 0 else {
            let e = errno
            close(fd)
            throw IPCError("bind/listen 127.0.0.1:0", errno: e)
        }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        self.fd = fd
        self.port = UInt16(bigEndian: addr.sin_port)
        let thread = Thread { [self] in serve() }
        thread.start()
    }

    var base: String { "http://127.0.0.1:\(port)" }

    func route(_ path: String, status: Int = 200, body: Data) {
        lock.withLock { routes[path] = (status, body) }
    }

    func hitCount(_ path: String) -> Int { lock.withLock { hits[path, default: 0] } }

    func stop() {
        lock.withLock { stopped = true }
        // Wake the accept loop with a connection of our own.
        let c = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(c, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        close(c)
        finished.wait()
    }

    private func serve() {
        defer {
            close(fd)
            finished.signal()
        }
        while true {
            let c = accept(fd, nil, nil)
            if lock.withLock({ stopped }) {
                if c >= 0 { close(c) }
                return
            }
            if c < 0 { continue }
            handle(c)
            close(c)
        }
    }

    private func handle(_ c: Int32) {
        var request = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !request.containsHeaderEnd, request.count < 65536 {
            let n = buffer.withUnsafeMutableBytes { recv(c, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return }
            request.append(contentsOf: buffer[0..<n])
        }
        let line = String(decoding: request.prefix { $0 != 13 }, as: UTF8.self)
        let path = line.split(separator: " ").dropFirst().first.map(String.init) ?? "/"
        let (status, body) = lock.withLock { () -> (Int, Data) in
            hits[path, default: 0] += 1
            return routes[path] ?? (404, Data("not found".utf8))
        }
        let head = "HTTP/1.1 \(status) X\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        try? UnixSocket.writeAll(fd: c, Array(head.utf8) + Array(body))
    }
}

private extension [UInt8] {
    var containsHeaderEnd: Bool {
        guard count >= 4 else { return false }
        for i in 0...(count - 4) where self[i] == 13 && self[i + 1] == 10 && self[i + 2] == 13 && self[i + 3] == 10 {
            return true
        }
        return false
    }
}
