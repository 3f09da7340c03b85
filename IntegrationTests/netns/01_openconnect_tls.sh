#!/usr/bin/env bash
# The stock openconnect client through mstunnel-server + mstunnel-auth over TLS:
# three token paths, pool address, DNS/split settings, ping, iperf3 both ways, PAT,
# logoff, and rejected tokens with their reasons in the gateway's log; the gateway runs
# confined (no capability, system-call allow-list) and its privileged helper cleans up
# after it even when it is killed.
source "$(dirname "$0")/../lib.sh"

setup_namespaces
make_pki
make_issuer
write_settings
make_script_wrapper
start_corp
start_stack
echo "stack up (pin $PIN)"

echo "== least privilege: the running gateway and its helper, from /proc"
status_field() { awk -v k="$2:" '$1 == k { $1 = ""; sub(/^ /, ""); print; exit }' "/proc/$1/status"; }
for _ in $(seq 50); do grep -q '"msg":"gateway.confined"' "$WORK/server.log" && break; sleep 0.1; done
check "gateway uid is 994 (real, effective, saved, fs)" test "$(status_field "$SERVER_PID" Uid)" = "994 994 994 994"
check "gateway gid is 990" test "$(status_field "$SERVER_PID" Gid)" = "990 990 990 990"
check "gateway has no effective capability" test "$(status_field "$SERVER_PID" CapEff)" = 0000000000000000
check "gateway has no permitted capability" test "$(status_field "$SERVER_PID" CapPrm)" = 0000000000000000
check "gateway runs under a seccomp filter" test "$(status_field "$SERVER_PID" Seccomp)" = 2
check "gateway has no_new_privs" test "$(status_field "$SERVER_PID" NoNewPrivs)" = 1
HELPER_PID=$(cat "/proc/$SERVER_PID/task/$SERVER_PID/children" | awk '{print $1}')
check "the host-network helper is the gateway's child" test -n "$HELPER_PID"
check "the helper keeps CAP_NET_ADMIN only" test "$(status_field "$HELPER_PID" CapEff)" = 0000000000001000
check "the helper's bounding set is CAP_NET_ADMIN only" test "$(status_field "$HELPER_PID" CapBnd)" = 0000000000001000
check "the gateway logged its confinement" grep -q '"msg":"gateway.confined".*CapEff 0' "$WORK/server.log"
"$BIN/mst-cli" server show status --run-dir "$RUN" --json > "$WORK/status-confined.json"
check "mst-cli server show status --json: confinement as the kernel reports it" python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))["confinement"]
sys.exit(0 if (c["uid"], c["gid"], c["effectiveCapabilities"], c["noNewPrivileges"], c["seccompMode"]) == (994, 990, 0, True, 2) else 1)' "$WORK/status-confined.json"
check "mst-cli server show status: says it is confined" sh -c "'$BIN/mst-cli' server show status --run-dir '$RUN' | grep -q 'confinement: *uid 994:990, no capabilities, system-call filter on'"
check "the helper set up the TUN and NAT" grep -q '"msg":"host.changed".*nat 100.64.0.0/24' "$WORK/server.log"
ip netns exec "$NS_G" "$BIN/mstunnel-server" --check-sandbox --run-as "$GW_ACCOUNT" > "$WORK/sandbox.txt" 2>&1 || true
check "--check-sandbox: all as designed" sh -c "! grep -q FAIL '$WORK/sandbox.txt' && test \$(grep -c '^ok' '$WORK/sandbox.txt') -ge 10"
check "--check-sandbox: starting a program is refused by the filter" grep -q '^ok   execve.*refused: Operation not permitted' "$WORK/sandbox.txt"
check "--check-sandbox: a netlink socket is refused" grep -q '^ok   socket(AF_NETLINK).*refused' "$WORK/sandbox.txt"
check "--check-sandbox: writing a file is refused" grep -q '^ok   open /tmp for writing.*refused' "$WORK/sandbox.txt"

GOOD=$(mint --oid 0b1f7a3e-0000-4000-8000-000000000001 --upn alice@corp.test --deviceid dev-alice)
printf %s "$GOOD" > "$WORK/token.jwt"

