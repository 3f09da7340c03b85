import Foundation
import GatewayAgentAPI
import Logging

extension AgentRunner {
    /// Measures and queues one health report (stored before any send).
    func queueHealthReport() {
        let report = health.collect(probeURL: probeURL,
                                    appliedVersion: database.appliedConfigurationVersion,
                                    agentCertificateNotAfter: agentCertificateNotAfter)
        if health.certificateNote != lastCertificateNote {
            lastCertificateNote = health.certificateNote
            if let note = lastCertificateNote { logger.info("agent.tls_certificate.not_inspected", metadata: ["detail": "\(note)"]) }
        }
        let item = ReportItem(id: UUID().uuidString.lowercased(), createdDateTime: GraphDate.string(Date()), health: report)
        do {
            let dropped = try outbox.enqueue([item])
            if dropped > 0 { logger.warning("agent.outbox.full", metadata: ["dropped": "\(dropped)", "bound": "\(outbox.maxRows)"]) }
            reportsQueued()
        } catch {
            logger.error("agent.outbox.write_failed", metadata: ["error": "\(error.message)"])
        }
    }

    /// Something new is in the outbox: send soon, but never before a running backoff ends
    /// (a failing control plane must not be hit at every queued event).
    func reportsQueued(now: Date = Date()) {
        nextSend = max(sendRetryNotBefore, min(nextSend, now))
    }

    /// Sends the outbox oldest first in batches until it is empty, something fails, or a
    /// handful of batches went out (so check-ins are not starved after a long outage).
    ///
    /// Every path that ends in a failure returns right after `sendFailed`, which set
    /// `nextSend` to the backoff: nothing below may move it earlier again.
    func drainOutbox() {
        if identityProblem != nil {
            // No valid certificate: sending cannot work; the check-in path retries slowly.
            nextSend = Date().addingTimeInterval(Self.expiredRetryInterval)
            return
        }
        for _ in 0 ..< 20 {
            if stop.isStopped { return }
            let batch: ReportBatch
            do {
                batch = try outbox.nextBatch(limit: batchLimit)
            } catch {
                sendFailed("\(error.message)")
                return
            }
            if batch.items.isEmpty && batch.droppedSinceLastAck == 0 {
                // Empty: nothing to do until something is queued.
                nextSend = Date().addingTimeInterval(3600)
                return
            }
            let ack: ReportAck
            do {
                ack = try client.sendReports(batch)
            } catch {
                // Only the control plane's own verdict on the batch content leads to a
                // smaller batch or a dropped report; everything else keeps every row.
                if error.blamesReportBatch, isolateRefusedReport(batch, error) { continue }
                sendFailed("\(error)")
                return
            }
            let deleted: Int
            do {
                deleted = try outbox.acknowledge(ack, for: batch)
            } catch {
                sendFailed("\(error.message)")
                return
            }
            if sendProblem != nil { logger.info("agent.reports.recovered", metadata: ["queued": "\(outbox.depth())"]) }
            sendProblem = nil
            sendBackoff.reset()
            sendRetryNotBefore = .distantPast
            batchLimit = min(ReportBatch.maxItems, batchLimit * 2)
            logger.debug("agent.reports.sent", metadata: ["items": "\(batch.items.count)", "acknowledged": "\(deleted)", "duplicates": "\(ack.duplicates)"])
            if deleted == 0 && !batch.items.isEmpty {
                sendFailed("the control plane acknowledged none of the \(batch.items.count) reports sent")
                return
            }
        }
        // 20 batches went out (or were narrowed down) without a failure: more may be queued.
        nextSend = Date()
    }

    /// The control plane refused the batch for its content (`blamesReportBatch`). Returns
    /// true when that led to progress, so the next batch can go at once:
    /// - more than one item: halve the batch size, to find the report it refuses;
    /// - exactly one item: that report was refused on its own, so it is dropped (logged and
    ///   counted in `droppedSinceLastAck`), so one bad report cannot block the queue.
    /// Returns false (the caller backs off, nothing deleted) for a batch without items
    /// (only a drop count) or when the drop could not be written.
    func isolateRefusedReport(_ batch: ReportBatch, _ error: ControlPlaneError) -> Bool {
        if batch.items.count > 1 {
            batchLimit = max(1, batch.items.count / 2)
            return true
        }
        guard batch.items.count == 1, let item = batch.items.first else { return false }
        do {
            try outbox.dropRefused(id: item.id)
        } catch {
            return false
        }
        logger.error("agent.reports.refused", metadata: [
            "id": "\(item.id)", "kind": "\(item.kind.rawValue)", "error": "\(error)",
            "detail": "the control plane refused this report on its own; it was dropped and counted",
        ])
        return true
    }

    func sendFailed(_ text: String) {
        nextSend = Date().addingTimeInterval(sendBackoff.next())
        sendRetryNotBefore = nextSend
        guard text != sendProblem else { return }
        sendProblem = text
        logger.warning("agent.reports.failed", metadata: ["error": "\(text)", "queued": "\(outbox.depth())", "retry": "backoff from 1 s up to 60 s; nothing is lost"])
    }
}
