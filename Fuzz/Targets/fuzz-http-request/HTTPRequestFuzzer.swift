import FuzzSupport
import GatewayCore

/// HTTPRequestParser (GatewayCore/HTTPRequest.swift): the login phase's request parser.
///
/// Input: one control byte (how the bytes are cut into records), then the decrypted byte
/// stream a client sends. Invariants:
/// - the requests and the final error are the same however the stream is cut (all at once
///   or in pieces, asking for requests after every piece, as the gateway does);
/// - what a request says is what the bytes said: method A–Z, version HTTP/1.x, header
///   names lower-case without space or colon, the body exactly Content-Length bytes;
/// - the parser never holds more than it was given.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let seed = input.byte()
    let stream = input.rest()

    let whole = parse([stream[...]])
    let pieces = parse(chunks(stream, seed: seed))
    invariant(whole.requests == pieces.requests,
              "requests differ when the stream is cut (seed \(seed)): \(whole.requests.count) vs \(pieces.requests.count)")
    invariant(whole.error == pieces.error, "errors differ when the stream is cut (seed \(seed)): \(String(describing: whole.error)) vs \(String(describing: pieces.error))")

    var consumed = 0
    for r in whole.requests {
        check(r)
        consumed += r.body.count
    }
    invariant(consumed <= stream.count, "bodies hold more bytes than were sent")
    return 0
}

private struct Outcome {
    var requests: [HTTPRequest] = []
    var error: HTTPRequestParser.ParseError?
}

private func parse(_ pieces: [ArraySlice<UInt8>]) -> Outcome {
    var parser = HTTPRequestParser()
    var out = Outcome()
    var given = 0
    for piece in pieces {
        parser.append(Array(piece))
        given += piece.count
        invariant(parser.buffered <= given, "parser holds \(parser.buffered) bytes, was given \(given)")
        do {
            while let r = try parser.next() {
                out.requests.append(r)
                invariant(parser.buffered <= given, "parser holds more than it was given after a request")
            }
        } catch {
            out.error = error
            return out
        }
    }
    return out
}

private func check(_ r: HTTPRequest) {
    invariant(!r.method.isEmpty && r.method.utf8.allSatisfy { $0 >= 0x41 && $0 <= 0x5A }, "method '\(r.method)' is not A-Z")
    invariant(r.version.hasPrefix("HTTP/1."), "version '\(r.version)'")
    invariant(!r.target.isEmpty && !r.target.contains(" "), "target '\(r.target)'")
    invariant(!r.path.contains("?") && r.target.hasPrefix(r.path), "path '\(r.path)' of target '\(r.target)'")
    invariant(r.headers.count <= HTTPRequestParser.maxHeaders, "\(r.headers.count) headers")
    for h in r.headers {
        invariant(!h.name.isEmpty, "empty header name")
        invariant(h.name == h.name.lowercased(), "header name '\(h.name)' is not lower-cased")
        invariant(!h.name.contains(" ") && !h.name.contains(":"), "header name '\(h.name)'")
        invariant(!h.name.utf8.contains(10) && !h.value.utf8.contains(10), "line feed inside header '\(h.name)'")
        invariant(r.header(h.name) != nil, "header(\(h.name)) finds nothing")
    }
    invariant(!r.headers.contains { $0.name == "transfer-encoding" }, "a request with Transfer-Encoding was returned")
    if let cl = r.header("content-length") {
        invariant(Int(cl) == r.body.count, "Content-Length \(cl) but a body of \(r.body.count) bytes")
    } else {
        invariant(r.body.isEmpty, "a body without Content-Length")
    }
    invariant(r.body.count <= HTTPRequestParser.maxBodyBytes, "body of \(r.body.count) bytes")
    for c in r.cookies {
        invariant(!c.name.contains(";") && !c.value.contains(";"), "cookie '\(c.name)' spans a ';'")
        invariant(r.cookie(c.name) != nil, "cookie(\(c.name)) finds nothing")
    }
    invariant(r == r, "a request is not equal to itself")
}

/// The entry point a debug build links as `main` (see CFuzzDriver/include/fuzz_driver.h).
@_cdecl("fuzz_http_request_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runLibFuzzer(argc, argv)
}
