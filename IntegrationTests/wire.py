#!/usr/bin/env python3
"""A minimal client of the gateway's wire protocol, for tests: an independent
implementation of the framing ("MST", version 1, u32 length, JSON), so a test also
checks that the format is what docs/architecture.md says.

usage: wire.py SOCKET applySettings FILE [VERSION]
       wire.py SOCKET sessionEvents AFTER
       wire.py SOCKET serverStatus
Prints the response body as JSON; exit 1 on an error response or a refused apply."""
import json, socket, struct, sys

def call(path, typ, body):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    payload = json.dumps({"id": 1, "kind": "request", "type": typ, "body": body}, separators=(",", ":")).encode()
    s.sendall(b"MST\x01" + struct.pack(">I", len(payload)) + payload)
    head = b""
    while len(head) < 8:
        chunk = s.recv(8 - len(head))
        if not chunk:
            raise SystemExit("connection closed")
        head += chunk
    assert head[:4] == b"MST\x01", head
    n = struct.unpack(">I", head[4:])[0]
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise SystemExit("connection closed mid-frame")
        data += chunk
    return json.loads(data)

def main():
    path, typ = sys.argv[1], sys.argv[2]
    if typ == "applySettings":
        body = {"settingsJSON": open(sys.argv[3]).read()}
        if len(sys.argv) > 4:
            body["version"] = int(sys.argv[4])
    elif typ == "sessionEvents":
        body = {"after": int(sys.argv[3]), "limit": 500}
    else:
        body = {}
    r = call(path, typ, body)
    print(json.dumps(r["body"]))
    refused = r["type"] == "error" or r["body"].get("applied") is False
    sys.exit(1 if refused else 0)

main()
