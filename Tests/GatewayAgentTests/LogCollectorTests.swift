import Foundation
import GatewayAgentAPI
import Testing
@testable import GatewayAgent

@Suite struct LogCollectorTests {
    func line(_ ts: String, _ msg: String) -> String {
        "{\"ts\":\"\(ts)\",\"level\":\"info\",\"label\":\"x\",\"msg\":\"\(msg)\"}"
    }

    @Test func timestampParsing() {
        #expect(LogCollector.timestampMilliseconds(line("2026-11-21T21:41:37.123Z", "a")) == 1_795_297_297_123)
        #expect(LogCollector.timestampMilliseconds(line("2026-11-21T21:41:37Z", "a")) == 1_795_297_297_000)
        #expect(LogCollector.timestampMilliseconds(line("2026-11-21T22:41:37.5+01:00", "a")) == 1_795_297_297_500)
        #expect(LogCollector.timestampMilliseconds("{\"msg\":\"no ts\"}") == nil)
        #expect(LogCollector.timestampMilliseconds(line("2026-13-21T21:41:37Z", "a")) == nil)
        #expect(LogCollector.timestampMilliseconds(line("yesterday", "a")) == nil)
        #expect(LogCollector.timestampMilliseconds("\"ts\":\"2026") == nil)
    }

    @Test func windowFilterMergesFilesInTimeOrder() throws {
        let dir = TempDir()
        func write(_ name: String, _ lines: [String]) {
            _ = FileManager.default.createFile(atPath: dir.path + "/" + name, contents: Data((lines.joined(separator: "\n") + "\n").utf8))
        }
        write("mstunnel-server.log.1", [line("2026-11-21T09:59:59.999Z", "too early"), line("2026-11-21T10:00:00.000Z", "server-old")])
        write("mstunnel-server.log", [line("2026-11-21T10:00:02.000Z", "server-new"), "  continuation of server-new",
                                      line("2026-11-21T10:00:05.001Z", "too late")])
        write("mstunnel-auth.log", [line("2026-11-21T10:00:01.000Z", "auth"), "not json and no ts", line("2026-11-21T10:00:05.000Z", "auth-last")])
        write("notes.txt", [line("2026-11-21T10:00:01.000Z", "not a log file")])

        let collector = LogCollector(logDirectory: dir.path)
        let result = try collector.collect(start: GraphDate.parse("2026-11-21T10:00:00Z")!, end: GraphDate.parse("2026-11-21T10:00:05Z")!)
        let lines = String(decoding: result.text, as: UTF8.self).split(separator: "\n").map(String.init)
        #expect(lines == [
            "mstunnel-server " + line("2026-11-21T10:00:00.000Z", "server-old"),
            "mstunnel-auth " + line("2026-11-21T10:00:01.000Z", "auth"),
            "mstunnel-auth not json and no ts",
            "mstunnel-server " + line("2026-11-21T10:00:02.000Z", "server-new"),
            "mstunnel-server   continuation of server-new",
            "mstunnel-auth " + line("2026-11-21T10:00:05.000Z", "auth-last"),
        ])
        #expect(result.truncatedLines == 0)
    }

    @Test func outputIsBounded() throws {
        let dir = TempDir()
        let lines = (0 ..< 100).map { line("2026-11-21T10:00:00.\(String(format: "%03d", $0))Z", String(repeating: "x", count: 50)) }
        _ = FileManager.default.createFile(atPath: dir.path + "/a.log", contents: Data(lines.joined(separator: "\n").utf8))
        let result = try LogCollector(logDirectory: dir.path, maxBytes: 1000)
            .collect(start: GraphDate.parse("2026-11-21T10:00:00Z")!, end: GraphDate.parse("2026-11-21T10:00:01Z")!)
        #expect(result.lines < 100)
        #expect(result.lines + result.truncatedLines == 100)
        #expect(String(decoding: result.text, as: UTF8.self).contains("truncated"))
    }

    /// The trailer counts against the limit: the control plane refuses a body one byte
    /// over its limit (413), so "limit + trailer" would lose the whole collection.
    @Test(arguments: [60, 300, 1000, 4000, 11_000])
    func bodyWithTrailerStaysWithinTheLimit(_ maxBytes: Int) throws {
        let dir = TempDir()
        let lines = (0 ..< 100).map { line("2026-11-21T10:00:00.\(String(format: "%03d", $0))Z", String(repeating: "x", count: 50)) }
        _ = FileManager.default.createFile(atPath: dir.path + "/a.log", contents: Data(lines.joined(separator: "\n").utf8))
        let result = try LogCollector(logDirectory: dir.path, maxBytes: maxBytes)
            .collect(start: GraphDate.parse("2026-11-21T10:00:00Z")!, end: GraphDate.parse("2026-11-21T10:00:01Z")!)
        #expect(result.truncatedLines > 0)
        #expect(result.lines + result.truncatedLines == 100)
        #expect(result.text.count <= maxBytes)
        let text = String(decoding: result.text, as: UTF8.self)
        if maxBytes >= 200 {
            // Room for the whole trailer line, after whole log lines.
            #expect(text.hasSuffix("mstunnel-agent log collection truncated: \(result.truncatedLines) more matching lines not included (limit \(maxBytes) bytes)\n"))
            #expect(text.split(separator: "\n").count == result.lines + 1)
        }
    }

    @Test func everythingThatFitsComesWithoutTrailer() throws {
        let dir = TempDir()
        let lines = (0 ..< 100).map { line("2026-11-21T10:00:00.\(String(format: "%03d", $0))Z", String(repeating: "x", count: 50)) }
        _ = FileManager.default.createFile(atPath: dir.path + "/a.log", contents: Data(lines.joined(separator: "\n").utf8))
        let result = try LogCollector(logDirectory: dir.path, maxBytes: 64 << 10)
            .collect(start: GraphDate.parse("2026-11-21T10:00:00Z")!, end: GraphDate.parse("2026-11-21T10:00:01Z")!)
        #expect(result.lines == 100)
        #expect(result.truncatedLines == 0)
        #expect(!String(decoding: result.text, as: UTF8.self).contains("truncated"))
    }

    @Test func missingDirectoryAndBadWindowAreErrors() {
        let start = Date(timeIntervalSince1970: 100)
        #expect(throws: AgentError.self) { try LogCollector(logDirectory: "/nonexistent/\(UUID())").collect(start: start, end: start + 1) }
        let dir = TempDir()
        #expect(throws: AgentError.self) { try LogCollector(logDirectory: dir.path).collect(start: start, end: start - 1) }
    }
}
