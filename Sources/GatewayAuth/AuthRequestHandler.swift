import Foundation
import GatewayWire
import Logging

/// One authentication decision with what may be logged about it.
public struct AuthDecision: Sendable, Equatable {
    /// What the gateway is told.
    public var response: ValidateTokenResponse
    /// What decided: `token`, `certificate`, `certificate+token`, or `none` (refused
    /// before either was looked at).
    public var method: String
    /// The token's validation, when the token was looked at.
    public var token: TokenValidationResult?
    /// The certificate's verification, when a certificate was looked at (its OUs are
    /// there for group policy).
    public var certificate: ClientCertificateResult?

    public var identity: Identity? { response.identity }
    public var rejection: TokenRejection? { response.rejection }
}

/// Answers wire requests addressed to the auth plugin, and writes the audit log line for
/// every decision. Socket-free so it can be driven directly.
///
/// `authenticationMode` (from the validator's configuration) decides what a login needs:
/// a token, a client certificate, either (a presented certificate then decides alone), or
/// both for the same user.
public struct AuthRequestHandler: Sendable {
    public let validator: TokenValidator
    /// The client-certificate verifier; nil when `authenticationMode` is `token`.
    public let certificates: ClientCertificateVerifier?
    public var mode: AuthenticationMode { validator.configuration.authenticationMode }
    let logger: Logger

