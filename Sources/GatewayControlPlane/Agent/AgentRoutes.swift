import Foundation
import GatewayAgentAPI
import GatewayWire
import Hummingbird
import NIOCore
import X509

/// The agent API over HTTP (paths in AgentAPI.swift). `/ca` and `/enroll` need no client
/// certificate; everything else needs the agent certificate this CA issued, for a server
/// that still exists.
extension ControlPlane {
    func addAgentRoutes(_ router: RouteTable) {
        let base = AgentAPI.basePath
        HTTP.route(router, base + "/ca", [
            .get: { _, _ in
                Response(status: .ok, headers: [.contentType: "application/x-pem-file"],
                         body: .init(byteBuffer: ByteBuffer(string: self.ca.certificatePEM)))
            },
        ])
        HTTP.route(router, base + "/enroll", [
            .post: { request, _ in
                let body = try await Self.decode(EnrollmentRequest.self, request, limit: AgentAPILimits.maxJSONBodyBytes)
                return try HTTP.json(encodable: try await self.enroll(body))
            },
        ])
        HTTP.route(router, base + "/renew", [
            .post: { request, context in
                let (server, _) = try await self.authenticateAgent(request, context)
                let body = try await Self.decode(RenewalRequest.self, request, limit: AgentAPILimits.maxJSONBodyBytes)
                return try HTTP.json(encodable: try await self.renew(server: server, request: body))
            },
        ])
        // The server leaves its Site (mst-cli uninstall): its record goes, its certificates
        // are refused from then on, as when an admin deletes it.
        HTTP.route(router, base + "/leave", [
            .post: { request, context in
                let (server, _) = try await self.authenticateAgent(request, context)
                guard let blobs = try await self.store.deleteServer(id: server.id) else { throw Self.serverNotFound(server.id) }
                self.removeLogBlobs(blobs)
                self.logger.notice("server.left", metadata: ["server.id": "\(server.id)", "site.id": "\(server.siteId)", "name": "\(server.displayName)"])
                return HTTP.noContent()
            },
        ])
        HTTP.route(router, base + "/checkin", [
            .post: { request, context in
                let (server, cert) = try await self.authenticateAgent(request, context)
                let body = try await Self.decode(CheckinRequest.self, request, limit: AgentAPILimits.maxJSONBodyBytes)
                return try HTTP.json(encodable: try await self.checkin(server: server, certificate: cert, request: body))
            },
        ])
        HTTP.route(router, base + "/reports", [
            .post: { request, context in
                let (server, _) = try await self.authenticateAgent(request, context)
                let body = try await Self.decode(ReportBatch.self, request, limit: AgentAPILimits.maxReportBatchBytes)
                return try HTTP.json(encodable: try await self.receiveReports(server: server, batch: body))
            },
        ])
        HTTP.route(router, base + "/logCollections/{id}", [
            .put: { request, context in
                let (server, _) = try await self.authenticateAgent(request, context)
                let id = try HTTP.parameter(context, "id")
                try await self.receiveLogUpload(server: server, collectionId: id, body: request.body)
                return HTTP.noContent()
            },
        ])
        HTTP.route(router, base + "/logCollections/{id}/failure", [
            .post: { request, context in
                let (server, _) = try await self.authenticateAgent(request, context)
                let id = try HTTP.parameter(context, "id")
                let body = try await Self.decode(LogCollectionFailure.self, request, limit: AgentAPILimits.maxJSONBodyBytes)
                try Self.checkLimits { () throws(FieldLimitError) in try body.checkLimits() }
                try await self.recordLogFailure(server: server, collectionId: id, message: body.message)
                return HTTP.noContent()
            },
        ])
    }

    /// Decodes an agent JSON body. Unknown keys are allowed here (a newer agent may send
    /// more); a missing or mistyped field is a 400 naming it.
    static func decode<T: Decodable>(_ type: T.Type, _ request: Request, limit: Int = GraphBody.maxBytes) async throws -> T {
        var request = request
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: limit)
        } catch {
            throw HTTP.bodyError(error, limit: limit)
        }
        let data = Data(buffer: buffer)
        try HTTP.refuseNUL(data)
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch let DecodingError.keyNotFound(key, ctx) {
            throw GraphError.badRequest("\(type): missing '\(Self.path(ctx.codingPath + [key]))'")
        } catch let DecodingError.typeMismatch(_, ctx), let DecodingError.valueNotFound(_, ctx) {
            throw GraphError.badRequest("\(type): wrong type for '\(Self.path(ctx.codingPath))'")
        } catch let DecodingError.dataCorrupted(ctx) {
            throw GraphError.badRequest("\(type): \(ctx.codingPath.isEmpty ? "body is not valid JSON" : "bad value at '\(Self.path(ctx.codingPath))'")")
        } catch {
            throw GraphError.badRequest("\(type): body does not decode")
        }
    }

    /// A field over its limit (`AgentAPILimits`) is a 400 naming the field and the limit.
    static func checkLimits(_ check: () throws(FieldLimitError) -> Void) throws(GraphError) {
        do {
            try check()
        } catch {
            throw GraphError.badRequest(error.description)
        }
    }

    static func path(_ keys: [any CodingKey]) -> String { CodingPathText.of(keys) }

    /// The server behind the request's verified client certificate.
    func authenticateAgent(_ request: Request, _ context: ControlRequestContext) async throws -> (ServerRecord, IssuedCertificate) {
        guard let cert = await context.verifiedPeerCertificate() else {
            try refuseAgent(request, "this endpoint needs the agent's client certificate (mutual TLS); enroll first", serial: nil)
        }
        return try await authenticateAgent(certificate: cert, request: request)
    }

    func authenticateAgent(certificate cert: Certificate, request: Request?) async throws -> (ServerRecord, IssuedCertificate) {
        let serial = cert.serialHex
        guard ca.signed(cert) else {
            try refuseAgent(request, "the client certificate was not issued by this control plane", serial: serial)
        }
        guard let issued = try await store.certificate(serial: serial) else {
            try refuseAgent(request, "the client certificate is not one this control plane issued", serial: serial)
        }
        guard !issued.revoked, let server = try await store.server(id: issued.serverId) else {
            try refuseAgent(request, "server '\(issued.serverId)' was deleted; its certificate is no longer accepted (enroll again with a new join token)", serial: serial)
        }
        let now = self.now()
        guard issued.notAfter > now, cert.notValidAfter > now else {
            try refuseAgent(request, "the agent certificate expired at \(GraphDate.string(issued.notAfter)); enroll again with a new join token", serial: serial)
        }
        return (server, issued)
    }

    private func refuseAgent(_ request: Request?, _ message: String, serial: String?) throws -> Never {
        logger.notice("agent.auth.rejected", metadata: [
            "path": "\(request?.uri.path ?? "")", "serial": "\(serial ?? "none")", "reason": "\(message)",
        ])
        throw GraphError(.unauthorized, code: "Unauthorized", message)
    }
}
