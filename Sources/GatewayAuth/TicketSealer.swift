import Crypto
import Foundation
import GatewayWire

/// Resumption tickets (docs/site.md, "Cookies any server of the Site can open"): a session's
/// cookie is its `StoredSession`, sealed with AES-256-GCM under a ticket key that only
/// mstunnel-auth holds. Any server whose auth has the key (the Site key) can take the session
/// back when its client reconnects there — with its id, identity and tunnel address, without a
/// new login — and no gateway can forge or read one. The way TLS session tickets work.
///
/// Format: `mst.1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>`; the associated data is
/// `mst.1.<key id>`, so a ticket cannot be moved to another key id or version. Four dot-
/// separated parts: never mistaken for a JWT (three) or a JWE (five), which may also arrive
/// as a cookie. The plaintext leaves out the cookie digest (it is the ticket's own) and the
/// certificate chain (a certificate session's client presents its certificate again on every
/// connection, and the gateway holds the session to that certificate).
///
/// Written here rather than taken from a library: the sealing is swift-crypto's AES.GCM; what
/// is ours is only the framing and the rules (lifetime, key ids), which no library has.
public struct TicketSealer: Sendable {
    public struct Key: Sendable {
        public let id: String
        let key: SymmetricKey
        public init(id: String, key: SymmetricKey) {
            self.id = id
            self.key = key
        }
    }

    public static let prefix = TicketFormat.prefix
    public static let maxTicketBytes = TicketFormat.maxBytes
    /// Default lifetime of a ticket: the longest a session can resume on a server that does
    /// not know it, and how long a revoked ticket is remembered. A token session's ticket
    /// ends with its token sooner.
    public static let defaultLifetime: Int64 = 24 * 3600

    /// Opened with any of these; `sealing` seals.
    public let keys: [String: Key]
    public let sealing: Key
    public let lifetime: Int64

    public init(sealing: Key, opening: [Key] = [], lifetime: Int64 = TicketSealer.defaultLifetime) {
        var keys: [String: Key] = [:]
        for k in opening { keys[k.id] = k }
        keys[sealing.id] = sealing
        self.keys = keys
        self.sealing = sealing
        self.lifetime = lifetime
    }

    /// What a ticket holds. `v` lets a later format be told apart inside the sealed bytes.
    struct Payload: Codable {
        var v: Int
        var session: StoredSession
        /// Wall-clock seconds: the ticket opens only before this.
        var notAfter: Int64
    }

    /// Until when `s`'s ticket opens: its credential's expiry, and at most `lifetime` after
    /// the session began. The store remembers a revocation until the same moment.
    public func notAfter(_ s: StoredSession) -> Int64 {
        min(s.identity.expiresAt, s.createdAt + lifetime)
    }

    /// `now`: a `createdAt` the gateway says is later than now (a confused or compromised
    /// gateway) must not stretch a ticket past `lifetime` from now.
    public func seal(_ session: StoredSession, now: Int64 = Int64(Date().timeIntervalSince1970)) throws -> String {
        var s = session
        s.cookieDigest = ""
        s.certificateChain = nil
        let plaintext = try JSONEncoder().encode(Payload(v: 1, session: s, notAfter: min(notAfter(session), now + lifetime)))
        let head = Self.prefix + sealing.id
        let box = try AES.GCM.seal(plaintext, using: sealing.key, authenticating: Data(head.utf8))
        guard let combined = box.combined else { throw TicketError("sealing produced no output") }
        let ticket = head + "." + Base64URL.encode(combined)
        guard ticket.utf8.count <= Self.maxTicketBytes else {
            throw TicketError("the sealed session is \(ticket.utf8.count) bytes, more than \(Self.maxTicketBytes)")
        }
        return ticket
    }

    public enum Opened: Equatable, Sendable {
        case session(StoredSession, keyId: String)
        case refused(String)
    }

