#!/usr/bin/env python3
"""Malformed CSTP, TLS and DTLS input for netns 10, each from a chosen source address.

  cstp SRC TOKENFILE CASE...  : logs in with the token (Bearer, GET /), then for each CASE
      opens a new TLS connection, sends CONNECT with the session cookie and the malformed
      frame, and reports whether the gateway closed the connection (or, for `not-ip`, that
      it stayed open and still answers a DPD). Cases: bad-magic bad-reserved oversize
      unknown-type terminate not-ip before-connect. `before-connect` sends the frame right
      after the TLS handshake instead of a CONNECT.
  tls SRC CASE COUNT          : `garbage-handshake` (bytes that are not TLS) or `bad-record`
      (a TLS application-data record that does not decrypt, after a good handshake).
  udp SRC CASE COUNT          : `garbage` (not DTLS), `records` (DTLS application data from
      an address no session uses), `hellos` (ClientHellos naming no session).
  replay CLIENT IFACE REPLAYS FORGED BADHEADER : in the stock client's namespace, captures
      application-data datagrams the stock client sends to the gateway (AF_PACKET on IFACE),
      then sends them again REPLAYS times each from the client's own address and port (a raw
      socket), FORGED copies with a fresh sequence number (they cannot authenticate), and
      BADHEADER datagrams with a broken record header, from that address and port too.
  capture-hello CLIENT IFACE OUT : started before the stock client connects; writes the first
      DTLS ClientHello it sends to the gateway (its source port and the datagram, hex) to OUT.
  replay-hello CAPTURED CLIENT OTHER COUNT : sends that ClientHello again COUNT times from the
      client's own address and port (a raw socket) and COUNT times from OTHER (an address of
      the attacker's own): an on-path observer replaying what it saw.

Every command prints one JSON object. Cookies and tokens are never printed."""
import json, os, random, socket, ssl, struct, sys, time

GW = ("198.18.0.1", 443)
UA = "Open AnyConnect VPN Agent v9.01"


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def tls_connect(src):
    raw = socket.create_connection(GW, timeout=5, source_address=(src, 0))
    return tls_context().wrap_socket(raw)


