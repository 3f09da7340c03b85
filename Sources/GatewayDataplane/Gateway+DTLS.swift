internal import CGatewayShims
import Glibc
import GatewayCore
import GatewaySessionCore
import GatewayTLS
import GatewayUDP
import Logging
import GatewaySystem

/// The UDP side: DTLS 1.2 PSK-NEGOTIATE on the TLS port, all sessions on one socket.
///
/// A datagram is matched to a session by its source address; a ClientHello from an
/// unknown address is matched by the session id it carries (the X-DTLS-App-ID the
/// CONNECT response gave), which also moves a roaming client to its new address.
extension Gateway {
    /// Seconds without anything received over DTLS after which packets to the client
    /// go over TLS instead (the channel may be blocked; TLS always works).
    static let dtlsQuietSwitch: Int64 = 25
    /// The DTLS keepalive advertised: short enough to keep NAT bindings and the
    /// `dtlsQuietSwitch` window alive on an idle tunnel.
    static let dtlsKeepalive = 20

    func readUDP() {
        let now = monotonicSeconds()
        for _ in 0..<16 {
            let n = udpIn.receive(fd: udpFd)
            if n == 0 { return }
            turnWork &+= n
            for i in 0..<n {
                let d = udpIn.datagram(i)
                handleDatagram(d.bytes, from: d.sender, length: d.senderLength, now: now)
            }
            if n < udpIn.capacity { return }
        }
    }

    static func clientHelloSessionID(_ d: UnsafeRawBufferPointer) -> CookieKey? {
        DTLSClientHello.sessionID(in: d).map { CookieKey(digest: Array($0)) }
    }

    private func handleDatagram(_ d: UnsafeRawBufferPointer, from ss: UnsafeMutablePointer<sockaddr_storage>, length: UInt32, now: Int64) {
        let key = SocketAddress.key(of: ss)
        let isApplicationData = d.first == 23
        var bound: (Session, DTLSChannel)?
        if let s = sessions.session(boundTo: key), let ch = s.dtls, ch.peer == key {
            // The path of nearly every datagram: data on an established channel.
            if isApplicationData {
                feedDTLS(s, ch, d, now: now)
                return
            }
            bound = (s, ch)
        }
        let handshake = sessions.session(handshakeAt: key).flatMap { s in s.handshakes.first { $0.peer == key }.map { (s, $0) } }
        var hello: CookieKey??
        func helloID() -> CookieKey? {
            if case .some(let h) = hello { return h }
            let h = Self.clientHelloSessionID(d)
            hello = .some(h)
            return h
        }
        let target = DatagramRoute.target(bound: bound != nil, handshake: handshake != nil, isApplicationData: isApplicationData) {
            guard helloID() != nil else { return nil }
            return handshake.map { DTLSClientHello.random(in: d) == $0.1.helloRandom } ?? false
        }
        switch target {
        case .bound:
            if let (s, ch) = bound { feedDTLS(s, ch, d, now: now) }
            return
        case .handshake:
            if let (s, ch) = handshake { feedDTLS(s, ch, d, now: now) }
            return
        case .newHandshake, .unknown:
            break
        }
        let helloSessionID = target == .newHandshake ? helloID() : nil
        let route = DatagramRoute.newChannel(helloSessionID: helloSessionID, udpDisabled: settings.disableUdpConnections) { id in
            sessions.lookup(appID: id).map { ($0, DatagramRoute.Candidate(hasKey: $0.dtlsPSK != nil, connected: $0.connection != nil)) }
        }
        guard case .handshake(let s) = route, let psk = s.dtlsPSK else {
            counters.dropsUnknownDatagram += 1
            if let kind = DatagramRoute.malformedClass(d, namesLiveSession: helloSessionID.map { sessions.lookup(appID: $0) != nil } ?? false) {
                malformedDatagram(kind, from: key, detail: Self.datagramDetail(d))
            }
            return
        }
        startHandshake(s, psk: psk, d, from: ss, length: length, key: key, now: now)
    }

