import Foundation
import Glibc
import Testing
import GatewayTLS

/// The client context (reading its socket itself, as mst-loadgen does) against the
/// gateway's own server context (reading what its owner receives for it), over a
/// non-blocking socketpair: handshake, pin, one record each way.
@Suite(.serialized) struct TLSClientTests {
    @Test func handshakePinAndRecords() throws {
        let dir = NSTemporaryDirectory() + "mst-loadgen-tls-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=t -keyout \(dir)/k -out \(dir)/c 2>/dev/null"]
        try p.run()
        p.waitUntilExit()
        try #require(p.terminationStatus == 0)

        let server = try TLSServerContext(certificate: .pem(chain: dir + "/c", key: dir + "/k"))
        let client = try TLSClientContext()
        var fds: [Int32] = [0, 0]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        let pool = BufferPool(chunkSize: 64 * 1024)
        let cOut = OutboundBuffer(pool: pool)
        let sOut = OutboundBuffer(pool: pool)
        let c = try client.makeConnection(fd: fds[0], output: cOut, serverName: "gw.test")
        let sIn = InboundBuffer()
        let s = try server.makeConnection(input: sIn, output: sOut)
        let area = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        defer { area.deallocate() }
        /// The server side's read pass, as the gateway does it.
        func serverPass<T>(_ input: InboundBuffer, _ fd: Int32, _ body: () -> T) -> T {
            _ = input.receive(fd: fd, into: area)
            defer { input.settle() }
            return body()
        }
        var rounds = 0
        while !(c.isHandshakeDone && s.isHandshakeDone) && rounds < 20 {
            if !c.isHandshakeDone { _ = c.handshake() }
            _ = cOut.flush(fd: fds[0])
            if !s.isHandshakeDone { _ = serverPass(sIn, fds[1]) { s.handshake() } }
            _ = sOut.flush(fd: fds[1])
            rounds += 1
        }
        #expect(c.isHandshakeDone && s.isHandshakeDone)
        #expect(c.peerPublicKeyPin == server.publicKeyPin)
        #expect(c.protocolVersion == "TLSv1.3")

        let frame: [UInt8] = [0x53, 0x54, 0x46, 0x01, 0x00, 0x02, 0x03, 0x00, 0xAB, 0xCD]
        #expect(frame.withUnsafeBytes { c.write($0.baseAddress!, $0.count) } == .done(frame.count))
        _ = cOut.flush(fd: fds[0])
        var buf = [UInt8](repeating: 0, count: 100)
        var got: TLSConnection.IOResult = .wantRead
        for _ in 0..<5 {
            got = serverPass(sIn, fds[1]) { buf.withUnsafeMutableBytes { s.read($0.baseAddress!, $0.count) } }
            if case .done = got { break }
        }
        #expect(got == .done(frame.count))
        #expect(Array(buf.prefix(frame.count)) == frame)

        // A wrong pin is visible as a different value, and a TLS 1.2-only client still connects.
        let c12ctx = try TLSClientContext(maxVersion12: true)
        var fds2: [Int32] = [0, 0]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds2) == 0)
        defer { close(fds2[0]); close(fds2[1]) }
        let c2 = try c12ctx.makeConnection(fd: fds2[0], output: cOut)
        let s2In = InboundBuffer()
        let s2 = try server.makeConnection(input: s2In, output: sOut)
        rounds = 0
        while !(c2.isHandshakeDone && s2.isHandshakeDone) && rounds < 20 {
            if !c2.isHandshakeDone { _ = c2.handshake() }
            _ = cOut.flush(fd: fds2[0])
            if !s2.isHandshakeDone { _ = serverPass(s2In, fds2[1]) { s2.handshake() } }
            _ = sOut.flush(fd: fds2[1])
            rounds += 1
        }
        #expect(c2.protocolVersion == "TLSv1.2")
        #expect(c2.peerPublicKeyPin == server.publicKeyPin)
    }

    @Test func handshakeAgainstSomethingThatIsNotTLS() throws {
        let client = try TLSClientContext()
        var fds: [Int32] = [0, 0]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        let out = OutboundBuffer(pool: BufferPool(chunkSize: 64 * 1024))
        let c = try client.makeConnection(fd: fds[0], output: out)
        #expect(c.handshake() == .wantRead)
        _ = out.flush(fd: fds[0])
        let junk = Array("HTTP/1.1 400 Bad Request\r\n\r\n".utf8)
        _ = junk.withUnsafeBytes { write(fds[1], $0.baseAddress, $0.count) }
        guard case .failed = c.handshake() else {
            Issue.record("expected a handshake failure")
            return
        }
        #expect(c.peerPublicKeyPin == nil)
    }
}
