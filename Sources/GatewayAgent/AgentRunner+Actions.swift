import Foundation
import GatewayAgentAPI
import Logging

extension AgentRunner {
    /// Handles one action from a check-in. Finished actions are remembered in the
    /// database, so a repeat in a later answer (or after a restart) is ignored.
    func handleAction(_ action: AgentAction) {
        guard !database.isActionDone(action.id) else { return }
        guard let kind = action.kind else {
            logger.warning("agent.action.unknown", metadata: ["id": "\(action.id)", "type": "\(action.type)", "detail": "skipped; a newer agent may know it"])
            markDone(action, "skipped: unknown type")
            return
        }
        switch kind {
        case .collectLogs: collectLogs(action)
        }
    }

    func collectLogs(_ action: AgentAction) {
        let collector = LogCollector(logDirectory: options.logDirectory)
        let collected: LogCollector.Collected
        do throws(AgentError) {
            guard let s = action.startDateTime, let start = GraphDate.parse(s), let e = action.endDateTime, let end = GraphDate.parse(e) else {
                throw AgentError("the request has no valid startDateTime/endDateTime")
            }
            collected = try collector.collect(start: start, end: end)
        } catch {
            logger.warning("agent.logs.failed", metadata: ["id": "\(action.id)", "error": "\(error.message)"])
            do throws(ControlPlaneError) {
                try client.reportLogFailure(collectionId: action.id, message: error.message)
                markDone(action, "failed: \(error.message)")
            } catch {
                // Not marked: the control plane repeats the action, we try again then.
                logger.warning("agent.logs.failure_report_failed", metadata: ["id": "\(action.id)", "error": "\(error)"])
            }
            return
        }
        do {
            try client.uploadLogs(collectionId: action.id, text: collected.text)
            logger.info("agent.logs.uploaded", metadata: [
                "id": "\(action.id)", "lines": "\(collected.lines)", "bytes": "\(collected.text.count)",
                "files": "\(collected.files.joined(separator: ","))", "lines.truncated": "\(collected.truncatedLines)",
            ])
            markDone(action, "uploaded \(collected.lines) lines")
        } catch {
            if error.closesLogCollection {
                // The collection is gone or closed on the control plane: retrying won't help.
                logger.warning("agent.logs.upload_refused", metadata: ["id": "\(action.id)", "error": "\(error)"])
                markDone(action, "refused: \(error)")
            } else {
                logger.warning("agent.logs.upload_failed", metadata: ["id": "\(action.id)", "error": "\(error)", "retry": "when the control plane repeats the action"])
            }
        }
    }

    func markDone(_ action: AgentAction, _ outcome: String) {
        do {
            try database.markActionDone(id: action.id, type: action.type, outcome: outcome)
        } catch {
            logger.error("agent.action.record_failed", metadata: ["id": "\(action.id)", "error": "\(error.message)"])
        }
    }
}
