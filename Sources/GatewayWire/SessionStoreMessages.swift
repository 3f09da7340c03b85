import Foundation

/// What of a session outlives the `mstunnel-server` process (docs/architecture.md,
/// "Sessions across a restart"). The gateway runs confined and writes no file, so it hands
/// each session to mstunnel-auth, which keeps them on disk and gives them back when a new
/// gateway process starts; a client that reconnects with its cookie then finds its session,
/// with the same address, and logs in again never. The cookie itself is not here: only its
/// SHA-256, which a new process matches against the cookie a client presents.
public struct StoredSession: Codable, Sendable, Equatable {
    /// SHA-256 of the `webvpn` cookie, lowercase hex.
    public var cookieDigest: String
    /// The session id (32 bytes, lowercase hex): the DTLS App-ID and the log handle.
    public var id: String
    public var identity: Identity
    public var transport: TokenTransport
    /// The tunnel address the client was given; restored only to this session.
    public var address: String
    /// Wall-clock seconds since 1970.
    public var createdAt: Int64
    /// The session's next deadline (its re-check at session-timeout), wall-clock seconds;
    /// 0: none.
    public var deadline: Int64
    /// The client certificate chain of a certificate login (DER, leaf first), re-checked at
    /// each deadline.
    public var certificateChain: [Data]?
    public var userAgent: String?
    /// In a restore page only: until when this session's ticket opens on a sibling
    /// (wall-clock seconds; nil unless auth seals with keys its siblings share). The gateway keeps the address from new
    /// logins that long if the client does not come back to it (`AddressPool.quarantine`).
    public var ticketNotAfter: Int64?

    public init(cookieDigest: String, id: String, identity: Identity, transport: TokenTransport, address: String,
                createdAt: Int64, deadline: Int64, certificateChain: [Data]? = nil, userAgent: String? = nil) {
        self.cookieDigest = cookieDigest
        self.id = id
        self.identity = identity
        self.transport = transport
        self.address = address
        self.createdAt = createdAt
        self.deadline = deadline
        self.certificateChain = certificateChain
        self.userAgent = userAgent
    }
}

/// gateway → auth: keep (or replace, by `cookieDigest`) this session.
public struct SaveSessionRequest: Codable, Sendable, Equatable {
    public var session: StoredSession
    public init(session: StoredSession) { self.session = session }
}

/// gateway → auth: the session ended (logoff, timeout, refused re-check…): forget it, so
/// its cookie is worth nothing after a restart either.
public struct ForgetSessionRequest: Codable, Sendable, Equatable {
    public var cookieDigest: String
    /// The session id (hex), so its resumption ticket is revoked even when auth does not
    /// keep the session (docs/site.md, "Revocation").
    public var sessionId: String?
    /// Revoke the session's ticket (nil: yes). False only when the session left this
    /// gateway but may live on elsewhere: its client stayed away past the reconnect window
    /// (it may have resumed on a sibling), or a drain handed it over. A logoff, a refused
    /// re-check, a policy denial, an administrator's disconnect all revoke.
    public var revoke: Bool?

    public init(cookieDigest: String, sessionId: String? = nil, revoke: Bool? = nil) {
        self.cookieDigest = cookieDigest
        self.sessionId = sessionId
        self.revoke = revoke
    }
}

/// The shape of a resumption ticket, known to both sides: the gateway tells a ticket from a
/// token by it, mstunnel-auth makes and opens them (`TicketSealer`).
public enum TicketFormat {
    public static let prefix = "mst.1."
    /// A cookie this long is refused unread; a sealed session with a full token's worth of
    /// groups stays well below (the token itself may be 16 KB, and clients send tokens as
    /// cookies too).
    public static let maxBytes = 24 * 1024

    /// Whether `cookie` has the shape of a ticket (not whether it opens).
    public static func looksLikeTicket(_ cookie: String) -> Bool {
        cookie.hasPrefix(prefix) && cookie.utf8.count <= maxBytes
    }
}

/// gateway → auth: keep `session` (as `saveSession`) and seal it into a resumption ticket,
/// the cookie the client is given. Only mstunnel-auth holds the ticket keys (the Site key):
/// any server of the Site can have its auth open the ticket, none of the gateways can forge
/// one. `session.cookieDigest` is ignored: the digest is the ticket's, which auth returns.
public struct SealSessionRequest: Codable, Sendable, Equatable {
    public var session: StoredSession
    public init(session: StoredSession) { self.session = session }
}

public struct SealSessionResponse: Codable, Sendable, Equatable {
    /// The cookie (`mst.1.<key id>.<sealed>`).
    public var ticket: String
    /// SHA-256 of `ticket`, lowercase hex: the session's key in the gateway and the store.
    public var cookieDigest: String
    public init(ticket: String, cookieDigest: String) {
        self.ticket = ticket
        self.cookieDigest = cookieDigest
    }
}

/// gateway → auth: a CONNECT's cookie is a ticket this gateway has no session for (the
/// session was made on a sibling that is gone, or here before the session ended here).
public struct OpenTicketRequest: Codable, Sendable, Equatable {
    public var ticket: String
    public init(ticket: String) { self.ticket = ticket }
}

public struct OpenTicketResponse: Codable, Sendable, Equatable {
    /// The session sealed in the ticket, `cookieDigest` filled in; nil when refused.
    public var session: StoredSession?
    /// Why not, for the log (never shown to the client beyond "cookie not acceptable").
    public var refusal: String?
    /// Which key opened it.
    public var keyId: String?

    public init(session: StoredSession? = nil, refusal: String? = nil, keyId: String? = nil) {
        self.session = session
        self.refusal = refusal
        self.keyId = keyId
    }
}

