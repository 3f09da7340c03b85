import Foundation
import Glibc
import Testing
import GatewayIPC
import GatewayWire

@Suite struct UnixSocketTests {
    func tempPath() -> String {
        NSTemporaryDirectory() + "mst-ipc-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
    }

    @Test func peerCredentialsAndRoundTrip() throws {
        let path = tempPath()
        let listener = try UnixSocket.listen(path: path, mode: 0o660)
        defer { close(listener); unlink(path) }
        var st = stat()
        #expect(stat(path, &st) == 0)
        #expect(st.st_mode & 0o777 == 0o660)

        let client = try WireConnection.connect(path: path)
        let serverFd = accept(listener, nil, nil)
        #expect(serverFd >= 0)
        let server = WireConnection(fd: serverFd)
        let cred = try PeerCredentials.of(fd: serverFd)
        #expect(cred.pid == getpid())
        #expect(cred.uid == getuid())
        #expect(PeerPolicy().allows(cred))
        #expect(!PeerPolicy().allows(PeerCredentials(pid: 1, uid: 4242, gid: 4242)) || getuid() == 4242)
        #expect(PeerPolicy(allowedGIDs: [4242]).allows(PeerCredentials(pid: 1, uid: 4242, gid: 4242)))

        try client.send(WireEnvelope(id: 5, .request(.ping(PingRequest()))))
        let got = try #require(try server.receive())
        #expect(got == WireEnvelope(id: 5, .request(.ping(PingRequest()))))
        try server.send(WireEnvelope(id: 5, .response(.ping(PingResponse(process: "test", version: "0")))))
        #expect(try client.receive()?.message == .response(.ping(PingResponse(process: "test", version: "0"))))
    }

    @Test func garbageOnTheSocketIsAClearError() throws {
        let path = tempPath()
        let listener = try UnixSocket.listen(path: path)
        defer { close(listener); unlink(path) }
        let raw = try UnixSocket.connect(path: path)
        let server = WireConnection(fd: accept(listener, nil, nil))
        try UnixSocket.writeAll(fd: raw, Array("hello there".utf8))
        close(raw)
        #expect(throws: WireFrameError(.badMagic, "")) { try server.receive() }
    }

    @Test func pathTooLongIsRefused() {
        #expect(throws: IPCError.self) { try UnixSocket.listen(path: "/tmp/" + String(repeating: "x", count: 200)) }
    }
}
