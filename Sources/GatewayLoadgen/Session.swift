import GatewayTLS

/// One simulated client: at most one socket at a time. Owned by the generator's
/// event loop (one thread), never shared.
final class Session {
    enum State: UInt8 {
        /// Not started yet.
        case pending
        /// Non-blocking TCP connect in progress.
        case connecting
        case handshaking
        /// A login request is out; waiting for its response.
        case login
        /// The CONNECT is out; waiting for `200 CONNECTED`.
        case connectSent
        /// The tunnel is up: DPD, keepalive.
        case tunnel
        /// Logoff sent and our side shut down; waiting for the gateway to close.
        case closing
        /// Closed for good (established or not).
        case done
    }

    /// What to send once TLS is up on a connection opened after the gateway closed the
    /// previous one mid-login (`Connection: close`).
    enum Pending {
        case login
        case post([UInt8])
        case connect
    }

    let index: Int
    var state: State = .pending
    var fd: Int32 = -1
    /// Bumped for every socket, so an event queued for a closed socket is recognised.
    var generation: UInt32 = 0
    var tls: TLSConnection?
    var output: OutboundBuffer?
    /// Monotonic ns of the first TCP connect.
    var startNs: UInt64 = 0
    /// Position in the generator's in-flight list, -1 when not in flight.
    var inFlightPos = -1
    var connections = 0

    // Login phase (freed once the tunnel is up).
    var http: [UInt8] = []
    var eof = false
    var cookies = CookieJar()
    var password: PasswordLogin?
    var pending: Pending = .login
    var cookie: String?

    // Tunnel phase.
    var dpdNs: UInt64 = 0
    var keepaliveNs: UInt64 = 0
    var lastRxNs: UInt64 = 0
    var lastTxNs: UInt64 = 0
    var dpdSentNs: UInt64 = 0
    /// A CSTP frame split across reads (never seen with openconnect-style gateways, which
    /// send one frame per record); empty otherwise.
    var partial: [UInt8] = []
    var address: UInt32 = 0
    var shutWrite = false

    // --resume: the cookie kept from the login, and the tunnel lost.
    var resumeCookie: String?
    var resuming = false
    var droppedNs: UInt64 = 0
    var retryAtNs: UInt64 = 0
    /// The first loss of a run of losses close together (`LoadGenerator.streakNs`).
    var streakStartNs: UInt64 = 0
    var resumedAtNs: UInt64 = 0
    var lostOnce = false
    /// The address the lost tunnel had (network order), to tell whether it came back.
    var previousAddress: UInt32 = 0

    init(index: Int) { self.index = index }

    var isInFlight: Bool {
        switch state {
        case .connecting, .handshaking, .login, .connectSent: return true
        default: return false
        }
    }

    var phaseName: String {
        switch state {
        case .pending: return "not started"
        case .connecting: return "TCP connect"
        case .handshaking: return "TLS handshake"
        case .login: return "login"
        case .connectSent: return "CONNECT"
        case .tunnel: return "tunnel"
        case .closing: return "closing"
        case .done: return "done"
        }
    }
}