def read_head(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def login(src, token):
    with tls_connect(src) as s:
        s.sendall((f"GET / HTTP/1.1\r\nHost: gw\r\nUser-Agent: {UA}\r\nX-Transcend-Version: 1\r\n"
                   f"Authorization: Bearer {token}\r\n\r\n").encode())
        head = read_head(s).decode("latin-1")
    for line in head.split("\r\n"):
        if line.lower().startswith("set-cookie:") and "webvpn=" in line:
            return line.split("webvpn=", 1)[1].split(";", 1)[0]
    raise SystemExit(json.dumps({"error": "login failed", "status": head.split("\r\n", 1)[0]}))


def frame(ftype, payload=b"", length=None, magic=b"STF\x01", reserved=0):
    n = len(payload) if length is None else length
    return magic + struct.pack(">HBB", n, ftype, reserved) + payload


def ipv4(total_length=None, version=4, ihl=5, size=40, src="100.64.0.9"):
    p = bytearray(size)
    p[0] = version << 4 | ihl
    struct.pack_into(">H", p, 2, size if total_length is None else total_length)
    p[8] = 64
    p[9] = 17
    p[12:16] = socket.inet_aton(src)
    p[16:20] = socket.inet_aton("198.18.1.2")
    return bytes(p)


def closed_by_gateway(s, within=5.0):
    """True when the gateway closes the connection (end of stream or reset) within `within` s."""
    s.settimeout(within)
    deadline = time.time() + within
    try:
        while time.time() < deadline:
            data = s.recv(65536)
            if not data:
                return True
    except (ssl.SSLError, ConnectionError, OSError) as e:
        return not isinstance(e, socket.timeout)
    return False


def cstp_case(src, cookie, case):
    s = tls_connect(src)
    try:
        if case != "before-connect":
            s.sendall((f"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: gw\r\nUser-Agent: {UA}\r\nCookie: webvpn={cookie}\r\n"
                       "X-CSTP-Version: 1\r\nX-CSTP-Base-MTU: 1406\r\nX-CSTP-Address-Type: IPv4\r\n\r\n").encode())
            head = read_head(s)
            if not head.startswith(b"HTTP/1.1 200"):
                return {"case": case, "error": "CONNECT refused: " + head.split(b"\r\n", 1)[0].decode("latin-1")}
            address = [l.split(b":", 1)[1].strip().decode() for l in head.split(b"\r\n") if l.lower().startswith(b"x-cstp-address:")]
        if case == "bad-magic":
            s.sendall(b"XTF\x01" + struct.pack(">HBB", 4, 0, 0) + b"abcd")
        elif case == "bad-reserved":
            s.sendall(frame(7, reserved=1))
        elif case == "oversize":
            s.sendall(frame(0, b"\x45" + bytes(99), length=0xFFFF))
        elif case == "unknown-type":
            s.sendall(frame(0x42, b"hello"))
        elif case == "terminate":
            s.sendall(frame(9))
        elif case == "before-connect":
            s.sendall(frame(3))  # a DPD request, where the gateway expects HTTP
            head = read_head(s)
            return {"case": case, "status": head.split(b"\r\n", 1)[0].decode("latin-1"), "closed": closed_by_gateway(s)}
        elif case == "not-ip":
            mine = address[0] if address else "100.64.0.9"
            # Shorter than a header; total length past the end; header length 16; IP version 7.
            for p in (b"\x45\x00\x00", ipv4(total_length=41, src=mine), ipv4(ihl=4, src=mine), ipv4(version=7, src=mine)):
                s.sendall(frame(0, p))
            s.sendall(frame(3, b"still there?"))
            s.settimeout(5)
            got = b""
            want = frame(4, b"still there?")
            while want not in got:
                chunk = s.recv(65536)
                if not chunk:
                    return {"case": case, "closed": True, "dpdAnswered": False}
                got += chunk
            return {"case": case, "closed": False, "dpdAnswered": True, "sent": 4}
        return {"case": case, "closed": closed_by_gateway(s)}
    finally:
        s.close()


def tls_cases(src, case, count):
    closed = 0
    for _ in range(count):
        if case == "garbage-handshake":
            raw = socket.create_connection(GW, timeout=5, source_address=(src, 0))
            raw.sendall(b"\x00\x01 this is not TLS " + os.urandom(200))
            closed += closed_by_gateway(raw)
            raw.close()
        else:
            s = tls_connect(src)
            # A TLS 1.2/1.3 application-data record whose tag cannot verify, written under
            # the TLS layer.
            os.write(s.fileno(), b"\x17\x03\x03\x00\x40" + os.urandom(64))
            closed += closed_by_gateway(s)
            s.close()
    return {"case": case, "sent": count, "closed": closed}


def dtls_record(rtype, epoch, seq, body):
    return struct.pack(">BBBH", rtype, 0xFE, 0xFD, epoch) + seq.to_bytes(6, "big") + struct.pack(">H", len(body)) + body


def client_hello(session_id):
    body = (b"\xfe\xfd" + os.urandom(32) + bytes([32]) + session_id + b"\x00"  # version, random, session id, cookie
            + b"\x00\x04\x00\xa8\x00\xa9" + b"\x01\x00")                     # PSK suites, no compression
    hs = bytes([1]) + len(body).to_bytes(3, "big") + b"\x00\x00" + b"\x00\x00\x00" + len(body).to_bytes(3, "big") + body
    return struct.pack(">BBBH", 22, 0xFE, 0xFF, 0) + (0).to_bytes(6, "big") + struct.pack(">H", len(hs)) + hs


def udp_cases(src, case, count):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0))
    for i in range(count):
        if case == "garbage":
            d = b"\x00" + os.urandom(1 + i * 7 % 1200)
        elif case == "records":
            d = dtls_record(23, 1, random.getrandbits(40), os.urandom(16 + i % 500))
        else:
            d = client_hello(os.urandom(32))
        s.sendto(d, GW)
        if i % 32 == 31:
            time.sleep(0.01)  # stay within the socket buffers
    return {"case": case, "sent": count}


