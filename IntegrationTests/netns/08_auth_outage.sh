#!/usr/bin/env bash
# mstunnel-auth killed under a login load, then started again: sessions already up keep
# moving data (a ping through the stock client's tunnel, and mst-loadgen's held sessions,
# lose nothing); every login meanwhile gets 503 with the reason in X-Reason, and never hangs;
# logins succeed again within 2 s of the plugin being back.
source "$(dirname "$0")/../lib.sh"

setup_namespaces
make_pki
make_issuer
write_settings
make_script_wrapper
start_corp
start_stack
echo "stack up (pin $PIN)"
GOOD=$(mint --oid 0b1f7a3e-0000-4000-8000-0000000000a1 --upn outage@corp.test)
printf %s "$GOOD" > "$WORK/token.jwt"

oc held --token-mode=oidc --token-secret=@"$WORK/token.jwt"
wait_tunnel held || { fail "tunnel up before the outage"; summary; exit 1; }
pass "tunnel up before the outage"
# 100 sessions of 100 users held by mst-loadgen through the outage: its exit status says
# none dropped. (The login load below is a third user's.)
for i in $(seq 100); do mint --oid "0b1f7a3e-0000-4000-8000-$(printf %012d "$i")" --upn "held$i@corp.test"; echo; done > "$WORK/held.tokens"
mint --oid 0b1f7a3e-0000-4000-8000-0000000000b2 --upn load@corp.test > "$WORK/load.jwt"
ip netns exec "$NS_C" "$BIN/mst-loadgen" --url https://198.18.0.1/ --token-file "$WORK/held.tokens" --sessions 100 \
    --concurrency 20 --hold 14 --json > "$WORK/loadgen.json" 2> "$WORK/loadgen.err" &
LOADGEN_PID=$!
PIDS+=($LOADGEN_PID)
for _ in $(seq 100); do
    [ "$(ip netns exec "$NS_G" ss -Htn state established 'sport = :443' | wc -l)" -ge 101 ] && break; sleep 0.1
done

# The login load: 6 workers logging in back to back for 12 s; auth dies at +3 s, returns at +7 s.
ip netns exec "$NS_C" python3 "$ROOT/IntegrationTests/auth_outage_driver.py" 198.18.0.1 "$WORK/load.jwt" 12 6 "$WORK/logins.jsonl" &
DRIVER_PID=$!
PIDS+=($DRIVER_PID)
ip netns exec "$NS_C" ping -c 100 -i 0.1 -W 1 198.18.1.2 > "$WORK/ping.txt" 2>&1 &
PING_PID=$!
sleep 3
KILLED_AT=$(date +%s.%N)
kill -9 "$AUTH_PID"
rm -f "$RUN/auth.sock"
sleep 0.5
# The stock client during the outage: refused with the 503, at once.
if timeout 10 ip netns exec "$NS_C" openconnect --protocol=anyconnect --servercert "$PIN" --non-inter \
    --token-mode=oidc --token-secret=@"$WORK/load.jwt" --authenticate https://198.18.0.1/ > "$WORK/oc-down.log" 2>&1; then
    fail "openconnect during the outage: refused"
else
    pass "openconnect during the outage: refused"
fi
check "openconnect during the outage: saw 503" grep -qi '503\|Service Unavailable' "$WORK/oc-down.log"
sleep 3.5
ip netns exec "$NS_G" "$BIN/mstunnel-auth" --state-dir "$STATE" --socket "$RUN/auth.sock" --allow-gid 990 --allow-uid 994 >> "$WORK/auth.log" 2>&1 &
AUTH_PID=$!
PIDS+=($AUTH_PID)
for _ in $(seq 200); do [ -S "$RUN/auth.sock" ] && break; sleep 0.01; done
BACK_AT=$(date +%s.%N)
wait "$DRIVER_PID" || true
wait "$PING_PID" || true
rc=0; wait "$LOADGEN_PID" || rc=$?

check "ping through the tunnel lost nothing while auth was down" grep -q ' 0% packet loss' "$WORK/ping.txt"
check "mst-loadgen: all 100 held sessions stayed up (exit 0)" test "$rc" = 0
check "the stock client's session is still up" kill -0 "$OC_PID"
python3 - "$WORK/logins.jsonl" "$KILLED_AT" "$BACK_AT" > "$WORK/outage.txt" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
killed, back = float(sys.argv[2]), float(sys.argv[3])
before = [r for r in rows if r["t"] + r["ms"] / 1000 < killed]
down = [r for r in rows if r["t"] > killed + 0.2 and r["t"] + r["ms"] / 1000 < back]
after = [r for r in rows if r["t"] >= back]
first_ok = min((r["t"] + r["ms"] / 1000 for r in after if r["status"] == 200), default=None)
late = [r for r in after if r["t"] > back + 2 and r["status"] != 200]
print(f"attempts={len(rows)} before={len(before)} before_ok={sum(r['status'] == 200 for r in before)}")
print(f"down={len(down)} down_503={sum(r['status'] == 503 for r in down)} down_max_ms={max((r['ms'] for r in down), default=0)}")
print(f"down_reasons={sorted(set(r['reason'] for r in down))}")
print(f"after={len(after)} recovered_s={None if first_ok is None else round(first_ok - back, 3)} failures_after_2s={len(late)}")
PY
cat "$WORK/outage.txt"
val() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" "$WORK/outage.txt" | head -1; }
check "logins worked before the outage" test "$(val before_ok)" -ge 5
check "logins were tried while auth was down" test "$(val down)" -ge 5
check "every login while auth was down got 503" test "$(val down_503)" = "$(val down)"
check "503 says why (X-Reason)" grep -q "authentication service" "$WORK/outage.txt"
check "no login hung while auth was down (all answered within 2 s)" python3 -c "import sys; sys.exit(0 if float('$(val down_max_ms)') < 2000 else 1)"
check "logins succeed again within 2 s of auth being back ($(val recovered_s) s)" python3 -c "import sys; v='$(val recovered_s)'; sys.exit(0 if v not in ('None','') and float(v) <= 2.0 else 1)"
check "no login failed later than 2 s after auth was back" test "$(val failures_after_2s)" = 0
check "the gateway logged the outage" grep -q '"msg":"auth.unreachable"\|"msg":"login.unavailable"' "$WORK/server.log"
check "openconnect after the outage: logs in" timeout 10 ip netns exec "$NS_C" openconnect --protocol=anyconnect \
    --servercert "$PIN" --non-inter --token-mode=oidc --token-secret=@"$WORK/load.jwt" --authenticate https://198.18.0.1/
check "gateway still running" kill -0 "$SERVER_PID"
stop_oc
summary
