import Glibc
import Testing
@testable import GatewayLoadgen

@Suite struct PercentileTests {
    @Test func nearestRankOnOneToHundred() throws {
        let p = try #require(Percentiles((1...100).map(Double.init).shuffled()))
        #expect(p.count == 100)
        #expect(p.min == 1)
        #expect(p.p50 == 50)
        #expect(p.p90 == 90)
        #expect(p.p99 == 99)
        #expect(p.max == 100)
        #expect(p.mean == 50.5)
    }

    @Test func smallSamples() throws {
        let one = try #require(Percentiles([7]))
        #expect(one.p50 == 7 && one.p90 == 7 && one.p99 == 7 && one.max == 7)
        // n = 10: p50 is rank 5, p90 rank 9, p99 rank ⌈9.9⌉ = 10.
        let ten = try #require(Percentiles([10, 9, 8, 7, 6, 5, 4, 3, 2, 1]))
        #expect(ten.p50 == 5)
        #expect(ten.p90 == 9)
        #expect(ten.p99 == 10)
        #expect(Percentiles([]) == nil)
    }

    @Test func outOfRangePercentilesDoNotTrap() {
        #expect(Percentiles.nearestRank([1, 2, 3], 0) == 1)
        #expect(Percentiles.nearestRank([1, 2, 3], 250) == 3)
        #expect(Percentiles.nearestRank([1, 2, 3], -5) == 1)
        #expect(Percentiles.nearestRank([], 50).isNaN)
        #expect(Percentiles.nearestRank([1], .nan).isNaN)
    }

    @Test func tallyOrdersByCountAndKeepsFirstExample() {
        var t = Tally()
        t.add("timeout", detail: "in login")
        t.add("HTTP 503 on login", detail: "first")
        t.add("HTTP 503 on login", detail: "second")
        #expect(t.total == 3)
        #expect(t.sorted.map(\.reason) == ["HTTP 503 on login", "timeout"])
        #expect(t.sorted.first?.entry.example == "first")
    }
}

@Suite struct HTTPResponseTests {
    func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

    @Test func headAndContentLengthBody() throws {
        let raw = bytes("HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nSet-Cookie: a=1; Secure\r\nset-cookie: webvpn=XYZ=; HttpOnly\r\nContent-Length: 5\r\n\r\nhello")
        let (head, n) = try #require(try HTTPResponseParser.parseHead(raw))
        #expect(head.status == 200)
        #expect(head.reason == "OK")
        #expect(head.header("content-type") == "text/xml")
        #expect(head.headers("set-cookie") == ["a=1; Secure", "webvpn=XYZ=; HttpOnly"])
        #expect(head.keepAlive)
        let (body, used) = try #require(try HTTPResponseParser.parseBody(head: head, raw, from: n, atEOF: false))
        #expect(body == bytes("hello"))
        #expect(used == 5)
    }

