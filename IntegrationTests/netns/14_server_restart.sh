#!/usr/bin/env bash
# Sessions across a restart of mstunnel-server (docs/architecture.md, "Sessions across a
# restart"): the stock client, connected, sees its gateway stopped (SIGTERM, as a container
# restart does) and then killed (SIGKILL, a crash); each time it reconnects with its cookie
# to the new process, keeps its address, and logs in again never (mstunnel-auth validates
# its token once). mstunnel-auth losing its file, or a logoff while it is down, is put right
# when it returns. A session that logged off stays gone across a restart.
source "$(dirname "$0")/../lib.sh"

setup_namespaces
make_pki
make_issuer
write_settings
make_script_wrapper
start_corp
start_stack

start_server() {
    ip netns exec "$NS_G" "$BIN/mstunnel-server" --state-dir "$STATE" --run-dir "$RUN" "${SERVER_ARGS[@]}" >> "$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=($SERVER_PID)
    for _ in $(seq 100); do
        ip netns exec "$NS_G" ss -ltn 'sport = :443' | grep -q LISTEN && return 0
        sleep 0.1
    done
    echo "server did not start again"; tail -20 "$WORK/server.log"; return 1
}
accepted() { grep -c '"msg":"auth.accepted"' "$WORK/auth.log" || true; }
tun_address() { ip -n "$NS_C" -4 -o addr show dev tun0 2>/dev/null | awk '{print $4}' | cut -d/ -f1; }

mint --oid 0b1f7a3e-0000-4000-8000-0000000000a1 --upn alice@corp.test > "$WORK/alice.jwt"
oc alice --token-mode=oidc --token-secret=@"$WORK/alice.jwt" --reconnect-timeout 60
if wait_tunnel alice; then pass "alice: tunnel up"; else fail "alice: tunnel up"; fi
ADDRESS=$(tun_address)
SESSION=$(grep '"msg":"session.created"' "$WORK/server.log" | sed 's/.*"session.id":"\([0-9a-f]*\)".*/\1/' | tail -1)
# Three tries: one lost first packet (a neighbour lookup on a busy machine) is not a failure.
check "alice: traffic flows ($ADDRESS, session $SESSION)" ip netns exec "$NS_C" ping -c 3 -i 0.3 -W 2 198.18.1.2
sleep 1.2  # mstunnel-auth writes its session file at most once a second
check "mstunnel-auth keeps the session (cookie digest, not the cookie)" sh -c "grep -q '\"cookieDigest\"' $RUN/mstunnel-auth/sessions.json && [ \$(stat -c %a $RUN/mstunnel-auth/sessions.json) = 600 ]"
LOGINS=$(accepted)
if setpriv --reuid 992 --regid 990 --clear-groups /usr/bin/python3 "$ROOT/IntegrationTests/wire.py" "$RUN/auth.sock" restoreSessions > "$WORK/agent-restore.out" 2>&1; then
    fail "another member of the stack's group (uid 992, the agent's) may not read the sessions"
else
    check "another member of the stack's group (uid 992, the agent's) may not read the sessions" grep -q 'may not use the session store' "$WORK/agent-restore.out"
fi
check "  … and the refusal is logged" grep -q '"msg":"auth.sessions.refused".*"peer.uid":"992"' "$WORK/auth.log"
check "the session file is in a directory only mstunnel-auth may enter" sh -c "stat -c %a $RUN/mstunnel-auth | grep -q '700$'"

for how in TERM KILL; do
    echo "== the gateway is stopped with SIG$how and started again"
    kill -"$how" "$SERVER_PID"
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    check "SIG$how: the old process is gone" sh -c "! kill -0 $SERVER_PID 2>/dev/null"
    start_server
    for _ in $(seq 300); do
        [ "$(grep -c "\"msg\":\"session.reconnected\".*\"session.id\":\"$SESSION\"" "$WORK/server.log")" -ge "$([ $how = TERM ] && echo 1 || echo 2)" ] && break
        sleep 0.1
    done
    check "SIG$how: the new process took the session back" sh -c "grep '\"msg\":\"session.restored\"' $WORK/server.log | grep -q '\"session.id\":\"$SESSION\"'"
    check "SIG$how: alice's client reconnected to it with her cookie" sh -c "grep '\"msg\":\"session.reconnected\"' $WORK/server.log | grep -q '\"session.id\":\"$SESSION\"'"
    for _ in $(seq 100); do [ "$(tun_address)" = "$ADDRESS" ] && ip netns exec "$NS_C" ping -c 1 -W 1 198.18.1.2 >/dev/null 2>&1 && break; sleep 0.2; done
    check "SIG$how: she keeps her address ($(tun_address))" test "$(tun_address)" = "$ADDRESS"
    check "SIG$how: traffic flows again" ip netns exec "$NS_C" ping -c 1 -W 2 198.18.1.2
    check "SIG$how: no new login (auth validated her token once)" test "$(accepted)" = "$LOGINS"
    check "SIG$how: her client is still running" kill -0 "$OC_PID"
