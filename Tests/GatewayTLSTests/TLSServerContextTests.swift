import Foundation
import Glibc
import Testing
@testable import GatewayTLS

/// Real OpenSSL on both ends: certificates from the `openssl` tool, the peer is
/// `openssl s_client` over loopback TCP.
@Suite(.serialized) struct TLSServerContextTests {
    let dir: String

    init() throws {
        dir = NSTemporaryDirectory() + "mst-tls-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=test "
               + "-keyout \(dir)/site.key -out \(dir)/site.crt 2>/dev/null")
    }

    @discardableResult
    func sh(_ command: String) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", command]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw TLSError("command failed: \(command)") }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func pinMatchesOpenSSLTool() throws {
        let ctx = try TLSServerContext(certificate: .pem(chain: dir + "/site.crt", key: dir + "/site.key"))
        let expected = try sh("openssl x509 -in \(dir)/site.crt -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64")
        #expect(ctx.publicKeyPin == "pin-sha256:" + expected)
        #expect((ctx.leafNotAfter ?? 0) > Int64(Date().timeIntervalSince1970))
    }

    @Test func pkcs12WithPassword() throws {
        try sh("openssl pkcs12 -export -inkey \(dir)/site.key -in \(dir)/site.crt -out \(dir)/site.pfx -passout pass:s3cret")
        let ctx = try TLSServerContext(certificate: .pkcs12(path: dir + "/site.pfx", password: "s3cret"))
        #expect(ctx.publicKeyPin != nil)
        #expect(throws: TLSError.self) { try TLSServerContext(certificate: .pkcs12(path: dir + "/site.pfx", password: "wrong")) }
    }

    @Test func clearErrorsForBadFiles() throws {
        try "not a key".write(toFile: dir + "/bad.key", atomically: true, encoding: .utf8)
        do {
            _ = try TLSServerContext(certificate: .pem(chain: dir + "/site.crt", key: dir + "/bad.key"))
            Issue.record("must fail")
        } catch let e as TLSError {
            #expect(e.message.contains("cannot load private key"))
        }
        try sh("openssl ecparam -name prime256v1 -genkey -noout -out \(dir)/other.key")
        do {
            _ = try TLSServerContext(certificate: .pem(chain: dir + "/site.crt", key: dir + "/other.key"))
            Issue.record("must fail")
        } catch let e as TLSError {
            #expect(e.message.contains("does not match"))
        }
    }

    @Test func handshakeAndRecordsWithOpenSSLClient() throws {
        let ctx = try TLSServerContext(certificate: .pem(chain: dir + "/site.crt", key: dir + "/site.key"))
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, len) } }
        listen(listener, 1)
        _ = withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &len) } }
        let port = UInt16(bigEndian: sa.sin_port)

        let client = Process()
        client.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        client.arguments = ["s_client", "-connect", "127.0.0.1:\(port)", "-quiet", "-no_ign_eof"]
        let toClient = Pipe(), fromClient = Pipe()
        client.standardInput = toClient
        client.standardOutput = fromClient
        client.standardError = FileHandle.nullDevice
        try client.run()
        defer { if client.isRunning { client.terminate() } }

        let fd = accept(listener, nil, nil)
        #expect(fd >= 0)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        defer { close(fd) }
        let pool = BufferPool(chunkSize: 64 * 1024)
        let input = InboundBuffer()
        let conn = try ctx.makeConnection(input: input, output: OutboundBuffer(pool: pool))
        // The gateway's way: one recv into an area it owns, lent to the connection for a pass.
        let area = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        defer { area.deallocate() }
        var done = false
        for _ in 0..<200 where !done {
            _ = input.receive(fd: fd, into: area)
            defer { input.settle() }
            let r = conn.handshake()
            _ = conn.output.flush(fd: fd)
            switch r {
            case .done: done = true
            case .wantRead, .wantWrite:
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                _ = poll(&p, 1, 100)
            default:
                Issue.record("handshake failed: \(r)")
                return
            }
        }
        #expect(done)
        #expect(conn.protocolVersion == "TLSv1.3")
        #expect(conn.exportKeyingMaterial(label: "EXPORTER-openconnect-psk", length: 32)?.count == 32)

        // Server → client: one write, through the outbound buffer, arrives intact.
        let message = Array("hello from mstunnel\n".utf8)
        #expect(message.withUnsafeBytes { conn.write($0.baseAddress!, $0.count) } == .done(message.count))
        #expect(conn.output.flush(fd: fd) == .drained)
        let line = fromClient.fileHandleForReading.availableData
        #expect(String(decoding: line, as: UTF8.self).contains("hello from mstunnel"))

        // Client → server.
        toClient.fileHandleForWriting.write(Data("ping\n".utf8))
        var buf = [UInt8](repeating: 0, count: 4096)
        var got = ""
        for _ in 0..<100 where !got.contains("ping") {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&p, 1, 100)
            _ = input.receive(fd: fd, into: area)
            defer { input.settle() }
            let r = buf.withUnsafeMutableBytes { conn.read($0.baseAddress!, $0.count) }
            if case .done(let n) = r { got += String(decoding: buf[0..<n], as: UTF8.self) }
        }
        #expect(got == "ping\n")
        #expect(pool.outstanding == 0)
    }
}
