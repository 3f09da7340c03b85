import Foundation
import Glibc
import Testing
@testable import GatewayTLS

/// TLS with no socket at all: both ends read `InboundBuffer`s and write
/// `OutboundBuffer`s, and the test carries the bytes between them. This is how the
/// gateway's own connections read (one recv per wakeup, lent to the connection), so
/// these tests exercise the gateway's read path, record by record.
@Suite(.serialized) struct TLSMemoryTests {
    static let server: TLSServerContext = {
        let dir = NSTemporaryDirectory() + "mst-tlsmem-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=t "
                       + "-keyout \(dir)/k -out \(dir)/c 2>/dev/null"]
        try! p.run()
        p.waitUntilExit()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        return try! TLSServerContext(certificate: .pem(chain: dir + "/c", key: dir + "/k"))
    }()

    struct Pair {
        let pool = BufferPool(chunkSize: 256 * 1024)
        let client: TLSConnection
        let server: TLSConnection
        let clientIn = InboundBuffer()
        let serverIn = InboundBuffer()

        init(maxVersion12: Bool = false) throws {
            client = try TLSClientContext(maxVersion12: maxVersion12).makeConnection(input: clientIn, output: OutboundBuffer(pool: pool))
            server = try TLSMemoryTests.server.makeConnection(input: serverIn, output: OutboundBuffer(pool: pool))
        }

        /// Client bytes to the server, optionally in pieces of `chunk` bytes.
        func toServer() { serverIn.append(client.output.take()) }
        func toClient() { clientIn.append(server.output.take()) }

        func handshake() -> Bool {
            for _ in 0..<10 {
                if !client.isHandshakeDone { _ = client.handshake() }
                toServer()
                if !server.isHandshakeDone { _ = server.handshake() }
                toClient()
                if client.isHandshakeDone, server.isHandshakeDone { break }
            }
            // TLS 1.3: the server's tickets reach the client with the first read.
            return client.isHandshakeDone && server.isHandshakeDone
        }

        func read(_ c: TLSConnection) -> TLSConnection.IOResult {
            var buf = [UInt8](repeating: 0, count: 20_000)
            return buf.withUnsafeMutableBytes { c.read($0.baseAddress!, $0.count) }
        }

        func readBytes(_ c: TLSConnection) -> [UInt8]? {
            var buf = [UInt8](repeating: 0, count: 20_000)
            let r = buf.withUnsafeMutableBytes { c.read($0.baseAddress!, $0.count) }
            if case .done(let n) = r { return Array(buf[0..<n]) }
            return nil
        }

        func write(_ c: TLSConnection, _ bytes: [UInt8]) -> TLSConnection.IOResult {
            bytes.withUnsafeBytes { c.write($0.baseAddress!, $0.count) }
        }
    }

    @Test(arguments: [false, true]) func handshakeAndKeysAgree(tls12: Bool) throws {
        let p = try Pair(maxVersion12: tls12)
        #expect(p.handshake())
        #expect(p.server.protocolVersion == (tls12 ? "TLSv1.2" : "TLSv1.3"))
        #expect(p.client.peerPublicKeyPin == Self.server.publicKeyPin)
        // The DTLS-PSK key the gateway exports is the one the client derives.
        let s = p.server.exportKeyingMaterial(label: "EXPORTER-openconnect-psk", length: 32)
        #expect(s != nil)
        #expect(s == p.client.exportKeyingMaterial(label: "EXPORTER-openconnect-psk", length: 32))
    }

    @Test func manyRecordsInOneReceiveAreReadOneByOne() throws {
        let p = try Pair()
        #expect(p.handshake())
        var sent: [[UInt8]] = []
        for i in 0..<50 {
            let record = [UInt8](repeating: UInt8(i), count: 1400 + i)
            #expect(p.write(p.client, record) == .done(record.count))
            sent.append(record)
        }
        p.toServer()
        for record in sent { #expect(p.readBytes(p.server) == record) }
        #expect(p.read(p.server) == .wantRead)
        #expect(p.serverIn.isEmpty)
        #expect(!p.server.hasPending)
    }

    @Test func recordsSplitAtEveryByteBoundary() throws {
        let p = try Pair()
        #expect(p.handshake())
        let record = Array("CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\n\r\n".utf8)
        _ = p.write(p.client, record)
        let wire = p.client.output.take()
        // One byte at a time: the partial record waits inside OpenSSL, nothing is lost.
        for (i, byte) in wire.enumerated() {
            p.serverIn.append([byte])
            let r = p.read(p.server)
            if i < wire.count - 1 { #expect(r == .wantRead) } else { #expect(r == .done(record.count)) }
        }
    }

    @Test func aLentAreaIsCopiedOnlyWhenAPassStopsEarly() throws {
        let p = try Pair()
        #expect(p.handshake())
        for i in 0..<3 { _ = p.write(p.client, [UInt8](repeating: UInt8(i), count: 100)) }
        let wire = p.client.output.take()
        // The gateway's pass: the bytes are lent from a shared area, one record is read,
        // the pass ends (its record limit) and the area is reused for someone else.
        let area = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
        defer { area.deallocate() }
        var fds: [Int32] = [0, 0]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        _ = wire.withUnsafeBytes { send(fds[0], $0.baseAddress, $0.count, 0) }
        #expect(p.serverIn.receive(fd: fds[1], into: area) == .received(wire.count))
        #expect(p.readBytes(p.server) == [UInt8](repeating: 0, count: 100))
        p.serverIn.settle()
        area.initializeMemory(as: UInt8.self, repeating: 0xEE)
        #expect(p.server.hasPending)
        #expect(p.readBytes(p.server) == [UInt8](repeating: 1, count: 100))
        #expect(p.readBytes(p.server) == [UInt8](repeating: 2, count: 100))
        #expect(p.read(p.server) == .wantRead)
        #expect(p.serverIn.receive(fd: fds[1], into: area) == .wouldBlock)
        close(fds[0])
        fds[0] = -1
        #expect(p.serverIn.receive(fd: fds[1], into: area) == .endOfStream)
    }

    @Test func aFullAreaIsReceivedAgainInTheSamePass() throws {
        let p = try Pair()
        #expect(p.handshake())
        var sent: [[UInt8]] = []
        for i in 0..<8 {
            let record = [UInt8](repeating: UInt8(i), count: 300)
            _ = p.write(p.client, record)
            sent.append(record)
        }
        let wire = p.client.output.take()
        var fds: [Int32] = [0, 0]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        _ = wire.withUnsafeBytes { send(fds[0], $0.baseAddress, $0.count, 0) }
        // An area smaller than what waits: the gateway's pass receives, reads until OpenSSL
        // wants more, and receives again while the area came back full.
        let area = UnsafeMutableRawBufferPointer.allocate(byteCount: 1000, alignment: 16)
        defer { area.deallocate() }
        var got: [[UInt8]] = []
        var receives = 0
        while case .received(let n) = p.serverIn.receive(fd: fds[1], into: area) {
            receives += 1
            while let r = p.readBytes(p.server) { got.append(r) }
            if n < area.count { break }
        }
        p.serverIn.settle()
        #expect(got == sent)
        #expect(receives == (wire.count + 999) / 1000)
    }

    @Test func closeNotifyAndBareEndOfStream() throws {
        let p = try Pair()
        #expect(p.handshake())
        p.client.shutdown()
        p.toServer()
        #expect(p.read(p.server) == .closed)

        let q = try Pair()
        #expect(q.handshake())
        // The TCP stream ends without close_notify: OpenSSL calls that an unexpected EOF.
        q.serverIn.markEndOfStream()
        let r = q.read(q.server)
        #expect(r != .wantRead)
        #expect(r != .done(0))
    }

    @Test func garbageInsteadOfAClientHelloFailsTheHandshake() throws {
        let p = try Pair()
        p.serverIn.append(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        guard case .failed = p.server.handshake() else {
            Issue.record("expected a handshake failure")
            return
        }
    }

    /// CVE-2024-4741: buffers are given back only on a libssl with the fix.
    @Test(arguments: [
        (0x3000_00D0 as UInt, false), (0x3000_00E0, true), (0x3000_0160, true), (0x3010_0050, false), (0x3010_0060, true),
        (0x3020_0010, false), (0x3020_0020, true), (0x3030_0000, false), (0x3030_0010, true), (0x3040_0000, true),
        (0x1010_1170, false),
    ])
    func buffersAreReleasedOnlyWhereItIsSafe(version: UInt, safe: Bool) {
        #expect(TLSConnection.safeToFreeBuffers(version: version) == safe)
    }

    @Test(.enabled(if: TLSConnection.libsslReleasesBuffersSafely, "this libssl lacks the CVE-2024-4741 fix"))
    func idleBuffersAreGivenBackAndComeBack() throws {
        let p = try Pair()
        #expect(p.handshake())
        #expect(p.server.releaseIdleBuffers())
        _ = p.write(p.client, [1, 2, 3])
        let wire = p.client.output.take()
        // Half a record: libssl holds it, so its buffers stay.
        p.serverIn.append(wire.prefix(4))
        #expect(p.read(p.server) == .wantRead)
        #expect(!p.server.releaseIdleBuffers())
        p.serverIn.append(wire.dropFirst(4))
        #expect(p.readBytes(p.server) == [1, 2, 3])
        #expect(p.server.releaseIdleBuffers())
        #expect(p.write(p.server, [9]) == .done(1))
        p.toClient()
        #expect(p.readBytes(p.client) == [9])
    }
}
