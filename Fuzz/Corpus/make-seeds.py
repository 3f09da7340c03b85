#!/usr/bin/env python3
"""Writes the seed corpus (Fuzz/Corpus/<target>/) and the dictionaries (Fuzz/Dictionaries/).

The seeds are committed; this script only documents where they come from and rewrites
them: python3 Fuzz/Corpus/make-seeds.py. Requests are the stock openconnect 9.01 client's
(shared docs, openconnect-protocol.md §3.2 and §4.1); tokens and the JWKS are the committed
bad-token corpus (Tests/Fixtures/bad-tokens). Each fuzzer's input layout (control bytes
first) is described at the top of its source file.
"""
import base64, hashlib, json, os, shutil, struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DICTS = os.path.join(os.path.dirname(HERE), "Dictionaries")
BAD_TOKENS = os.path.join(ROOT, "Tests", "Fixtures", "bad-tokens")


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def crlf(s):
    return s.replace("\n", "\r\n").encode()


UA = "Open AnyConnect VPN Agent v9.01-3"
INIT_XML = ('<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" type="init" aggregate-auth-version="2">'
            '<version who="vpn">v9.01-3</version><device-id>linux-64</device-id><capabilities>'
            '<auth-method>single-sign-on-v2</auth-method><auth-method>single-sign-on-external-browser</auth-method>'
            '</capabilities><group-access>https://198.18.0.1/</group-access></config-auth>')
USER_XML = ('<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" type="auth-reply" aggregate-auth-version="2">'
            '<version who="vpn">v9.01-3</version><device-id>linux-64</device-id><capabilities>'
            '<auth-method>single-sign-on-v2</auth-method></capabilities><auth><username>alice</username></auth></config-auth>')
def pass_xml(token):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" type="auth-reply" aggregate-auth-version="2">'
            '<version who="vpn">v9.01-3</version><device-id>linux-64</device-id>'
            '<opaque is-for="sg"><tunnel-group>mstunnel</tunnel-group><config-hash>1</config-hash></opaque>'
            f'<auth><password>{token}</password></auth><group-select>mstunnel</group-select></config-auth>')
LOGOUT_XML = '<?xml version="1.0" encoding="UTF-8"?>\n<config-auth client="vpn" type="logout"><session-token/></config-auth>'


def post(path, body, extra=""):
    return crlf(f"POST {path} HTTP/1.1\nHost: 198.18.0.1\nUser-Agent: {UA}\nAccept: */*\nAccept-Encoding: identity\n"
                f"X-Transcend-Version: 1\nX-Aggregate-Auth: 1\nX-Support-HTTP-Auth: true\n{extra}"
                f"X-Pad: 0000000000000000\nContent-Type: application/xml; charset=utf-8\nContent-Length: {len(body.encode())}\n\n") + body.encode()


def get(path, extra=""):
    return crlf(f"GET {path} HTTP/1.1\nHost: 198.18.0.1\nUser-Agent: {UA}\nAccept: */*\nAccept-Encoding: identity\n"
                f"X-Transcend-Version: 1\nX-Aggregate-Auth: 1\n{extra}\n")


def connect(cookie, dtls=True):
    h = (f"CONNECT /CSCOSSLC/tunnel HTTP/1.1\nHost: 198.18.0.1\nUser-Agent: {UA}\nCookie: webvpn={cookie}\n"
         "X-CSTP-Version: 1\nX-CSTP-Hostname: vm\nX-AnyConnect-STRAP-Verify: MEQCICr+\nX-CSTP-Accept-Encoding: oc-lz4,lzs\n"
         "X-CSTP-Base-MTU: 1500\nX-CSTP-MTU: 1390\nX-CSTP-Address-Type: IPv6,IPv4\nX-CSTP-Full-IPv6-Capability: true\n")
    if dtls:
        h += ("X-DTLS-Master-Secret: 73A4C71AE7590A129E9320E76608E0D532B8B0490A6F48AEF6532494D054B9AD72F49ADFFCF936CA75FAC1E1193608D7\n"
              "X-DTLS-CipherSuite: PSK-NEGOTIATE:OC-DTLS1_2-AES256-GCM:OC2-DTLS1_2-CHACHA20-POLY1305:OC-DTLS1_2-AES128-GCM:DHE-RSA-AES256-SHA:AES128-SHA\n"
              "X-DTLS12-CipherSuite: ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:AES256-GCM-SHA384\n"
              "X-DTLS-Accept-Encoding: oc-lz4,lzs\n")
    return crlf(h + "\n")


