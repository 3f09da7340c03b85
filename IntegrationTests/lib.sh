# Shared helpers for the namespace integration tests. Sourced, not run.
#
# Topology (names carry the test's PID so parallel or leftover runs never collide):
#
#   [cli$$]  cli0 198.18.0.2/24 ──── gw0 198.18.0.1/24  [gw$$]  gw1 198.18.1.1/24 ──── corp0 198.18.1.2/24  [corp$$]
#    openconnect, tun0                mstunnel-server (TLS :443), mstun0 100.64.0.1/24       iperf3 -s, http log
#                                     mstunnel-auth (Unix socket)
#
# The corporate host has no route to the client pool: replies reach clients only
# because the gateway masquerades (PAT). Only 198.18.0.0/15 and 100.64.0.0/10 are used.

set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    echo "SKIP: $(basename "$0") needs root (network namespaces, TUN)"
    exit 77
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${BIN:-$ROOT/.build/debug}
NS_C=mstcli$$
NS_G=mstgw$$
NS_I=mstcorp$$
WORK=$(mktemp -d /tmp/mstunnel-it.XXXXXX)
STATE=$WORK/state
RUN=$WORK/run
# The gateway gives up root once its ports and TUN are open (--run-as), as in its
# container: uid 994 in the stack's group 990, which may read the state directory and
# reach the auth plugin's socket. The work directory is made traversable for it.
GW_ACCOUNT=994:990
SERVER_ARGS=(--run-as "$GW_ACCOUNT")
chgrp 990 "$WORK"; chmod 0750 "$WORK"
PIDS=()
EXTRA_NS=()
FAILS=0
PASSES=0

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    ip netns del "$NS_C" 2>/dev/null || true
    ip netns del "$NS_G" 2>/dev/null || true
    ip netns del "$NS_I" 2>/dev/null || true
    rm -rf "/etc/netns/$NS_C" "/etc/netns/$NS_G" "/etc/netns/$NS_I"
    for ns in "${EXTRA_NS[@]}"; do ip netns del "$ns" 2>/dev/null || true; rm -rf "/etc/netns/$ns"; done
    if [ "${KEEP_WORK:-0}" = 1 ]; then echo "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

pass() { PASSES=$((PASSES + 1)); echo "  ok: $*"; }
fail() { FAILS=$((FAILS + 1)); echo "  FAIL: $*"; if [ -n "${MST_FAIL_LOG:-}" ]; then echo "$*" >> "$MST_FAIL_LOG"; fi; }
check() { local what=$1; shift; if "$@" >/dev/null 2>&1; then pass "$what"; else fail "$what"; fi; }
# wait_for WHAT N CMD… : pass once CMD succeeds, trying N times 0.2 s apart; fail after.
wait_for() { local what=$1 n=$2; shift 2; for _ in $(seq "$n"); do if "$@" >/dev/null 2>&1; then pass "$what"; return 0; fi; sleep 0.2; done; fail "$what"; return 0; }

# veth_link NS1 IF1 ADDR1 NS2 IF2 ADDR2: a veth pair between two namespaces, addressed and up
# (the Site tests build their own topologies with it).
veth_link() {
    ip link add "$2" netns "$1" type veth peer name "$5" netns "$4"
    ip -n "$1" addr add "$3" dev "$2"; ip -n "$4" addr add "$6" dev "$5"
    ip -n "$1" link set "$2" up; ip -n "$4" link set "$5" up
}

setup_namespaces() {
    ip netns add "$NS_C"
    ip netns add "$NS_G"
    ip netns add "$NS_I"
    # vpnc-script rewrites resolv.conf; `ip netns exec` bind-mounts this file over
    # /etc/resolv.conf so the host's stays untouched.
    mkdir -p "/etc/netns/$NS_C"
    : > "/etc/netns/$NS_C/resolv.conf"
    ip link add cli0 netns "$NS_C" type veth peer name gw0 netns "$NS_G"
    ip link add gw1 netns "$NS_G" type veth peer name corp0 netns "$NS_I"
    ip -n "$NS_C" addr add 198.18.0.2/24 dev cli0
    ip -n "$NS_G" addr add 198.18.0.1/24 dev gw0
    ip -n "$NS_G" addr add 198.18.1.1/24 dev gw1
    ip -n "$NS_I" addr add 198.18.1.2/24 dev corp0
    for ns in "$NS_C" "$NS_G" "$NS_I"; do ip -n "$ns" link set lo up; done
    ip -n "$NS_C" link set cli0 up
    ip -n "$NS_G" link set gw0 up
    ip -n "$NS_G" link set gw1 up
    ip -n "$NS_I" link set corp0 up
    ip netns exec "$NS_G" sysctl -qw net.ipv4.ip_forward=1
}

