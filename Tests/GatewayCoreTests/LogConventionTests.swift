import Foundation
import Testing

/// One logging convention across every process (docs/architecture.md, "Logs"): event
/// names are `area.event` in lower snake case, dot-separated (`session.created`,
/// `agent.config.apply_failed`); metadata keys are lower snake case, dots for grouping
/// (`peer.address`, `sessions.kept`, `restart_required`). Checked over the sources, so a
/// new log line that breaks it fails here rather than in an operator's log pipeline.
@Suite struct LogConventionTests {
    static let sources: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Sources")

    static func swiftFiles() throws -> [(String, String)] {
        let fm = FileManager.default
        guard let e = fm.enumerator(at: sources, includingPropertiesForKeys: nil) else { return [] }
        var out: [(String, String)] = []
        for case let url as URL in e where url.pathExtension == "swift" {
            out.append((url.path.replacingOccurrences(of: sources.path + "/", with: ""), try String(contentsOf: url, encoding: .utf8)))
        }
        return out
    }

    static let eventName = "^[a-z]+(\\.[a-z][a-z0-9_]*)+$"
    static let metadataKey = "^[a-z0-9]+([._][a-z0-9]+)*$"

    @Test func eventNames() throws {
        let call = try Regex("logger\\.(trace|debug|info|notice|warning|error|critical)\\(\"([^\"]+)\"")
        var bad: [String] = []
        var seen = 0
        for (file, text) in try Self.swiftFiles() {
            for m in text.matches(of: call) {
                let name = String(text[m.output[2].range!])
                seen += 1
                if name.wholeMatch(of: try Regex(Self.eventName)) == nil { bad.append("\(file): \(name)") }
            }
        }
        #expect(seen > 100, "the scan found the log calls")
        #expect(bad.isEmpty, "event names off the convention: \(bad)")
    }

    @Test func metadataKeys() throws {
        var bad: [String] = []
        var seen = 0
        let opener = try Regex("metadata: \\[|Logger\\.Metadata = \\[")
        let key = try Regex("\"([A-Za-z0-9_.]+)\":")
        let assigned = try Regex("\\b(?:meta|m|metadata)\\[\"([A-Za-z0-9_.]+)\"\\]\\s*=")
        for (file, text) in try Self.swiftFiles() {
            for m in text.matches(of: opener) {
                // The dictionary literal, to its matching bracket.
                var depth = 1
                var i = m.range.upperBound
                while depth > 0, i < text.endIndex {
                    if text[i] == "[" { depth += 1 } else if text[i] == "]" { depth -= 1 }
                    i = text.index(after: i)
                }
                for k in text[m.range.upperBound..<i].matches(of: key) {
                    seen += 1
                    let name = String(text[k.output[1].range!])
                    if name.wholeMatch(of: try Regex(Self.metadataKey)) == nil { bad.append("\(file): \(name)") }
                }
            }
            for k in text.matches(of: assigned) {
                let name = String(text[k.output[1].range!])
                if name.wholeMatch(of: try Regex(Self.metadataKey)) == nil { bad.append("\(file): \(name)") }
            }
        }
        #expect(seen > 200, "the scan found the metadata")
        #expect(bad.isEmpty, "metadata keys off the convention: \(bad)")
    }
}
