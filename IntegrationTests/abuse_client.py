#!/usr/bin/env python3
"""Hostile and ordinary clients for netns 09, each from a chosen source address.

  hold SECONDS OUT SRC... : from each SRC, open connections to 198.18.0.1:443 until 250 are
      open or refused; half say nothing, half send the first 60 bytes of a TLS ClientHello
      and stop (slow loris). Hold them, then write how many the gateway closed, and when.
  login SRC TOKENFILE [GW] : one Bearer login (TLS, GET /) from SRC to GW (default
      198.18.0.1; an IPv6 address works too); prints the HTTP status, or 'closed' when the
      gateway closes the connection before TLS completes."""
import json, selectors, socket, ssl, sys, time

GW = ("198.18.0.1", 443)
HELLO_START = bytes.fromhex("16030100f4010000f00303") + b"\x00" * 49

def login(src, token_file, gw=GW):
    token = open(token_file).read().strip()
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        raw = socket.create_connection(gw, timeout=5, source_address=(src, 0))
        with ctx.wrap_socket(raw) as s:
            s.sendall((f"GET / HTTP/1.1\r\nHost: gw\r\nUser-Agent: Open AnyConnect VPN Agent v9.01\r\n"
                       f"X-Transcend-Version: 1\r\nAuthorization: Bearer {token}\r\n\r\n").encode())
            data = s.recv(4096)
            return data.split(b" ")[1].decode() if data.startswith(b"HTTP/") else "closed"
    except (ssl.SSLError, ConnectionError, socket.timeout, OSError):
        return "closed"

def hold(seconds, out, sources):
    socks = []
    refused = 0
    for src in sources:
        for i in range(250):
            s = socket.socket()
            s.bind((src, 0))
            try:
                s.connect(GW)
            except OSError:
                refused += 1
                s.close()
                continue
            if i % 2:
                s.sendall(HELLO_START)
            socks.append(s)
    start = time.time()
    closed_at = {}
    sel = selectors.DefaultSelector()  # epoll: thousands of descriptors
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    while time.time() - start < seconds:
        for key, _ in sel.select(0.2):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:
                closed_at[s.fileno()] = round(time.time() - start, 2)
                sel.unregister(s)
    times = sorted(closed_at.values())
    json.dump({"opened": len(socks), "refusedAtConnect": refused, "closedByGateway": len(times),
               "closedWithin1s": sum(t <= 1 for t in times), "lastClosedAt": times[-1] if times else None,
               "stillOpen": len(socks) - len(times)}, open(out, "w"))
    for s in socks:
        s.close()

if sys.argv[1] == "login":
    print(login(sys.argv[2], sys.argv[3], (sys.argv[4], 443) if len(sys.argv) > 4 else GW))
else:
    hold(float(sys.argv[2]), sys.argv[3], sys.argv[4:])