/// gateway → auth: the sessions kept, a page at a time in `cookieDigest` order (a page of
/// certificate sessions is ~1.5 MB; all of them in one frame could pass the frame limit).
/// A new gateway process takes them back; after auth reconnects, the gateway compares
/// them with its own and puts right what was lost while auth was away.
public struct RestoreSessionsRequest: Codable, Sendable, Equatable {
    /// Only sessions whose `cookieDigest` sorts after this (nil: from the first).
    public var after: String?
    /// At most this many (nil: 500; auth caps it at 1,000).
    public var limit: Int?

    public init(after: String? = nil, limit: Int? = 500) {
        self.after = after
        self.limit = limit
    }
}

public struct RestoreSessionsResponse: Codable, Sendable, Equatable {
    public var sessions: [StoredSession]
    /// More pages follow: ask again `after` the last one's `cookieDigest`.
    public var more: Bool

    public init(sessions: [StoredSession], more: Bool = false) {
        self.sessions = sessions
        self.more = more
    }
}

/// auth → gateway: the answer to a save or forget (the gateway does not wait for it).
public struct SessionStoreResponse: Codable, Sendable, Equatable {
    /// Sessions kept after the change.
    public var kept: Int
    public init(kept: Int) { self.kept = kept }
}

/// A set of ticket keys: the Site's (from the control plane, handed over by the agent; or a
/// file given to mstunnel-auth with `--ticket-keys`), or a key of this server's own, made at
/// first start beside the session store (one server: nothing is shared). Printed, it shows
/// key ids only, so a key never reaches a log through string interpolation.
///
/// ```json
/// {"sealing": "k2", "keys": [{"id": "k2", "key": "<base64 of 32 bytes>"}, {"id": "k1", "key": "…"}]}
/// ```
/// `sealing` names the key new tickets are sealed with; the others only open (rotation:
/// a new key is first sent to every server for opening, then made the sealing key; an old
/// one is dropped a ticket lifetime later).
public struct TicketKeyFile: Codable, Sendable, Equatable {
    public struct Entry: Codable, Sendable, Equatable {
        public var id: String
        public var key: String
        public init(id: String, key: String) {
            self.id = id
            self.key = key
        }
    }
    public var sealing: String
    public var keys: [Entry]
    /// Ticket lifetime in seconds (nil: `TicketSealer.defaultLifetime`).
    public var lifetimeSeconds: Int64?

    public init(sealing: String, keys: [Entry], lifetimeSeconds: Int64? = nil) {
        self.sealing = sealing
        self.keys = keys
        self.lifetimeSeconds = lifetimeSeconds
    }
}

extension TicketKeyFile: CustomStringConvertible, CustomDebugStringConvertible {
    public var description: String { "ticket keys \(keys.map(\.id)) sealing \(sealing)" }
    public var debugDescription: String { description }
}

extension TicketKeyFile.Entry: CustomStringConvertible, CustomDebugStringConvertible {
    public var description: String { "ticket key \(id)" }
    public var debugDescription: String { description }
}

/// agent → auth: the Site's ticket keys, as the control plane sent them at check-in
/// (docs/site.md, "Site keys"). mstunnel-auth keeps them in its own directory (0600) and seals
/// with them from now on; the agent keeps no copy. `keys` nil: only say what is loaded.
public struct InstallTicketKeysRequest: Codable, Sendable, Equatable {
    public var keys: TicketKeyFile?
    public init(keys: TicketKeyFile?) { self.keys = keys }
}

/// auth → agent: what mstunnel-auth seals and opens with now (ids only, never keys).
public struct TicketKeysResponse: Codable, Sendable, Equatable {
    public var sealing: String
    /// Every key id it opens with (the Site's and its own earlier ones).
    public var keyIds: [String]
    /// `site` (from the agent), `file` (`--ticket-keys`), `local` (its own key).
    public var source: String
    public init(sealing: String, keyIds: [String], source: String) {
        self.sealing = sealing
        self.keyIds = keyIds
        self.source = source
    }
}

/// A revoked ticket: the session id, and when the revocation may be forgotten (the ticket
/// would have expired by then anyway), wall-clock seconds.
public struct RevokedTicket: Codable, Sendable, Equatable {
    public var sessionId: String
    public var until: Int64
    public init(sessionId: String, until: Int64) {
        self.sessionId = sessionId
        self.until = until
    }
}

/// agent ↔ auth: spreading revocations across a Site (docs/site.md, "Revocation"). The agent
/// adds what the control plane says the Site's other servers revoked (`add`), and reads what
/// this auth revoked itself since `after` (a sequence in this auth's own numbering, valid for
/// its `epoch`), to report at check-in. `after` nil: read nothing.
public struct TicketRevocationsRequest: Codable, Sendable, Equatable {
    public var add: [RevokedTicket]
    public var after: UInt64?
    /// The epoch `after` belongs to; another epoch (auth lost its file) reads from the start.
    public var epoch: String?
    public var limit: Int?
    public init(add: [RevokedTicket] = [], after: UInt64? = nil, epoch: String? = nil, limit: Int? = nil) {
        self.add = add
        self.after = after
        self.epoch = epoch
        self.limit = limit
    }
}

public struct TicketRevocationsResponse: Codable, Sendable, Equatable {
    public var epoch: String
    /// This auth's own revocations after `after`, oldest first.
    public var revoked: [RevokedTicket]
    /// The sequence to ask `after` next time.
    public var next: UInt64
    public var more: Bool
    /// How many of `add` were new here.
    public var added: Int
    public init(epoch: String, revoked: [RevokedTicket], next: UInt64, more: Bool, added: Int) {
        self.epoch = epoch
        self.revoked = revoked
        self.next = next
        self.more = more
        self.added = added
    }
}