make_pki() {
    mkdir -p "$STATE/certs" "$STATE/private" "$RUN"
    chgrp 990 "$STATE" "$STATE/private" "$RUN"
    chmod 0750 "$STATE/private"
    chmod 2770 "$RUN"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj "/CN=198.18.0.1" -addext "subjectAltName=IP:198.18.0.1" \
        -keyout "$STATE/private/site.key" -out "$STATE/certs/site.crt" 2>/dev/null
    chgrp 990 "$STATE/private/site.key"; chmod 0640 "$STATE/private/site.key"
    PIN="pin-sha256:$(openssl x509 -in "$STATE/certs/site.crt" -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)"
}

TENANT=11111111-2222-3333-4444-555555555555
ISSUER=https://issuer.test/$TENANT/v2.0
AUD=3678c9e9-9681-447a-974d-d19f668fcd88

make_issuer() {
    "$BIN/mst-dev-issuer" init --dir "$WORK/issuer" --issuer "$ISSUER" >/dev/null
    cat > "$STATE/auth.json" <<JSON
{ "issuer": "$ISSUER", "jwksFile": "$WORK/issuer/jwks.json", "allowedTenants": ["$TENANT"] }
JSON
}

mint() { "$BIN/mst-dev-issuer" mint --dir "$WORK/issuer" --iss "$ISSUER" --aud "$AUD" --tid "$TENANT" "$@"; }

write_settings() {
    cat > "$STATE/admin-settings.json" <<JSON
{
  "displayName": "integration",
  "network": "100.64.0.0/24",
  "dnsServers": ["198.18.1.2"],
  "defaultDomainSuffix": "corp.test",
  "routeIncludes": ["198.18.1.0/24"],
  "routeExcludes": ["198.18.1.128/25"],
  "splitDNS": ["corp.test"],
  "listenPort": 443,
  "advancedSettings": [ { "name": "banner", "value": "Welcome to the integration gateway" } ]
}
JSON
}

# set_advanced NAME VALUE…: adds advancedSettings entries to the admin-settings.json
# write_settings wrote (before start_stack).
set_advanced() {
    python3 - "$STATE/admin-settings.json" "$@" <<'PY'
import json, sys
path, pairs = sys.argv[1], sys.argv[2:]
s = json.load(open(path))
for name, value in zip(pairs[::2], pairs[1::2]):
    s["advancedSettings"].append({"name": name, "value": value})
json.dump(s, open(path, "w"))
PY
}

# start_auth: mstunnel-auth in the gateway namespace (its log appended to auth.log), once
# its socket is there. The gateway's uid may use its session store (--allow-uid 994).
start_auth() {
    ip netns exec "$NS_G" "$BIN/mstunnel-auth" --state-dir "$STATE" --socket "$RUN/auth.sock" --allow-gid 990 --allow-uid 994 >> "$WORK/auth.log" 2>&1 &
    AUTH_PID=$!
    PIDS+=($AUTH_PID)
    for _ in $(seq 100); do [ -S "$RUN/auth.sock" ] && break; sleep 0.1; done
}

start_stack() {
    : > "$WORK/auth.log"
    start_auth
    ip netns exec "$NS_G" "$BIN/mstunnel-server" --state-dir "$STATE" --run-dir "$RUN" "${SERVER_ARGS[@]}" > "$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=($SERVER_PID)
    for _ in $(seq 100); do
        ip netns exec "$NS_G" ss -ltn 'sport = :443' | grep -q LISTEN && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "server did not start:"; cat "$WORK/server.log"; return 1
}

start_corp() {
    ip netns exec "$NS_I" iperf3 -s -B 198.18.1.2 > "$WORK/iperf3-server.log" 2>&1 &
    PIDS+=($!)
    mkdir -p "$WORK/www"; echo corp-page > "$WORK/www/index.html"
    (cd "$WORK/www" && exec ip netns exec "$NS_I" python3 -m http.server 8080 --bind 198.18.1.2) > "$WORK/http.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 50); do ip netns exec "$NS_I" ss -ltn 'sport = :8080' | grep -q LISTEN && break; sleep 0.1; done
}

# A second client namespace, NS_C2, on its own link to the gateway:
#   [cli2$$] cli1 198.18.2.2/24 ──── gw2 198.18.2.1/24 [gw$$]
add_second_client() {
    NS_C2=mstcli2$$
    EXTRA_NS+=("$NS_C2")
    ip netns add "$NS_C2"
    mkdir -p "/etc/netns/$NS_C2"; : > "/etc/netns/$NS_C2/resolv.conf"
    ip link add cli1 netns "$NS_C2" type veth peer name gw2 netns "$NS_G"
    ip -n "$NS_C2" addr add 198.18.2.2/24 dev cli1
    ip -n "$NS_C2" link set cli1 up; ip -n "$NS_C2" link set lo up
    ip -n "$NS_G" addr add 198.18.2.1/24 dev gw2; ip -n "$NS_G" link set gw2 up
}

