import Foundation
import Testing
@testable import GatewayCore

@Suite struct CSTPTests {
    @Test func roundTripHeader() {
        let f = CSTP.frame(.dpdRequest, payload: [1, 2, 3])
        #expect(f == [0x53, 0x54, 0x46, 0x01, 0x00, 0x03, 0x03, 0x00, 1, 2, 3])
        f.withUnsafeBytes { #expect(CSTP.parseHeader($0) == .header(type: 3, length: 3)) }
    }

    @Test func logoffFrameFromTheWire() {
        // Bytes openconnect sends on SIGINT (protocol doc §5.2).
        let bye: [UInt8] = [0x53, 0x54, 0x46, 0x01, 0x00, 0x12, 0x05, 0x00, 0xB0] + Array("Aborted by caller".utf8)
        bye.withUnsafeBytes { #expect(CSTP.parseHeader($0) == .header(type: 5, length: 18)) }
    }

    @Test func rejectsGarbageAndShortInput() {
        [UInt8]([0x53, 0x54, 0x46]).withUnsafeBytes { #expect(CSTP.parseHeader($0) == .incomplete) }
        [UInt8]([0x47, 0x45, 0x54, 0x20, 0, 0, 0, 0]).withUnsafeBytes { #expect(CSTP.parseHeader($0) == .invalid) }
        [UInt8]([0x53, 0x54, 0x46, 0x01, 0, 0, 0, 1]).withUnsafeBytes { #expect(CSTP.parseHeader($0) == .invalid) }
        [UInt8]([0x53, 0x54, 0x46, 0x01, 0xFF, 0xFF, 0, 0]).withUnsafeBytes { #expect(CSTP.parseHeader($0) == .invalid) }
    }
}

@Suite struct HTTPParserTests {
    @Test func parsesIncrementallyWithBody() throws {
        var p = HTTPRequestParser()
        let text = "POST / HTTP/1.1\r\nHost: gw\r\nUser-Agent: Open AnyConnect VPN Agent v9.01-3\r\nCookie: a=1; webvpn=abc=\r\n"
            + "X-Folded: one\r\n two\r\nContent-Length: 5\r\n\r\nhelloCONNECT"
        let bytes = Array(text.utf8)
        p.append(Array(bytes[0..<10]))
        #expect(try p.next() == nil)
        p.append(Array(bytes[10...]))
        let r = try #require(try p.next())
        #expect(r.method == "POST" && r.path == "/" && r.body == Array("hello".utf8))
        #expect(r.cookie("webvpn") == "abc=")
        #expect(r.header("x-folded") == "one two")
        #expect(try p.next() == nil)
        #expect(p.takeRemainder() == Array("CONNECT".utf8))
    }

    @Test func headerFedOneByteAtATime() throws {
        var p = HTTPRequestParser()
        let bytes = Array(("GET / HTTP/1.1\r\nX-Long: " + String(repeating: "a", count: 20000) + "\r\nContent-Length: 2\r\n\r\nok").utf8)
        var got: HTTPRequest?
        for b in bytes {
            p.append([b])
            if let r = try p.next() { got = r }
        }
        #expect(got?.body == Array("ok".utf8))
        #expect(got?.header("x-long")?.count == 20000)
    }

    @Test func connectHasNoBody() throws {
        var p = HTTPRequestParser()
        p.append(Array("CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nCookie: webvpn=x\r\nX-CSTP-Base-MTU: 1500\r\n\r\nSTF\u{1}".utf8))
        let r = try #require(try p.next())
        #expect(r.method == "CONNECT" && r.path == "/CSCOSSLC/tunnel" && r.header("x-cstp-base-mtu") == "1500")
        #expect(p.takeRemainder().count == 4)
    }

    @Test func limitsAndMalformedInput() {
        func fails(_ s: String) -> HTTPRequestParser.ParseError? {
            var p = HTTPRequestParser()
            p.append(Array(s.utf8))
            do { _ = try p.next(); return nil } catch { return error }
        }
        #expect(fails("GARBAGE\r\n\r\n") == .badRequestLine)
        #expect(fails("get / HTTP/1.1\r\n\r\n") == .badRequestLine)
        #expect(fails("GET / HTTP/1.1\r\nNoColon\r\n\r\n") == .badHeader)
        #expect(fails("GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n") == .badContentLength)
        #expect(fails("GET / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n") == .bodyTooLarge(99_999_999))
        #expect(fails("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n") == .unsupportedTransferEncoding)
        #expect(fails("GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 40000)) == .headerTooLarge)
        #expect(fails("GET / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\nx") == .badContentLength)
        #expect(fails("GET / HTTP/1.1\r\nContent Length: 1\r\n\r\nx") == .badHeader)
        #expect(fails("GET / HTTP/1.1\r\nContent-Length\t: 1\r\n\r\nx") == .badHeader)
    }

    /// A body that arrives a byte per record: the head is parsed once and kept (fuzzing
    /// found every byte reparsing a 31 KB head); the request comes out whole and exact,
    /// followed by a pipelined one.
    @Test func aBodyFedByteByByteCompletesTheKeptHead() throws {
        var p = HTTPRequestParser()
        let head = "POST /auth HTTP/1.1\r\nX-Big: " + String(repeating: "h", count: 30_000) + "\r\nContent-Length: 2000\r\n\r\n"
        p.append(Array(head.utf8))
        #expect(try p.next() == nil)
        let body = (0..<2000).map { UInt8($0 % 251) }
        for b in body.dropLast() {
            p.append([b])
            #expect(try p.next() == nil)
        }
        p.append([body.last!] + Array("GET / HTTP/1.1\r\n\r\n".utf8))
        let first = try #require(try p.next())
        #expect(first.body == body && first.header("x-big")?.count == 30_000)
        let second = try #require(try p.next())
        #expect(second.method == "GET")
    }

    /// Found from outside: two different Content-Length headers were accepted with the first
    /// value. RFC 9112 §6.3 makes that an unrecoverable framing error; the same value twice is not.
    @Test func contentLengthsThatDisagreeAreRefused() throws {
        var p = HTTPRequestParser()
        p.append(Array("POST /auth HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 30\r\n\r\nabc".utf8))
        #expect(throws: HTTPRequestParser.ParseError.conflictingContentLength) { try p.next() }

        var same = HTTPRequestParser()
        same.append(Array("POST /auth HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc".utf8))
        let request = try #require(try same.next())
        #expect(request.body == Array("abc".utf8))
    }
}

@Suite struct ConfigAuthTests {
    @Test func parsesInitAndReply() throws {
        let initXML = """
        <?xml version="1.0" encoding="UTF-8"?>
        <config-auth client="vpn" type="init" aggregate-auth-version="2"><version who="vpn">v9.01-3</version><device-id>linux-64</device-id><capabilities><auth-method>single-sign-on-v2</auth-method></capabilities><group-access>https://198.18.0.1/</group-access></config-auth>
        """
        let m = try #require(ConfigAuthMessage.parse(Array(initXML.utf8)))
        #expect(m.type == "init" && m.deviceId == "linux-64" && m.clientVersion == "v9.01-3")
        let reply = """
        <?xml version="1.0" encoding="UTF-8"?>
        <config-auth client="vpn" type="auth-reply" aggregate-auth-version="2"><version who="vpn">v9.01-3</version><auth><username>a &amp; b</username><password>eyJ.x.y</password></auth><group-select>g1</group-select></config-auth>
        """
        let r = try #require(ConfigAuthMessage.parse(Array(reply.utf8)))
        #expect(r.type == "auth-reply" && r.authFields["username"] == "a & b" && r.authFields["password"] == "eyJ.x.y")
        #expect(r.groupSelect == "g1")
    }

    @Test func refusesNonConfigAuthAndBrokenXML() {
        #expect(ConfigAuthMessage.parse(Array("<html/>".utf8)) == nil)
        #expect(ConfigAuthMessage.parse(Array("<config-auth type='init'>".utf8)) == nil)
        #expect(ConfigAuthMessage.parse([]) == nil)
        #expect(ConfigAuthMessage.parse(Array("<!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><config-auth type='auth-reply'><auth><password>&e;</password></auth></config-auth>".utf8))?.authFields["password"]?.contains("root") != true)
    }

    @Test func invalidUTF8IsRefusedNotACrash() {
        var body = Array(#"<config-auth type="init"><a"#.utf8) + [0xFF] + Array(#"="1"/></config-auth>"#.utf8)
        #expect(ConfigAuthMessage.parse(body) == nil)
        body = Array("<config-auth type=\"auth-reply\"><auth><password>".utf8) + [0xC3, 0x28] + Array("</password></auth></config-auth>".utf8)
        #expect(ConfigAuthMessage.parse(body) == nil)
    }

    /// What fuzzing found in Foundation's XMLParser (a NULL dereference on a processing
    /// instruction without data, a leak on every parse error): the hand-written parser
    /// refuses these documents and never reaches Foundation (Fuzz/Crashes/fuzz-config-auth).
    @Test(arguments: [
        "<?pi?><config-auth/>",
        "<?xml version=\"1.0\"?><?pi?><config-auth type=\"init\"/>",
        "<config-auth type=\"init\"><?target data?></config-auth>",
        "<config-auth type=\"init\"><!-- comment --></config-auth>",
        "<config-auth type=\"init\"><![CDATA[x]]></config-auth>",
        "<config-auth type=\"init\"><auth><password>&e;</password></auth></config-auth>",
        "<config-auth type=\"init\"><auth><password>&#0;</password></auth></config-auth>",
        "<config-auth type=\"init\"><auth><password>&#x110000;</password></auth></config-auth>",
        "<config-auth type=\"init\" type=\"auth-reply\"/>",
        "<config-auth type=\"init\"></config-auth><config-auth type=\"init\"/>",
        "<config-auth type=\"init\"><a></b></config-auth>",
        "<config-auth type=\"init\">text</config-auth> trailing",
        "<config-auth type=\"init\"><a x=1/></config-auth>",
        "<config-auth/>",
        "<config-auth type=\"init\">",
        "<",
    ])
    func refusesWhatIsNotTheConfigAuthSubset(text: String) {
        #expect(ConfigAuthMessage.parse(Array(text.utf8)) == nil)
    }

    @Test func readsWhatClientsSend() throws {
        let r = try #require(ConfigAuthMessage.parse(Array("""
        \u{FEFF}<?xml version='1.0'?>
        <config-auth type='auth-reply' client="vpn">
          <auth><username>a&lt;b&#62;&#x26;</username><password/></auth>
          <device-id unique-id="x">linux</device-id>
        </config-auth>

        """.utf8)))
        #expect(r.type == "auth-reply")
        #expect(r.authFields["username"] == "a<b>&")
        #expect(r.authFields["password"] == "")
        #expect(r.deviceId == "linux")
        // Deeper than any message: refused, not recursed into.
        let deep = "<config-auth type=\"init\">" + String(repeating: "<a>", count: 40) + String(repeating: "</a>", count: 40) + "</config-auth>"
        #expect(ConfigAuthMessage.parse(Array(deep.utf8)) == nil)
    }

    @Test func escapesFormText() {
        #expect(LoginResponses.tokenForm(message: "<&>").contains("&lt;&amp;&gt;"))
        #expect(LoginResponses.complete(banner: "a\"b").contains("a&quot;b"))
    }
}

@Suite struct AddressPoolTests {
    @Test func leasesAreStableAndReleased() throws {
        var pool = AddressPool(prefix: try IPv4Prefix.parse("100.64.0.0/29").get())
        #expect(pool.capacity == 5)
        #expect(pool.gatewayAddress.description == "100.64.0.1")
        var got: [IPv4Address] = []
        for i in 0..<5 {
            let a = pool.allocate(owner: Int32(i), hint: 7)
            got.append(try #require(a))
        }
        #expect(Set(got).count == 5)
        #expect(!got.contains(IPv4Address("100.64.0.0")!) && !got.contains(IPv4Address("100.64.0.1")!) && !got.contains(IPv4Address("100.64.0.7")!))
        #expect(pool.allocate(owner: 9, hint: 0) == nil)
        #expect(pool.exhaustedCount == 1)
        #expect(pool.owner(of: got[2]) == 2)
        pool.release(got[2], owner: 3)  // not the owner: ignored
        #expect(pool.owner(of: got[2]) == 2)
        pool.release(got[2], owner: 2)
        #expect(pool.owner(of: got[2]) == nil)
        let again = pool.allocate(owner: 11, hint: 0)
        #expect(again == got[2])
        #expect(pool.owner(of: IPv4Address("8.8.8.8")!) == nil)
    }

    @Test func sameUserSameFirstChoice() throws {
        var a = AddressPool(prefix: try IPv4Prefix.parse("100.64.0.0/16").get())
        var b = AddressPool(prefix: try IPv4Prefix.parse("100.64.0.0/16").get())
        let first = a.allocate(owner: 0, hint: stableHash("alice"))
        let second = b.allocate(owner: 5, hint: stableHash("alice"))
        #expect(first != nil && first == second)
    }
}

@Suite struct TunnelParametersTests {
    @Test func connectHeadCarriesSettings() throws {
        let admin = try AdminSettings.decode(Data("""
        {"network":"100.64.0.0/24","dnsServers":["198.18.1.2"],"defaultDomainSuffix":"corp.test","routeIncludes":["198.18.1.0/24","fd00:1::/64"],
         "routeExcludes":["198.18.1.128/25"],"splitDNS":["corp.test"],"advancedSettings":[{"name":"banner","value":"Hi 100%\\nthere"}]}
        """.utf8))
        let s = try GatewaySettings.validate(admin).get()
        var p = HTTPRequestParser()
        p.append(Array("CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nX-CSTP-Base-MTU: 1500\r\nX-CSTP-Hostname: box\r\n\r\n".utf8))
        let r = try #require(try p.next())
        let head = TunnelParameters(settings: s, address: IPv4Address("100.64.0.9")!, sessionTimeoutRemaining: 3600, request: r)
            .responseHead(serverName: "mstunnel test")
        #expect(head.hasPrefix("HTTP/1.1 200 CONNECTED\r\n") && head.hasSuffix("\r\n\r\n"))
        for line in ["X-CSTP-Address: 100.64.0.9", "X-CSTP-Netmask: 255.255.255.0", "X-CSTP-DNS: 198.18.1.2",
                     "X-CSTP-Default-Domain: corp.test", "X-CSTP-Split-DNS: corp.test",
                     "X-CSTP-Split-Include: 198.18.1.0/255.255.255.0", "X-CSTP-Split-Exclude: 198.18.1.128/255.255.255.128",
                     "X-CSTP-MTU: 1434", "X-CSTP-Base-MTU: 1500", "X-CSTP-Session-Timeout: 3600", "X-CSTP-Rekey-Method: none",
                     "X-CSTP-Banner: Hi 100%25%0Athere", "X-CSTP-Hostname: box"] {
            #expect(head.contains(line + "\r\n"), "missing \(line)")
        }
        // No IPv6 routes for a client that did not claim IPv6 capability.
        #expect(!head.contains("IP6"))
        #expect(!head.contains("Content-Length"))
    }

    @Test func mtuArithmetic() {
        #expect(TunnelParameters.dataMTU(clientBaseMTU: 1500, configured: 1434).mtu == 1434)
        #expect(TunnelParameters.dataMTU(clientBaseMTU: 1400, configured: 1434).mtu == 1334)
        #expect(TunnelParameters.dataMTU(clientBaseMTU: nil, configured: 1434).mtu == 1340)
        #expect(TunnelParameters.dataMTU(clientBaseMTU: 1500, configured: 1300).mtu == 1300)
        #expect(TunnelParameters.dataMTU(clientBaseMTU: 10, configured: 1434).mtu >= 510)
    }
}

@Suite struct DTLSClientHelloTests {
    /// The first 92 bytes of a ClientHello as openconnect 9.01 sends it (protocol doc §6.3).
    func hello(sessionID: [UInt8], type: UInt8 = 0x16, hsType: UInt8 = 0x01, idLength: UInt8 = 32) -> [UInt8] {
        var d = [UInt8](repeating: 0, count: 155)
        d[0] = type; d[1] = 0xFE; d[2] = 0xFF
        d[13] = hsType
        d[25] = 0xFE; d[26] = 0xFD
        for i in 27..<59 { d[i] = UInt8(i) }
        d[59] = idLength
        d.replaceSubrange(60..<92, with: sessionID)
        return d
    }

    @Test func extractsTheAppID() {
        let id = (0..<32).map { UInt8($0 * 7 & 0xFF) }
        hello(sessionID: id).withUnsafeBytes { #expect(DTLSClientHello.sessionID(in: $0).map(Array.init) == id) }
    }

    @Test func readsTheRandom() {
        hello(sessionID: [UInt8](repeating: 9, count: 32)).withUnsafeBytes {
            #expect(DTLSClientHello.random(in: $0) == (27..<59).map { UInt8($0) })
        }
    }

    @Test func refusesOtherDatagrams() {
        let id = [UInt8](repeating: 1, count: 32)
        hello(sessionID: id, type: 0x17).withUnsafeBytes { #expect(DTLSClientHello.sessionID(in: $0) == nil) }
        hello(sessionID: id, hsType: 0x02).withUnsafeBytes { #expect(DTLSClientHello.sessionID(in: $0) == nil) }
        hello(sessionID: id, idLength: 16).withUnsafeBytes { #expect(DTLSClientHello.sessionID(in: $0) == nil) }
        Array(hello(sessionID: id).prefix(91)).withUnsafeBytes { #expect(DTLSClientHello.sessionID(in: $0) == nil) }
        [UInt8]().withUnsafeBytes { #expect(DTLSClientHello.sessionID(in: $0) == nil) }
    }
}
