import Foundation
import GatewayAgentAPI
import Logging

extension AgentRunner {
    /// Measures and queues one health report (stored before any send).
    func queueHealthReport() {
        let report = health.collect(latencyMilliseconds: client.lastRoundTripMilliseconds, probeURL: probeURL,
                                    appliedVersion: database.appliedConfigurationVersion,
                                    agentCertificateNotAfter: agentCertificateNotAfter)
        if health.certificateNote != lastCertificateNote {
            lastCertificateNote = health.certificateNote
            if let note = lastCertificateNote { logger.info("agent.tls-certificate.not-inspected", metadata: ["detail": "\(note)"]) }
        }
        let item = ReportItem(id: UUID().uuidString.lowercased(), createdDateTime: GraphDate.string(Date()), health: report)
        do {
            let dropped = try outbox.enqueue([item])
            if dropped > 0 { logger.warning("agent.outbox.full", metadata: ["dropped": "\(dropped)", "bound": "\(outbox.maxRows)"]) }
            nextSend = min(nextSend, Date())
        } catch {
            logger.error("agent.outbox.write-failed", metadata: ["error": "\(error.message)"])
        }
    }

    /// Sends the outbox oldest first in batches until it is empty, something fails, or a
    /// handful of batches went out (so check-ins are not starved after a long outage).
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
                if error.isPermanent && error.status != 401 && error.status != 403 {
                    shrinkOrDrop(batch, error)
                    continue
                }
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
            batchLimit = min(ReportBatch.maxItems, batchLimit * 2)
            logger.debug("agent.reports.sent", metadata: ["items": "\(batch.items.count)", "acknowledged": "\(deleted)", "duplicates": "\(ack.duplicates)"])
            if deleted == 0 && !batch.items.isEmpty {
                sendFailed("the control plane acknowledged none of the \(batch.items.count) reports sent")
                return
            }
        }
        nextSend = Date()
    }

    /// A 4xx on a batch: send smaller batches to find the one report the control plane
    /// refuses, and drop only that one (counted), so a single bad row cannot stop the queue.
    func shrinkOrDrop(_ batch: ReportBatch, _ error: ControlPlaneError) {
        if batch.items.count > 1 {
            batchLimit = max(1, batch.items.count / 2)
            return
        }
        guard let item = batch.items.first else {
            sendFailed("\(error)")
            return
        }
        logger.error("agent.reports.refused", metadata: ["id": "\(item.id)", "kind": "\(item.kind.rawValue)", "error": "\(error)"])
        _ = try? outbox.acknowledge(ReportAck(acknowledged: [item.id], duplicates: 0), for: ReportBatch(items: [item], droppedSinceLastAck: 0))
        try? database.set(.droppedReports, String(outbox.droppedCount() + 1))
    }

    func sendFailed(_ text: String) {
        nextSend = Date().addingTimeInterval(sendBackoff.next())
        guard text != sendProblem else { return }
        sendProblem = text
        logger.warning("agent.reports.failed", metadata: ["error": "\(text)", "queued": "\(outbox.depth())", "retry": "backoff from 1 s up to 60 s; nothing is lost"])
    }
}
