#!/usr/bin/env bash
# Abuse from the network, with the real gateway: a slow-loris flood (2,000 connections from
# 8 addresses that never finish a TLS handshake) while the stock client logs in — it gets in
# within 1 s; the per-address limit refuses the excess at accept and the handshake deadline
# closes the rest; a ban score for repeated failed logins (8 × 401 bans the address, not its
# neighbours, until ban-reset-time); counted in `mst-cli server show status`; then a cap on
# login connections from all addresses together.
source "$(dirname "$0")/../lib.sh"

setup_namespaces
make_pki
make_issuer
write_settings
set_advanced handshake-timeout 3 ban-reset-time 6 max-login-connections-per-ip 64
start_stack
echo "stack up (pin $PIN)"
for i in $(seq 10 17) 20 21 $(seq 30 37); do ip -n "$NS_C" addr add "198.18.0.$i/24" dev cli0; done
GOOD=$(mint --oid 0b1f7a3e-0000-4000-8000-0000000000c1 --upn abuse@corp.test)
printf %s "$GOOD" > "$WORK/good.jwt"
mint --oid u1 --exp-in -600 > "$WORK/bad.jwt"

echo "== slow loris: 2,000 silent or half-sent handshakes from 8 addresses"
ip netns exec "$NS_C" python3 "$ROOT/IntegrationTests/abuse_client.py" hold 6 "$WORK/hold.json" \
    198.18.0.10 198.18.0.11 198.18.0.12 198.18.0.13 198.18.0.14 198.18.0.15 198.18.0.16 198.18.0.17 &
HOLD_PID=$!
PIDS+=($HOLD_PID)
sleep 1.5
start=$(date +%s.%N)
if timeout 10 ip netns exec "$NS_C" openconnect --protocol=anyconnect --servercert "$PIN" --non-inter \
    --token-mode=oidc --token-secret=@"$WORK/good.jwt" --authenticate https://198.18.0.1/ > "$WORK/oc-flood.log" 2>&1; then
    took=$(python3 -c "import time; print(round(time.time() - $start, 3))")
    pass "openconnect logged in during the flood"
    check "…within 1 s ($took s)" python3 -c "import sys; sys.exit(0 if $took <= 1.0 else 1)"
else
    fail "openconnect logged in during the flood"
fi
established=$(ip netns exec "$NS_G" ss -Htn state established 'sport = :443' | wc -l)
echo "  connections held by the gateway during the flood: $established"
check "at most 64 per address were kept (≤ 8 × 64 + 1)" test "$established" -le 513
wait "$HOLD_PID" || true
cat "$WORK/hold.json"; echo
check "the flood opened 2,000 connections" python3 -c "import json,sys; d=json.load(open('$WORK/hold.json')); sys.exit(0 if d['opened'] + d['refusedAtConnect'] == 2000 else 1)"
check "the excess was closed at once (refused at accept)" python3 -c "import json,sys; d=json.load(open('$WORK/hold.json')); sys.exit(0 if d['closedWithin1s'] >= 2000 - 8 * 64 else 1)"
check "the rest were closed by the 3 s handshake deadline" python3 -c "import json,sys; d=json.load(open('$WORK/hold.json')); sys.exit(0 if d['stillOpen'] == 0 and d['lastClosedAt'] <= 5.5 else 1)"
check "the refusals were logged once per address, not per connection" sh -c \
    "test \$(grep -c '\"msg\":\"connection.refused\"' '$WORK/server.log') -le 16"

echo "== ban score: 8 failed logins ban the address"
for i in $(seq 8); do
    r=$(ip netns exec "$NS_C" python3 "$ROOT/IntegrationTests/abuse_client.py" login 198.18.0.20 "$WORK/bad.jwt")
    [ "$r" = 401 ] || fail "bad login $i answered $r, not 401"
done
pass "8 bad logins from 198.18.0.20 got 401"
check "the gateway logged the ban" grep -q '"msg":"source.banned".*198.18.0.20' "$WORK/server.log"
check "a good token from the banned address is refused at accept" sh -c \
    "test \"\$(ip netns exec $NS_C python3 '$ROOT/IntegrationTests/abuse_client.py' login 198.18.0.20 '$WORK/good.jwt')\" = closed"
check "its neighbour 198.18.0.21 logs in" sh -c \
    "test \"\$(ip netns exec $NS_C python3 '$ROOT/IntegrationTests/abuse_client.py' login 198.18.0.21 '$WORK/good.jwt')\" = 200"
"$BIN/mst-cli" server show status --run-dir "$RUN" > "$WORK/status.txt"
check "mst-cli server show status counts refusals and bans" grep -q 'refused at accept: *[1-9][0-9]* connections.*[1-9][0-9]* addresses banned' "$WORK/status.txt"
sleep 6.5
check "after ban-reset-time the address logs in again" sh -c \
    "test \"\$(ip netns exec $NS_C python3 '$ROOT/IntegrationTests/abuse_client.py' login 198.18.0.20 '$WORK/good.jwt')\" = 200"

echo "== the global cap: logins from all addresses together (max-login-connections)"
python3 - "$STATE/admin-settings.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
s["advancedSettings"] = [kv for kv in s["advancedSettings"] if kv["name"] != "max-login-connections"]
s["advancedSettings"].append({"name": "max-login-connections", "value": "100"})
json.dump(s, open(sys.argv[1], "w"))
PY
kill -HUP "$SERVER_PID"
for _ in $(seq 50); do [ "$(grep -c '"msg":"gateway.reloaded"' "$WORK/server.log")" -ge 1 ] && break; sleep 0.1; done
# Fresh addresses: refusals are logged once a minute per address, and 10-17 were just logged.
ip netns exec "$NS_C" python3 "$ROOT/IntegrationTests/abuse_client.py" hold 4 "$WORK/hold2.json" \
    198.18.0.30 198.18.0.31 198.18.0.32 198.18.0.33 198.18.0.34 198.18.0.35 198.18.0.36 198.18.0.37 &
HOLD_PID=$!
PIDS+=($HOLD_PID)
sleep 1.5
established=$(ip netns exec "$NS_G" ss -Htn state established 'sport = :443' | wc -l)
echo "  connections held by the gateway: $established"
check "at most 100 login connections held, from 8 addresses together" test "$established" -le 100
check "the refusal names the global limit" grep -q '"msg":"connection.refused".*max-login-connections 100' "$WORK/server.log"
wait "$HOLD_PID" || true
check "gateway still running" kill -0 "$SERVER_PID"
summary
