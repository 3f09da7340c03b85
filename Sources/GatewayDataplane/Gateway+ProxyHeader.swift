import Glibc
import GatewaySessionCore
import GatewaySystem
import Logging

/// The PROXY protocol header of a connection from a trusted proxy (`proxy-protocol-from`,
/// docs/operations.md): read before TLS, exactly its length, so the TLS bytes behind it
/// stay in the socket for `readClient`.
extension Gateway {
    /// Reads what has come of the header. True when it is complete and the connection may
    /// go on to TLS, with the client's address in place of the proxy's; false when more is
    /// needed or the connection was closed (no header, a malformed one, the source refused).
    func takeProxyHeader(_ c: ClientConnection) -> Bool {
        let have = c.proxyHeader.count
        // The loop's scratch area is free here: the TLS read of this pass has not begun.
        let area = io.baseAddress!
        let peeked = recv(c.fd, area, min(ProxyHeader.maxLength - have, io.count), Int32(MSG_PEEK))
        if peeked == 0 {
            closeConnection(c, reason: "the proxy closed before its PROXY header")
            return false
        }
        if peeked < 0 {
            if errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR { closeConnection(c, reason: "receive failed") }
            return false
        }
        var bytes = c.proxyHeader
        bytes.append(contentsOf: UnsafeRawBufferPointer(start: area, count: peeked))
        switch ProxyHeader.parse(bytes) {
        case .needMore:
            // Every byte so far is the header's: take them, so level-triggered epoll does not
            // wake the loop again for bytes it already saw.
            guard consume(c, peeked) else { return false }
            c.proxyHeader = bytes
            return false
        case .complete(let length, let client):
            guard consume(c, length - have) else { return false }
            c.proxyHeader = []
            c.proxyHeaderPending = false
            if let client {
                logger.debug("proxy.header", metadata: ["proxy.address": "\(c.peer)", "peer.address": "\(client)"])
                c.peer = client.description
                c.source = Self.sourceKey(client)
            }
            let now = monotonicSeconds()
            if case .refuse(let why) = sourceGuard.admit(c.source, now: now) {
                counters.connectionsRefused += 1
                if sourceGuard.shouldLogRefusal(c.source, now: now) {
                    logger.notice("connection.refused", metadata: ["peer.address": "\(c.peer)", "reason": "\(why)", "logged": "once a minute per address"])
                }
                closeConnection(c, reason: "refused: \(why)")
                return false
            }
            c.countedAsLogin = true
            return true
        case .invalid(let why):
            // Only a trusted proxy gets here: a wrong setting on it or on this gateway.
            if sourceGuard.shouldLogRefusal(c.source, now: monotonicSeconds()) {
                logger.warning("proxy.header_invalid", metadata: [
                    "proxy.address": "\(c.peer)", "reason": "\(why)",
                    "hint": "the proxy must send a PROXY protocol header (HAProxy send-proxy-v2 and check-send-proxy, nginx proxy_protocol on)",
                    "logged": "once a minute per address",
                ])
            }
            counters.connectionsRefused += 1
            closeConnection(c, reason: "no valid PROXY header")
            return false
        }
    }

    /// Reads `count` bytes the peek showed are there.
    private func consume(_ c: ClientConnection, _ count: Int) -> Bool {
        guard count > 0 else { return true }
        if recv(c.fd, io.baseAddress!, count, 0) == count { return true }
        closeConnection(c, reason: "receive failed")
        return false
    }
}
