#!/usr/bin/env bash
# A Site server that restarts while the control plane cannot tell it what its siblings hold
# (docs/site.md, "Quarantine", under "Foreign leases"): the sessions it restores whose clients do not come back may
# live on at a sibling with their addresses, so when they end here their addresses go to no
# new login until their tickets could no longer open anywhere. Without the quarantine, the
# same user logging in again would get the very address (the address hint is a hash of the
# user id) — a duplicate in the Site.
#
#   [cli] 198.18.0.2 ── 198.18.0.1 [gw] ── [corp] 198.18.1.2; auth seals with a Site key file
source "$(dirname "$0")/../lib.sh"

setup_namespaces
make_pki
make_issuer
write_settings
# A short reconnect window: a restored session whose client does not return ends in 4 s.
set_advanced reconnect-timeout 4
# A Site member: the control plane gives each server a slice of the pool (here the first of two).
set_advanced pool-slice 0/2
make_script_wrapper
python3 -c 'import base64,json,os; print(json.dumps({"sealing":"site-1","keys":[{"id":"site-1","key":base64.b64encode(os.urandom(32)).decode()}],"lifetimeSeconds":3600}))' > "$WORK/site-keys.json"
chmod 600 "$WORK/site-keys.json"
start_auth_with() {  # start_auth_with [ARGS…]
    rm -f "$RUN/auth.sock"
    ip netns exec "$NS_G" "$BIN/mstunnel-auth" --state-dir "$STATE" --socket "$RUN/auth.sock" --allow-gid 990 --allow-uid 994 \
        "$@" >> "$WORK/auth.log" 2>&1 &
    AUTH_PID=$!
    PIDS+=($AUTH_PID)
    for _ in $(seq 100); do [ -S "$RUN/auth.sock" ] && break; sleep 0.1; done
}
start_auth_with --ticket-keys "$WORK/site-keys.json"
start_server() {
    ip netns exec "$NS_G" "$BIN/mstunnel-server" --state-dir "$STATE" --run-dir "$RUN" "${SERVER_ARGS[@]}" >> "$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=($SERVER_PID)
    for _ in $(seq 100); do ip netns exec "$NS_G" ss -ltn 'sport = :443' | grep -q LISTEN && return 0; sleep 0.1; done
    echo "server did not start"; tail -20 "$WORK/server.log"; return 1
}
start_server
login() {  # login NAME JWT → the cookie on stdout
    timeout 20 ip netns exec "$NS_C" openconnect --protocol=anyconnect --servercert "$PIN" --non-inter --token-mode=oidc \
        --token-secret=@"$2" --authenticate https://198.18.0.1/ > "$WORK/$1-auth.out" 2>/dev/null || true
    local c; c=$(sed -n "s/^COOKIE='\(.*\)'$/\1/p" "$WORK/$1-auth.out"); echo "${c##*webvpn=}"
}
connect_with() {  # connect_with COOKIE OUT: one CONNECT, the head of the answer in OUT
    { printf 'CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: 198.18.0.1\r\nCookie: webvpn=%s\r\n\r\n' "$1"; sleep 1; } |
        timeout 5 ip netns exec "$NS_C" openssl s_client -quiet -connect 198.18.0.1:443 > "$2" 2>/dev/null || true
}
address_in() { sed -n 's/^X-CSTP-Address: \([0-9.]*\)\r*$/\1/p' "$1" | head -1; }
status() { "$BIN/mst-cli" server show status --run-dir "$RUN" --json; }

echo "== alice has a session; the server dies; her client went on to a sibling (here: it is gone)"
mint --oid 0b1f7a3e-0000-4000-8000-0000000000c1 --upn alice@corp.test > "$WORK/alice.jwt"
ALICE=$(login alice "$WORK/alice.jwt")
check "alice logged in with a Site ticket" sh -c "echo '$ALICE' | grep -q '^mst\.1\.site-1\.'"
connect_with "$ALICE" "$WORK/alice-1.out"
ADDRESS=$(address_in "$WORK/alice-1.out")
check "her tunnel got $ADDRESS" test -n "$ADDRESS"
sleep 1.2  # mstunnel-auth writes its session file at most once a second
kill -KILL "$SERVER_PID"
for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done

