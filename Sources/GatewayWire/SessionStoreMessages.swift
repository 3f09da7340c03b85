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
    public init(cookieDigest: String) { self.cookieDigest = cookieDigest }
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