tunnel_checks() {
    local name=$1 env="$WORK/env-$1.connect"
    check "$name: address from the pool" grep -q '^INTERNAL_IP4_ADDRESS=100\.64\.0\.' "$env"
    check "$name: netmask" grep -q '^INTERNAL_IP4_NETMASK=255\.255\.255\.0$' "$env"
    check "$name: DNS server" grep -q '^INTERNAL_IP4_DNS=198\.18\.1\.2$' "$env"
    check "$name: DNS suffix" grep -q '^CISCO_DEF_DOMAIN=corp\.test$' "$env"
    check "$name: split DNS" grep -q '^CISCO_SPLIT_DNS=corp\.test$' "$env"
    check "$name: split include" grep -q '^CISCO_SPLIT_INC_0_ADDR=198\.18\.1\.0$' "$env"
    check "$name: split include mask" grep -q '^CISCO_SPLIT_INC_0_MASKLEN=24$' "$env"
    check "$name: split exclude" grep -q '^CISCO_SPLIT_EXC_0_ADDR=198\.18\.1\.128$' "$env"
    check "$name: split exclude mask" grep -q '^CISCO_SPLIT_EXC_0_MASKLEN=25$' "$env"
    check "$name: banner" grep -q '^CISCO_BANNER=Welcome to the integration gateway$' "$env"
    check "$name: route to corp via tun0" sh -c "ip -n $NS_C route get 198.18.1.2 | grep -q 'dev tun0'"
    check "$name: ping corp through the tunnel" ip netns exec "$NS_C" ping -c 3 -i 0.2 -W 2 198.18.1.2
}

traffic_checks() {
    local name=$1
    if ip netns exec "$NS_C" iperf3 -c 198.18.1.2 -t 2 -J > "$WORK/iperf-up-$name.json" 2>&1; then
        pass "$name: iperf3 up ($(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"]/1e6))' "$WORK/iperf-up-$name.json") Mbit/s)"
    else fail "$name: iperf3 up"; fi
    if ip netns exec "$NS_C" iperf3 -c 198.18.1.2 -t 2 -R -J > "$WORK/iperf-down-$name.json" 2>&1; then
        pass "$name: iperf3 down ($(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"]/1e6))' "$WORK/iperf-down-$name.json") Mbit/s)"
    else fail "$name: iperf3 down"; fi
    : > "$WORK/http.log.mark"
    ip netns exec "$NS_C" curl -s --max-time 5 http://198.18.1.2:8080/ > "$WORK/curl-$name.out" || true
    check "$name: HTTP to corp through the tunnel" grep -q corp-page "$WORK/curl-$name.out"
    sleep 0.2
    check "$name: corp sees the gateway address (PAT)" sh -c "tail -1 '$WORK/http.log' | grep -q '^198\.18\.1\.1 '"
    check "$name: corp never sees a client address" sh -c "! grep -q '^100\.64\.' '$WORK/http.log'"
}

echo "== bearer: --token-mode=oidc --token-secret=@token.jwt"
oc bearer --token-mode=oidc --token-secret=@"$WORK/token.jwt"
if wait_tunnel bearer; then
    pass "bearer: tunnel up"
    tunnel_checks bearer
    traffic_checks bearer
    "$BIN/mst-cli" server show sessions --run-dir "$RUN" --json > "$WORK/sessions.json"
    check "mst-cli: session listed with user and pool address" python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
assert len(s) == 1 and s[0]["userName"] == "alice@corp.test" and s[0]["deviceId"] == "dev-alice"
assert s[0]["address"].startswith("100.64.0.") and s[0]["connected"] and s[0]["rxBytes"] > 0 and s[0]["txBytes"] > 0
' "$WORK/sessions.json"
    check "mst-cli: server status" sh -c "'$BIN/mst-cli' server show status --run-dir '$RUN' | grep -q '1 active, 1 connected'"
    check "mst-cli: auth answers" sh -c "'$BIN/mst-cli' auth status --run-dir '$RUN' | grep -q 'mstunnel-auth'"
else fail "bearer: tunnel up"; fi
stop_oc
check "bearer: logoff ends the session" sh -c "grep -q '\"msg\":\"session.ended\".*\"reason\":\"logoff\"' '$WORK/server.log'"

echo "== password: -u someone --passwd-on-stdin"
ip -n "$NS_C" link del tun0 2>/dev/null || true
# A here-string, not a pipe: the background PID must be openconnect itself so that
# SIGINT reaches it (a pipeline would leave it orphaned, holding tun0).
ENVLOG="$WORK/env-password" ip netns exec "$NS_C" env ENVLOG="$WORK/env-password" \
    openconnect --protocol=anyconnect --servercert "$PIN" --non-inter -u someone --passwd-on-stdin \
    --script "$WORK/vpnc-wrapper.sh" --interface tun0 https://198.18.0.1/ <<<"$GOOD" > "$WORK/oc-password.log" 2>&1 &
OC_PID=$!; PIDS+=($OC_PID)
if wait_tunnel password; then
    pass "password: tunnel up"
    tunnel_checks password
