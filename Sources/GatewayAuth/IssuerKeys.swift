import Foundation
import GatewayWire
import JWTKit
import Logging

/// One issuer's signing keys: its key source, the cached keys, and the fetch throttle.
/// Every entry of `issuers` has its own, so a flood of unknown `kid`s claiming one issuer
/// never makes the plugin fetch another issuer's keys, and one issuer being down leaves
/// the others working.
///
/// An actor because the cache is shared by all concurrent validations and its refresh
/// must happen at most once per rate-limit window however many requests ask.
actor IssuerKeys {
    nonisolated let configuration: IssuerConfiguration
    nonisolated let source: any JWKSSource
    private let now: @Sendable () -> Date
    private let logger: Logger

    private var keySet: KeySet?
    private var lastAttempt: Date?
    private var lastError: String?
    private var inflight: Task<RefreshOutcome, Never>?
    /// How many times the key source was asked (successful or not).
    private(set) var fetchCount = 0

    enum RefreshOutcome: Sendable {
        case loaded
        case failed(String)
        case rateLimited(retryInSeconds: Int)
    }

    init(configuration: IssuerConfiguration, source: any JWKSSource, now: @escaping @Sendable () -> Date, logger: Logger) {
        self.configuration = configuration
        self.source = source
        self.now = now
        self.logger = logger
    }

    var cachedKeyIDs: [String] { keySet?.kids ?? [] }

    func prefetch() async -> Result<Int, KeySourceError> {
        switch await refresh(reason: "startup") {
        case .loaded: return .success(keySet?.keys.count ?? 0)
        case .failed(let message): return .failure(KeySourceError(message))
        case .rateLimited:
            if let keySet { return .success(keySet.keys.count) }
            return .failure(KeySourceError(lastError ?? "keys not loaded"))
        }
    }

    /// The verifiers for a token's `kid` (or, without one, the only key that could have
    /// signed `algorithm`), loading or reloading the keys as the cache rules allow.
    func verifiers(kid: String?, algorithm: SupportedAlgorithm) async -> Result<[JWTKeyCollection], Refusal> {
        func reject(_ code: TokenRejection.Code, _ reason: String) -> Result<[JWTKeyCollection], Refusal> {
            .failure(Refusal(code: code, reason: reason))
        }
        // Load if never loaded or too old (stale keys keep working if that fails).
        if keySet == nil {
            _ = await refresh(reason: "no keys loaded")
        } else if let loaded = keySet?.loadedAt, now().timeIntervalSince(loaded) >= Double(configuration.jwksMaxAgeSeconds) {
            _ = await refresh(reason: "keys older than jwksMaxAgeSeconds")
        }
        guard let keys = keySet else {
            return reject(.issuerUnavailable, "the issuer's signing keys are not available (\(lastError ?? "not loaded yet"))")
        }
        guard let kid else {
            // Without a kid the token is acceptable only if exactly one key could have signed it.
            let candidates = keys.keys.compactMap { $0.verifiers[algorithm] }
            guard candidates.count == 1 else {
                return reject(.unknownKey, "token has no 'kid' and \(candidates.count) of the issuer's keys could verify alg '\(algorithm.rawValue)'")
            }
            return .success(candidates)
        }
        let shownKid = TokenValidator.clip(kid, 128)
        var entries = keys.byKid[kid]
        if entries == nil {
            switch await refresh(reason: "unknown kid") {
            case .failed(let message):
                return reject(.issuerUnavailable, "kid '\(shownKid)' is not among the cached keys and reloading them failed: \(message)")
            case .rateLimited(let retry):
                return reject(.unknownKey, "kid '\(shownKid)' is not among the issuer's keys (reload rate-limited, next in \(retry)s)")
            case .loaded:
                entries = keySet?.byKid[kid]
            }
        }
        guard let entries else {
            return reject(.unknownKey, "kid '\(shownKid)' is not among the issuer's keys")
        }
        // Normally one key per kid; RFC 7517 allows several of different types.
        let verifiers = entries.compactMap { $0.verifiers[algorithm] }
        if verifiers.isEmpty {
            let kinds = entries.map(\.summary).joined(separator: ", ")
            return reject(.algorithmNotAllowed, "key '\(shownKid)' (\(kinds)) cannot verify alg '\(algorithm.rawValue)'")
        }
        return .success(verifiers)
    }

    /// Reloads the keys unless a load happened less than `jwksMinRefreshSeconds` ago.
    /// Concurrent callers share one load.
    private func refresh(reason: String) async -> RefreshOutcome {
        if let inflight { return await inflight.value }
        let start = now()
        if let last = lastAttempt {
            let elapsed = start.timeIntervalSince(last)
            // With no keys at all every token fails, so retry sooner (an issuer or network
            // that was not up yet when the plugin started); still bounded for the issuer.
            let window = keySet == nil ? min(configuration.jwksMinRefreshSeconds, TokenValidator.retryWithoutKeysSeconds) : configuration.jwksMinRefreshSeconds
            let minimum = Double(window)
            if elapsed < minimum {
                return .rateLimited(retryInSeconds: max(1, Int((minimum - elapsed).rounded(.up))))
            }
        }
        lastAttempt = start
        let task = Task { await self.load(reason: reason) }
        inflight = task
        let outcome = await task.value
        inflight = nil
        return outcome
    }

    /// One fetch and parse. Keys are swapped in only when the new set has a usable key,
    /// so a broken or empty document never wipes working keys.
    private func load(reason: String) async -> RefreshOutcome {
        fetchCount += 1
        do throws(KeySourceError) {
            let data = try await source.fetchJWKS()
            let set = try await KeySet.build(from: data, algorithms: configuration.algorithms, loadedAt: now())
            guard !set.keys.isEmpty else {
                let why = set.skipped.isEmpty ? "the JWKS is empty" : set.skipped.joined(separator: "; ")
                throw KeySourceError("no usable signing key in the JWKS from \(source.description) (\(why))")
            }
            keySet = set
            lastError = nil
            logger.info("auth.jwks.loaded", metadata: [
                "issuer": "\(configuration.issuer)", "source": "\(source.description)", "reason": "\(reason)",
                "keys": "\(set.keys.count)", "kids": "\(set.kids.joined(separator: ","))",
            ])
            if !set.skipped.isEmpty {
                logger.notice("auth.jwks.skipped", metadata: [
                    "issuer": "\(configuration.issuer)", "source": "\(source.description)", "skipped": "\(set.skipped.joined(separator: "; "))",
                ])
            }
            return .loaded
        } catch {
            lastError = error.message
            logger.warning("auth.jwks.failed", metadata: [
                "issuer": "\(configuration.issuer)", "source": "\(source.description)", "reason": "\(reason)",
                "error": "\(error.message)", "cached_keys": "\(keySet?.keys.count ?? 0)",
            ])
            return .failed(error.message)
        }
    }
}

/// The key source of an issuer that was given none (`TokenValidator.init(sources:)` with
/// too few): every load fails, so its tokens are `issuerUnavailable`, never accepted.
struct MissingJWKSSource: JWKSSource {
    var description: String { "no key source" }
    func fetchJWKS() async throws(KeySourceError) -> Data {
        throw KeySourceError("no key source is configured for this issuer")
    }
}

/// A refusal inside the validator, before it becomes the wire's `TokenRejection`.
struct Refusal: Error, Sendable, Equatable {
    var code: TokenRejection.Code
    var reason: String
}
