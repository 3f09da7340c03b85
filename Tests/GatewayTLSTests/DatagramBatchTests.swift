import Glibc
import Testing
import GatewayUDP

/// The loop's datagram batch never sends by itself: it says when it is nearly full, its
/// owner sends it, and a datagram that finds no room is counted as dropped, not sent from
/// wherever the write happened to come from (an OpenSSL BIO callback).
@Suite struct DatagramBatchTests {
    @Test func nearlyFullLeavesRoomForAFlightAndAFullBatchDropsInsteadOfSending() throws {
        var fds: [Int32] = [0, 0]
        try #require(socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        let batch = DatagramBatch(arenaSize: 64 * 1024, maxDatagrams: 32, gso: false)
        var to = sockaddr_storage()  // unused on a connected socket pair
        let payload = [UInt8](repeating: 7, count: 1200)
        var queued = 0
        while !batch.isNearlyFull {
            #expect(payload.withUnsafeBytes { batch.append($0.baseAddress!, $0.count, to: &to, length: 0) })
            queued += 1
        }
        // What a writer may count on while the batch is not nearly full is still there.
        #expect(queued == 32 - DatagramBatch.reserveDatagrams + 1)
        for _ in 0..<(DatagramBatch.reserveDatagrams - 1) {
            #expect(payload.withUnsafeBytes { batch.append($0.baseAddress!, $0.count, to: &to, length: 0) })
        }
        #expect(batch.count == 32)
        // Full: nothing is sent behind the owner's back; the datagram is dropped and counted.
        #expect(!payload.withUnsafeBytes { batch.append($0.baseAddress!, $0.count, to: &to, length: 0) })
        #expect(batch.dropped == 1)
        var buf = [UInt8](repeating: 0, count: 2000)
        #expect(recv(fds[1], &buf, buf.count, Int32(MSG_DONTWAIT)) == -1)
        // The owner sends: every datagram arrives, and the batch is empty again.
        batch.flush(fd: fds[0])
        #expect(batch.count == 0 && !batch.isNearlyFull)
        var received = 0
        while recv(fds[1], &buf, buf.count, Int32(MSG_DONTWAIT)) == payload.count { received += 1 }
        #expect(received == 32)
    }

    @Test func bytesCountAsWellAsDatagrams() {
        let batch = DatagramBatch(arenaSize: DatagramBatch.reserveBytes + 4000, maxDatagrams: 512, gso: false)
        var to = sockaddr_storage()
        let payload = [UInt8](repeating: 1, count: 1500)
        var n = 0
        while !batch.isNearlyFull {
            _ = payload.withUnsafeBytes { batch.append($0.baseAddress!, $0.count, to: &to, length: 0) }
            n += 1
        }
        #expect(n == 3)
        #expect(batch.reserve(65508) == nil)
    }
}
