import Foundation
import GatewayAgentAPI
import GatewayCore
import GatewayWire
import Logging

/// What to do with a check-in answer's configuration.
public enum ApplyDecision: Sendable, Equatable {
    /// Already in force, or the Site has none (version 0): leave the gateway alone.
    case nothing
    /// This version failed before for a reason retrying cannot fix (it is invalid); wait
    /// for the next version instead of hammering the gateway with it every check-in.
    case alreadyRejected(version: Int64)
    /// The control plane announced a new version without its body (a contract slip).
    case missingBody(version: Int64)
    case apply(version: Int64, settings: AdminSettings)

    public static func decide(response: CheckinResponse, appliedVersion: Int64, lastApply: ConfigurationApplyResult?,
                              lastApplyPermanent: Bool) -> ApplyDecision {
        let version = response.configurationVersion
        if version == appliedVersion { return .nothing }
        if let last = lastApply, last.version == version, !last.success, lastApplyPermanent {
            return .alreadyRejected(version: version)
        }
        guard let settings = response.configuration else {
            return version == 0 ? .nothing : .missingBody(version: version)
        }
        return .apply(version: version, settings: settings)
    }
}

/// The result of one apply attempt.
public struct ApplyOutcome: Sendable, Equatable {
    public var result: ConfigurationApplyResult
    /// The new version is in force (in the gateway and/or in admin-settings.json).
    public var inForce: Bool
    /// A failure that retrying the same version cannot fix.
    public var permanent: Bool
}

/// Puts a Server configuration in force: validate locally with the gateway's own code →
/// `applySettings` over the control socket → on success (or when the gateway is not
/// running) write `admin-settings.json` atomically, so the next gateway start uses it.
public struct ConfigApplier {
    public var paths: AgentPaths
    public var logger: Logger
    /// The gateway call; injectable so tests need no gateway.
    public var sendToGateway: (ApplySettingsRequest) -> Result<ApplySettingsResponse, GatewayCallError>

    public init(paths: AgentPaths, logger: Logger,
                sendToGateway: @escaping (ApplySettingsRequest) -> Result<ApplySettingsResponse, GatewayCallError>) {
        self.paths = paths
        self.logger = logger
        self.sendToGateway = sendToGateway
    }

    /// The exact bytes `admin-settings.json` gets, after the same checks the gateway's
    /// file loader runs (`AdminSettings.decode` refusing unknown keys, then
    /// `GatewaySettings.validate`), so what we write the gateway will also start with.
    public static func validatedDocument(_ settings: AdminSettings) -> Result<Data, ConfigurationError> {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data: Data
        do {
            data = try encoder.encode(settings) + Data("\n".utf8)
        } catch {
            return .failure(ConfigurationError("configuration does not encode: \(error)"))
        }
        let decoded: AdminSettings
        do {
            decoded = try AdminSettings.decode(data)
        } catch {
            return .failure(error)
        }
        return GatewaySettings.validate(decoded).map { _ in data }
    }

    public func apply(version: Int64, settings: AdminSettings, now: Date = Date()) -> ApplyOutcome {
        let stamp = GraphDate.string(now)
        func fail(_ message: String, permanent: Bool) -> ApplyOutcome {
            logger.error("agent.config.apply_failed", metadata: ["version": "\(version)", "error": "\(message)"])
            return ApplyOutcome(result: ConfigurationApplyResult(version: version, success: false, message: message, dateTime: stamp),
                                inForce: false, permanent: permanent)
        }

        let document: Data
        switch Self.validatedDocument(settings) {
        case .success(let d): document = d
        case .failure(let e): return fail("configuration is invalid: \(e.message)", permanent: true)
        }

        var message: String?
        switch sendToGateway(ApplySettingsRequest(settingsJSON: String(decoding: document, as: UTF8.self), version: version)) {
        case .success(let response):
            guard response.applied else {
                if response.retryable == true {
                    // The document was fine; a host step (`ip`/`nft`) failed. The same
                    // version is sent again at the next check-in.
                    return fail("the gateway could not put the configuration in force (will retry): \(response.error ?? "no reason given")",
                                permanent: false)
                }
                // `retryable` false or absent (an older gateway): the document itself was refused.
                return fail("the gateway refused the configuration: \(response.error ?? "no reason given")", permanent: true)
            }
            if !response.restartRequired.isEmpty {
                message = "applied; takes effect after a gateway restart: \(response.restartRequired.joined(separator: ", "))"
            }
            logger.info("agent.config.applied", metadata: [
                "version": "\(version)", "sessions.kept": "\(response.sessionsKept)",
                "restart_required": "\(response.restartRequired.joined(separator: ","))",
            ])
        case .failure(.notRunning(let detail)):
            // Validation passed with the gateway's own code; the file is what it starts from.
            message = "gateway not running; written to admin-settings.json for its next start"
            logger.info("agent.config.gateway_not_running", metadata: ["version": "\(version)", "detail": "\(detail)"])
        case .failure(let e):
            // Timeouts and wire errors (e.g. a gateway too old for applySettings) may pass:
            // the same version is tried again at the next check-in.
            return fail("could not apply on the gateway: \(e)", permanent: false)
        }

        do {
            // 0640 in the state directory's group (990, the stack's, in the images): the
            // gateway reads it at start and on SIGHUP as its own unprivileged user in that
            // group, without any capability that would let it read an owner-only file.
            try AtomicFile.write(document, to: paths.adminSettings, mode: 0o640,
                                 group: AtomicFile.group(of: paths.stateDirectory))
        } catch {
            return fail("applied on the gateway but \(paths.adminSettings) could not be written (a restart would lose it): \(error.message)", permanent: false)
        }
        return ApplyOutcome(result: ConfigurationApplyResult(version: version, success: true, message: message, dateTime: stamp),
                            inForce: true, permanent: false)
    }
}
