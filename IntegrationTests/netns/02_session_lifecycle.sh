#!/usr/bin/env bash
# Session lifecycle and robustness: session-timeout, the liveness page, configuration
# errors, hostile input on the TLS port, an auth plugin that is down.
source "$(dirname "$0")/../lib.sh"

setup_namespaces
make_pki
make_issuer
make_script_wrapper
start_corp

echo "== configuration is validated with clear errors"
python3 - "$STATE/admin-settings.json" <<'PY'
import json, sys
routes = ["10.%d.%d.0/24" % (i // 256, i % 256) for i in range(501)]
json.dump({"network": "100.64.0.0/24", "routeIncludes": routes}, open(sys.argv[1], "w"))
PY
if "$BIN/mstunnel-server" --state-dir "$STATE" --check-config > "$WORK/check.out" 2>&1; then fail "501 split rules refused"; else pass "501 split rules refused"; fi
check "  … with the count in the message" grep -q '501 rules, at most 500 allowed' "$WORK/check.out"
echo '{"network": "100.64.0.0/24", "routeIncludes": ["100.64.0.0/16", "10.0.0.1/8"], "dnsServers": ["x"]}' > "$STATE/admin-settings.json"
if "$BIN/mstunnel-server" --state-dir "$STATE" --check-config > "$WORK/check2.out" 2>&1; then fail "bad settings refused"; else pass "bad settings refused"; fi
check "  … pool overlap named" grep -q 'overlaps the client pool' "$WORK/check2.out"
check "  … host bits named" grep -q "'10.0.0.1/8' has host bits set" "$WORK/check2.out"
check "  … bad DNS named" grep -q "dnsServers\[0\]" "$WORK/check2.out"

cat > "$STATE/admin-settings.json" <<JSON
{ "network": "100.64.0.0/24", "routeIncludes": ["198.18.1.0/24"],
  "advancedSettings": [ { "name": "session-timeout", "value": "6" }, { "name": "reconnect-timeout", "value": "3" } ] }
JSON
start_stack
GOOD=$(mint --oid 0b1f7a3e-0000-4000-8000-000000000002 --upn bob@corp.test)
printf %s "$GOOD" > "$WORK/token.jwt"
# At session-timeout a session goes on only while its token is valid (13_recheck.sh): this
# one expires before the 6 s deadline, so the session ends there.
mint --oid 0b1f7a3e-0000-4000-8000-000000000002 --upn bob@corp.test --exp-in 4 > "$WORK/short.jwt"

echo "== liveness page for non-VPN user agents"
check "GET / answers 200 with the liveness page" sh -c "ip netns exec $NS_C curl -sk --max-time 5 https://198.18.0.1/ | grep -q 'mstunnel gateway is running'"
check "unknown path is 404" sh -c "[ \"\$(ip netns exec $NS_C curl -sk -o /dev/null -w '%{http_code}' --max-time 5 https://198.18.0.1/nope)\" = 404 ]"

echo "== hostile input on the TLS port"
timeout 3 ip netns exec "$NS_C" bash -c 'head -c 5000 /dev/urandom > /dev/tcp/198.18.0.1/443' >/dev/null 2>&1 || true
printf 'GARBAGE\r\n\r\n' | timeout 5 ip netns exec "$NS_C" openssl s_client -quiet -connect 198.18.0.1:443 > "$WORK/garbage.out" 2>/dev/null || true
check "malformed HTTP gets 400" grep -q '400 Bad Request' "$WORK/garbage.out"
{ printf 'CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nCookie: webvpn=forged\r\n\r\n'; sleep 1; } | timeout 5 ip netns exec "$NS_C" openssl s_client -quiet -connect 198.18.0.1:443 > "$WORK/forged.out" 2>/dev/null || true
check "forged cookie gets 401" grep -q '401 Cookie is not acceptable' "$WORK/forged.out"
{ printf 'POST /auth HTTP/1.1\r\nX-Aggregate-Auth: 1\r\nContent-Length: 40\r\n\r\n<config-auth type="auth-reply"><auth><pa'; sleep 1; } | timeout 5 ip netns exec "$NS_C" openssl s_client -quiet -connect 198.18.0.1:443 > "$WORK/truncxml.out" 2>/dev/null || true
check "truncated XML gets 400" grep -q '400 Bad Request' "$WORK/truncxml.out"
{ printf 'POST / HTTP/1.1\r\nX-Aggregate-Auth: 1\r\nContent-Length: 48\r\n\r\n<config-auth type="init"><a\xff="1"/></config-auth>'; sleep 1; } | timeout 5 ip netns exec "$NS_C" openssl s_client -quiet -connect 198.18.0.1:443 > "$WORK/badutf8.out" 2>/dev/null || true
check "XML with invalid UTF-8 gets 400" grep -q '400 Bad Request' "$WORK/badutf8.out"
check "gateway still running" kill -0 "$SERVER_PID"

echo "== session-timeout ends the session and the client is told"
oc timeout --token-mode=oidc --token-secret=@"$WORK/short.jwt"
if wait_tunnel timeout; then pass "tunnel up"; else fail "tunnel up"; fi
for _ in $(seq 150); do grep -q '"reason":"session-timeout' "$WORK/server.log" && break; sleep 0.1; done
check "gateway ended the session at session-timeout" grep -q '"msg":"session.ended".*"reason":"session-timeout (the credential it logged in with has expired' "$WORK/server.log"
for _ in $(seq 150); do kill -0 "$OC_PID" 2>/dev/null || break; sleep 0.1; done
check "client gave up (its cookie no longer works)" sh -c "! kill -0 $OC_PID 2>/dev/null"
stop_oc

echo "== auth plugin down: logins get 503, the gateway keeps running"
kill "$AUTH_PID"
for _ in $(seq 50); do kill -0 "$AUTH_PID" 2>/dev/null || break; sleep 0.1; done
if timeout 20 ip netns exec "$NS_C" openconnect --protocol=anyconnect --servercert "$PIN" --non-inter \
    --token-mode=oidc --token-secret=@"$WORK/token.jwt" --authenticate https://198.18.0.1/ > "$WORK/oc-noauth.log" 2>&1; then
    fail "login refused while auth is down"
else pass "login refused while auth is down"; fi
check "gateway says why" grep -q '"msg":"login.unavailable"' "$WORK/server.log"
check "client saw 503" grep -qi '503\|unavailable' "$WORK/oc-noauth.log"
check "gateway still running" kill -0 "$SERVER_PID"
"$BIN/mst-cli" server show status --run-dir "$RUN" > "$WORK/status.out"
check "mst-cli shows auth NOT CONNECTED" grep -q 'NOT CONNECTED' "$WORK/status.out"

echo "== SIGTERM: clean stop, PAT table removed"
kill -TERM "$SERVER_PID"
for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
check "server exited" sh -c "! kill -0 $SERVER_PID 2>/dev/null"
check "nftables table removed" sh -c "! ip netns exec $NS_G nft list table inet mstunnel >/dev/null 2>&1"
check "stop logged" grep -q '"msg":"gateway.stopped"' "$WORK/server.log"

summary
