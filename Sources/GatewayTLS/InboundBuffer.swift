import Glibc

/// The encrypted bytes a TLS connection reads next, fed by its owner: the gateway lends
/// it the loop's receive area after one `recv` (`receive(fd:into:)`), a test appends
/// bytes it took from the peer's `OutboundBuffer` (`append`). OpenSSL reads through
/// `InboundBIO`, with read-ahead off, so it asks for exactly one record header and then
/// one record body: each record is copied once, out of the lent area into libssl.
///
/// Why not libssl's own socket BIO with read-ahead: OpenSSL 3.0 then moves all the
/// buffered bytes to the front of its read buffer before every record (`ssl3_read_n`
/// aligns the next payload), tens of KiB per 1.4 KB record on a busy upload
/// (docs/performance.md, "libssl's read-ahead memmove").
public final class InboundBuffer {
    /// Bytes lent for the duration of one read pass; never kept past `settle()`.
    private var lent: UnsafeRawPointer?
    private var lentCount = 0
    private var lentOffset = 0
    /// This connection's own bytes: appended ones, and what a read pass left unread.
    /// Empty (and unallocated) in the common case.
    private var kept: [UInt8] = []
    private var keptOffset = 0
    /// The peer closed its side; OpenSSL sees end-of-stream once the bytes are read.
    public private(set) var endOfStream = false

    public init() {}

    /// Bytes OpenSSL has not read yet.
    public var count: Int { (kept.count - keptOffset) + (lentCount - lentOffset) }
    public var isEmpty: Bool { count == 0 }

    public func append(_ bytes: some Collection<UInt8>) {
        kept.append(contentsOf: bytes)
    }

    public func markEndOfStream() { endOfStream = true }

    public enum ReceiveResult: Equatable {
        /// `n` bytes are lent from `area`; call `settle()` before the area is reused.
        case received(Int)
        case wouldBlock
        /// The peer closed the stream (recv returned 0).
        case endOfStream
        case failed(Int32)
    }

    /// One `recv` from a non-blocking socket into `area` (owned by the caller and shared
    /// by every connection of its loop), lent to OpenSSL until `settle()`. Unread bytes
    /// of an earlier lend are kept first.
    public func receive(fd: Int32, into area: UnsafeMutableRawBufferPointer) -> ReceiveResult {
        // A pass that read everything lent may receive again (the area was full).
        settle()
        while true {
            let n = recv(fd, area.baseAddress, area.count, Int32(MSG_DONTWAIT))
            if n > 0 {
                lent = UnsafeRawPointer(area.baseAddress!)
                lentCount = n
                lentOffset = 0
                return .received(n)
            }
            if n == 0 {
                endOfStream = true
                return .endOfStream
            }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { return .wouldBlock }
            return .failed(errno)
        }
    }

    /// Ends a read pass: bytes of the lent area OpenSSL did not take (the pass stopped at
    /// its record limit) are copied into this connection's own storage.
    public func settle() {
        guard let lent else { return }
        if lentOffset < lentCount {
            compactKept()
            kept.append(contentsOf: UnsafeRawBufferPointer(start: lent + lentOffset, count: lentCount - lentOffset))
        }
        self.lent = nil
        lentCount = 0
        lentOffset = 0
    }

    /// Forgets every byte (the connection is closing).
    public func discard() {
        lent = nil
        lentCount = 0
        lentOffset = 0
        kept = []
        keptOffset = 0
    }

    private func compactKept() {
        if keptOffset == kept.count {
            kept.removeAll(keepingCapacity: false)
        } else if keptOffset > 0 {
            kept.removeFirst(keptOffset)
        }
        keptOffset = 0
    }

    /// OpenSSL's read: kept bytes first, then the lent area. -1 = nothing yet (retry),
    /// 0 = end of stream.
    func read(into destination: UnsafeMutableRawPointer, max: Int) -> Int {
        var copied = 0
        if keptOffset < kept.count {
            let n = min(max, kept.count - keptOffset)
            _ = kept.withUnsafeBytes { memcpy(destination, $0.baseAddress! + keptOffset, n) }
            keptOffset += n
            copied = n
            if keptOffset == kept.count { compactKept() }
        }
        if copied < max, let lent, lentOffset < lentCount {
            let n = min(max - copied, lentCount - lentOffset)
            memcpy(destination + copied, lent + lentOffset, n)
            lentOffset += n
            copied += n
        }
        if copied > 0 { return copied }
        return endOfStream ? 0 : -1
    }
}
