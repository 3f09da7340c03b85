import Testing
@testable import GatewayCore

/// The first bytes of a request are checked as they arrive: a CSTP frame sent before any
/// CONNECT was accepted, or bytes that cannot begin a request line, are refused at once
/// instead of waiting (up to 32 KiB, or the login timeout) for a blank line.
@Suite struct HTTPRequestStartTests {
    func error(after chunks: [[UInt8]]) -> HTTPRequestParser.ParseError? {
        var p = HTTPRequestParser()
        for chunk in chunks {
            p.append(chunk)
            do { while try p.next() != nil {} } catch { return error }
        }
        return nil
    }

    static let dpd: [UInt8] = [0x53, 0x54, 0x46, 0x01, 0x00, 0x00, 0x03, 0x00]

    @Test func aCSTPFrameIsNamedAsOne() {
        #expect(error(after: [Self.dpd]) == .tunnelFrame)
        // Fed a byte at a time, it is refused as soon as the magic is complete.
        #expect(error(after: Self.dpd.prefix(3).map { [$0] }) == nil)
        #expect(error(after: Self.dpd.prefix(4).map { [$0] }) == .tunnelFrame)
        // Behind a request that parsed: the next request starts with it.
        #expect(error(after: [Array("GET / HTTP/1.1\r\n\r\n".utf8) + Self.dpd]) == .tunnelFrame)
    }

    @Test(arguments: [
        [0x16, 0x03, 0x01, 0x00],  // a second TLS ClientHello, inside TLS
        [0x00],
        Array("get / HTTP/1.1".utf8),
        Array("\r\nGET / HTTP/1.1".utf8),
        Array(" GET".utf8),
        Array("GET\t/".utf8),
        Array("STF\u{2}".utf8),
        Array(String(repeating: "A", count: 17).utf8),
    ] as [[UInt8]])
    func bytesThatCannotStartARequestAreRefusedAtOnce(_ bytes: [UInt8]) {
        // No blank line anywhere: before, these waited for 32 KiB or the login timeout.
        #expect(error(after: [bytes]) == .badRequestLine)
    }

    @Test func anOrdinaryRequestArrivingInPiecesIsNotRefused() throws {
        let text = Array("CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nCookie: webvpn=x\r\n\r\n".utf8)
        var p = HTTPRequestParser()
        for b in text.dropLast() {
            p.append([b])
            #expect(try p.next() == nil)
        }
        p.append([text.last!])
        #expect(try p.next()?.method == "CONNECT")
        // A 16-letter method is still a method (then refused by the login rules, not here).
        #expect(error(after: [Array((String(repeating: "A", count: 16) + " / HTTP/1.1").utf8)]) == nil)
    }
}
