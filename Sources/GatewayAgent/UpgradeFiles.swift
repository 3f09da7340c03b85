import Foundation
import GatewayAgentAPI

/// The files the agent and the host's updater (deploy/mstunnel-updater) exchange in
/// `<state-dir>/upgrade` (docs/site.md, "Rolling upgrade"). Plain `key=value` lines, one
/// value per line, because the updater is a shell script on a host that may have nothing
/// else: no JSON tool is needed to read or write them.
///
/// In the agent's `<state-dir>/upgrade` (the updater reads them as the agent's uid):
/// - `desired`: `id`, `tag`, `requested` — move this stack to `tag`;
/// - `confirmed`: `id` — the agent on the new tag checked in (the updater's last health check).
/// In the updater's own directory (root's; read-only for the agent):
/// - `result`: `id`, `tag`, `state` (`succeeded` or `failed`), `previous`, `message`, `date`;
/// - `updater.alive`: touched every few seconds: an updater runs.
public enum UpgradeFiles {
    public static let desired = "desired"
    public static let confirmed = "confirmed"
    public static let result = "result"
    public static let alive = "updater.alive"
    /// An updater whose heartbeat is older than this is taken for absent.
    public static let aliveWithin: TimeInterval = 30

    /// Parses `key=value` lines; later keys win, lines without `=` are skipped.
    public static func parse(_ text: String) -> [String: String] {
        var values: [String: String] = [:]
        for line in text.split(whereSeparator: \.isNewline) {
            guard let eq = line.firstIndex(of: "=") else { continue }
            values[String(line[..<eq]).trimmingCharacters(in: .whitespaces)] = String(line[line.index(after: eq)...])
        }
        return values
    }

    /// The updater's result file as a report; nil when it is missing, or not a result the
    /// updater could have written (bad id, tag or state).
    public static func result(from text: String) -> UpgradeReport? {
        let v = parse(text)
        guard let id = v["id"], isAttemptId(id), let tag = v["tag"], UpgradeReport.isValidTag(tag),
              let state = v["state"].flatMap(UpgradeReport.State.init), state == .succeeded || state == .failed else { return nil }
        let message = v["message"].map { AgentAPILimits.truncated($0, toBytes: AgentAPILimits.reason) }
        return UpgradeReport(id: id, tag: tag, state: state, message: message?.isEmpty == true ? nil : message,
                             dateTime: AgentAPILimits.truncated(v["date"] ?? "", toBytes: AgentAPILimits.dateTime))
    }

    /// What the agent writes to ask for `tag`.
    public static func desiredText(id: String, tag: String, requested: String) -> String {
        "id=\(id)\ntag=\(tag)\nrequested=\(requested)\n"
    }

    /// The control plane's attempt ids: UUIDs (letters, digits and `-`, at most 64).
    public static func isAttemptId(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 64 && id.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x7A) || (c >= 0x41 && c <= 0x5A) || c == UInt8(ascii: "-")
        }
    }
}