    /// A ClientHello naming `s` came from `key`: a handshake starts there, beside the
    /// channel `s` may have (`DatagramRoute.target` says why it is not replaced yet).
    private func startHandshake(_ s: Session, psk: [UInt8], _ d: UnsafeRawBufferPointer, from ss: UnsafeMutablePointer<sockaddr_storage>,
                                length: UInt32, key: SocketAddress.Key, now: Int64) {
        for (owner, peer) in sessions.addHandshake(s, at: key) {
            owner.handshakes.removeAll { $0.peer == peer }
        }
        let conn: DTLSConnection
        do {
            conn = try dtls.makeConnection(psk: psk, peer: ss.pointee, peerLength: length, linkMTU: s.baseMTU, batch: udpOut)
        } catch {
            sessions.removeHandshake(s, at: key)
            logger.warning("dtls.setup_failed", metadata: sessionMetadata(s, ["error": "\(error)"]))
            return
        }
        let ch = DTLSChannel(connection: conn, peer: key, helloRandom: DTLSClientHello.random(in: d), now: now)
        s.handshakes.append(ch)
        counters.dtlsHandshakes += 1
        feedDTLS(s, ch, d, now: now)
    }

    /// `ch`'s handshake finished: it becomes `s`'s channel, in place of the one it had; the
    /// other handshakes of `s` end.
    private func completeHandshake(_ s: Session, _ ch: DTLSChannel) {
        if let old = s.dtls, old.peer != ch.peer {
            logger.info("dtls.moved", metadata: sessionMetadata(s, ["udp.peer": "\(ch.peer)", "udp.previous_peer": "\(old.peer)"]))
        }
        let done = sessions.completeHandshake(s, at: ch.peer)
        s.handshakes.removeAll()
        s.dtls = ch
        ch.established = true
        if let displaced = done.displaced, displaced !== s {
            // Another session's channel was at this address and port (a NAT reused them):
            // records sealed for it would now reach this client. It starts over.
            logger.info("dtls.peer_reused", metadata: sessionMetadata(displaced, ["udp.peer": "\(ch.peer)"]))
            dropDTLS(displaced)
        }
    }

    /// A handshake that failed or timed out ends; the channel `s` has stays.
    func endHandshake(_ s: Session, _ ch: DTLSChannel) {
        s.handshakes.removeAll { $0 === ch }
        sessions.removeHandshake(s, at: ch.peer)
    }

    /// One datagram for a session's channel. OpenSSL drops a record that fails
    /// authentication or its replay check without a word, so the datagram's record layer is
    /// read first (`DTLSRecords`): one that does not parse is not given to OpenSSL, and
    /// application data that yields no record was dropped by it — a replay if its sequence
    /// number was already received (`DTLSReplayWindow`), otherwise a forged or corrupted
    /// record. Neither refreshes the channel's `lastReceive`: only what OpenSSL accepts does.
    private func feedDTLS(_ s: Session, _ ch: DTLSChannel, _ d: UnsafeRawBufferPointer, now: Int64) {
        guard let shape = DTLSRecords.inspect(d) else {
            malformedDatagram(.dtlsBadRecord, from: ch.peer, session: s, detail: Self.datagramDetail(d))
            return
        }
        let wasEstablished = ch.established
        // A handshake step or a read may answer (a flight, an alert).
        makeDatagramRoom()
        let records = ch.connection.receive(d) { _ in stepDTLS(s, ch, now: now) }
        if records > 0 || !wasEstablished { ch.lastReceive = now }
        guard wasEstablished, shape.allApplicationData, s.dtls === ch else { return }
        if records == 0 {
            let replay = ch.replay.isReplay(epoch: shape.firstEpoch, sequence: shape.firstSequence)
            malformedDatagram(replay ? .dtlsReplayed : .dtlsBadRecord, from: ch.peer, session: s,
                              detail: "epoch \(shape.firstEpoch) sequence \(shape.firstSequence), \(d.count) bytes")
        } else if shape.records == 1 {
            ch.replay.mark(epoch: shape.firstEpoch, sequence: shape.firstSequence)
        }
    }

