#!/usr/bin/env python3
"""Login load for the auth-outage test: THREADS workers each log in over and over
(TLS, `GET /` with `Authorization: Bearer`, as `openconnect --token-mode=oidc` does) for
SECONDS, and write one JSON line per attempt: start time, status, X-Reason, duration.
A real TLS client over a real socket; only the CONNECT is left out (the tunnel is not
what is measured). Usage: auth_outage_driver.py HOST TOKENFILE SECONDS THREADS OUT"""
import json, socket, ssl, sys, threading, time

host, token_file, seconds, threads, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
token = open(token_file).read().strip()
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
request = (f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Open AnyConnect VPN Agent v9.01\r\n"
           f"X-Transcend-Version: 1\r\nX-Aggregate-Auth: 1\r\nAuthorization: Bearer {token}\r\n\r\n").encode()
lock = threading.Lock()
lines = []

def attempt():
    start = time.time()
    status, reason = 0, ""
    try:
        with socket.create_connection((host, 443), timeout=5) as raw:
            with ctx.wrap_socket(raw) as s:
                s.sendall(request)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                head = data.split(b"\r\n\r\n")[0].decode(errors="replace").split("\r\n")
                status = int(head[0].split()[1]) if head and len(head[0].split()) > 1 else 0
                for h in head[1:]:
                    if h.lower().startswith("x-reason:"):
                        reason = h.split(":", 1)[1].strip()
    except Exception as e:  # a refused or reset connection is a result too
        reason = f"{type(e).__name__}: {e}"
    return {"t": start, "status": status, "reason": reason, "ms": round((time.time() - start) * 1000, 1)}

def worker():
    end = time.time() + seconds
    while time.time() < end:
        r = attempt()
        with lock:
            lines.append(r)

ts = [threading.Thread(target=worker) for _ in range(threads)]
for t in ts: t.start()
for t in ts: t.join()
with open(out, "w") as f:
    for r in sorted(lines, key=lambda r: r["t"]):
        f.write(json.dumps(r) + "\n")