    public init(validator: TokenValidator, certificates: ClientCertificateVerifier? = nil, logger: Logger) {
        self.validator = validator
        self.certificates = certificates
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

    /// Decides one login and logs the outcome (never the token, never its signature).
    public func validate(_ request: ValidateTokenRequest, id: UInt64) async -> WireEnvelope {
        let decision = await decide(request)
        log(decision, request)
        return WireEnvelope(id: id, .response(.validateToken(decision.response)))
    }

    /// The decision for one login under `authenticationMode`, without logging it.
    public func decide(_ request: ValidateTokenRequest) async -> AuthDecision {
        let chain = request.clientCertificateChain.flatMap { $0.isEmpty ? nil : $0 }
        let certificateOnly = request.transport == .certificate
        func refuse(_ code: TokenRejection.Code, _ reason: String) -> AuthDecision {
            AuthDecision(response: .rejected(code, reason), method: "none")
        }

        if request.recheck == true {
            guard let chain else { return refuse(.certificateRequired, "a re-check needs the session's certificate chain") }
            var decision = byCertificate(chain)
            decision.method = "recheck"
            return decision
        }

        switch mode {
        case .token:
            if certificateOnly {
                return refuse(.certificateNotAccepted, "client certificates are not accepted: authenticationMode is token")
            }
            return await byToken(request.token)

        case .certificate:
            guard let chain else {
                return refuse(.certificateRequired, "a client certificate is required (authenticationMode is certificate) and none was presented")
            }
            return byCertificate(chain)

        case .certificateOrToken:
            if let chain { return byCertificate(chain) }  // it decides: no fallback to the token
            if certificateOnly {
                return refuse(.certificateRequired, "no client certificate was presented and no token was sent (authenticationMode is certificate-or-token)")
            }
            return await byToken(request.token)

        case .certificateAndToken:
            guard let chain else {
                return refuse(.certificateRequired, "a client certificate is required as well as the token (authenticationMode is certificate+token) and none was presented")
            }
            var decision = byCertificate(chain)
            decision.method = "certificate+token"
            guard let certificateUser = decision.certificate?.user, let certificateSHA256 = decision.certificate?.identity?.certificateSHA256 else {
                return decision
            }
            if certificateOnly || request.token.isEmpty {
                decision.response = .rejected(.malformed, "an access token is required as well as the client certificate (authenticationMode is certificate+token) and none was sent")
                return decision
            }
            let token = await validator.validate(request.token)
            decision.token = token
            guard var identity = token.identity else {
                decision.response = token.response
                return decision
            }
            guard certificateUser.lowercased() == identity.userName.lowercased() else {
                let label = decision.certificate?.certificate?.label ?? "(unreadable)"
                decision.response = .rejected(.certificateUserMismatch, "the certificate's user '\(ClientCertificate.clip(certificateUser))' (certificate \(label), userFrom \(certificates?.configuration.userFrom.rawValue ?? "?")) is not the token's user '\(ClientCertificate.clip(identity.userName))'")
                return decision
            }
            identity.certificateSHA256 = certificateSHA256
            // Group policy sees both: the token's groups and roles, the certificate's OUs.
            identity.organizationalUnits = decision.certificate?.identity?.organizationalUnits
            decision.response = .accepted(identity)
            return decision
        }
    }

    private func byToken(_ token: String) async -> AuthDecision {
        let result = await validator.validate(token)
        return AuthDecision(response: result.response, method: "token", token: result)
    }

    private func byCertificate(_ chain: [Data]) -> AuthDecision {
        guard let certificates else {
            // AuthConfiguration.validate() makes this unreachable from auth.json.
            return AuthDecision(response: .rejected(.certificateUntrusted, "client certificates are not configured ('clientCertificates.caFile')"),
                                method: "certificate")
        }
        let result = certificates.verify(chain)
        return AuthDecision(response: result.response, method: "certificate", certificate: result)
    }

    private func log(_ decision: AuthDecision, _ request: ValidateTokenRequest) {
        var meta: Logger.Metadata = ["transport": "\(request.transport.rawValue)", "method": "\(decision.method)"]
        if let peer = request.peerAddress { meta["peer"] = "\(peer)" }
        if let token = decision.token, let kid = token.kid { meta["kid"] = "\(kid)" }
        if let c = decision.certificate {
            if let cert = c.certificate {
                meta["cert.subject"] = "\(ClientCertificate.clip(cert.subject, 256))"
                meta["cert.issuer"] = "\(ClientCertificate.clip(cert.issuer, 256))"
                meta["cert.serial"] = "\(cert.serialNumber)"
                if !cert.organizationalUnits.isEmpty {
                    meta["cert.ou"] = "\(cert.organizationalUnits.map { ClientCertificate.clip($0, 64) }.joined(separator: ","))"
                }
            }
            if let sha = c.sha256 { meta["cert.sha256"] = "\(sha.prefix(16))" }
        }
        if let identity = decision.identity {
            meta["user.id"] = "\(identity.userId)"
            meta["user.name"] = "\(identity.userName)"
            meta["tenant"] = "\(identity.tenantId ?? "")"
            meta["device.id"] = "\(identity.deviceId ?? "")"
            meta["expires"] = "\(identity.expiresAt)"
            if let token = decision.token, let iss = token.issuer { meta["iss"] = "\(iss)" }
            // Counts only: the values can be a thousand group ids.
            if let groups = identity.groups { meta["groups.count"] = "\(groups.count)" }
            if let roles = identity.roles { meta["roles.count"] = "\(roles.count)" }
            if identity.groupsOverage == true { meta["groups.overage"] = "true" }
            logger.info("auth.accepted", metadata: meta)
        } else if let rejection = decision.rejection {
            meta["reason.code"] = "\(rejection.code.rawValue)"
            meta["reason"] = "\(rejection.reason)"
            if let token = decision.token {
                if let alg = token.algorithm { meta["alg"] = "\(alg)" }
                if let iss = token.issuer { meta["iss"] = "\(iss)" }
                if let hash = token.subjectHash { meta["sub.hash"] = "\(hash)" }
            }
            // The issuer being unreachable or no usable CRL is an operator problem; a bad
            // token or certificate is routine.
            if rejection.code == .issuerUnavailable || decision.certificate?.operatorProblem == true {
                logger.warning("auth.rejected", metadata: meta)
            } else {
                logger.notice("auth.rejected", metadata: meta)
            }
        }
    }
}
