/// One session's life, from its login to its end, as a state machine of monotonic seconds:
/// waiting for its first CONNECT, carried by a connection, detached inside the reconnect
/// window, ended. The connected state holds the connection, so "connected" and "has a
/// connection" cannot disagree. No I/O and no clock: the gateway passes `now` and does
/// what the answers say (SessionLifecycleTests play whole lives with an injected clock).
///
/// Generic over the connection type so the tests need no socket; the gateway's is
/// `ClientConnection`. What is read per packet is `@inlinable`.
public struct SessionLifecycle<Connection: AnyObject> {
    public enum State {
        /// Logged in at `since`; no CONNECT yet (it must come within auth-timeout).
        case awaitingConnect(since: Int64)
        /// A connection carries the tunnel.
        case connected(Connection)
        /// The connection went away at `since`; the same cookie may come back within the
        /// reconnect window and gets the same address.
        case detached(since: Int64)
        case ended(reason: String)
    }

    public let createdAt: Int64
    /// Monotonic deadline (session-timeout); 0 = none. At it the session is re-checked
    /// (`Recheck`) and either ends or gets a new deadline (`extend`).
    public private(set) var deadline: Int64
    public private(set) var state: State
    /// Whether a CONNECT ever attached the session.
    public private(set) var everConnected = false

    /// A session created by a login at `now`; `sessionTimeout` seconds (0: none).
    public init(now: Int64, sessionTimeout: Int) {
        createdAt = now
        deadline = sessionTimeout > 0 ? now + Int64(sessionTimeout) : 0
        state = .awaitingConnect(since: now)
    }

    /// A session a new gateway process took back from mstunnel-auth (`StoredSession`):
    /// connected once, its connection gone with the old process, so its client has the
    /// reconnect window from `now` to come back; `deadline` as it was (0: none).
    public init(restoredAt now: Int64, deadline: Int64) {
        createdAt = now
        self.deadline = deadline
        state = .detached(since: now)
        everConnected = true
    }

    /// The connection carrying the session, if one does.
    @inlinable
    public var connection: Connection? {
        if case .connected(let c) = state { return c }
        return nil
    }

    public var isEnded: Bool {
        if case .ended = state { return true }
        return false
    }

    public enum Attach {
        /// `first`: the session's first CONNECT. `replaced`: the connection that carried it
        /// until now (the client reconnected; the old socket is stale and must close).
        case attached(first: Bool, replaced: Connection?)
        /// Past its session-timeout (or already ended): nothing changed; the caller ends
        /// the session (`end`), which also returns the connection still carrying it.
        case refused(reason: String)
    }

    /// A CONNECT with this session's cookie arrived on `connection`.
    public mutating func attach(_ connection: Connection, now: Int64) -> Attach {
        if case .ended(let reason) = state { return .refused(reason: reason) }
        guard Expiry.mayAttach(deadline: deadline, now: now) else { return .refused(reason: "session-timeout") }
        let previous = self.connection
        let first = !everConnected
        everConnected = true
        state = .connected(connection)
        return .attached(first: first, replaced: previous === connection ? nil : previous)
    }

    /// `connection` went away. Only the connection carrying the session detaches it (a
    /// stale one that was replaced does not); true when it did.
    @discardableResult
    public mutating func detach(_ connection: Connection, now: Int64) -> Bool {
        guard case .connected(let current) = state, current === connection else { return false }
        state = .detached(since: now)
        return true
    }

    /// Ends the session for good; returns the connection that carried it, if any (the
    /// gateway says DISCONNECT on it and closes it).
    @discardableResult
    public mutating func end(reason: String) -> Connection? {
        let carried = connection
        if !isEnded { state = .ended(reason: reason) }
        return carried
    }

    /// The re-check at the deadline passed (or waits for mstunnel-auth): the next deadline
    /// is `until` (a later re-check may bring a grace period's deadline forward). Never
    /// revives an ended session, never gives a deadline to a session that had none.
    public mutating func renew(until: Int64) {
        guard !isEnded, deadline > 0, until > 0 else { return }
        deadline = until
    }

    /// Why the session must end now, or nil (`Expiry.session`, the first rule that applies).
    public func expiry(now: Int64, lastTraffic: Int64, _ t: Expiry.Timeouts) -> String? {
        let times: Expiry.SessionTimes
        switch state {
        case .awaitingConnect(let since):
            times = .init(deadline: deadline, connected: false, everConnected: false, detachedAt: since, lastTraffic: lastTraffic)
        case .connected:
            times = .init(deadline: deadline, connected: true, everConnected: true, detachedAt: 0, lastTraffic: lastTraffic)
        case .detached(let since):
            times = .init(deadline: deadline, connected: false, everConnected: true, detachedAt: since, lastTraffic: lastTraffic)
        case .ended:
            return nil
        }
        return Expiry.session(times, now: now, t)
    }

    /// Seconds of session-timeout left, for `X-CSTP-Session-Timeout` (0: none).
    public func remaining(now: Int64) -> Int { Expiry.remaining(deadline: deadline, now: now) }
}
