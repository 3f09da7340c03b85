import Foundation
import GatewayAuth
import GatewayWire
import Testing

/// The committed bad-token corpus (Tests/Fixtures/bad-tokens, written by make-corpus.py):
/// every token there is refused with the code and reason it lists, and the valid ones
/// beside them are accepted, so a validator that refused everything would fail too.
/// IntegrationTests/netns/06_bad_tokens.sh plays the same tokens through openconnect.
struct BadTokenCorpusTests {
    struct Corpus: Decodable {
        struct Configuration: Decodable { var issuer: String; var audiences: [String]; var allowedTenants: [String] }
        struct Accepted: Decodable { var name: String; var token: String; var userName: String }
        struct Generated: Decodable { var prefix: String; var fill: String; var length: Int }
        struct Refused: Decodable {
            var name: String; var why: String; var code: String; var reason: String
            var token: String?; var generated: Generated?
            /// The token's text (the 1 MiB one is described, not stored).
            var text: String {
                if let token { return token }
                guard let g = generated else { return "" }
                return g.prefix + String(repeating: g.fill, count: max(0, g.length - g.prefix.utf8.count))
            }
        }
        var configuration: Configuration
        var accepted: [Accepted]
        var refused: [Refused]
    }

    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/bad-tokens")

    static func load() throws -> Corpus {
        try JSONDecoder().decode(Corpus.self, from: Data(contentsOf: directory.appendingPathComponent("corpus.json")))
    }

    static func validator(_ corpus: Corpus) -> TokenValidator {
        let config = AuthConfiguration(
            issuer: corpus.configuration.issuer,
            jwksFile: directory.appendingPathComponent("jwks.json").path,
            audiences: corpus.configuration.audiences,
            allowedTenants: corpus.configuration.allowedTenants)
        return TokenValidator(configuration: config, source: FileJWKSSource(path: config.jwksFile ?? ""), logger: quietLogger)
    }

    @Test func theCorpusHasEveryCaseTheIssueNames() throws {
        let corpus = try Self.load()
        #expect(corpus.refused.count >= 25)
        #expect(Set(corpus.refused.map(\.name)).count == corpus.refused.count)
        let required = [
            "alg-none", "alg-missing", "hs256-with-rsa-public-key", "rs256-header-on-es256-key", "wrong-aud",
            "wrong-iss", "wrong-tid", "expired", "nbf-in-future", "iat-in-future", "exp-missing", "unknown-kid",
            "no-kid-several-keys", "tampered-payload", "tampered-signature", "truncated", "two-dots-only",
            "one-megabyte", "header-not-json", "payload-not-json", "payload-is-array", "header-is-array",
            "duplicate-aud", "wrong-typ", "other-issuer-key", "other-tenant-right-key", "jwks-key-use-enc",
            "crit-header", "jku-elsewhere", "x5u-elsewhere",
        ]
        let names = Set(corpus.refused.map(\.name))
        for name in required { #expect(names.contains(name), "corpus lacks \(name)") }
    }

    @Test func everyBadTokenIsRefusedWithItsReason() async throws {
        let corpus = try Self.load()
        let validator = Self.validator(corpus)
        for entry in corpus.refused {
            let result = await validator.validate(entry.text)
            guard let rejection = result.rejection else {
                Issue.record("\(entry.name) (\(entry.why)) was ACCEPTED")
                continue
            }
            #expect(rejection.code.rawValue == entry.code, "\(entry.name): code \(rejection.code.rawValue), reason: \(rejection.reason)")
            #expect(rejection.reason.contains(entry.reason), "\(entry.name): reason '\(rejection.reason)' lacks '\(entry.reason)'")
            // The reason is logged: it must never carry the token or its signature.
            let parts = entry.text.split(separator: ".", omittingEmptySubsequences: false)
            if let signature = parts.last, signature.count > 16 {
                #expect(!rejection.reason.contains(signature), "\(entry.name): reason contains the signature")
            }
            #expect(rejection.reason.utf8.count < 1024, "\(entry.name): reason is \(rejection.reason.utf8.count) bytes")
        }
    }

    @Test func theValidTokensBesideThemAreAccepted() async throws {
        let corpus = try Self.load()
        let validator = Self.validator(corpus)
        for entry in corpus.accepted {
            let result = await validator.validate(entry.token)
            #expect(result.identity?.userName == entry.userName, "\(entry.name): \(result.rejection?.reason ?? "no identity")")
        }
    }

    /// RFC 7519 §4: a repeated claim name is refused wherever it sits, not read as its first
    /// (or last) value. Found from outside: `aud` right first and wrong last was accepted.
    @Test func repeatedMemberNamesAreRefusedAtAnyDepth() throws {
        #expect(throws: StrictJSON.Failure.duplicateName("aud")) {
            try StrictJSON.parseObject(Array(#"{"aud":"a","x":1,"aud":"b"}"#.utf8))
        }
        #expect(throws: StrictJSON.Failure.duplicateName("k")) {
            try StrictJSON.parseObject(Array(#"{"cnf":{"k":1,"k":1}}"#.utf8))
        }
        // The same name in sibling objects is not a repeat.
        #expect(throws: Never.self) { try StrictJSON.parseObject(Array(#"{"a":{"k":1},"b":{"k":2}}"#.utf8)) }
        // Escapes are decoded before comparing: "a" and "\u0061" are the same name.
        #expect(throws: StrictJSON.Failure.duplicateName("a")) {
            try StrictJSON.parseObject(Array(#"{"a":1,"\u0061":2}"#.utf8))
        }
    }
}