echo "== the server returns: it restores her session; she does not come back within the window"
start_server
for _ in $(seq 50); do grep -q '"msg":"session.restored".*alice@corp.test' "$WORK/server.log" && break; sleep 0.1; done
check "her session was restored" grep -q '"msg":"session.restored".*alice@corp.test' "$WORK/server.log"
for _ in $(seq 100); do grep -q '"msg":"pool.quarantined"' "$WORK/server.log" && break; sleep 0.1; done
check "it ended after the reconnect window, and $ADDRESS was quarantined" \
    sh -c "grep '\"msg\":\"pool.quarantined\"' $WORK/server.log | grep -q '\"client.address\":\"$ADDRESS\"'"
check "  … until her ticket could no longer open (at most the key file's 3600 s from her login)" \
    sh -c "u=\$(grep '\"msg\":\"pool.quarantined\"' $WORK/server.log | sed 's/.*\"until\":\"\([0-9]*\)\".*/\1/'); n=\$(date +%s); [ \$u -gt \$n ] && [ \$u -le \$((n + 3600)) ]"
check "mst-cli server show status counts it" test "$(status | python3 -c 'import json,sys; print(json.load(sys.stdin).get("poolQuarantined"))')" = 1

echo "== a new login of hers gets another address; her ticket still gets hers back"
ALICE2=$(login alice2 "$WORK/alice.jwt")
connect_with "$ALICE2" "$WORK/alice-2.out"
SECOND=$(address_in "$WORK/alice-2.out")
check "the new login got an address ($SECOND), not the quarantined $ADDRESS" sh -c "[ -n '$SECOND' ] && [ '$SECOND' != '$ADDRESS' ]"
connect_with "$ALICE" "$WORK/alice-3.out"
check "her old ticket (her client coming back, or handed over from a sibling) gets $ADDRESS" test "$(address_in "$WORK/alice-3.out")" = "$ADDRESS"
check "  … which ends the quarantine" sh -c "[ \"\$('$BIN/mst-cli' server show status --run-dir $RUN --json | python3 -c 'import json,sys; print(json.load(sys.stdin).get(\"poolQuarantined\"))')\" = None ]"

echo "== with the server's own key only, nothing is quarantined"
# Its tickets open nowhere else: a restored session that ends frees its address at once.
stop_pid "$AUTH_PID"
start_auth_with
for _ in $(seq 100); do [ "$(grep -c '"msg":"auth.connected"' "$WORK/server.log")" -ge 3 ] && break; sleep 0.1; done
mint --oid 0b1f7a3e-0000-4000-8000-0000000000c2 --upn bob@corp.test > "$WORK/bob.jwt"
BOB=$(login bob "$WORK/bob.jwt")
check "bob logged in with a ticket of the server's own key" sh -c "[ -n '$BOB' ] && ! echo '$BOB' | grep -q 'site-1'"
connect_with "$BOB" "$WORK/bob-1.out"
check "his tunnel got an address" test -n "$(address_in "$WORK/bob-1.out")"
sleep 1.2
kill -KILL "$SERVER_PID"
for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
start_server
for _ in $(seq 100); do grep -q '"msg":"session.ended".*bob@corp.test' "$WORK/server.log" && break; sleep 0.1; done
check "his restored session ended after the window" sh -c "grep -q '\"msg\":\"session.restored\".*bob@corp.test' $WORK/server.log && grep -q '\"msg\":\"session.ended\".*bob@corp.test' $WORK/server.log"
check "  … and nothing was quarantined for it" sh -c "! grep '\"msg\":\"pool.quarantined\"' $WORK/server.log | grep -q bob@corp.test"
check "the log says why each quarantine was made" grep -q '"msg":"pool.quarantined".*"why":"restored after a restart' "$WORK/server.log"
check "no ticket, cookie or token in any log" sh -c "! grep -qF '$ALICE' $WORK/server.log $WORK/auth.log && ! grep -qF '$ALICE2' $WORK/server.log $WORK/auth.log && ! grep -qF \"\$(cut -d. -f3 $WORK/alice.jwt)\" $WORK/server.log $WORK/auth.log"
check "gateway still running" kill -0 "$SERVER_PID"
summary
