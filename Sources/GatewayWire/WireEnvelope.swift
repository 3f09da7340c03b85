/// One message on a gateway socket: a correlation id plus a request or a response.
///
/// Encoded as `{"id":N,"kind":"request","type":"validateToken","body":{…}}`. `type`
/// names the message; its cases never change meaning once shipped. An unknown `type`
/// is a decoding error with the name in it, so an old peer says exactly what it did not
/// understand.
public struct WireEnvelope: Codable, Sendable, Equatable {
    public var id: UInt64
    public var message: WireMessage

    public init(id: UInt64, _ message: WireMessage) {
        self.id = id
        self.message = message
    }

    enum CodingKeys: String, CodingKey { case id, kind, type, body }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(UInt64.self, forKey: .id)
        let kind = try c.decode(String.self, forKey: .kind)
        let type = try c.decode(String.self, forKey: .type)
        switch kind {
        case "request":
            switch type {
            case "validateToken": message = .request(.validateToken(try c.decode(ValidateTokenRequest.self, forKey: .body)))
            case "ping": message = .request(.ping(try c.decode(PingRequest.self, forKey: .body)))
            case "serverStatus": message = .request(.serverStatus(try c.decode(ServerStatusRequest.self, forKey: .body)))
            case "listSessions": message = .request(.listSessions(try c.decode(ListSessionsRequest.self, forKey: .body)))
            case "applySettings": message = .request(.applySettings(try c.decode(ApplySettingsRequest.self, forKey: .body)))
            case "sessionEvents": message = .request(.sessionEvents(try c.decode(SessionEventsRequest.self, forKey: .body)))
            case "hostNetwork": message = .request(.hostNetwork(try c.decode(HostNetworkRequest.self, forKey: .body)))
            case "saveSession": message = .request(.saveSession(try c.decode(SaveSessionRequest.self, forKey: .body)))
            case "forgetSession": message = .request(.forgetSession(try c.decode(ForgetSessionRequest.self, forKey: .body)))
            case "restoreSessions": message = .request(.restoreSessions(try c.decode(RestoreSessionsRequest.self, forKey: .body)))
            case "sealSession": message = .request(.sealSession(try c.decode(SealSessionRequest.self, forKey: .body)))
            case "openTicket": message = .request(.openTicket(try c.decode(OpenTicketRequest.self, forKey: .body)))
            case "installTicketKeys": message = .request(.installTicketKeys(try c.decode(InstallTicketKeysRequest.self, forKey: .body)))
            case "drain": message = .request(.drain(try c.decode(DrainRequest.self, forKey: .body)))
            case "ticketRevocations": message = .request(.ticketRevocations(try c.decode(TicketRevocationsRequest.self, forKey: .body)))
            case "endSessions": message = .request(.endSessions(try c.decode(EndSessionsRequest.self, forKey: .body)))
            default: throw WireDecodingError(message: "unknown request type '\(type)'")
            }
        case "response":
            switch type {
            case "validateToken": message = .response(.validateToken(try c.decode(ValidateTokenResponse.self, forKey: .body)))
            case "ping": message = .response(.ping(try c.decode(PingResponse.self, forKey: .body)))
            case "serverStatus": message = .response(.serverStatus(try c.decode(ServerStatusResponse.self, forKey: .body)))
            case "listSessions": message = .response(.listSessions(try c.decode(ListSessionsResponse.self, forKey: .body)))
            case "applySettings": message = .response(.applySettings(try c.decode(ApplySettingsResponse.self, forKey: .body)))
            case "sessionEvents": message = .response(.sessionEvents(try c.decode(SessionEventsResponse.self, forKey: .body)))
            case "hostNetwork": message = .response(.hostNetwork(try c.decode(HostNetworkResponse.self, forKey: .body)))
            case "sessionStore": message = .response(.sessionStore(try c.decode(SessionStoreResponse.self, forKey: .body)))
            case "restoreSessions": message = .response(.restoreSessions(try c.decode(RestoreSessionsResponse.self, forKey: .body)))
            case "sealSession": message = .response(.sealSession(try c.decode(SealSessionResponse.self, forKey: .body)))
            case "openTicket": message = .response(.openTicket(try c.decode(OpenTicketResponse.self, forKey: .body)))
            case "ticketKeys": message = .response(.ticketKeys(try c.decode(TicketKeysResponse.self, forKey: .body)))
            case "drain": message = .response(.drain(try c.decode(DrainResponse.self, forKey: .body)))
            case "ticketRevocations": message = .response(.ticketRevocations(try c.decode(TicketRevocationsResponse.self, forKey: .body)))
            case "endSessions": message = .response(.endSessions(try c.decode(EndSessionsResponse.self, forKey: .body)))
            case "error": message = .response(.error(try c.decode(WireErrorResponse.self, forKey: .body)))
            default: throw WireDecodingError(message: "unknown response type '\(type)'")
            }
        default:
            throw WireDecodingError(message: "unknown message kind '\(kind)'")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        switch message {
        case .request(let r):
            try c.encode("request", forKey: .kind)
            try c.encode(r.typeName, forKey: .type)
            switch r {
            case .validateToken(let b): try c.encode(b, forKey: .body)
            case .ping(let b): try c.encode(b, forKey: .body)
            case .serverStatus(let b): try c.encode(b, forKey: .body)
            case .listSessions(let b): try c.encode(b, forKey: .body)
            case .applySettings(let b): try c.encode(b, forKey: .body)
            case .sessionEvents(let b): try c.encode(b, forKey: .body)
            case .hostNetwork(let b): try c.encode(b, forKey: .body)
            case .saveSession(let b): try c.encode(b, forKey: .body)
            case .forgetSession(let b): try c.encode(b, forKey: .body)
            case .restoreSessions(let b): try c.encode(b, forKey: .body)
            case .sealSession(let b): try c.encode(b, forKey: .body)
            case .openTicket(let b): try c.encode(b, forKey: .body)
            case .installTicketKeys(let b): try c.encode(b, forKey: .body)
            case .drain(let b): try c.encode(b, forKey: .body)
            case .ticketRevocations(let b): try c.encode(b, forKey: .body)
            case .endSessions(let b): try c.encode(b, forKey: .body)
            }
        case .response(let r):
            try c.encode("response", forKey: .kind)
            try c.encode(r.typeName, forKey: .type)
            switch r {
            case .validateToken(let b): try c.encode(b, forKey: .body)
            case .ping(let b): try c.encode(b, forKey: .body)
            case .serverStatus(let b): try c.encode(b, forKey: .body)
            case .listSessions(let b): try c.encode(b, forKey: .body)
            case .applySettings(let b): try c.encode(b, forKey: .body)
            case .sessionEvents(let b): try c.encode(b, forKey: .body)
            case .hostNetwork(let b): try c.encode(b, forKey: .body)
            case .sessionStore(let b): try c.encode(b, forKey: .body)
            case .restoreSessions(let b): try c.encode(b, forKey: .body)
            case .sealSession(let b): try c.encode(b, forKey: .body)
            case .openTicket(let b): try c.encode(b, forKey: .body)
            case .ticketKeys(let b): try c.encode(b, forKey: .body)
            case .drain(let b): try c.encode(b, forKey: .body)
            case .ticketRevocations(let b): try c.encode(b, forKey: .body)
            case .endSessions(let b): try c.encode(b, forKey: .body)
            case .error(let b): try c.encode(b, forKey: .body)
            }
        }
    }
}