    static func datagramDetail(_ d: UnsafeRawBufferPointer) -> String {
        "\(d.count) bytes, starting \(hex(Array(d.prefix(16))))"
    }

    /// The handshake step or the reads one received datagram allows; returns the records
    /// read.
    @discardableResult
    private func stepDTLS(_ s: Session, _ ch: DTLSChannel, now: Int64) -> Int {
        var records = 0
        if !ch.established {
            let result = ch.connection.handshake()
            switch result {
            case .done:
                completeHandshake(s, ch)
                logger.info("dtls.established", metadata: sessionMetadata(s, [
                    "dtls": "\(ch.connection.protocolVersion) \(ch.connection.cipherName)", "udp.peer": "\(ch.peer)"]))
            case .wantRead, .wantWrite:
                return records
            case .closed, .failed:
                counters.dtlsFailures += 1
                if case .failed(let why) = result {
                    malformedDatagram(.dtlsHandshake, from: ch.peer, session: s, detail: why)
                }
                endHandshake(s, ch)
                return records
            }
        }
        let buf = io.baseAddress!
        while s.dtls === ch {
            switch ch.connection.read(buf, io.count) {
            case .done(let n):
                records += 1
                if !ch.recordPathNoted { noteRecordPath(s, ch) }
                handleDTLSRecord(s, ch, UnsafeMutableRawBufferPointer(start: buf, count: n), now: now)
            case .wantRead, .wantWrite:
                return records
            case .closed:
                dropDTLS(s)
                return records
            case .failed:
                // A record that does not authenticate (garbage, replay) is simply
                // dropped by OpenSSL (and counted by `feedDTLS`); a hard failure ends this
                // channel only.
                dropDTLS(s)
                return records
            }
        }
        return records
    }

    /// After the channel's first record from the client: says how records to it are
    /// sealed when that is not the gateway's own fast path.
    private func noteRecordPath(_ s: Session, _ ch: DTLSChannel) {
        ch.recordPathNoted = true
        if options.dtlsDirectRecords, let why = ch.connection.directWriteUnavailable {
            logger.warning("dtls.direct_records_unavailable", metadata: sessionMetadata(s, ["reason": "\(why)"]))
        }
    }

    private func handleDTLSRecord(_ s: Session, _ ch: DTLSChannel, _ r: UnsafeMutableRawBufferPointer, now: Int64) {
        guard let type = r.first else { return }
        switch CSTP.PacketType(rawValue: type) {
        case .data:
            ch.preferred = true
            forwardToTUN(s, UnsafeRawBufferPointer(rebasing: r[1...]), overDTLS: true, now: now)
        case .dpdRequest:
            // Echo with the same payload: the client's MTU probe only accepts an answer
            // of its own size and content.
            r[0] = CSTP.PacketType.dpdResponse.rawValue
            makeDatagramRoom()
            _ = ch.connection.write(r.baseAddress!, r.count)
        case .dpdResponse, .keepalive:
            break
        case .disconnect:
            if r.count > 1, r[1] == CSTP.logoffReason {
                endSession(s, reason: "logoff", clientReason: String(decoding: r[2...].prefix(128).filter { $0 >= 0x20 && $0 < 0x7F }, as: UTF8.self))
            } else {
                dropDTLS(s)
            }
        case .compressed, .terminate, .none:
            counters.dropsUnsupported += 1
        }
    }

    /// Forgets a session's established DTLS channel (the client falls back to TLS and may
    /// start a new handshake); handshakes in progress go on.
    func dropDTLS(_ s: Session) {
        guard s.dtls != nil else { return }
        s.dtls = nil
        sessions.unbindPeer(of: s)
    }

    /// Forgets the channel and every handshake: the session's DTLS key is no more (its TLS
    /// connection went, a new CONNECT exports another, or the session ended).
    func dropAllDTLS(_ s: Session) {
        dropDTLS(s)
        if !s.handshakes.isEmpty {
            s.handshakes.removeAll()
            _ = sessions.removeHandshakes(of: s)
        }
    }
}
