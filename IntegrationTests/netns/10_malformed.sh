#!/usr/bin/env bash
# Malformed tunnel input from raw clients, with the real gateway and the stock client
# pinging through it all along: CSTP frames with a bad magic, a bad reserved byte, an
# oversize length, unknown types, TERMINATE, frames before any CONNECT, IP packets that are
# not IP; TLS that is not TLS and records that do not decrypt; UDP garbage, DTLS records
# and ClientHellos for no session; the stock client's own DTLS records captured off its
# interface and sent again from its address and port (replays), forged with a fresh
# sequence number, and with a broken header; and its DTLS ClientHello replayed from its own
# address and port and from another address, which must not cost the session the DTLS
# channel it has (the replayed handshake cannot finish). Each is dropped (its TLS connection closed),
# counted by class in `mst-cli server show status`, and logged at most once a minute per
# address; the gateway never stops and the stock client's ping never notices.
source "$(dirname "$0")/../lib.sh"

setup_namespaces
make_pki
make_issuer
make_script_wrapper
start_corp
write_settings
start_stack
echo "stack up (pin $PIN)"
CLIENT=$ROOT/IntegrationTests/malformed_client.py
# One address per kind of input, so each address's log line can be told apart.
declare -A FROM=([cstp]=198.18.0.30 [notip]=198.18.0.31 [before]=198.18.0.32 [tlsgarbage]=198.18.0.33
                 [tlsrecord]=198.18.0.34 [udpgarbage]=198.18.0.35 [udprecords]=198.18.0.36 [udphellos]=198.18.0.37)
for a in "${FROM[@]}"; do ip -n "$NS_C" addr add "$a/24" dev cli0; done
printf %s "$(mint --oid 0b1f7a3e-0000-4000-8000-0000000000a1 --upn alice@corp.test)" > "$WORK/alice.jwt"
n=1
for who in cstp notip before; do
    mint --oid "0b1f7a3e-0000-4000-8000-0000000000b$n" --upn "raw-$who@corp.test" > "$WORK/raw-$who.jwt"
    n=$((n + 1))
done
status() { "$BIN/mst-cli" server show status --run-dir "$RUN" --json; }
count() { status | python3 -c "import json,sys; print((json.load(sys.stdin).get('malformed') or {}).get('$1', 0))"; }
channel() { "$BIN/mst-cli" server show sessions --run-dir "$RUN" --json | python3 -c 'import json,sys; s=[x for x in json.load(sys.stdin) if x["userName"]=="alice@corp.test"]; print(s[0]["channel"] if s else "none")'; }

echo "== the stock client, over DTLS, pinging throughout"
# Its first ClientHello, seen on its interface, for the replay below.
ip netns exec "$NS_C" python3 "$CLIENT" capture-hello 198.18.0.2 cli0 "$WORK/hello.json" > "$WORK/capture-hello.out" 2>&1 &
CAPTURE_PID=$!
PIDS+=($CAPTURE_PID)
sleep 0.5
oc alice --token-mode=oidc --token-secret=@"$WORK/alice.jwt"
if wait_tunnel alice; then pass "tunnel up"; else fail "tunnel up"; fi
for _ in $(seq 50); do [ "$(channel)" = dtls ] && break; sleep 0.2; done
check "the stock client is on DTLS" test "$(channel)" = dtls
status > "$WORK/status0.json"
check "the status has malformed-input counters, all 0 after a stock login" python3 -c "import json,sys; m=json.load(open('$WORK/status0.json')).get('malformed'); sys.exit(0 if m is not None and sum(m.values()) == 0 else 1)"
ip netns exec "$NS_C" ping -i 0.2 -c 150 -W 2 198.18.1.2 > "$WORK/ping.txt" 2>&1 &
PING_PID=$!
PIDS+=($PING_PID)
sleep 1

echo "== CSTP: bad magic, bad reserved byte, oversize length, unknown type, TERMINATE (each on its own CONNECT)"
ip netns exec "$NS_C" python3 "$CLIENT" cstp "${FROM[cstp]}" "$WORK/raw-cstp.jwt" \
    bad-magic bad-reserved oversize oversize unknown-type unknown-type terminate > "$WORK/cstp.json"
cat "$WORK/cstp.json"
check "every malformed frame closed its connection" python3 -c "import json,sys; r=json.load(open('$WORK/cstp.json')); sys.exit(0 if len(r)==7 and all(x.get('closed') for x in r) else 1)"

