import Foundation

/// One of a Site's ticket keys as the control plane keeps it.
public struct TicketKeyRecord: Sendable, Equatable {
    public var id: String
    /// 32 bytes, base64.
    public var key: String
    public var createdAt: Date
    /// When it began to seal; nil while it only opens (a rotation in progress).
    public var sealingSince: Date?

    public init(id: String, key: String, createdAt: Date, sealingSince: Date? = nil) {
        self.id = id
        self.key = key
        self.createdAt = createdAt
        self.sealingSince = sealingSince
    }

    /// A new random key: `s-` and 12 hex digits (key ids are letters, digits and `-`).
    static func generate(now: Date, sealing: Bool) -> TicketKeyRecord {
        TicketKeyRecord(id: "s-" + Secrets.hex(Secrets.randomBytes(6)), key: Data(Secrets.randomBytes(32)).base64EncodedString(),
                        createdAt: now, sealingSince: sealing ? now : nil)
    }
}

/// Which of a Site's ticket keys seals, and when an old one goes (docs/site.md, "Site
/// keys"). A new key is first sent to every server for opening only; it becomes the sealing
/// key once every live server's mstunnel-auth reports having it — otherwise a server that
/// lacks it would refuse its siblings' new tickets. A key older than the sealing one is
/// dropped a ticket lifetime after the new one began to seal: every ticket it sealed has
/// expired by then. No I/O and no clock (SiteTicketKeyPolicyTests).
public enum SiteTicketKeyPolicy {
    /// A ticket's longest life (auth's `TicketSealer.defaultLifetime`).
    public static let lifetime: TimeInterval = 86_400

    public struct Outcome: Equatable, Sendable {
        public var sealing: String
        /// Keys that stay, oldest first.
        public var keys: [TicketKeyRecord]
        public var retired: [String]
        /// The key that begins to seal now, if one does.
        public var promoted: String?
    }

    /// `keys`: the Site's keys, oldest first (keys made in the same instant keep their
    /// order: the sort is stable), at least one. `acknowledged`: for each live server
    /// (checked in lately, and reporting), the key ids its auth opens with.
    public static func decide(keys: [TicketKeyRecord], acknowledged: [Set<String>], now: Date,
                              lifetime: TimeInterval = SiteTicketKeyPolicy.lifetime) -> Outcome {
        var keys = keys.sorted { $0.createdAt < $1.createdAt }
        precondition(!keys.isEmpty, "a Site has at least one ticket key")
        // The key sealing now: the newest that ever began to seal (the oldest, if none has).
        var sealingIndex = keys.lastIndex { $0.sealingSince != nil } ?? 0
        if keys[sealingIndex].sealingSince == nil { keys[sealingIndex].sealingSince = now }
        var promoted: String?
        // The newest key every live server has, if newer.
        if let candidate = keys.indices.last(where: { i in acknowledged.allSatisfy { $0.contains(keys[i].id) } }), candidate > sealingIndex {
            sealingIndex = candidate
            keys[candidate].sealingSince = now
            promoted = keys[candidate].id
        }
        let since = keys[sealingIndex].sealingSince ?? now
        var retired: [String] = []
        if now.timeIntervalSince(since) >= lifetime {
            retired = keys[..<sealingIndex].map(\.id)
            keys.removeFirst(sealingIndex)
            sealingIndex = 0
        }
        return Outcome(sealing: keys[sealingIndex].id, keys: keys, retired: retired, promoted: promoted)
    }
}
