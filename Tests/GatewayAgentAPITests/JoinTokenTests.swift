import Foundation
import GatewayAgentAPI
import Testing

@Suite struct JoinTokenTests {
    let hash = String(repeating: "ab", count: 32)

    @Test func roundTrips() throws {
        let t = JoinToken(tokenId: "tok1", secret: "s3cr-et_x", caSHA256: hash)
        let parsed = try JoinToken(parsing: " \(t.description)\n")
        #expect(parsed == t)
    }

    @Test func refusesMalformed() {
        for bad in ["", "mstj1", "mstj2.a.b.\(hash)", "mstj1.a..\(hash)", "mstj1.a.b.c", "mstj1.a.b/c.\(hash)", "mstj1.a.b.\(hash).x"] {
            #expect(throws: AgentAPIError.self) { try JoinToken(parsing: bad) }
        }
    }

    @Test func graphDatesRoundTrip() throws {
        let d = Date(timeIntervalSince1970: 1_790_000_000.25)
        let s = GraphDate.string(d)
        #expect(s.hasSuffix("Z"))
        let back = try #require(GraphDate.parse(s))
        #expect(abs(back.timeIntervalSince(d)) < 0.001)
        #expect(GraphDate.parse("2026-11-21T10:00:00Z") != nil)
        #expect(GraphDate.parse("yesterday") == nil)
        #expect(GraphDate.parse("2026-11-21T10:00:00.123456789+01:00") != nil)
    }

    /// Found by fuzzing (Fuzz/Crashes/fuzz-agent-api): Foundation's ISO8601DateFormatter
    /// died of SIGFPE on 35+ fraction digits and read year 0000 as 0001. Such text never
    /// reaches it now.
    @Test(arguments: [
        "2026-11-21T10:00:00." + String(repeating: "1", count: 36) + "Z",
        "2026-11-21T10:00:00.1234567890Z",
        "0000-01-01T00:00:00Z",
        "2026-11-21T10:00:00",
        "2026-11-21T10:00:00.Z",
        "2026-11-21 10:00:00Z",
        "2026-11-21T10:00:00+0100",
        "2026-11-21T10:00:00Zjunk",
        "+2026-11-21T10:00:00Z",
    ])
    func malformedDatesAreRefusedBeforeFoundation(text: String) {
        #expect(GraphDate.parse(text) == nil)
    }

    @Test func reportItemEncodesKind() throws {
        let item = ReportItem(id: "1", createdDateTime: "2026-11-21T10:00:00Z",
                              event: AgentEvent(type: .sessionConnected, dateTime: "2026-11-21T10:00:00Z", userId: "u"))
        let json = String(decoding: try JSONEncoder().encode(item), as: UTF8.self)
        #expect(json.contains("\"kind\":\"event\""))
        let back = try JSONDecoder().decode(ReportItem.self, from: Data(json.utf8))
        #expect(back == item)
    }
}