    /// The session in `ticket`, its `cookieDigest` set to the ticket's SHA-256; or why not.
    /// Never says more than which rule refused it (the reason is logged, not shown).
    public func open(_ ticket: String, now: Int64) -> Opened {
        guard TicketFormat.looksLikeTicket(ticket) else { return .refused("not a ticket") }
        let parts = ticket.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return .refused("malformed ticket") }
        let keyId = String(parts[2])
        guard let key = keys[keyId] else { return .refused("sealed with key '\(Self.clip(keyId))', which this server does not have") }
        guard let combined = Base64URL.decode(parts[3]), combined.count > 28 else { return .refused("malformed ticket") }
        let plaintext: Data
        do {
            let box = try AES.GCM.SealedBox(combined: combined)
            plaintext = try AES.GCM.open(box, using: key.key, authenticating: Data((Self.prefix + keyId).utf8))
        } catch {
            return .refused("does not open with key '\(keyId)' (forged or damaged)")
        }
        guard let payload = try? JSONDecoder().decode(Payload.self, from: plaintext), payload.v == 1 else {
            return .refused("sealed content unreadable")
        }
        guard payload.notAfter > now, payload.session.identity.expiresAt > now else {
            return .refused("expired")
        }
        var s = payload.session
        s.cookieDigest = Self.cookieDigest(ticket)
        return .session(s, keyId: keyId)
    }

    /// SHA-256 of a cookie, lowercase hex: the session's key in the gateway and the store.
    static func cookieDigest(_ cookie: String) -> String {
        SHA256.hash(data: Data(cookie.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    static func clip(_ s: String) -> String { s.count <= 32 ? s : String(s.prefix(32)) + "…" }

    public struct TicketError: Error, CustomStringConvertible {
        public let description: String
        init(_ d: String) { description = d }
    }
}

/// The rules of a ticket key set and the files it lives in (the struct itself is in
/// GatewayWire: the agent hands a Site's keys over the wire).
extension TicketKeyFile {
    /// Checks every rule and builds the sealer; the error names the rule broken.
    public func sealer() throws -> TicketSealer {
        guard !keys.isEmpty, keys.count <= 16 else { throw TicketSealer.TicketError("'keys' must hold 1 to 16 keys") }
        var built: [TicketSealer.Key] = []
        for e in keys {
            guard Self.validId(e.id) else {
                throw TicketSealer.TicketError("key id '\(TicketSealer.clip(e.id))' must be 1 to 32 letters, digits or '-'")
            }
            guard let raw = Data(base64Encoded: e.key), raw.count == 32 else {
                throw TicketSealer.TicketError("key '\(e.id)' must be 32 bytes in base64")
            }
            guard !built.contains(where: { $0.id == e.id }) else { throw TicketSealer.TicketError("key id '\(e.id)' appears twice") }
            built.append(TicketSealer.Key(id: e.id, key: SymmetricKey(data: raw)))
        }
        guard let sealingKey = built.first(where: { $0.id == sealing }) else {
            throw TicketSealer.TicketError("'sealing' names '\(TicketSealer.clip(sealing))', which is not among 'keys'")
        }
        let lifetime = lifetimeSeconds ?? TicketSealer.defaultLifetime
        guard lifetime >= 60, lifetime <= 30 * 86400 else {
            throw TicketSealer.TicketError("'lifetimeSeconds' must be between 60 and 2592000 (30 days)")
        }
        return TicketSealer(sealing: sealingKey, opening: built, lifetime: lifetime)
    }

    static func validId(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 32 && id.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x2D }
    }

    /// A fresh file with one random key.
    public static func generate(id: String = "local-1") -> TicketKeyFile {
        let key = SymmetricKey(size: .bits256).withUnsafeBytes { Data($0).base64EncodedString() }
        return TicketKeyFile(sealing: id, keys: [Entry(id: id, key: key)])
    }

    /// Reads `path`. With `create`, a missing file is made (0600, a fresh key), as for the
    /// server-local key; a Site key file is never made up.
    public static func load(path: String, create: Bool) throws -> (TicketSealer, created: Bool) {
        if let data = FileManager.default.contents(atPath: path) {
            let file: TicketKeyFile
            do { file = try JSONDecoder().decode(TicketKeyFile.self, from: data) } catch {
                throw TicketSealer.TicketError("\(path): not a ticket key file: \(error)")
            }
            do { return (try file.sealer(), false) } catch { throw TicketSealer.TicketError("\(path): \(error)") }
        }
        guard create else { throw TicketSealer.TicketError("\(path): no such file") }
        let file = generate()
        // Whole or not at all (a crash mid-write must not leave a file that does not load).
        try PrivateFile.write(try JSONEncoder().encode(file), to: path)
        return (try file.sealer(), true)
    }
}