struct WireDecodingError: Error {
    let message: String
}

public enum WireMessage: Sendable, Equatable {
    case request(WireRequest)
    case response(WireResponse)
}

public enum WireRequest: Sendable, Equatable {
    /// gateway → auth: is this access token good, and whose is it?
    case validateToken(ValidateTokenRequest)
    /// any → any: liveness and version of the peer.
    case ping(PingRequest)
    /// cli/agent → gateway: counters and state.
    case serverStatus(ServerStatusRequest)
    /// cli/agent → gateway: the session table.
    case listSessions(ListSessionsRequest)
    /// agent → gateway: apply a Server configuration live.
    case applySettings(ApplySettingsRequest)
    /// agent → gateway: session and access events since a sequence number.
    case sessionEvents(SessionEventsRequest)
    /// gateway → its privileged helper: make the host's network match this state.
    case hostNetwork(HostNetworkRequest)
    /// gateway → auth: keep, forget, give back the sessions that outlive a gateway process.
    case saveSession(SaveSessionRequest)
    case forgetSession(ForgetSessionRequest)
    case restoreSessions(RestoreSessionsRequest)
    /// gateway → auth: keep this new session and seal it into a resumption ticket (its
    /// cookie) that any server of the Site can open (docs/site.md).
    case sealSession(SealSessionRequest)
    /// gateway → auth: a client presented a ticket this gateway has no session for.
    case openTicket(OpenTicketRequest)
    /// agent → auth: the Site's ticket keys from the control plane (docs/site.md).
    case installTicketKeys(InstallTicketKeysRequest)
    /// cli/agent → gateway: drain (or stop draining) this server.
    case drain(DrainRequest)
    /// agent ↔ auth: revocations spread across the Site.
    case ticketRevocations(TicketRevocationsRequest)
    /// agent → gateway: end these sessions (revoked elsewhere in the Site).
    case endSessions(EndSessionsRequest)