echo "== CSTP: IP packets that are not IP are dropped, the connection stays"
ip netns exec "$NS_C" python3 "$CLIENT" cstp "${FROM[notip]}" "$WORK/raw-notip.jwt" not-ip > "$WORK/notip.json"
cat "$WORK/notip.json"
check "after 4 packets that are not IP, the connection still answers a DPD" python3 -c "import json,sys; r=json.load(open('$WORK/notip.json')); sys.exit(0 if r[0].get('dpdAnswered') else 1)"

echo "== CSTP before CONNECT"
ip netns exec "$NS_C" python3 "$CLIENT" cstp "${FROM[before]}" "$WORK/raw-before.jwt" before-connect before-connect before-connect > "$WORK/before.json"
cat "$WORK/before.json"
check "a frame before CONNECT gets 400 and the connection closes" python3 -c "import json,sys; r=json.load(open('$WORK/before.json')); sys.exit(0 if all(x['status'].startswith('HTTP/1.1 400') and x['closed'] for x in r) else 1)"

echo "== TLS: not TLS at all, and records that do not decrypt"
ip netns exec "$NS_C" python3 "$CLIENT" tls "${FROM[tlsgarbage]}" garbage-handshake 20 > "$WORK/tlsgarbage.json"
ip netns exec "$NS_C" python3 "$CLIENT" tls "${FROM[tlsrecord]}" bad-record 20 > "$WORK/tlsrecord.json"
cat "$WORK/tlsgarbage.json" "$WORK/tlsrecord.json"; echo
check "every one closed by the gateway" python3 -c "import json,sys; sys.exit(0 if all(json.load(open(f))['closed'] == 20 for f in ('$WORK/tlsgarbage.json', '$WORK/tlsrecord.json')) else 1)"

echo "== UDP: garbage, DTLS records before any handshake, ClientHellos naming no session"
ip netns exec "$NS_C" python3 "$CLIENT" udp "${FROM[udpgarbage]}" garbage 300
ip netns exec "$NS_C" python3 "$CLIENT" udp "${FROM[udprecords]}" records 300
ip netns exec "$NS_C" python3 "$CLIENT" udp "${FROM[udphellos]}" hellos 300

echo "== DTLS: the stock client's records replayed from its own address and port, forged, broken"
ip netns exec "$NS_C" python3 "$CLIENT" replay 198.18.0.2 cli0 4 10 5 > "$WORK/replay.json"
cat "$WORK/replay.json"; echo
captured=$(python3 -c "import json; print(json.load(open('$WORK/replay.json')).get('captured', 0))")
check "captured the stock client's DTLS datagrams ($captured)" test "$captured" -gt 0
sleep 0.5

echo "== DTLS: the stock client's ClientHello replayed from its address and port, and from another"
wait "$CAPTURE_PID" || true
check "captured the stock client's ClientHello" python3 -c "import json,sys; sys.exit(0 if json.load(open('$WORK/hello.json')).get('hello') else 1)"
ip -n "$NS_C" addr add 198.18.0.38/24 dev cli0
established_before=$(grep -c '"dtls.established"' "$WORK/server.log" || true)
ip netns exec "$NS_C" python3 "$CLIENT" replay-hello "$WORK/hello.json" 198.18.0.2 198.18.0.38 20
check "the session kept its DTLS channel (still on DTLS)" test "$(channel)" = dtls
ip netns exec "$NS_C" ping -c 10 -i 0.2 -W 2 198.18.1.2 > "$WORK/ping-after-hello.txt" 2>&1 || true
check "a ping right after the replayed ClientHellos lost nothing" grep -q ' 0% packet loss' "$WORK/ping-after-hello.txt"
check "no DTLS channel was set up by the replays" test "$(grep -c '"dtls.established"' "$WORK/server.log" || true)" = "$established_before"
check "the session is still on DTLS after the ping" test "$(channel)" = dtls