else fail "password: tunnel up"; fi
stop_oc
check "password: logoff ends the session" test "$(grep -c '"msg":"session.ended".*"reason":"logoff"' "$WORK/server.log")" -ge 2

echo "== cookie: --cookie 'webvpn=<token>' --no-dtls (the TLS data path)"
oc cookie --no-dtls --cookie "webvpn=$GOOD"
if wait_tunnel cookie; then
    pass "cookie: tunnel up"
    tunnel_checks cookie
    traffic_checks cookie
    first=$(grep '^INTERNAL_IP4_ADDRESS=' "$WORK/env-cookie.connect")
    # SIGUSR2 makes openconnect drop its TLS connection and reconnect with the same
    # cookie; the session must survive with the same address.
    kill -USR2 "$OC_PID"
    for _ in $(seq 100); do [ -f "$WORK/env-cookie.reconnect" ] && break; sleep 0.1; done
    check "reconnect: client reconnected" test -f "$WORK/env-cookie.reconnect"
    check "reconnect: gateway resumed the session" grep -q '"msg":"session.reconnected"' "$WORK/server.log"
    check "reconnect: same address" grep -qx "$first" "$WORK/env-cookie.reconnect"
    check "reconnect: ping after reconnect" ip netns exec "$NS_C" ping -c 2 -i 0.2 -W 2 198.18.1.2
else fail "cookie: tunnel up"; fi
stop_oc

echo "== rejected tokens"
reject() {
    local name=$1 code=$2 token=$3
    printf %s "$token" > "$WORK/bad-$name.jwt"
    local before; before=$(grep -c '"msg":"login.rejected"' "$WORK/server.log" || true)
    if timeout 20 ip netns exec "$NS_C" openconnect --protocol=anyconnect --servercert "$PIN" --non-inter \
        --token-mode=oidc --token-secret=@"$WORK/bad-$name.jwt" --authenticate https://198.18.0.1/ > "$WORK/oc-bad-$name.log" 2>&1; then
        fail "$name: login refused"
    else
        pass "$name: login refused"
    fi
    check "$name: 401 seen by the client" grep -qi '401\|unauthori\|denied' "$WORK/oc-bad-$name.log"
    check "$name: gateway logs code $code" sh -c "grep '\"msg\":\"login.rejected\"' '$WORK/server.log' | tail -n +$((before + 1)) | grep -q '\"code\":\"$code\"'"
}
reject expired expired "$(mint --oid u1 --exp-in -600)"
reject audience badAudience "$("$BIN/mst-dev-issuer" mint --dir "$WORK/issuer" --iss "$ISSUER" --aud api://other --tid "$TENANT" --oid u1)"
reject tenant tenantNotAllowed "$("$BIN/mst-dev-issuer" mint --dir "$WORK/issuer" --iss "$ISSUER" --aud "$AUD" --tid 99999999-0000-0000-0000-000000000000 --oid u1)"
reject unknown-kid unknownKey "$(mint --oid u1 --kid rsa-x --key other)"
reject foreign-key badSignature "$(mint --oid u1 --key other)"
reject alg-none algorithmNotAllowed "$(mint --oid u1 --alg none)"
reject garbage malformed "not.a.jwt"

echo "== cookie path with a bad token"
if timeout 20 ip netns exec "$NS_C" openconnect --protocol=anyconnect --servercert "$PIN" --non-inter \
    --cookie "webvpn=$(mint --oid u1 --exp-in -600)" https://198.18.0.1/ > "$WORK/oc-bad-cookie.log" 2>&1; then
    fail "expired token as cookie refused"
else pass "expired token as cookie refused"; fi

check "gateway still running" kill -0 "$SERVER_PID"
check "no token in the gateway log" sh -c "! grep -qF '$GOOD' '$WORK/server.log'"
check "no token in the auth log" sh -c "! grep -qF '$GOOD' '$WORK/auth.log'"
check "no session cookie in the gateway log" sh -c "! grep -q 'webvpn=' '$WORK/server.log'"

echo "== a gateway killed outright leaves no NAT rules: its helper takes them away"
check "NAT table present while the gateway runs" ip netns exec "$NS_G" nft list table inet mstunnel
kill -9 "$SERVER_PID"
for _ in $(seq 50); do kill -0 "$HELPER_PID" 2>/dev/null || break; sleep 0.1; done
check "the helper exited with the gateway" sh -c "! kill -0 $HELPER_PID 2>/dev/null"
check "NAT table removed" sh -c "! ip netns exec '$NS_G' nft list table inet mstunnel >/dev/null 2>&1"
check "the helper said so" grep -q '"msg":"host.helper_stopped".*nat removed' "$WORK/server.log"

summary
