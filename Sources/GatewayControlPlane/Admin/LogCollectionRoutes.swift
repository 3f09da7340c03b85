import Foundation
import GatewayAgentAPI
import GatewayAuth
import Hummingbird
import NIOCore

/// `/beta/deviceManagement/microsoftTunnelServerLogCollectionResponses` (+ createDownloadUrl)
/// and the signed, bearer-less download link it hands out.
extension ControlPlane {
    static let logCollectionsPath = "/beta/deviceManagement/microsoftTunnelServerLogCollectionResponses"
    static let downloadsPath = "/downloads/logCollections"

    func addLogCollectionRoutes(_ router: RouteTable) {
        let schema = GraphSchemas.logCollection
        HTTP.route(router, Self.logCollectionsPath, [
            .get: { request, _ in
                let query = try ODataQuery(parameters: HTTP.query(request), schema: schema)
                let items = try await self.store.listLogCollections().map(self.logCollectionJSON)
                return HTTP.collection(query.apply(to: items).map { withODataType($0, schema) }, context: "deviceManagement/microsoftTunnelServerLogCollectionResponses")
            },
        ])
        HTTP.route(router, Self.logCollectionsPath + "/{id}", [
            .get: { request, context in
                let id = try HTTP.parameter(context, "id")
                let query = try ODataQuery(parameters: HTTP.query(request), schema: schema)
                guard let record = try await self.store.logCollection(id: id) else { throw Self.logCollectionNotFound(id) }
                return HTTP.json(.object(withODataType(query.project(self.logCollectionJSON(record)), schema)))
            },
        ])
        HTTP.route(router, Self.logCollectionsPath + "/{id}/createDownloadUrl", [
            .post: { _, context in
                let id = try HTTP.parameter(context, "id")
                guard let record = try await self.store.logCollection(id: id) else { throw Self.logCollectionNotFound(id) }
                guard record.status == .completed else {
                    throw GraphError.conflict("log collection '\(id)' is \(record.status.rawValue)\(record.failureMessage.map { ": \($0)" } ?? ""); only completed collections can be downloaded")
                }
                guard record.expiryDateTime > self.now() else { throw GraphError(.gone, code: "Gone", "log collection '\(id)' expired") }
                return HTTP.json(.object(["@odata.context": .string("/beta/$metadata#Edm.String"), "value": .string(self.downloadURL(collectionId: id))]))
            },
        ])
        // Outside /beta: the signature in the link is the credential.
        HTTP.route(router, Self.downloadsPath + "/{id}", [
            .get: { request, context in
                let id = try HTTP.parameter(context, "id")
                let q = Dictionary(try HTTP.query(request), uniquingKeysWith: { a, _ in a })
                if let error = self.checkDownload(collectionId: id, expires: q["expires"], sig: q["sig"]) { throw error }
                guard let record = try await self.store.logCollection(id: id), record.status == .completed else {
                    throw Self.logCollectionNotFound(id)
                }
                // Completed before the bytes moved into the store (v5): its file.
                let stored = try await self.store.logCollectionBytes(id: id)
                guard let data = stored.map({ Data($0) }) ?? record.blobPath.flatMap({ FileManager.default.contents(atPath: $0) }) else {
                    throw Self.logCollectionNotFound(id)
                }
                return Response(status: .ok, headers: [
                    .contentType: "text/plain; charset=utf-8",
                    .contentDisposition: "attachment; filename=\"mstunnel-logs-\(record.serverId)-\(id).log\"",
                ], body: .init(byteBuffer: ByteBuffer(bytes: data)))
            },
        ])
    }

    static func logCollectionNotFound(_ id: String) -> GraphError {
        .notFound("no microsoftTunnelServerLogCollectionResponse with id '\(id)'")
    }

    func logCollectionJSON(_ r: LogCollectionRecord) -> [String: JSONValue] {
        [
            "id": .string(r.id), "status": .string(r.status.rawValue),
            "startDateTime": .string(GraphDate.string(r.startDateTime)), "endDateTime": .string(GraphDate.string(r.endDateTime)),
            "sizeInBytes": .int(r.sizeInBytes), "serverId": .string(r.serverId),
            "requestDateTime": .string(GraphDate.string(r.requestDateTime)), "expiryDateTime": .string(GraphDate.string(r.expiryDateTime)),
        ]
    }
}
