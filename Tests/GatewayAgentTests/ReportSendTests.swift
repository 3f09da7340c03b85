import Foundation
import GatewayAgentAPI
import Testing
@testable import GatewayAgent

/// The outbox sender (`AgentRunner.drainOutbox`) against a control plane played in memory
/// through `ControlPlaneClient.transport`: which answers may cost reports, and which must
/// only back off.
@Suite struct ReportSendTests {
    /// Records every batch and answers with `answer`.
    final class FakeControlPlane {
        var batches: [ReportBatch] = []
        var answer: (ReportBatch) -> Result<CurlResponse, ControlPlaneError>

        init(answer: @escaping (ReportBatch) -> Result<CurlResponse, ControlPlaneError>) {
            self.answer = answer
        }

        func handle(_ request: CurlRequest) -> Result<CurlResponse, ControlPlaneError> {
            guard request.url.hasSuffix("/reports"), let body = request.body,
                  let batch = try? JSONDecoder().decode(ReportBatch.self, from: body) else {
                return .success(CurlResponse(status: 500, body: Data("unexpected request \(request.url)".utf8), roundTripMilliseconds: 1))
            }
            batches.append(batch)
            return answer(batch)
        }

        var delivered: [String] { batches.flatMap { $0.items.map(\.id) } }
    }

    static func acknowledgeAll(_ batch: ReportBatch) -> Result<CurlResponse, ControlPlaneError> {
        let ack = ReportAck(acknowledged: batch.items.map(\.id), duplicates: 0)
        return .success(CurlResponse(status: 200, body: try! JSONEncoder().encode(ack), roundTripMilliseconds: 1))
    }

    static func odata(_ status: Int, _ code: String, _ message: String) -> Result<CurlResponse, ControlPlaneError> {
        let body = AgentAPIError.Body(error: AgentAPIError(code: code, message: message))
        return .success(CurlResponse(status: status, body: try! JSONEncoder().encode(body), roundTripMilliseconds: 1))
    }

    static func page(_ status: Int, _ text: String) -> Result<CurlResponse, ControlPlaneError> {
        .success(CurlResponse(status: status, body: Data(text.utf8), roundTripMilliseconds: 1))
    }

    func item(_ n: Int) -> ReportItem {
        ReportItem(id: "id-\(n)", createdDateTime: "2026-11-21T10:00:00.000Z",
                   event: AgentEvent(type: .sessionConnected, dateTime: "2026-11-21T10:00:00.000Z", userId: "u\(n)"))
    }

    func runner(_ dir: TempDir, _ server: FakeControlPlane) throws -> AgentRunner {
        let runner = AgentRunner(options: RunOptions(paths: AgentPaths(stateDirectory: dir.path), runDirectory: dir.path + "/run"),
                                 logger: .init(label: "test"), stop: StopSignal())
        let database = try AgentDatabase(path: dir.path + "/agent/agent.sqlite")
        runner.database = database
        runner.outbox = Outbox(database: database, maxRows: 1000)
        let client = ControlPlaneClient(baseURL: "https://127.0.0.1:9", trust: .system, logger: .init(label: "test"), environment: [:])
        client.transport = { server.handle($0) }
        runner.client = client
        return runner
    }

    /// Answers that say nothing about the reports: from something on the path (load
    /// balancer, proxy), or the control plane refusing for another reason.
    static let answersThatDoNotBlameTheBatch: [(String, Result<CurlResponse, ControlPlaneError>)] = [
        ("404 from a load balancer", page(404, "<html><body>404 Not Found</body></html>")),
        ("405 from a load balancer", page(405, "<html><body>405 Not Allowed</body></html>")),
        ("400 from a proxy", page(400, "<html><body>400 Bad Request</body></html>")),
        ("413 from a proxy", page(413, "<html><body>413 Request Entity Too Large</body></html>")),
        ("502", page(502, "Bad Gateway")),
        ("500 with an OData body", odata(500, "InternalServerError", "internal error; see the control plane's log")),
        ("404 with an OData body", odata(404, "ResourceNotFound", "no resource at POST /agent/v1/reports")),
        ("400 BadRequest not about the batch", odata(400, "BadRequest", "something else")),
        ("401", odata(401, "Unauthorized", "the client certificate is not one this control plane issued")),
        ("409 with an OData body", odata(409, "Conflict", "busy")),
        ("TLS failure", .failure(.transport("SSL certificate problem: unable to get local issuer certificate"))),
        ("proxy refusal", .failure(.refused("proxy at http://proxy:3128 requires authentication (407); authenticated proxies are not supported"))),
    ]

    @Test(arguments: ReportSendTests.answersThatDoNotBlameTheBatch.indices)
    func answersNotBlamingTheBatchKeepEveryReportAndBackOff(_ index: Int) throws {
        let (name, answer) = Self.answersThatDoNotBlameTheBatch[index]
        let dir = TempDir()
        let server = FakeControlPlane { _ in answer }
        let runner = try runner(dir, server)
        try runner.outbox.enqueue((0 ..< 23).map(item))

        for attempt in 1 ... 3 {
            let before = Date()
            runner.drainOutbox()
            // One request per attempt, the whole batch: no narrowing down, nothing deleted.
            #expect(server.batches.count == attempt, "\(name)")
            #expect(server.batches.last?.items.count == 23, "\(name)")
            #expect(runner.outbox.depth() == 23, "\(name)")
            #expect(runner.outbox.droppedCount() == 0, "\(name)")
            #expect(runner.batchLimit == ReportBatch.maxItems, "\(name)")
            // Backing off: the next send is at least the first backoff step away.
            #expect(runner.nextSend >= before.addingTimeInterval(1), "\(name)")
            #expect(runner.sendProblem != nil, "\(name)")
        }
    }

