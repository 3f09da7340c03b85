/// Framing for every message between the gateway processes.
///
/// A frame is an 8-byte header followed by a JSON payload:
///
///     0    1    2    3    4 .. 7
///     'M'  'S'  'T'  ver  payload length (u32, big endian)
///
/// The magic catches a peer that is not ours at all (or a stream that lost sync); the
/// version byte lets a future peer be refused with a clear error instead of being
/// misread; the length bounds memory before a single payload byte is buffered.
public enum WireFrame {
    public static let magic: (UInt8, UInt8, UInt8) = (0x4D, 0x53, 0x54)  // "MST"
    public static let version: UInt8 = 1
    public static let headerSize = 8
    /// Default upper bound of one payload. A session list for tens of thousands of
    /// sessions fits; anything larger is a bug or an attack.
    public static let defaultMaxPayload = 16 * 1024 * 1024
}

/// Why a byte stream could not be turned into frames. Each case is final for the
/// connection: after it the stream is out of sync and must be closed.
public struct WireFrameError: Error, Equatable, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        case badMagic
        case unsupportedVersion
        case oversize
        case malformedPayload
    }
    public let code: Code
    public let detail: String

    public init(_ code: Code, _ detail: String) {
        self.code = code
        self.detail = detail
    }

    public var description: String {
        switch code {
        case .badMagic: return "wire: not a mstunnel frame (\(detail))"
        case .unsupportedVersion: return "wire: unsupported protocol version \(detail) (this build speaks \(WireFrame.version))"
        case .oversize: return "wire: frame too large (\(detail))"
        case .malformedPayload: return "wire: malformed payload (\(detail))"
        }
    }

    public static func == (a: WireFrameError, b: WireFrameError) -> Bool { a.code == b.code }
}