def capture(client, iface, want, seconds=15, content_type=23):
    """Datagrams from `client` to the gateway's port 443 holding one record each, of
    `content_type` (23: application data; 22: handshake, here only ClientHellos)."""
    ETH_P_ALL = 0x0003  # outgoing frames reach only ETH_P_ALL taps
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((iface, 0))
    s.settimeout(1)
    got = []
    deadline = time.time() + seconds
    while len(got) < want and time.time() < deadline:
        try:
            pkt, addr = s.recvfrom(65535)
        except socket.timeout:
            continue
        if addr[2] != socket.PACKET_OUTGOING or pkt[12:14] != b"\x08\x00":
            continue
        ip = pkt[14:]
        ihl = (ip[0] & 0x0F) * 4
        if ip[9] != 17 or socket.inet_ntoa(ip[12:16]) != client or socket.inet_ntoa(ip[16:20]) != GW[0]:
            continue
        sport, dport, ulen = struct.unpack(">HHH", ip[ihl:ihl + 6])
        payload = ip[ihl + 8:ihl + ulen]
        if dport != GW[1] or len(payload) < 13 or payload[0] != content_type:
            continue
        if content_type == 22 and (len(payload) < 14 or payload[13] != 1):
            continue
        if 13 + struct.unpack(">H", payload[11:13])[0] != len(payload):
            continue
        got.append((sport, payload))
    s.close()
    return got


def replay(client, iface, replays, forged, badheader):
    captured = capture(client, iface, 5)
    if not captured:
        return {"error": "no DTLS application data captured from the stock client"}
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    raw.bind((client, 0))

    def send(sport, payload):
        # UDP header with checksum 0 (none, allowed over IPv4); the kernel adds the IP header.
        raw.sendto(struct.pack(">HHHH", sport, GW[1], 8 + len(payload), 0) + payload, (GW[0], 0))

    time.sleep(0.3)  # the originals have been through the gateway by now
    sent = {"replayed": 0, "forged": 0, "badHeader": 0}
    for _ in range(replays):
        for sport, payload in captured:
            send(sport, payload)
            sent["replayed"] += 1
    sport, payload = captured[-1]
    seq = int.from_bytes(payload[5:11], "big")
    for i in range(forged):
        # A sequence number far ahead of anything sent: not a replay, and with it in the
        # AEAD's additional data the tag cannot verify.
        send(sport, payload[:5] + (seq + (1 << 40) + i).to_bytes(6, "big") + payload[11:])
        sent["forged"] += 1
    for i in range(badheader):
        send(sport, bytes([0x99]) + payload[1:])
        sent["badHeader"] += 1
    raw.close()
    sent["captured"] = len(captured)
    sent["clientPort"] = captured[0][0]
    return sent


def capture_hello(client, iface, out):
    got = capture(client, iface, 1, seconds=60, content_type=22)
    with open(out, "w") as f:
        json.dump({"sport": got[0][0], "hello": got[0][1].hex()} if got else {}, f)
    return {"captured": len(got)}


def replay_hello(captured, client, other, count):
    c = json.load(open(captured))
    sport, hello = c["sport"], bytes.fromhex(c["hello"])
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    raw.bind((client, 0))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((other, 0))
    for _ in range(count):
        raw.sendto(struct.pack(">HHHH", sport, GW[1], 8 + len(hello), 0) + hello, (GW[0], 0))
        udp.sendto(hello, GW)
        time.sleep(0.02)
    raw.close()
    udp.close()
    return {"sentFromClient": count, "sentFromOther": count, "helloBytes": len(hello)}


def main():
    cmd = sys.argv[1]
    if cmd == "cstp":
        src, token = sys.argv[2], open(sys.argv[3]).read().strip()
        cookie = login(src, token)
        print(json.dumps([cstp_case(src, cookie, c) for c in sys.argv[4:]]))
    elif cmd == "tls":
        print(json.dumps(tls_cases(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
    elif cmd == "udp":
        print(json.dumps(udp_cases(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
    elif cmd == "replay":
        print(json.dumps(replay(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))))
    elif cmd == "capture-hello":
        print(json.dumps(capture_hello(sys.argv[2], sys.argv[3], sys.argv[4])))
    elif cmd == "replay-hello":
        print(json.dumps(replay_hello(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
