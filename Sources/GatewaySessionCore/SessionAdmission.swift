/// Whether a new session may be created, under `max-sessions` and
/// `max-sessions-per-user` (0 = no limit).
public enum SessionAdmission {
    public struct Limits: Equatable, Sendable {
        public var maxSessions: Int
        public var maxSessionsPerUser: Int

        public init(maxSessions: Int, maxSessionsPerUser: Int) {
            self.maxSessions = maxSessions
            self.maxSessionsPerUser = maxSessionsPerUser
        }
    }

    /// One of the user's existing sessions, oldest first.
    public struct Existing: Equatable, Sendable {
        public var slot: Int32
        public var connected: Bool

        public init(slot: Int32, connected: Bool) {
            self.slot = slot
            self.connected = connected
        }
    }

    public enum Decision: Equatable, Sendable {
        case admit
        /// Admit after ending this session of the same user: the oldest one not connected
        /// (a client that logged in again without logging off). Never a live one.
        case admitReplacing(slot: Int32)
        case refuse(LoginReply, reason: String)
    }

    public static func decide(_ limits: Limits, total: Int, user: [Existing]) -> Decision {
        if limits.maxSessions > 0, total >= limits.maxSessions {
            return .refuse(.unavailable("gateway is at its session limit"), reason: "max-sessions reached")
        }
        guard limits.maxSessionsPerUser > 0, user.count >= limits.maxSessionsPerUser else { return .admit }
        guard let idle = user.first(where: { !$0.connected }) else {
            return .refuse(.unavailable("too many sessions for this user"), reason: "max-sessions-per-user reached")
        }
        // Replacing one keeps the gateway's total where it was, so max-sessions still holds.
        return .admitReplacing(slot: idle.slot)
    }
}
