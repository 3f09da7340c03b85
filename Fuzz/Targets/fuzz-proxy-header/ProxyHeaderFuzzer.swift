import FuzzSupport
import GatewaySessionCore

/// The PROXY protocol header a trusted proxy sends before TLS (GatewaySessionCore/
/// ProxyHeader.swift, read by GatewayDataplane/Gateway+ProxyHeader.swift).
///
/// Input: the bytes as they arrive on the connection.
///
/// Invariants — what lets the gateway consume bytes before the header is whole without ever
/// reading into the TLS stream behind it:
/// - `complete(length)` never claims more than it was given, nor more than `maxLength`;
/// - every shorter prefix of a complete header asks for more (`needMore`), so the gateway
///   never sees a header end early;
/// - bytes after a complete header change nothing;
/// - `needMore` only below `maxLength` bytes, and an invalid prefix stays invalid however
///   much follows.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let outcome = ProxyHeader.parse(bytes)
    switch outcome {
    case .complete(let length, _):
        invariant(length > 0 && length <= bytes.count && length <= ProxyHeader.maxLength, "complete(\(length)) of \(bytes.count) bytes")
        let header = Array(bytes.prefix(length))
        invariant(ProxyHeader.parse(header) == outcome, "the header alone parses differently: \(hex(header))")
        for cut in Set([0, length / 2, length - 1]) where cut < length {
            invariant(ProxyHeader.parse(Array(header.prefix(cut))) == .needMore, "a \(cut)-byte prefix of a \(length)-byte header is not needMore")
        }
        invariant(ProxyHeader.parse(header + [0x16, 0x03, 0x01, 0x00]) == outcome, "bytes after the header changed it")
    case .needMore:
        invariant(bytes.count < ProxyHeader.maxLength, "needMore at \(bytes.count) bytes")
    case .invalid:
        if case .invalid = ProxyHeader.parse(bytes + [0x0D, 0x0A] + [UInt8](repeating: 0, count: 64)) {} else {
            invariant(false, "an invalid prefix became valid: \(hex(bytes))")
        }
    }
    return 0
}

/// The entry point a debug build links as `main` (see CFuzzDriver/include/fuzz_driver.h).
@_cdecl("fuzz_proxy_header_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runLibFuzzer(argc, argv)
}