    public var typeName: String {
        switch self {
        case .validateToken: return "validateToken"
        case .ping: return "ping"
        case .serverStatus: return "serverStatus"
        case .listSessions: return "listSessions"
        case .applySettings: return "applySettings"
        case .sessionEvents: return "sessionEvents"
        case .hostNetwork: return "hostNetwork"
        case .saveSession: return "saveSession"
        case .forgetSession: return "forgetSession"
        case .restoreSessions: return "restoreSessions"
        case .sealSession: return "sealSession"
        case .openTicket: return "openTicket"
        case .installTicketKeys: return "installTicketKeys"
        case .drain: return "drain"
        case .ticketRevocations: return "ticketRevocations"
        case .endSessions: return "endSessions"
        }
    }
}

public enum WireResponse: Sendable, Equatable {
    case validateToken(ValidateTokenResponse)
    case ping(PingResponse)
    case serverStatus(ServerStatusResponse)
    case listSessions(ListSessionsResponse)
    case applySettings(ApplySettingsResponse)
    case sessionEvents(SessionEventsResponse)
    case hostNetwork(HostNetworkResponse)
    case sessionStore(SessionStoreResponse)
    case restoreSessions(RestoreSessionsResponse)
    case sealSession(SealSessionResponse)
    case openTicket(OpenTicketResponse)
    case ticketKeys(TicketKeysResponse)
    case drain(DrainResponse)
    case ticketRevocations(TicketRevocationsResponse)
    case endSessions(EndSessionsResponse)
    /// The request could not be served at all (unknown type, peer not allowed, …).
    case error(WireErrorResponse)

    public var typeName: String {
        switch self {
        case .validateToken: return "validateToken"
        case .ping: return "ping"
        case .serverStatus: return "serverStatus"
        case .listSessions: return "listSessions"
        case .applySettings: return "applySettings"
        case .sessionEvents: return "sessionEvents"
        case .hostNetwork: return "hostNetwork"
        case .sessionStore: return "sessionStore"
        case .restoreSessions: return "restoreSessions"
        case .sealSession: return "sealSession"
        case .openTicket: return "openTicket"
        case .ticketKeys: return "ticketKeys"
        case .drain: return "drain"
        case .ticketRevocations: return "ticketRevocations"
        case .endSessions: return "endSessions"
        case .error: return "error"
        }
    }
}
