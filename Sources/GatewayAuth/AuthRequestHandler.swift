import GatewayWire
import Logging

/// Answers wire requests addressed to the auth plugin, and writes the audit log line for
/// every token decision. Socket-free so it can be driven directly.
public struct AuthRequestHandler: Sendable {
    public let validator: TokenValidator
    let logger: Logger

    public init(validator: TokenValidator, logger: Logger) {
        self.validator = validator
        self.logger = logger
    }

    /// Requests answered without waiting for anything: `ping`, and the error for any
    /// request type the plugin does not serve. nil for `validateToken`, which needs
    /// `validate(_:id:)`.
    public func immediateResponse(to request: WireRequest, id: UInt64) -> WireEnvelope? {
        switch request {
        case .validateToken:
            return nil
        case .ping:
            return WireEnvelope(id: id, .response(.ping(PingResponse(process: "mstunnel-auth", version: AuthVersion.string))))
        default:
            return WireEnvelope(id: id, .response(.error(WireErrorResponse(
                code: WireErrorResponse.unknownRequest,
                message: "mstunnel-auth does not serve '\(request.typeName)' requests"))))
        }
    }

    /// Validates one token and logs the outcome (never the token, never its signature).
    public func validate(_ request: ValidateTokenRequest, id: UInt64) async -> WireEnvelope {
        let result = await validator.validate(request.token)
        var meta: Logger.Metadata = ["transport": "\(request.transport.rawValue)"]
        if let peer = request.peerAddress { meta["peer"] = "\(peer)" }
        if let kid = result.kid { meta["kid"] = "\(kid)" }
        if let identity = result.identity {
            meta["user.id"] = "\(identity.userId)"
            meta["user.name"] = "\(identity.userName)"
            meta["tenant"] = "\(identity.tenantId ?? "")"
            meta["device.id"] = "\(identity.deviceId ?? "")"
            meta["expires"] = "\(identity.expiresAt)"
            logger.info("auth.accepted", metadata: meta)
        } else if let rejection = result.rejection {
            meta["reason.code"] = "\(rejection.code.rawValue)"
            meta["reason"] = "\(rejection.reason)"
            if let alg = result.algorithm { meta["alg"] = "\(alg)" }
            if let iss = result.issuer { meta["iss"] = "\(iss)" }
            if let hash = result.subjectHash { meta["sub.hash"] = "\(hash)" }
            // The issuer being unreachable is an operator problem, a bad token is routine.
            if rejection.code == .issuerUnavailable {
                logger.warning("auth.rejected", metadata: meta)
            } else {
                logger.notice("auth.rejected", metadata: meta)
            }
        }
        return WireEnvelope(id: id, .response(.validateToken(result.response)))
    }
}
