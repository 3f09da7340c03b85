import Foundation

/// Turns envelopes into frames and back. JSON with sorted keys, so the encoding of a
/// message is deterministic (the golden-file tests rely on it).
public enum WireCodec {
    public static func encode(_ envelope: WireEnvelope) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let payload = try encoder.encode(envelope)
        var frame = [UInt8]()
        frame.reserveCapacity(WireFrame.headerSize + payload.count)
        frame.append(WireFrame.magic.0)
        frame.append(WireFrame.magic.1)
        frame.append(WireFrame.magic.2)
        frame.append(WireFrame.version)
        let n = UInt32(payload.count)
        frame.append(UInt8(truncatingIfNeeded: n >> 24))
        frame.append(UInt8(truncatingIfNeeded: n >> 16))
        frame.append(UInt8(truncatingIfNeeded: n >> 8))
        frame.append(UInt8(truncatingIfNeeded: n))
        frame.append(contentsOf: payload)
        return frame
    }

    public static func decodePayload(_ payload: some Collection<UInt8>) throws(WireFrameError) -> WireEnvelope {
        do {
            return try JSONDecoder().decode(WireEnvelope.self, from: Data(payload))
        } catch let error as WireDecodingError {
            throw WireFrameError(.malformedPayload, error.message)
        } catch let DecodingError.dataCorrupted(ctx) {
            throw WireFrameError(.malformedPayload, ctx.debugDescription)
        } catch let DecodingError.keyNotFound(key, ctx) {
            throw WireFrameError(.malformedPayload, "missing \(Self.path(ctx.codingPath + [key]))")
        } catch let DecodingError.typeMismatch(_, ctx) {
            throw WireFrameError(.malformedPayload, "wrong type at \(Self.path(ctx.codingPath))")
        } catch let DecodingError.valueNotFound(_, ctx) {
            throw WireFrameError(.malformedPayload, "null at \(Self.path(ctx.codingPath))")
        } catch {
            throw WireFrameError(.malformedPayload, "\(error)")
        }
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }
}

/// Incremental frame reader: feed it whatever bytes the socket gave, take out whole
/// envelopes. Holds at most one partial frame.
public struct WireFrameDecoder: Sendable {
    private var buffer: [UInt8] = []
    private var start = 0
    public let maxPayload: Int

    public init(maxPayload: Int = WireFrame.defaultMaxPayload) {
        self.maxPayload = maxPayload
    }

    public mutating func append(_ bytes: some Collection<UInt8>) {
        buffer.append(contentsOf: bytes)
    }

    /// Bytes held but not yet consumed.
    public var buffered: Int { buffer.count - start }

    /// The next complete envelope, nil if more bytes are needed. A thrown error is final.
    public mutating func next() throws(WireFrameError) -> WireEnvelope? {
        guard buffer.count - start >= WireFrame.headerSize else { return nil }
        let h = start
        guard buffer[h] == WireFrame.magic.0, buffer[h + 1] == WireFrame.magic.1, buffer[h + 2] == WireFrame.magic.2
        else {
            throw WireFrameError(.badMagic, "first bytes \(String(buffer[h], radix: 16)) \(String(buffer[h + 1], radix: 16)) \(String(buffer[h + 2], radix: 16))")
        }
        guard buffer[h + 3] == WireFrame.version else {
            throw WireFrameError(.unsupportedVersion, "\(buffer[h + 3])")
        }
        let length = Int(buffer[h + 4]) << 24 | Int(buffer[h + 5]) << 16 | Int(buffer[h + 6]) << 8 | Int(buffer[h + 7])
        guard length <= maxPayload else {
            throw WireFrameError(.oversize, "\(length) bytes, limit \(maxPayload)")
        }
        guard buffer.count - start >= WireFrame.headerSize + length else { return nil }
        let payloadStart = h + WireFrame.headerSize
        let envelope = try WireCodec.decodePayload(buffer[payloadStart..<(payloadStart + length)])
        start = payloadStart + length
        if start == buffer.count {
            buffer.removeAll(keepingCapacity: buffer.capacity <= 64 * 1024)
            start = 0
        } else if start > 64 * 1024 {
            buffer.removeFirst(start)
            start = 0
        }
        return envelope
    }
}