done
echo "== the gateway restarts while mstunnel-auth is down: the client is told to wait (503), not that its cookie is gone"
stop_pid "$AUTH_PID"
rm -f "$RUN/auth.sock"
kill -TERM "$SERVER_PID"; for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
start_server
for _ in $(seq 300); do grep -q '503\|sessions are being restored' "$WORK/oc-alice.log" && break; sleep 0.1; done
check "the client's reconnect was answered 503 while the sessions could not be restored" grep -q '503\|sessions are being restored' "$WORK/oc-alice.log"
check "  … and it kept trying" kill -0 "$OC_PID"
reconnects=$(grep -c "\"msg\":\"session.reconnected\".*\"session.id\":\"$SESSION\"" "$WORK/server.log")
start_auth
for _ in $(seq 300); do [ "$(grep -c "\"msg\":\"session.reconnected\".*\"session.id\":\"$SESSION\"" "$WORK/server.log")" -gt "$reconnects" ] && break; sleep 0.1; done
check "once auth was back, the session was taken back and the client reconnected" sh -c "[ \$(grep -c '\"msg\":\"session.reconnected\".*\"session.id\":\"$SESSION\"' $WORK/server.log) -gt $reconnects ]"
for _ in $(seq 100); do [ "$(tun_address)" = "$ADDRESS" ] && break; sleep 0.2; done
check "  … with the same address" test "$(tun_address)" = "$ADDRESS"
check "  … and no new login" test "$(accepted)" = "$LOGINS"

echo "== mstunnel-auth loses its file: the gateway gives its sessions back when auth returns"
check "the client never saw a refused cookie" sh -c "! grep -qi 'cookie is not acceptable\|Unexpected 401' $WORK/oc-alice.log"

stop_pid "$AUTH_PID"
rm -f "$RUN/mstunnel-auth/sessions.json" "$RUN/auth.sock"
start_auth
for _ in $(seq 50); do grep -q '"msg":"sessions.reconciled"' "$WORK/server.log" && break; sleep 0.1; done
check "the gateway saved its session again" grep -q '"msg":"sessions.reconciled".*"saved":"1"' "$WORK/server.log"
sleep 1.2
check "  … and auth has it on disk" grep -q "\"address\":\"$ADDRESS\"" "$RUN/mstunnel-auth/sessions.json"

echo "== a session that logged off stays gone across a restart"
timeout 20 ip netns exec "$NS_C" openconnect --protocol=anyconnect --servercert "$PIN" --non-inter --token-mode=oidc \
    --token-secret=@"$WORK/alice.jwt" --authenticate https://198.18.0.1/ > "$WORK/auth-second.out" 2>/dev/null
COOKIE=$(sed -n "s/^COOKIE='\(.*\)'$/\1/p" "$WORK/auth-second.out")
COOKIE=${COOKIE##*webvpn=}  # openconnect prints its own STRAP key in front
check "a second login gave a cookie" test -n "$COOKIE"
# She logs off while mstunnel-auth is down: the gateway cannot tell it to forget her session
# then, and does so when auth is back.
stop_pid "$AUTH_PID"
rm -f "$RUN/auth.sock"
stop_oc
for _ in $(seq 50); do grep -q "\"msg\":\"session.ended\".*\"reason\":\"logoff\".*\"session.id\":\"$SESSION\"" "$WORK/server.log" && break; sleep 0.1; done
start_auth
for _ in $(seq 50); do grep -q '"msg":"sessions.forgets_sent","count":"1"' "$WORK/server.log" && break; sleep 0.1; done
check "after auth returned, the gateway had it forget the logged-off session (held while auth was away)" grep -q '"msg":"sessions.forgets_sent","count":"1"' "$WORK/server.log"
sleep 1.2
check "alice logged off" grep -q "\"msg\":\"session.ended\".*\"reason\":\"logoff\"" "$WORK/server.log"
kill -TERM "$SERVER_PID"; for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
start_server
for _ in $(seq 50); do grep -c '"msg":"sessions.restored"' "$WORK/server.log" | grep -q 3 && break; sleep 0.1; done
check "the restart took back one session (the unused login), not the logged-off one" sh -c "grep '\"msg\":\"sessions.restored\"' $WORK/server.log | tail -1 | grep -q '\"sessions\":\"1\"'"
{ printf 'CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nCookie: webvpn=%s\r\n\r\n' "$COOKIE"; sleep 1; } | timeout 5 ip netns exec "$NS_C" openssl s_client -quiet -connect 198.18.0.1:443 > "$WORK/restored-cookie.out" 2>/dev/null || true
check "the unused login's cookie still opens a tunnel after the restart" grep -q '200 CONNECTED' "$WORK/restored-cookie.out"
check "gateway still running" kill -0 "$SERVER_PID"
check "no token or cookie in any log" sh -c "! grep -qF \"$COOKIE\" $WORK/server.log $WORK/auth.log && ! grep -qF \"\$(cut -d. -f3 $WORK/alice.jwt)\" $WORK/server.log $WORK/auth.log $RUN/mstunnel-auth/sessions.json"

summary