    @Test func incompleteInputAsksForMore() throws {
        #expect(try HTTPResponseParser.parseHead(bytes("HTTP/1.1 200 OK\r\nContent-Le")) == nil)
        let raw = bytes("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        let (head, n) = try #require(try HTTPResponseParser.parseHead(raw))
        #expect(try HTTPResponseParser.parseBody(head: head, raw, from: n, atEOF: false) == nil)
    }

    @Test func connectResponseLeavesCSTPBytes() throws {
        let raw = bytes("HTTP/1.1 200 CONNECTED\r\nX-CSTP-Version: 1\r\nX-CSTP-Address: 100.64.0.50\r\nX-CSTP-DPD: 90\r\nX-CSTP-Keepalive: 32400\r\nX-CSTP-MTU: 1434\r\n\r\n") + [0x53, 0x54, 0x46, 0x01, 0, 0, 3, 0]
        let (head, n) = try #require(try HTTPResponseParser.parseHead(raw))
        #expect(raw.count - n == 8)
        let grant = try TunnelGrant(head)
        #expect(grant == TunnelGrant(address: "100.64.0.50", dpd: 90, keepalive: 32400, mtu: 1434))
    }

    @Test func tunnelGrantProblems() throws {
        let noAddr = try #require(try HTTPResponseParser.parseHead(bytes("HTTP/1.1 200 CONNECTED\r\nX-CSTP-DPD: 30\r\n\r\n")))
        #expect(throws: TunnelGrant.Problem.noAddress) { try TunnelGrant(noAddr.head) }
        let bad = try #require(try HTTPResponseParser.parseHead(bytes("HTTP/1.1 200 CONNECTED\r\nX-CSTP-Address: fd00::1\r\nX-CSTP-DPD: none\r\nX-CSTP-Keepalive: -4\r\n\r\n")))
        #expect(throws: TunnelGrant.Problem.self) { try TunnelGrant(bad.head) }
        let off = try #require(try HTTPResponseParser.parseHead(bytes("HTTP/1.1 200 CONNECTED\r\nX-CSTP-Address: 100.64.0.2\r\nX-CSTP-DPD: none\r\nX-CSTP-Keepalive: 99999999999999999999\r\n\r\n")))
        let g = try TunnelGrant(off.head)
        #expect(g.dpd == 0 && g.keepalive == 0 && g.mtu == nil)
    }

    @Test func continuationLinesAndBareLF() throws {
        let raw = bytes("HTTP/1.1 401 Cookie is not acceptable\nX-Reason: one\n two\nContent-Length: 0\n\n")
        let (head, n) = try #require(try HTTPResponseParser.parseHead(raw))
        #expect(head.status == 401)
        #expect(head.reason == "Cookie is not acceptable")
        #expect(head.header("x-reason") == "one two")
        #expect(n == raw.count)
    }

    @Test func chunkedBody() throws {
        let raw = bytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\nNEXT")
        let (head, n) = try #require(try HTTPResponseParser.parseHead(raw))
        let (body, used) = try #require(try HTTPResponseParser.parseBody(head: head, raw, from: n, atEOF: false))
        #expect(String(decoding: body, as: UTF8.self) == "hello world")
        #expect(n + used == raw.count - 4)
        // Cut anywhere before the end: more bytes needed, never a wrong body.
        for cut in n..<(raw.count - 4) {
            #expect(try HTTPResponseParser.parseBody(head: head, Array(raw[0..<cut]), from: n, atEOF: false) == nil)
        }
        let badRaw = bytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        let (badHead, bn) = try #require(try HTTPResponseParser.parseHead(badRaw))
        #expect(throws: HTTPResponseParser.ParseError.badChunk) { try HTTPResponseParser.parseBody(head: badHead, badRaw, from: bn, atEOF: false) }
    }

    @Test func bodyDelimitedByClose() throws {
        let raw = bytes("HTTP/1.0 200 OK\r\n\r\n<xml/>")
        let (head, n) = try #require(try HTTPResponseParser.parseHead(raw))
        #expect(!head.keepAlive)
        #expect(try HTTPResponseParser.parseBody(head: head, raw, from: n, atEOF: false) == nil)
        let (body, _) = try #require(try HTTPResponseParser.parseBody(head: head, raw, from: n, atEOF: true))
        #expect(body == bytes("<xml/>"))
        // Kept alive and no length: openconnect refuses it, so do we.
        let ka = bytes("HTTP/1.1 200 OK\r\n\r\nxx")
        let (kaHead, kn) = try #require(try HTTPResponseParser.parseHead(ka))
        #expect(throws: HTTPResponseParser.ParseError.noBodyLength) { try HTTPResponseParser.parseBody(head: kaHead, ka, from: kn, atEOF: false) }
    }

    @Test func malformedResponsesAreErrorsNotCrashes() throws {
        #expect(throws: HTTPResponseParser.ParseError.badStatusLine) { try HTTPResponseParser.parseHead(bytes("SSH-2.0-OpenSSH\r\n\r\n")) }
        #expect(throws: HTTPResponseParser.ParseError.badStatusLine) { try HTTPResponseParser.parseHead(bytes("HTTP/1.1 2000 OK\r\n\r\n")) }
        #expect(throws: HTTPResponseParser.ParseError.badStatusLine) { try HTTPResponseParser.parseHead(bytes("\r\n\r\n")) }
        #expect(throws: HTTPResponseParser.ParseError.badHeader) { try HTTPResponseParser.parseHead(bytes("HTTP/1.1 200 OK\r\nno colon here\r\n\r\n")) }
        #expect(throws: HTTPResponseParser.ParseError.badHeader) { try HTTPResponseParser.parseHead(bytes("HTTP/1.1 200 OK\r\n continuation first\r\n\r\n")) }
        let cl = bytes("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n")
        let (h, n) = try #require(try HTTPResponseParser.parseHead(cl))
        #expect(throws: HTTPResponseParser.ParseError.badContentLength) { try HTTPResponseParser.parseBody(head: h, cl, from: n, atEOF: false) }
        let huge = bytes("HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n")
        let (hh, hn) = try #require(try HTTPResponseParser.parseHead(huge))
        #expect(throws: HTTPResponseParser.ParseError.bodyTooLarge) { try HTTPResponseParser.parseBody(head: hh, huge, from: hn, atEOF: false) }
        #expect(throws: HTTPResponseParser.ParseError.headTooLarge) {
            try HTTPResponseParser.parseHead(bytes("HTTP/1.1 200 OK\r\nX: " + String(repeating: "a", count: 70_000)))
        }
        // Random bytes: any outcome but a trap.
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<500 {
            let junk = (0..<Int.random(in: 0...200, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            _ = try? HTTPResponseParser.parseHead(Array("HTTP/1.1 200 OK\r\n".utf8) + junk + [13, 10, 13, 10])
            _ = AuthPage.parse(junk)
            _ = AuthPage.parse([UInt8(ascii: "<"), UInt8(ascii: "a")] + junk)
        }
        // Names that are not UTF-8 made FoundationXML trap; they are refused before it.
        #expect(AuthPage.parse(Array("<a".utf8) + [0xFF] + Array("=\"1\"/>".utf8)) == nil)
        #expect(AuthPage.parse([UInt8(ascii: "<"), 0xFF, 0xFE, UInt8(ascii: "/"), UInt8(ascii: ">")]) == nil)
    }

    @Test func cookieJarFollowsOpenconnectRules() {
        var jar = CookieJar()
        jar.apply(setCookie: "webvpncontext=; expires=Thu, 01 Jan 1970 22:00:00 GMT; path=/; Secure; HttpOnly")
        #expect(jar.header == nil)
        jar.apply(setCookie: "webvpncontext=AC6C+/=; Secure; HttpOnly")
        jar.apply(setCookie: "webvpn=AAA=; Secure")
        jar.apply(setCookie: "webvpnc=bu:/&p:t; path=/")
        #expect(jar.header == "webvpncontext=AC6C+/=; webvpn=AAA=; webvpnc=bu:/&p:t")
        jar.apply(setCookie: "webvpn=BBB")
        #expect(jar.value("webvpn") == "BBB")
        jar.apply(setCookie: "webvpnc=; expires=Thu, 01 Jan 1970 22:00:00 GMT")
        #expect(jar.value("webvpnc") == nil)
        jar.apply(setCookie: "novalue")
        jar.apply(setCookie: "=orphan")
        jar.apply(setCookie: "evil=a\r\nInjected: 1")
        #expect(jar.header == "webvpncontext=AC6C+/=; webvpn=BBB")
    }

    @Test func requestsLookLikeOpenconnect() {
        let t = URLTarget(host: "198.18.0.1", port: 443, path: "/")
        let bearer = String(decoding: LoginRequests.bearer(t, userAgent: "Open AnyConnect VPN Agent v9.01-3", token: "eyJ.x.y"), as: UTF8.self)
        #expect(bearer.hasPrefix("GET / HTTP/1.1\r\nHost: 198.18.0.1\r\nUser-Agent: Open AnyConnect VPN Agent v9.01-3\r\n"))
        #expect(bearer.contains("X-Transcend-Version: 1\r\nX-Aggregate-Auth: 1\r\nAuthorization: Bearer eyJ.x.y\r\n\r\n"))
        let post = String(decoding: LoginRequests.xmlPost(URLTarget(host: "gw", port: 8443, path: "/"), path: "/auth", userAgent: "UA", cookies: "a=1", body: "<x/>"), as: UTF8.self)
        #expect(post.hasPrefix("POST /auth HTTP/1.1\r\nHost: gw:8443\r\n"))
        #expect(post.contains("Cookie: a=1\r\n"))
        #expect(post.hasSuffix("Content-Type: application/xml; charset=utf-8\r\nContent-Length: 4\r\n\r\n<x/>"))
        let connect = String(decoding: LoginRequests.connect(t, userAgent: "UA", cookie: "C=="), as: UTF8.self)
        #expect(connect.hasPrefix("CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: 198.18.0.1\r\n"))
        #expect(connect.contains("Cookie: webvpn=C==\r\nX-CSTP-Version: 1\r\n"))
        #expect(connect.hasSuffix("\r\n\r\n"))
        #expect(LoginRequests.initBody(t).contains("type=\"init\""))
        #expect(LoginRequests.initBody(t).contains("<group-access>https://198.18.0.1/</group-access>"))
    }
}

@Suite struct LoginFlowTests {
    let target = URLTarget(host: "198.18.0.1", port: 443, path: "/")

    static let usernameForm = """
        <?xml version="1.0" encoding="UTF-8"?>
        <config-auth client="vpn" type="auth-request">
        <version who="sg">0.1(1)</version>
        <auth id="main">
        <message>Please enter your username.</message>
        <form method="post" action="/auth">
        <input type="text" name="username" label="Username:" />
        </form></auth>
        </config-auth>
        """
    static let passwordForm = """
        <?xml version="1.0" encoding="UTF-8"?>
        <config-auth client="vpn" type="auth-request">
        <version who="sg">0.1(1)</version>
        <auth id="main">
        <message>Please enter your password.</message>
        <form method="post" action="/auth">
        <input type="password" name="password" label="Password:" />
        </form></auth>
        </config-auth>
        """
    static let complete = """
        <?xml version="1.0" encoding="UTF-8"?>
        <config-auth client="vpn" type="complete">
        <version who="sg">0.1(1)</version>
        <auth id="success">
        <title>SSL VPN Service</title><banner>Welcome to the bench gateway</banner></auth></config-auth>
        """

    func page(_ s: String) -> AuthPage? { AuthPage.parse(Array(s.utf8)) }

    @Test func ocservThreeStepLogin() throws {
        var login = PasswordLogin(user: "alice", password: "correct horse <battery> & staple")
        var jar = CookieJar()
        jar.apply(setCookie: "webvpncontext=; expires=Thu, 01 Jan 1970 22:00:00 GMT; path=/; Secure; HttpOnly")
        let first = try #require(page(Self.usernameForm))
        #expect(first.authId == "main" && first.formAction == "/auth" && first.inputs.count == 1)
        guard case .post(let path1, let body1) = login.next(page: first, cookies: jar, target: target) else {
            Issue.record("expected a POST")
            return
        }
        #expect(path1 == "/auth")
        #expect(body1.contains("type=\"auth-reply\""))
        #expect(body1.contains("<auth><username>alice</username></auth>"))
        jar.apply(setCookie: "webvpncontext=CTX=; Secure; HttpOnly")
        guard case .post(_, let body2) = login.next(page: page(Self.passwordForm), cookies: jar, target: target) else {
            Issue.record("expected a POST")
            return
        }
        #expect(body2.contains("<auth><password>correct horse &lt;battery&gt; &amp; staple</password></auth>"))
        jar.apply(setCookie: "webvpn=COOKIE+/=; Secure; HttpOnly")
        #expect(login.next(page: page(Self.complete), cookies: jar, target: target) == .connect(cookie: "COOKIE+/="))
    }

    @Test func wrongPasswordIsAFailureNotALoop() {
        var login = PasswordLogin(user: "alice", password: "wrong")
        _ = login.next(page: page(Self.passwordForm), cookies: CookieJar(), target: target)
        let again = Self.passwordForm.replacingOccurrences(of: "Please enter your password.", with: "Login failed.\nPlease enter your password.")
        guard case .fail(let why) = login.next(page: page(again), cookies: CookieJar(), target: target) else {
            Issue.record("expected a failure")
            return
        }
        #expect(why.contains("Login failed."))
    }

    @Test func combinedFormHiddenFieldsGroupAndOpaque() throws {
        let xml = """
            <?xml version="1.0"?><config-auth client="vpn" type="auth-request" aggregate-auth-version="2">
            <opaque is-for="sg"><tx>42</tx></opaque>
            <auth id="main"><form method="post" action="https://198.18.0.1/auth2">
            <input type="text" name="username" label="User"/><input type="password" name="password" label="Token"/>
            <input type="hidden" name="state" value="s1"/><input type="submit" name="go" value="Login"/>
            <select name="group_list" label="Group:"><option value="a">A</option><option value="b" selected="true">B</option></select>
            </form></auth></config-auth>
            """
        let p = try #require(page(xml))
        #expect(p.opaque == "<opaque is-for=\"sg\"><tx>42</tx></opaque>")
        var login = PasswordLogin(user: "u", password: "p")
        guard case .post(let path, let body) = login.next(page: p, cookies: CookieJar(), target: target) else {
            Issue.record("expected a POST")
            return
        }
        #expect(path == "/auth2")
        #expect(body.contains("<opaque is-for=\"sg\"><tx>42</tx></opaque>"))
        #expect(body.contains("<group-select>b</group-select>"))
        #expect(body.contains("<auth><username>u</username><password>p</password><state>s1</state></auth>"))
    }

    @Test func formsWeCannotFill() {
        var login = PasswordLogin(user: "u", password: "p")
        let otp = "<config-auth type=\"auth-request\"><auth id=\"otp\"><form method=\"post\"><input type=\"text\" name=\"secondary_code\"/></form></auth></config-auth>"
        guard case .fail = login.next(page: page(otp), cookies: CookieJar(), target: target) else {
            Issue.record("expected a failure")
            return
        }
        var l2 = PasswordLogin(user: "u", password: "p")
        #expect(l2.next(page: nil, cookies: CookieJar(), target: target) == .fail("200 response that is not config-auth XML"))
        var l3 = PasswordLogin(user: "u", password: "p")
        let weird = "<config-auth type=\"auth-request\"><auth id=\"main\"><form><input type=\"hidden\" name=\"x y\" value=\"1\"/></form></auth></config-auth>"
        guard case .fail = l3.next(page: page(weird), cookies: CookieJar(), target: target) else {
            Issue.record("expected a failure for an unusable field name")
            return
        }
    }

    @Test func bearerAnswers() {
        var jar = CookieJar()
        let mstComplete = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<config-auth client=\"vpn\" type=\"complete\" aggregate-auth-version=\"2\">\n<version who=\"sg\">mstunnel</version>\n<auth id=\"success\">\n<title>mstunnel</title></auth></config-auth>\n"
        #expect(BearerLogin.step(page: page(mstComplete), cookies: jar) == .fail("200 without a webvpn cookie"))
        jar.apply(setCookie: "webvpn=abc; Secure; HttpOnly")
        #expect(BearerLogin.step(page: page(mstComplete), cookies: jar) == .connect(cookie: "abc"))
        guard case .fail(let why) = BearerLogin.step(page: page(Self.passwordForm), cookies: jar) else {
            Issue.record("a form is not a login")
            return
        }
        #expect(why.contains("login form"))
        let token = "<config-auth type=\"complete\"><session-token>TOK</session-token><auth id=\"success\"/></config-auth>"
        #expect(BearerLogin.step(page: page(token), cookies: CookieJar()) == .connect(cookie: "TOK"))
    }

    @Test func notConfigAuth() {
        #expect(page("<html><body>hi</body></html>") == nil)
        #expect(page("<config-auth type=\"complete\"><auth id=\"success\">") == nil)
        #expect(page("") == nil)
    }
}

@Suite struct ProcTests {
    @Test func statParentWithAwkwardNames() {
        #expect(ProcessMemory.parseParent(stat: "1234 (ocserv-main) S 1 1234 1234 0 -1") == 1)
        #expect(ProcessMemory.parseParent(stat: "77 (a) b) (c) R 76 77 77 0") == 76)
        #expect(ProcessMemory.parseParent(stat: "garbage") == nil)
        #expect(ProcessMemory.parseParent(stat: "5 (x) S") == nil)
    }

    @Test func smapsRollup() {
        let text = """
            55d0c0a00000-7ffd1b5fe000 ---p 00000000 00:00 0                          [rollup]
            Rss:               12996 kB
            Pss:                3466 kB
            Pss_Anon:           1468 kB
            """
        #expect(ProcessMemory.parsePss(smapsRollup: text) == 3466)
        #expect(ProcessMemory.parsePssAnon(smapsRollup: text) == 1468)
        #expect(ProcessMemory.parsePss(smapsRollup: "Rss: 1 kB") == nil)
        #expect(ProcessMemory.parsePss(smapsRollup: "Pss: lots kB") == nil)
    }

    @Test func descendantsFollowTheTree() {
        let parents: [Int32: Int32] = [1: 0, 100: 1, 101: 100, 102: 100, 103: 102, 200: 1, 201: 200]
        #expect(ProcessMemory.descendants(of: [100], parents: parents) == [100, 101, 102, 103])
        #expect(ProcessMemory.descendants(of: [100, 200, 999], parents: parents) == [100, 101, 102, 103, 200, 201])
        #expect(ProcessMemory.descendants(of: [999], parents: parents).isEmpty)
    }

    @Test func measuringOurselvesWorks() {
        let sample = ProcessMemory.measure(roots: [getpid()])
        // In a sandbox without /proc/self/smaps_rollup access this reports an error instead.
        if let kb = sample.pssKB { #expect(kb > 0) } else { #expect(sample.error != nil) }
        #expect(ProcessMemory.measure(roots: [Int32.max]).error != nil)
    }
}
