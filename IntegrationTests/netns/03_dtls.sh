#!/usr/bin/env bash
# DTLS: the stock client brings DTLS up by itself, falls back to TLS when UDP is
# blocked, returns to DTLS (from a new UDP address) when it is unblocked; and
# disableUdpConnections keeps everything on TLS.
source "$(dirname "$0")/../lib.sh"

setup_namespaces
make_pki
make_issuer
make_script_wrapper
start_corp
settings() {
    cat > "$STATE/admin-settings.json" <<JSON
{ "network": "100.64.0.0/24", "routeIncludes": ["198.18.1.0/24"], "disableUdpConnections": $1,
  "advancedSettings": [ { "name": "dpd", "value": "5" }, { "name": "keepalive", "value": "5" } ] }
JSON
}
settings false
start_stack
printf %s "$(mint --oid 0b1f7a3e-0000-4000-8000-000000000003 --upn carol@corp.test)" > "$WORK/token.jwt"
channel() { "$BIN/mst-cli" server show sessions --run-dir "$RUN" --json | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s[0]["channel"] if s else "none")'; }

echo "== DTLS comes up without any client option"
oc dtls --token-mode=oidc --token-secret=@"$WORK/token.jwt"
if wait_tunnel dtls; then pass "tunnel up"; else fail "tunnel up"; fi
check "client established DTLS" grep -q 'Established DTLS connection' "$WORK/oc-dtls.log"
check "gateway logged dtls.established with PSK" grep -q '"msg":"dtls.established".*PSK-AES' "$WORK/server.log"
check "ping over DTLS" ip netns exec "$NS_C" ping -c 3 -i 0.2 -W 2 198.18.1.2
check "mst-cli shows channel dtls" test "$(channel)" = dtls
if ip netns exec "$NS_C" iperf3 -c 198.18.1.2 -t 2 -J > "$WORK/iperf-dtls.json" 2>&1; then pass "iperf3 over DTLS"; else fail "iperf3 over DTLS"; fi
# A download makes the client acknowledge in bursts: the gateway's ACK filter drops the
# superseded ones (counted), and the transfer is intact (iperf3 checks every byte count).
if ip netns exec "$NS_C" iperf3 -c 198.18.1.2 -t 2 -R -J > "$WORK/iperf-dtls-down.json" 2>&1; then pass "iperf3 download over DTLS"; else fail "iperf3 download over DTLS"; fi
acks=$("$BIN/mst-cli" server show status --run-dir "$RUN" --json | python3 -c 'import json,sys; print(json.load(sys.stdin).get("acksCoalesced", 0))')
check "ACK filter dropped superseded ACKs during the download ($acks)" test "${acks:-0}" -gt 0
# The gateway seals records to the stock client (GnuTLS) itself once the client has sent
# one: the download above went through that path, byte-exact.
direct=$("$BIN/mst-cli" server show status --run-dir "$RUN" --json | python3 -c 'import json,sys; print(json.load(sys.stdin).get("dtlsDirectSessions", 0))')
check "DTLS records to the client sealed directly (sessions: $direct)" test "${direct:-0}" -eq 1
check "no fallback to libssl records logged" sh -c "! grep -q dtls.direct_records_unavailable '$WORK/server.log'"
first_peer=$(grep '"msg":"dtls.established"' "$WORK/server.log" | tail -1 | sed 's/.*"udp.peer":"\([^"]*\)".*/\1/')

echo "== hostile datagrams are dropped, the session is not disturbed"
ip netns exec "$NS_C" python3 - <<'PY'
import os, socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(200):
    s.sendto(os.urandom(1 + i * 7 % 1400), ("198.18.0.1", 443))
# ClientHellos (record type 22, DTLS 1.0 record version, handshake type 1) carrying
# random 32-byte session ids, truncated and whole.
for i in range(50):
    hello = bytes([0x16, 0xfe, 0xff]) + bytes(10) + bytes([1]) + bytes(11) + bytes([0xfe, 0xfd]) + os.urandom(32) + bytes([32]) + os.urandom(32) + bytes(60)
    s.sendto(hello[: 40 + i * 3], ("198.18.0.1", 443))
PY
sleep 0.5
check "gateway still running after random datagrams" kill -0 "$SERVER_PID"
check "stray datagrams counted" sh -c "'$BIN/mst-cli' server show status --run-dir '$RUN' | grep -Eq 'dropped packets:.* [1-9][0-9]* stray datagrams'"
check "ping over DTLS still works" ip netns exec "$NS_C" ping -c 2 -i 0.2 -W 2 198.18.1.2
check "still on DTLS" test "$(channel)" = dtls

echo "== UDP blocked: traffic moves to TLS"
ip netns exec "$NS_G" nft -f - <<'NFT'
table inet mstblock {
  chain input { type filter hook input priority -10; policy accept; udp dport 443 drop; }
}
NFT
ok=0
for _ in $(seq 60); do
    if ip netns exec "$NS_C" ping -c 1 -W 1 198.18.1.2 >/dev/null 2>&1 && [ "$(channel)" = tls ]; then ok=1; break; fi
    sleep 1
done
check "ping works again over TLS while UDP is blocked" test "$ok" = 1
check "mst-cli shows channel tls" test "$(channel)" = tls

echo "== UDP unblocked: back to DTLS"
ip netns exec "$NS_G" nft delete table inet mstblock
ok=0
for _ in $(seq 120); do
    if [ "$(channel)" = dtls ] && ip netns exec "$NS_C" ping -c 1 -W 1 198.18.1.2 >/dev/null 2>&1; then ok=1; break; fi
    sleep 1
done
check "session returned to DTLS" test "$ok" = 1
last_peer=$(grep '"msg":"dtls.established"' "$WORK/server.log" | tail -1 | sed 's/.*"udp.peer":"\([^"]*\)".*/\1/')
echo "  (UDP peer before: $first_peer, after: $last_peer)"
check "the same session continued from a new UDP address" test "$first_peer" != "$last_peer"
check "one session throughout" test "$(grep -c '"msg":"session.created"' "$WORK/server.log")" = 1
stop_oc

echo "== disableUdpConnections: true keeps everything on TLS"
kill -TERM "$SERVER_PID"
for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
settings true
ip netns exec "$NS_G" "$BIN/mstunnel-server" --state-dir "$STATE" --run-dir "$RUN" "${SERVER_ARGS[@]}" >> "$WORK/server.log" 2>&1 &
SERVER_PID=$!; PIDS+=($SERVER_PID)
for _ in $(seq 100); do ip netns exec "$NS_G" ss -ltn 'sport = :443' | grep -q LISTEN && break; sleep 0.1; done
ip -n "$NS_C" link del tun0 2>/dev/null || true
oc tlsonly --token-mode=oidc --token-secret=@"$WORK/token.jwt"
if wait_tunnel tlsonly; then pass "tunnel up"; else fail "tunnel up"; fi
check "client did not get DTLS" sh -c "! grep -q 'Established DTLS' '$WORK/oc-tlsonly.log'"
check "ping over TLS" ip netns exec "$NS_C" ping -c 3 -i 0.2 -W 2 198.18.1.2
check "mst-cli shows channel tls" test "$(channel)" = tls
stop_oc

summary