corpus = json.load(open(os.path.join(BAD_TOKENS, "corpus.json")))
GOOD = corpus["accepted"][0]["token"]

# --- CSTP frames and IPv4 packets (the session address is 100.64.0.2).
def cstp(t, payload=b""):
    return b"STF\x01" + struct.pack(">H", len(payload)) + bytes([t, 0]) + payload


def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack(f">{len(b)//2}H", b))
    while s >> 16: s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def tcp(seq, ack, flags, payload=b"", options=b"", src="100.64.0.2", dst="10.0.0.5", ident=1):
    sip = bytes(int(x) for x in src.split(".")); dip = bytes(int(x) for x in dst.split("."))
    thl = 20 + len(options)
    th = struct.pack(">HHIIBBHHH", 40000, 443, seq, ack, (thl // 4) << 4, flags, 502, 0, 0) + options
    pseudo = sip + dip + struct.pack(">BBH", 0, 6, thl + len(payload))
    c = csum(pseudo + th + payload)
    th = th[:16] + struct.pack(">H", c) + th[18:]
    total = 20 + thl + len(payload)
    ih = struct.pack(">BBHHHBBH4s4s", 0x45, 0, total, ident, 0x4000, 64, 6, 0, sip, dip)
    ih = ih[:10] + struct.pack(">H", csum(ih)) + ih[12:]
    return ih + th + payload


TS = bytes([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2])
ack1 = tcp(1000, 5000, 0x10, options=TS)
ack2 = tcp(1000, 6448, 0x10, options=TS)
sack = tcp(1000, 6448, 0x10, options=bytes([1, 1, 5, 10]) + struct.pack(">II", 7000, 8448))
data1 = tcp(1000, 5000, 0x10, b"A" * 1200, ident=2)
data2 = tcp(2200, 5000, 0x10, b"B" * 1200, ident=3)
data3 = tcp(3400, 5000, 0x18, b"C" * 300, ident=4)
icmp = bytes.fromhex("4500001c00014000400100006440000200000005") + bytes.fromhex("0800f7ff00000000")
spoofed = tcp(1, 1, 0x10, src="100.64.0.3")
DPD = cstp(3, b"\x00\x01\x02\x03")
KEEPALIVE = cstp(7)
LOGOFF = cstp(5, b"\xb0Aborted by caller")

# --- A DTLS 1.2 ClientHello as openconnect 9.01 sends it for PSK-NEGOTIATE (§6.3, §6.4):
# record version fe ff, hello version fe fd, session id = the X-DTLS-App-ID bytes, no cookie,
# the eight plain-PSK suites, null compression, signature_algorithms, session_ticket,
# renegotiation_info, record_size_limit.
def client_hello(session_id):
    suites = [0x00A9, 0xCCAB, 0xC0A5, 0x008D, 0x00A8, 0xC0A4, 0x008C, 0x00AE]
    ext = b""
    sigalgs = [0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0403, 0x0503, 0x0603]
    ext += struct.pack(">HHH", 13, 2 + 2 * len(sigalgs), 2 * len(sigalgs)) + b"".join(struct.pack(">H", a) for a in sigalgs)
    ext += struct.pack(">HH", 35, 0)
    ext += struct.pack(">HHB", 0xFF01, 1, 0)
    ext += struct.pack(">HHH", 28, 2, 16384)
    body = (b"\xfe\xfd" + bytes(range(1, 33)) + bytes([len(session_id)]) + session_id + b"\x00"
            + struct.pack(">H", 2 * len(suites)) + b"".join(struct.pack(">H", s) for s in suites)
            + b"\x01\x00" + struct.pack(">H", len(ext)) + ext)
    hs = bytes([1]) + len(body).to_bytes(3, "big") + struct.pack(">H", 0) + (0).to_bytes(3, "big") + len(body).to_bytes(3, "big") + body
    return bytes([22]) + b"\xfe\xff" + struct.pack(">H", 0) + (0).to_bytes(6, "big") + struct.pack(">H", len(hs)) + hs


SID0 = bytes([0x11] * 32)                                   # the fuzzer's session 0
SID1 = bytes(((i * 2 + 0x40) & 0xFF) for i in range(32))  # session 1


def dgram(sender, d):
    return bytes([sender]) + struct.pack(">H", len(d)) + d


# A DTLS application record as the gateway sees it after decryption is type + payload;
# the raw datagram the demultiplexer sees for a bound channel is an encrypted record.
app_record = bytes([23]) + b"\xfe\xfd" + struct.pack(">H", 1) + (1).to_bytes(6, "big") + struct.pack(">H", 40) + bytes(40)


def wire_frame(obj):
    payload = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return b"MST\x01" + struct.pack(">I", len(payload)) + payload


SETTINGS = {"displayName": "Site A", "network": "100.64.0.0/16", "dnsServers": ["10.0.0.53"], "defaultDomainSuffix": "corp.example",
            "routeIncludes": ["10.0.0.0/8"], "routeExcludes": ["10.99.0.0/16"], "splitDNS": ["corp.example"], "listenPort": 443,
            "advancedSettings": [{"name": "banner", "value": "Welcome"}, {"name": "mtu", "value": "1400"}], "disableUdpConnections": False}
MESSAGES = [
    {"id": 1, "kind": "request", "type": "validateToken", "body": {"token": GOOD, "transport": "bearer", "peerAddress": "198.18.0.2:51000"}},
    {"id": 1, "kind": "response", "type": "validateToken", "body": {"identity": {"userId": "0c0ffee0-0000-4000-8000-000000000001", "userName": "corpus.user@corp.test", "tenantId": "7d3b1c2a-0000-4000-8000-00000000c0de", "deviceId": "corpus-device", "expiresAt": 4102444800}}},
    {"id": 2, "kind": "response", "type": "validateToken", "body": {"rejection": {"code": "expired", "reason": "token expired at 2020-01-01T00:00:00Z"}}},
    {"id": 3, "kind": "request", "type": "ping", "body": {}},
    {"id": 3, "kind": "response", "type": "ping", "body": {"process": "mstunnel-auth", "version": "0.1.5"}},
    {"id": 4, "kind": "request", "type": "serverStatus", "body": {}},
    {"id": 4, "kind": "response", "type": "serverStatus", "body": {"version": "0.1.5", "startedAt": 1767225600, "listenPort": 443, "tunDevice": "mstun0", "activeSessions": 2, "connectedSessions": 1, "totalSessions": 9, "authFailures": 3, "poolSize": 65534, "poolInUse": 2, "poolExhaustedCount": 0, "rxBytes": 123456, "txBytes": 654321, "authAvailable": True, "drops": {"noSession": 1, "queueFull": 0, "spoofed": 2, "unsupported": 3, "unknownDatagram": 4}, "dtlsSessions": 1, "confinement": {"uid": 994, "gid": 990, "effectiveCapabilities": 0, "noNewPrivileges": True, "seccompMode": 2}}},
    {"id": 5, "kind": "request", "type": "listSessions", "body": {"user": "alice"}},
    {"id": 5, "kind": "response", "type": "listSessions", "body": {"sessions": [{"id": "a1b2c3", "userId": "u1", "userName": "alice", "address": "100.64.0.2", "remoteAddress": "198.18.0.2:51000", "connected": True, "channel": "dtls", "connectedAt": 1767225600, "expiresAt": 1767229200, "rxBytes": 10, "txBytes": 20, "userAgent": UA, "hostname": "vm"}]}},
    {"id": 6, "kind": "request", "type": "applySettings", "body": {"settingsJSON": json.dumps(SETTINGS), "version": 7}},
    {"id": 6, "kind": "response", "type": "applySettings", "body": {"applied": False, "error": "network: missing", "restartRequired": ["listenPort"], "sessionsKept": 0, "retryable": False}},
    {"id": 7, "kind": "request", "type": "sessionEvents", "body": {"after": 0, "limit": 500}},
    {"id": 7, "kind": "response", "type": "sessionEvents", "body": {"events": [{"sequence": 1, "type": "sessionConnected", "time": 1767225600000, "userId": "u1", "sessionId": "a1b2c3", "clientAddress": "198.18.0.2", "assignedAddress": "100.64.0.2"}], "bootId": "b00t", "missed": 0}},
    {"id": 8, "kind": "request", "type": "hostNetwork", "body": {"state": {"mtu": 1400, "addresses": ["100.64.0.1/16", "fd00:64::1/64"], "natPrefixes": ["100.64.0.0/16"]}}},
    {"id": 9, "kind": "request", "type": "hostNetwork", "body": {}},
    {"id": 8, "kind": "response", "type": "hostNetwork", "body": {"applied": True, "steps": ["mtu 1400", "nat 100.64.0.0/16"], "warnings": []}},
    {"id": 10, "kind": "response", "type": "error", "body": {"code": 1, "message": "unknown request type 'x'"}},
]

NOW = "2026-11-21T10:00:00.000Z"
AGENT_BODIES = {
    "enroll": {"joinToken": "mstj1.tok123.s3cr3t_-x." + "ab" * 32, "csrPEM": "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n", "hostname": "gw1", "agentVersion": "0.1.5"},
    "renew": {"csrPEM": "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"},
    "checkin": {"agentVersion": "0.1.5", "serverVersion": "0.1.5", "appliedConfigurationVersion": 3, "lastApply": {"version": 3, "success": False, "message": "network: missing", "dateTime": NOW}},
    "reports": {"items": [
        {"id": "6f1c1f0e-2b7d-4c55-9b0a-0c3b7f1d2e01", "kind": "health", "createdDateTime": NOW, "health": {"cpuUsagePercent": 12.5, "memoryUsagePercent": 40.25, "diskFreeBytes": 1000000000, "currentConnections": 3, "throughputBytesPerSecond": 12345, "latencyMilliseconds": 1.5, "tlsCertificate": {"subject": "CN=vpn.example.com", "notBefore": "2026-01-01T00:00:00Z", "notAfter": "2027-01-01T00:00:00Z", "dnsNames": ["vpn.example.com"], "problems": []}, "agentCertificateNotAfter": "2027-01-01T00:00:00Z", "internalNetworkProbe": {"url": "http://10.0.0.5/", "reachable": True, "statusCode": 200, "latencyMilliseconds": 3.25}, "gateway": {"reachable": True, "version": "0.1.5", "uptimeSeconds": 3600, "poolSize": 65534, "poolInUse": 3, "authReachable": True}, "appliedConfigurationVersion": 3}},
        {"id": "6f1c1f0e-2b7d-4c55-9b0a-0c3b7f1d2e02", "kind": "event", "createdDateTime": NOW, "event": {"type": "loginRejected", "dateTime": NOW, "clientAddress": "198.18.0.2", "reason": "expired: token expired"}}],
        "droppedSinceLastAck": 0},
    "failure": {"message": "journalctl failed: exit 1"},
    "enroll-response": {"serverId": "srv-1", "siteId": "site-1", "certificateChainPEM": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "caCertificatePEM": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "notAfter": "2027-01-01T00:00:00Z"},
    "checkin-response": {"serverId": "srv-1", "siteId": "site-1", "configurationVersion": 4, "configuration": SETTINGS, "internalNetworkProbeUrl": "http://10.0.0.5/", "checkinIntervalSeconds": 60, "reportIntervalSeconds": 300, "actions": [{"id": "lc-1", "type": "collectLogs", "startDateTime": "2026-11-21T09:00:00Z", "endDateTime": NOW}], "renewAfter": "2026-12-01T00:00:00Z"},
    "ack": {"acknowledged": ["6f1c1f0e-2b7d-4c55-9b0a-0c3b7f1d2e01"], "duplicates": 0},
    "error": {"error": {"code": "Unauthorized", "message": "enroll first"}},
}


def jwt_parts(token):
    h, p, _ = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)
    return base64.urlsafe_b64decode(pad(h)), base64.urlsafe_b64decode(pad(p))


def main():
    for t in ["fuzz-http-request", "fuzz-config-auth", "fuzz-login-connect", "fuzz-cstp", "fuzz-dtls-hello",
              "fuzz-wire", "fuzz-jwt", "fuzz-strict-json", "fuzz-agent-api"]:
        shutil.rmtree(os.path.join(HERE, t), ignore_errors=True)

    # 1. HTTP requests: [cut seed][stream].
    reqs = {
        "post-init": post("/", INIT_XML),
        "post-auth-reply-password": post("/auth", pass_xml(GOOD), "Cookie: webvpncontext=abc\n"),
        "get-bearer": get("/", f"Authorization: Bearer {GOOD}\n"),
        "connect": connect("AC6CPNNCUS6SI5BtKObMiFbGnqs+L87xko7jvQekbmc=") + cstp(7),
        "healthz": crlf("GET /healthz HTTP/1.1\nHost: gw\nUser-Agent: kube-probe/1.29\n\n"),
        "form-urlencoded": crlf("POST / HTTP/1.1\nHost: gw\nUser-Agent: OpenConnect VPN Agent\nContent-Type: application/x-www-form-urlencoded\nContent-Length: 27\n\n") + b"username=a&password=tok%2Bx",
        "pipelined": get("/") + post("/", USER_XML),
        "folded-header": crlf("GET / HTTP/1.1\nHost: gw\nX-Long: one\n two\nCookie: a=1; webvpn=x\n\n"),
    }
    for i, (name, r) in enumerate(reqs.items()):
        write("fuzz-http-request", name, bytes([i * 7 % 61]) + r)

    # 2. config-auth bodies.
    for name, x in {"init": INIT_XML, "auth-reply-username": USER_XML, "auth-reply-password": pass_xml(GOOD),
                    "logout": LOGOUT_XML,
                    "entities": '<?xml version="1.0"?><!DOCTYPE config-auth [<!ENTITY t "tok">]><config-auth type="auth-reply"><auth><password>&t;&amp;&#x41;</password></auth></config-auth>',
                    "namespaced": '<config-auth xmlns="http://www.cisco.com/x" xmlns:a="urn:a" type="auth-reply"><a:x/><auth><username>b</username><password><![CDATA[t]]></password></auth></config-auth>'}.items():
        write("fuzz-config-auth", name, x)

    # 3. Login conversations: [cut seed][control][stream]. Control 0x00: cookies name sessions
    # only once created; 0x04: every even-length cookie names a session.
    def accepted_token(control, base):
        for i in range(1000):
            t = f"{base}{i}"
            h = control
            for b in t.encode(): h = (h * 31 + b) & 0xFFFFFFFF
            if h % 4 >= 2: return t
    tok = accepted_token(0, "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.sig")
    def ticket(rest):
        t = "mst.1.site-1.QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo"
        while len(t) % 3 != rest: t += "A"
        return t
    conv = {
        "xml-login-then-connect": (0, 0x00, post("/", INIT_XML) + post("/auth", USER_XML) + post("/auth", pass_xml(tok)) + connect("cookie-1-6")),
        "bearer-login-then-connect": (5, 0x01, get("/") + get("/", f"Authorization: Bearer {accepted_token(1, 'tok')}\n") + connect("cookie-1-6", dtls=False) + cstp(7)),
        "cookie-connect": (0, 0x04, connect("sessioncookie") + cstp(3, b"\x01\x02")),
        "token-as-cookie": (9, 0x02, connect(accepted_token(2, "aa.bb.cc"))),
        "refused-connect": (0, 0x14, connect("sessioncookie")),
        "logout": (3, 0x03, post("/", LOGOUT_XML) + get("/healthz")),
        "garbage": (1, 0x00, b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"),
        # Resumption tickets (docs/site.md): the fuzzer's auth opens one whose length is a
        # multiple of 3, refuses one of length 3k+1.
        "ticket-resumed": (0, 0x00, connect(ticket(0)) + cstp(3, b"\x01")),
        "ticket-refused": (0, 0x00, connect(ticket(1))),
    }
    for name, (seed, control, stream) in conv.items():
        write("fuzz-login-connect", name, bytes([seed, control]) + stream)

    # 4. CSTP streams: [cut seed][frames].
    streams = {
        "data-ack-dpd-keepalive": cstp(0, ack1) + cstp(0, ack2) + DPD + KEEPALIVE + cstp(4, b"\x00\x01\x02\x03"),
        "data-segments-merge": cstp(0, data1) + cstp(0, data2) + cstp(0, data3) + cstp(0, sack),
        "icmp-spoofed-compressed": cstp(0, icmp) + cstp(0, spoofed) + cstp(8, b"\x00\x01") + cstp(0, b"\x60" + bytes(39)),
        "logoff": cstp(0, icmp) + LOGOFF + KEEPALIVE,
        "disconnect-terminate": cstp(5, b"\x00") + cstp(9),
    }
    for i, (name, s) in enumerate(streams.items()):
        write("fuzz-cstp", name, bytes([i * 13 % 61]) + s)

    # 5. DTLS datagrams: [control][sender][len u16][datagram]….
    write("fuzz-dtls-hello", "hello-session0", bytes([0x09]) + dgram(1, client_hello(SID0)) + dgram(1, app_record) + dgram(1, app_record) + dgram(1, b"\x03\x00\x00\x00\x01"))
    write("fuzz-dtls-hello", "roaming", bytes([0x1B]) + dgram(1, client_hello(SID0)) + dgram(1, app_record) + dgram(2, client_hello(SID0)) + dgram(2, app_record))
    write("fuzz-dtls-hello", "peer-reused", bytes([0x1B]) + dgram(1, client_hello(SID0)) + dgram(1, client_hello(SID1)) + dgram(1, b"\x05\xb0bye"))
    write("fuzz-dtls-hello", "restart-and-unknown", bytes([0x09]) + dgram(3, client_hello(SID0)) + dgram(3, app_record) + dgram(3, app_record) + dgram(3, client_hello(SID0)) + dgram(4, client_hello(bytes(32))))
    write("fuzz-dtls-hello", "udp-disabled", bytes([0xFF]) + dgram(1, client_hello(SID0)))

    # 6. Wire frames: [control][stream]; control bit 0 = one frame's JSON payload.
    for i, m in enumerate(MESSAGES):
        write("fuzz-wire", f"{m['kind']}-{m['type']}-{i}", bytes([1]) + json.dumps(m, sort_keys=True, separators=(",", ":")).encode())
    write("fuzz-wire", "stream-three-frames", bytes([0x0E]) + b"".join(wire_frame(m) for m in MESSAGES[:3]))
    write("fuzz-wire", "stream-host-network", bytes([0x20]) + wire_frame(MESSAGES[13]) + wire_frame(MESSAGES[14]))

    # 7. JWTs: [mode][…]. Mode 0 tokens, mode 1 header/payload to sign, mode 2 a JWKS.
    for a in corpus["accepted"]:
        write("fuzz-jwt", "token-" + a["name"], b"\x00" + a["token"].encode())
        h, p = jwt_parts(a["token"])
        h = json.dumps({"alg": "ES256", "typ": "JWT", "kid": "ec-1"}).encode()
        write("fuzz-jwt", "signed-" + a["name"], b"\x01" + struct.pack(">H", len(h)) + h + p)
    for r in corpus["refused"]:
        if "token" in r and len(r["token"]) < 8000:
            write("fuzz-jwt", "token-" + r["name"], b"\x00" + r["token"].encode())
    h, p = jwt_parts(corpus["accepted"][0]["token"])
    write("fuzz-jwt", "signed-aud-array-no-kid", b"\x01" + struct.pack(">H", 15) + b'{"alg":"ES256"}'
          + json.dumps(dict(json.loads(p), aud=["x", corpus["configuration"]["audiences"][0]], ver=["1.0", "2.0"], exp=4102444800.5)).encode())
    jwks = open(os.path.join(BAD_TOKENS, "jwks.json"), "rb").read()
    write("fuzz-jwt", "jwks", b"\x02" + jwks)

    # 8. StrictJSON texts.
    write("fuzz-strict-json", "jwks", jwks)
    for a in corpus["accepted"]:
        h, p = jwt_parts(a["token"])
        write("fuzz-strict-json", "payload-" + a["name"], p)
        write("fuzz-strict-json", "header-" + a["name"], h)
    write("fuzz-strict-json", "escapes-numbers", '{"s":"\\u00e9\\ud83d\\ude00\\n\\"/","n":[0,-0,1e3,-1.5E-7,9223372036854775807,9223372036854775808,1.0],"b":[true,false,null],"o":{}}')
    write("fuzz-strict-json", "duplicate", '{"aud":"a","x":{"aud":1},"aud":"b"}')

    # 9. Agent API bodies.
    for name, body in AGENT_BODIES.items():
        write("fuzz-agent-api", name, json.dumps(body))
    write("fuzz-agent-api", "admin-settings", json.dumps(SETTINGS))

    # Dictionaries.
    os.makedirs(DICTS, exist_ok=True)
    def dictionary(name, words):
        with open(os.path.join(DICTS, name), "w") as f:
            f.write(f"# libFuzzer dictionary ({name}); written by Fuzz/Corpus/make-seeds.py\n")
            for w in words:
                if isinstance(w, str): w = w.encode()
                f.write('"' + "".join(chr(b) if 0x20 <= b < 0x7F and b not in (0x22, 0x5C) else "\\x%02X" % b for b in w) + '"\n')
    http = ["GET ", "POST ", "HEAD ", "CONNECT ", "PUT ", " HTTP/1.1\r\n", " HTTP/1.0\r\n", "\r\n", "\r\n\r\n", ": ", "\r\n ", "\r\n\t",
            "/CSCOSSLC/tunnel", "/healthz", "/auth", "?x=1",
            "Host", "User-Agent", "Cookie", "webvpn=", "webvpncontext=", "; ", "Content-Length", "Transfer-Encoding", "chunked",
            "Content-Type", "Authorization", "Bearer ", "X-Transcend-Version", "X-Aggregate-Auth", "X-Support-HTTP-Auth", "true",
            "X-CSTP-Version", "X-CSTP-Hostname", "X-CSTP-Base-MTU", "X-CSTP-MTU", "X-CSTP-Address", "X-CSTP-Full-IPv6-Capability",
            "X-CSTP-Address-Type", "X-DTLS-Master-Secret", "X-DTLS-CipherSuite", "PSK-NEGOTIATE", "X-DTLS12-CipherSuite",
            "Open AnyConnect VPN Agent v9.01-3", "AnyConnect", "password=", "username=", "&", "%2B", "+", "<", "STF\x01"]
    xml = ["<?xml version=\"1.0\" encoding=\"UTF-8\"?>", "<config-auth", "</config-auth>", " type=\"", "init", "auth-reply", "logout",
           "<auth>", "</auth>", "<username>", "</username>", "<password>", "</password>", "<group-select>", "</group-select>",
           "<version who=\"vpn\">", "</version>", "<device-id>", "</device-id>", "<opaque>", "</opaque>", "<![CDATA[", "]]>",
           "<!DOCTYPE config-auth [", "<!ENTITY e \"", "&e;", "&amp;", "&lt;", "&#x41;", "&#10;", "xmlns=\"", "xmlns:a=\"", "a:",
           "<!--", "-->", "<?pi?>", "/>", "encoding=\"ISO-8859-1\""]
    json_words = ["{", "}", "[", "]", ":", ",", "\"", "\\u0000", "\\ud800", "\\udc00", "\\\"", "true", "false", "null", "-0", "1e308", "1e-400",
                  "9223372036854775807", "9223372036854775808", "-9223372036854775809", "0.5", "E+", "\xef\xbb\xbf"]
    claims = ["\"alg\"", "\"ES256\"", "\"RS256\"", "\"HS256\"", "\"none\"", "\"kid\"", "\"ec-1\"", "\"rsa-1\"", "\"typ\"", "\"JWT\"",
              "\"at+jwt\"", "\"crit\"", "\"jku\"", "\"x5u\"", "\"jwk\"", "\"x5c\"", "\"iss\"", "\"aud\"", "\"tid\"", "\"exp\"", "\"nbf\"",
              "\"iat\"", "\"oid\"", "\"sub\"", "\"upn\"", "\"ver\"", "\"2.0\"", "\"deviceid\"", "\"keys\"", "\"kty\"", "\"EC\"", "\"RSA\"",
              "\"crv\"", "\"P-256\"", "\"use\"", "\"sig\"", "\"enc\"", "\"key_ops\"", "\"n\"", "\"e\"", "\"x\"", "\"y\"", "4102444800",
              "1767225600", "\"https://login.corpus.test/7d3b1c2a-0000-4000-8000-00000000c0de/v2.0\"",
              "\"3678c9e9-9681-447a-974d-d19f668fcd88\"", "\"7d3b1c2a-0000-4000-8000-00000000c0de\"", "."]
    wire = ["\"id\"", "\"kind\"", "\"request\"", "\"response\"", "\"type\"", "\"body\"", "\"validateToken\"", "\"ping\"", "\"serverStatus\"",
            "\"listSessions\"", "\"applySettings\"", "\"sessionEvents\"", "\"hostNetwork\"", "\"error\"", "\"token\"", "\"transport\"",
            "\"bearer\"", "\"password\"", "\"cookie\"", "\"identity\"", "\"rejection\"", "\"state\"", "\"mtu\"", "\"addresses\"",
            "\"natPrefixes\"", "\"settingsJSON\"", "\"network\"", "\"100.64.0.0/16\"", "\"fd00::1/64\"", "/", "::", "MST\x01"]
    agent = ["\"joinToken\"", "\"mstj1.", "\"csrPEM\"", "\"hostname\"", "\"agentVersion\"", "\"items\"", "\"kind\"", "\"health\"", "\"event\"",
             "\"createdDateTime\"", "\"dateTime\"", "\"2026-11-21T10:00:00Z\"", "\"2026-11-21T10:00:00.123+02:00\"", "\"configuration\"",
             "\"routeIncludes\"", "\"advancedSettings\"", "\"actions\"", "\"collectLogs\"", "\"acknowledged\"", "\"droppedSinceLastAck\"",
             "\"gateway\"", "\"reachable\"", "\"appliedConfigurationVersion\"", "\"network\"", "\"dnsServers\""]
    dictionary("http.dict", http)
    dictionary("xml.dict", xml)
    dictionary("json.dict", json_words)
    dictionary("jwt.dict", json_words + claims)
    dictionary("wire.dict", json_words + wire)
    dictionary("agent.dict", json_words + agent)
    dictionary("cstp.dict", ["STF\x01", "\x00\x00", "\x00\x03", "\x00\x04", "\x00\x05", "\x00\x07", "\x00\x08", "\x00\x09", "\xb0",
                             "\x45\x00", "\x40\x00\x40\x06", "\x64\x40\x00\x02", "\x50\x10", "\x80\x10", "\x01\x01\x08\x0a", "\x05\x0a"])
    dictionary("dtls.dict", ["\x16\xfe\xff", "\x16\xfe\xfd", "\x17\xfe\xfd", "\x01\x00\x00", "\xfe\xfd", "\x20" + "\x11" * 4, "\x00\xa9"])


main()