    @Test func aReportRefusedOnItsOwnIsDroppedAloneAndCounted() throws {
        let dir = TempDir()
        let server = FakeControlPlane { batch in
            if let i = batch.items.firstIndex(where: { $0.id == "id-4" }) {
                return Self.odata(400, "BadRequest", "items[\(i)] is kind 'event' without 'event'")
            }
            return Self.acknowledgeAll(batch)
        }
        let runner = try runner(dir, server)
        try runner.outbox.enqueue((0 ..< 10).map(item))

        runner.drainOutbox()

        #expect(Set(server.delivered.filter { $0 != "id-4" }) == Set((0 ..< 10).filter { $0 != 4 }.map { "id-\($0)" }))
        // Dropped only after a batch of that one report was refused.
        #expect(server.batches.contains { $0.items.map(\.id) == ["id-4"] })
        #expect(runner.outbox.depth() == 0)
        // The drop was told to the control plane (and the count then acknowledged).
        #expect(server.batches.contains { $0.droppedSinceLastAck == 1 })
        #expect(runner.outbox.droppedCount() == 0)
        #expect(runner.sendProblem == nil)
        #expect(runner.nextSend > Date().addingTimeInterval(600))
    }

    @Test func aBatchTooLargeIsNarrowedDownWithoutLosingAnything() throws {
        let dir = TempDir()
        let server = FakeControlPlane { batch in
            batch.items.count > 3
                ? Self.odata(413, "batchTooLarge", "a batch holds at most 3 items, got \(batch.items.count)")
                : Self.acknowledgeAll(batch)
        }
        let runner = try runner(dir, server)
        try runner.outbox.enqueue((0 ..< 10).map(item))

        runner.drainOutbox()

        let accepted = server.batches.filter { $0.items.count <= 3 }.flatMap { $0.items.map(\.id) }
        #expect(accepted.sorted() == (0 ..< 10).map { "id-\($0)" }.sorted())
        #expect(runner.outbox.depth() == 0)
        #expect(!server.batches.contains { $0.droppedSinceLastAck > 0 })
        #expect(runner.outbox.droppedCount() == 0)
    }

    /// Nothing queued but a drop count to report: a failure must back off like any other,
    /// not resend at once (it used to spin: thousands of empty batches a second).
    @Test(arguments: [
        ReportSendTests.page(404, "<html>404</html>"),
        ReportSendTests.odata(400, "BadRequest", "ReportBatch: wrong type for 'droppedSinceLastAck'"),
        Result<CurlResponse, ControlPlaneError>.failure(.transport("Connection refused")),
    ])
    func aFailedDropCountOnlyBatchKeepsItsBackoff(_ answer: Result<CurlResponse, ControlPlaneError>) throws {
        let dir = TempDir()
        let server = FakeControlPlane { _ in answer }
        let runner = try runner(dir, server)
        try runner.database.set(.droppedReports, "5")

        let before = Date()
        runner.drainOutbox()

        #expect(server.batches.count == 1)
        #expect(server.batches.first?.items.isEmpty == true)
        #expect(server.batches.first?.droppedSinceLastAck == 5)
        #expect(runner.nextSend >= before.addingTimeInterval(1))
        #expect(runner.outbox.droppedCount() == 5)
    }

    @Test func queuingDuringABackoffDoesNotCancelIt() throws {
        let dir = TempDir()
        let server = FakeControlPlane { _ in Self.page(503, "Service Unavailable") }
        let runner = try runner(dir, server)
        try runner.outbox.enqueue([item(0)])
        runner.drainOutbox()
        let retryAt = runner.nextSend
        #expect(retryAt > Date())

        try runner.outbox.enqueue([item(1)])
        runner.reportsQueued()
        #expect(runner.nextSend == retryAt)

        // Once the control plane answers again, new reports go out at once.
        server.answer = Self.acknowledgeAll
        runner.drainOutbox()
        #expect(runner.outbox.depth() == 0)
        #expect(runner.nextSend > Date().addingTimeInterval(600))
        let now = Date()
        runner.reportsQueued(now: now)
        #expect(runner.nextSend == now)
    }

    @Test func onlyTheControlPlanesOwnVerdictOnTheBatchBlamesIt() {
        func api(_ status: Int, _ code: String, _ message: String) -> ControlPlaneError {
            .api(status: status, AgentAPIError(code: code, message: message))
        }
        #expect(api(400, "BadRequest", "items[3].id must be 1 to 128 characters").blamesReportBatch)
        #expect(api(400, "BadRequest", "ReportBatch: missing 'items.[2].kind'").blamesReportBatch)
        #expect(api(413, "batchTooLarge", "a batch holds at most 500 items, got 501").blamesReportBatch)
        #expect(api(413, "RequestEntityTooLarge", "request body larger than 16777216 bytes").blamesReportBatch)
        #expect(!api(400, "BadRequest", "something else").blamesReportBatch)
        #expect(!api(400, "ValidationError", "items[0] bad").blamesReportBatch)
        #expect(!api(404, "ResourceNotFound", "no resource").blamesReportBatch)
        #expect(!api(403, "Forbidden", "no").blamesReportBatch)
        #expect(!ControlPlaneError.http(status: 400, "Bad Request").blamesReportBatch)
        #expect(!ControlPlaneError.http(status: 413, "Request Entity Too Large").blamesReportBatch)
        #expect(!ControlPlaneError.transport("timeout").blamesReportBatch)
    }
}