# oc2 NAME ARGS... / wait_tunnel2 NAME: oc / wait_tunnel for the second client (tun1).
oc2() { local first=${OC_PID:-}; oc_in "$NS_C2" tun1 198.18.2.1 "$@"; OC2_PID=$OC_PID; OC_PID=$first; }
wait_tunnel2() { OC_PID=$OC2_PID wait_tunnel_in "$NS_C2" tun1 'inet 100\.' "$1"; }

# --- Control plane and agent -------------------------------------------------------
# mstunnel-control runs in the corporate namespace on 198.18.1.2:8443 with its own CA;
# the agent runs in the gateway namespace beside the gateway.
CONTROL=$WORK/control
CP=https://198.18.1.2:8443
API=$CP/beta/deviceManagement
LOGS=$WORK/logs
mkdir -p "$CONTROL" "$LOGS"

# start_control [EXTRA SERVE OPTIONS…] (CERT_LIFETIME: agent certificate lifetime, s)
start_control() {
    ip netns exec "$NS_I" env MSTUNNEL_LOG_DIR="$LOGS" "$BIN/mstunnel-control" serve --state-dir "$CONTROL" \
        --listen 198.18.1.2:8443 --hostname 198.18.1.2 --checkin-interval 1 --report-interval 1 \
        --offline-after 15 --agent-cert-lifetime "${CERT_LIFETIME:-3600}" "$@" >> "$WORK/control.log" 2>&1 &
    CONTROL_PID=$!
    PIDS+=($CONTROL_PID)
    for _ in $(seq 150); do
        ip netns exec "$NS_I" ss -ltn 'sport = :8443' | grep -q LISTEN && return 0
        kill -0 "$CONTROL_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "control plane did not start:"; tail -20 "$WORK/control.log"; return 1
}
# api METHOD PATH [JSON] : the admin API as an operator calls it (curl, the control
# plane's CA, the local admin token), from API_NS (default the corp namespace). Prints the
# body; fails on HTTP >= 400.
api() {
    local method=$1 path=$2 body=${3:-}
    local args=(-sS --cacert "$CONTROL/ca.crt" -H "Authorization: Bearer $(cat "$CONTROL/admin-token")" -X "$method" -w '\n%{http_code}')
    [ -n "$body" ] && args+=(-H 'Content-Type: application/json' --data "$body")
    local out code
    out=$(ip netns exec "${API_NS:-$NS_I}" curl "${args[@]}" "$API$path")
    code=${out##*$'\n'}
    printf '%s' "${out%$'\n'*}"
    [ "$code" -lt 400 ]
}
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
# create_site [ADVANCED_SETTINGS_JSON] : a configuration (pool 100.64.0.0/24, the corp
# routes) and a Site using it, through the admin API; sets CFG and SITE.
create_site() {
    local out
    if out=$(api POST /microsoftTunnelConfigurations "{\"displayName\":\"cfg\",\"network\":\"100.64.0.0/24\",\"dnsServers\":[\"198.18.1.2\"],\"routeIncludes\":[\"198.18.1.0/24\"],\"listenPort\":443,\"advancedSettings\":${1:-[]}}"); then
        pass "configuration created"; CFG=$(echo "$out" | json 'd["id"]')
    else fail "configuration created: $out"; fi
    if out=$(api POST /microsoftTunnelSites "{\"displayName\":\"site\",\"microsoftTunnelConfiguration\":{\"id\":\"$CFG\"}}"); then
        pass "site created"; SITE=$(echo "$out" | json 'd["id"]')
    else fail "site created: $out"; fi
}
# start_site_member NAME NAMESPACE : a server of the Site $SITE in NAMESPACE, as the control
# plane runs it: enroll its agent with a join token of its own (state $WORK/state-NAME, run
# dir $WORK/run-NAME), run the agent until it wrote the configuration, then auth and gateway.
start_site_member() {
    local m=$1 ns=$2
    local st=$WORK/state-$m run=$WORK/run-$m
    cp -a "$STATE" "$st"; rm -f "$st/admin-settings.json"
    mkdir -p "$run"; chgrp 990 "$run"; chmod 2770 "$run"
    api POST "/microsoftTunnelSites/$SITE/createJoinToken" '{"expirationMinutes":30}' | json 'd["joinToken"]' > "$WORK/join-$m.token"
    ip netns exec "$ns" "$BIN/mstunnel-agent" enroll --control-url "$CP" --join-token-file "$WORK/join-$m.token" --state-dir "$st" \
        > "$WORK/enroll-$m.log" 2>&1 || { echo "enroll $m failed"; cat "$WORK/enroll-$m.log"; return 1; }
    ip netns exec "$ns" env MSTUNNEL_LOG_DIR="$LOGS" "$BIN/mstunnel-agent" run --state-dir "$st" --run-dir "$run" --log-dir "$LOGS" \
        >> "$WORK/agent-$m.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do [ -s "$st/admin-settings.json" ] && break; sleep 0.1; done
    ip netns exec "$ns" "$BIN/mstunnel-auth" --state-dir "$st" --socket "$run/auth.sock" --allow-gid 990 --allow-uid 994 \
        >> "$WORK/auth-$m.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do [ -S "$run/auth.sock" ] && break; sleep 0.1; done
    ip netns exec "$ns" "$BIN/mstunnel-server" --state-dir "$st" --run-dir "$run" "${SERVER_ARGS[@]}" >> "$WORK/server-$m.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do ip netns exec "$ns" ss -ltn 'sport = :443' | grep -q LISTEN && return 0; sleep 0.1; done
    echo "member $m did not start"; tail -5 "$WORK/server-$m.log" "$WORK/auth-$m.log" "$WORK/agent-$m.log"; return 1
}
# site_key NAME : the Site key member NAME's auth seals with, as its agent handed it over.
site_key() { grep '"msg":"auth.tickets.keys".*"from":"the agent"' "$WORK/auth-$1.log" | tail -1 | json 'd["sealing"]'; }
# agent_run [VAR=VALUE…]: the agent in the background, with AGENT_EXTRA (an array) as more options.
AGENT_EXTRA=()
agent_run() {
    ip netns exec "$NS_G" env MSTUNNEL_LOG_DIR="$LOGS" "$@" "$BIN/mstunnel-agent" run --state-dir "$STATE" --run-dir "$RUN" \
        --log-dir "$LOGS" "${AGENT_EXTRA[@]}" >> "$WORK/agent.log" 2>&1 &
    AGENT_PID=$!
    PIDS+=($AGENT_PID)
}
stop_pid() { kill "$1" 2>/dev/null || true; for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; kill -9 "$1" 2>/dev/null || true; }

# A vpnc-script wrapper that records the environment of each call, then configures
# the interface with the real vpnc-script.
make_script_wrapper() {
    cat > "$WORK/vpnc-wrapper.sh" <<'SH'
#!/bin/sh
env | sort > "$ENVLOG.$reason"
exec /usr/share/vpnc-scripts/vpnc-script "$@"
SH
    chmod +x "$WORK/vpnc-wrapper.sh"
}

# oc_in NS IFACE GATEWAY NAME ARGS... : starts openconnect in NS in the background; sets OC_PID.
oc_in() {
    local ns=$1 iface=$2 gw=$3 name=$4; shift 4
    ENVLOG="$WORK/env-$name" ip netns exec "$ns" env ENVLOG="$WORK/env-$name" \
        openconnect --protocol=anyconnect --servercert "$PIN" --non-inter --script "$WORK/vpnc-wrapper.sh" \
        --interface "$iface" "$@" "https://$gw/" > "$WORK/oc-$name.log" 2>&1 &
    OC_PID=$!
    PIDS+=($OC_PID)
}

# wait_tunnel_in NS IFACE ADDR-PATTERN NAME : waits for the connect script and the address.
wait_tunnel_in() {
    local ns=$1 iface=$2 pattern=$3 name=$4
    for _ in $(seq 150); do
        [ -f "$WORK/env-$name.connect" ] && ip -n "$ns" -4 addr show dev "$iface" 2>/dev/null | grep -q "$pattern" && return 0
        kill -0 "$OC_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "--- openconnect ($name) log:"; tail -20 "$WORK/oc-$name.log"; echo "--- server log:"; tail -20 "$WORK/server.log"
    return 1
}

# oc NAME ARGS... / wait_tunnel NAME : the first client (tun0) against 198.18.0.1.
oc() { oc_in "$NS_C" tun0 198.18.0.1 "$@"; }
wait_tunnel() { wait_tunnel_in "$NS_C" tun0 'inet 100\.64\.' "$1"; }

stop_oc() {
    kill -INT "$OC_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$OC_PID" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$OC_PID" 2>/dev/null || true
}

summary() {
    echo "$PASSES passed, $FAILS failed"
    [ "$FAILS" = 0 ]
}