echo "== counted by class"
status > "$WORK/status.json"
python3 -c "import json; print(json.dumps(json.load(open('$WORK/status.json'))['malformed'], indent=1, sort_keys=True))"
expect() {  # CLASS EXPECTED WHAT
    local got; got=$(python3 -c "import json; print(json.load(open('$WORK/status.json'))['malformed'].get('$1', 0))")
    check "$3: $1 = $got (expected $2)" test "$got" = "$2"
}
expect cstpBadHeader 2 "bad magic and bad reserved byte"
expect cstpOversize 2 "oversize lengths"
expect cstpUnknownType 3 "unknown types and TERMINATE"
expect cstpBeforeConnect 3 "frames before CONNECT"
expect ipMalformed 4 "packets that are not IP"
expect tlsHandshake 20 "TLS handshakes that were not TLS"
expect tlsRecord 20 "TLS records that did not decrypt"
expect dtlsNotDTLS 300 "datagrams that are not DTLS"
expect dtlsBeforeHandshake 300 "DTLS records from an address without a handshake"
expect dtlsNoSession 300 "ClientHellos naming no session"
expect dtlsReplayed "$((captured * 4))" "replayed records"
expect dtlsBadRecord 15 "forged records and broken headers"
expect dtlsHandshake 0 "failed DTLS handshakes"
"$BIN/mst-cli" server show status --run-dir "$RUN" > "$WORK/status.txt"
sed -n '/malformed input/,$p' "$WORK/status.txt"
check "mst-cli server show status shows them" grep -q "replayed" "$WORK/status.txt"

echo "== logged at most once a minute per address"
python3 - "$WORK/server.log" > "$WORK/lines.json" <<'PY'
import json, sys, collections
lines = collections.defaultdict(list)
for line in open(sys.argv[1]):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("msg", "").endswith(".malformed"):
        peer = e["peer.address"].rsplit(":", 1)[0]
        lines[peer].append({"msg": e["msg"], "class": e.get("class"), "suppressed": e.get("suppressed")})
print(json.dumps(lines))
PY
cat "$WORK/lines.json"; echo
one_line() {  # ADDRESS CLASS…: exactly one line for ADDRESS, of one of CLASS…
    python3 -c "import json,sys; l=json.load(open('$WORK/lines.json')).get('$1', []); sys.exit(0 if len(l) == 1 and l[0]['class'] in sys.argv[1:] else 1)" "${@:2}"
}
check "${FROM[cstp]}: one line for 7 malformed frames" one_line "${FROM[cstp]}" cstpBadHeader
check "${FROM[notip]}: one line for 4 packets" one_line "${FROM[notip]}" ipMalformed
check "${FROM[before]}: one line for 3 frames before CONNECT" one_line "${FROM[before]}" cstpBeforeConnect
check "${FROM[tlsgarbage]}: one line for 20 handshakes" one_line "${FROM[tlsgarbage]}" tlsHandshake
check "${FROM[tlsrecord]}: one line for 20 records" one_line "${FROM[tlsrecord]}" tlsRecord
check "${FROM[udpgarbage]}: one line for 300 datagrams" one_line "${FROM[udpgarbage]}" dtlsNotDTLS
check "${FROM[udprecords]}: one line for 300 records" one_line "${FROM[udprecords]}" dtlsBeforeHandshake
check "${FROM[udphellos]}: one line for 300 ClientHellos" one_line "${FROM[udphellos]}" dtlsNoSession
check "the stock client's address: one line for replays, forgeries and broken headers" one_line 198.18.0.2 dtlsReplayed dtlsBadRecord
check "no address has more than one line" python3 -c "import json,sys; sys.exit(0 if all(len(v) == 1 for v in json.load(open('$WORK/lines.json')).values()) else 1)"
total=$(grep -c '\.malformed"' "$WORK/server.log" || true)
echo "  $total log lines for $(python3 -c "import json; print(sum(json.load(open('$WORK/status.json'))['malformed'].values()))") malformed inputs"

echo "== nothing else happened"
wait "$PING_PID" || true
tail -2 "$WORK/ping.txt"
check "the stock client's ping lost nothing during it all" grep -q ' 0% packet loss' "$WORK/ping.txt"
check "the stock client is still on DTLS" test "$(channel)" = dtls
check "ping still works" ip netns exec "$NS_C" ping -c 2 -i 0.2 -W 2 198.18.1.2
check "gateway still running" kill -0 "$SERVER_PID"
check "no crash or fatal error in the gateway's log" sh -c "! grep -Eqi 'fatal error|sanitizer|segmentation|\"level\":\"critical\"' '$WORK/server.log'"
check "no token in the gateway's log" sh -c "! grep -qF \"\$(cat '$WORK/alice.jwt')\" '$WORK/server.log' && ! grep -qF \"\$(cat '$WORK/raw-cstp.jwt')\" '$WORK/server.log'"
summary
