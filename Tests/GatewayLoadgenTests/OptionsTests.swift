import Glibc
import ArgumentParser
import Foundation
import Testing
@testable import GatewayLoadgen

@Suite struct OptionsTests {
    func parse(_ args: [String]) throws -> LoadgenArguments { try LoadgenArguments.parse(args) }

    /// The validation message, or nil when the arguments are accepted.
    func problem(_ args: [String]) -> String? {
        do {
            _ = try parse(args)
            return nil
        } catch {
            return LoadgenArguments.message(for: error)
        }
    }

    @Test func defaultsAndAFullCommandLine() throws {
        let a = try parse(["--url", "https://198.18.0.1/", "--token", "abc"])
        let c = try a.configuration()
        #expect(c.target == URLTarget(host: "198.18.0.1", port: 443, path: "/"))
        #expect(c.sessions == 1 && c.concurrency == 32 && c.hold == 0 && c.rate == nil && c.timeout == 30)
        #expect(c.login == .bearer(tokens: ["abc"]))
        let full = try parse(["--url", "https://198.18.0.1:8443/grp", "--sessions", "15000", "--concurrency", "500",
                              "--hold", "30", "--rate", "250.5", "--timeout", "5", "--bind-address", "198.18.0.2",
                              "--gateway-pid", "10", "--gateway-pid", "11", "--json", "--logoff",
                              "--user", "alice", "--password", "pw d", "--pin", "pin-sha256:" + Data(repeating: 7, count: 32).base64EncodedString()])
        let fc = try full.configuration()
        #expect(fc.target.hostHeader == "198.18.0.1:8443" && fc.target.path == "/grp")
        #expect(fc.sessions == 15000 && fc.concurrency == 500 && fc.hold == 30 && fc.rate == 250.5 && fc.timeout == 5)
        #expect(fc.gatewayPids == [10, 11] && fc.json && fc.logoff && fc.bindAddresses == ["198.18.0.2"])
        #expect(fc.login == .password(user: "alice", password: "pw d"))
    }

    @Test func badValuesAreNamed() {
        let base = ["--url", "https://198.18.0.1/", "--token", "t"]
        #expect(problem(base + ["--sessions", "0"])?.contains("--sessions") == true)
        #expect(problem(base + ["--concurrency", "-3"])?.contains("--concurrency") == true)
        #expect(problem(base + ["--hold", "-1"])?.contains("--hold") == true)
        #expect(problem(base + ["--hold", "nan"])?.contains("--hold") == true)
        #expect(problem(base + ["--rate", "0"])?.contains("--rate") == true)
        #expect(problem(base + ["--timeout", "inf"])?.contains("--timeout") == true)
        #expect(problem(base + ["--bind-address", "example.com"])?.contains("--bind-address") == true)
        #expect(problem(base + ["--gateway-pid", "0"])?.contains("--gateway-pid") == true)
        #expect(problem(base + ["--pin", "sha1:abc"])?.contains("--pin") == true)
        #expect(problem(base + ["--pin", "pin-sha256:AAAA"])?.contains("--pin") == true)
        #expect(problem(["--url", "http://198.18.0.1/", "--token", "t"])?.contains("https://") == true)
        #expect(problem(["--url", "https://198.18.0.1:0/", "--token", "t"])?.contains("port") == true)
        #expect(problem(["--url", "https://198.18.0.1:99999/", "--token", "t"])?.contains("port") == true)
        #expect(problem(["--url", "https://:443/", "--token", "t"])?.contains("host") == true)
        #expect(problem(["--url", "https://[fe80::1/", "--token", "t"]) != nil)
        #expect(problem(["--url", "https://u:p@gw/", "--token", "t"]) != nil)
        #expect(problem(base + ["--sessions", "lots"]) != nil)
    }

    @Test func exactlyOneLogin() {
        let url = ["--url", "https://198.18.0.1/"]
        #expect(problem(url)?.contains("give a login") == true)
        #expect(problem(url + ["--token", "a", "--user", "u", "--password", "p"])?.contains("exclude each other") == true)
        #expect(problem(url + ["--user", "u"])?.contains("go together") == true)
        #expect(problem(url + ["--password", "p"])?.contains("go together") == true)
        #expect(problem(url + ["--token", "has space"])?.contains("--token") == true)
        #expect(problem(url + ["--token", "a\r\nX: y"])?.contains("--token") == true)
        #expect(problem(url + ["--user", "", "--password", "p"])?.contains("--user") == true)
    }

    @Test func tokenFiles() throws {
        #expect(try TokenList.parse("a.b.c\n\n  d.e.f  \r\ng.h.i", source: "f") == ["a.b.c", "d.e.f", "g.h.i"])
        #expect(throws: ValidationError.self) { try TokenList.parse("\n \n", source: "f") }
        #expect(throws: ValidationError.self) { try TokenList.parse("ok\nnot ok\n", source: "f") }
        let path = NSTemporaryDirectory() + "mst-loadgen-tokens-\(getpid())"
        try "t1\nt2\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let c = try parse(["--url", "https://gw/", "--token-file", path]).configuration()
        #expect(c.login == .bearer(tokens: ["t1", "t2"]))
        #expect(throws: (any Error).self) { try parse(["--url", "https://gw/", "--token-file", path + ".missing"]).configuration() }
    }

    @Test func urls() throws {
        #expect(try URLTarget.parse("https://gw.example") == URLTarget(host: "gw.example", port: 443, path: "/"))
        #expect(try URLTarget.parse("HTTPS://[fd00::1]:4443/x?y#z") == URLTarget(host: "fd00::1", port: 4443, path: "/x?y"))
        #expect(try URLTarget.parse("https://[fd00::1]").hostHeader == "[fd00::1]")
        #expect(try URLTarget.parse("https://gw:443/").groupAccess == "https://gw/")
        #expect(try URLTarget.parse("https://gw:8443").groupAccess == "https://gw:8443/")
        #expect(throws: URLTarget.ParseError.self) { try URLTarget.parse("https://[nothex]:1/") }
        #expect(throws: URLTarget.ParseError.self) { try URLTarget.parse("https://gw/a b") }
    }
}
