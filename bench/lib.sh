# shellcheck shell=bash
# Shared lab for the benchmark scripts (bench/*.sh). Sourced, not run.
#
# Topology (namespace names carry the PID of the script, so leftovers or parallel runs never
# collide; only 198.18.0.0/15 and 100.64.0.0/10 are used, nothing routes off the machine):
#
#   [mstbc$$]  cli0 198.18.0.2/24 ──── gw0 198.18.0.1/24  [mstbg$$]  gw1 198.18.1.1/24 ──── corp0 198.18.1.2/24  [mstbi$$]
#    openconnect, tun0                  ocserv  OR  mstunnel-server + mstunnel-auth              iperf3 -s
#                                       (one after the other on 198.18.0.1:443 tcp+udp)
#
# Both gateways get the same settings: pool 100.64.0.0/24, split include 198.18.1.0/24,
# DPD 90 s, keepalive 300 s, tunnel MTU 1434, and PAT towards the corporate side (mstunnel
# does it itself with its nftables table; for ocserv the lab adds the equivalent masquerade
# rule in the gateway namespace, so the corporate host never needs a route to the pool).
#
# Every process the lab starts is recorded (PID + start time from /proc/PID/stat) and only
# recorded processes are ever signalled; the EXIT trap stops them and deletes the namespaces.
#
# Functions meant for other bench scripts (e.g. bench/connect-memory.sh):
#   bench_require_root            exit 77 unless root
#   bench_init                    work dir + EXIT trap; then lab_setup, make_pki
#   lab_setup / make_pki          namespaces, veths, addresses / certificate, pin, ocpasswd
#   corp_iperf_start              iperf3 -s in the corporate namespace
#   ocserv_start [MODE] / ocserv_stop   ocserv (plain password auth), root PID in $OCSERV_PID
#   mst_start / mst_stop          mstunnel-auth ($MST_AUTH_PID) + mstunnel-server ($MST_SERVER_PID)
#   oc_connect SERVER MODE TAG    openconnect in the client namespace (MODE dtls|tls), $OC_PID
#   oc_disconnect                 SIGINT (logoff), bounded wait
#   gateway_pid SERVER            root PID of the gateway under test
#   tree_ticks PID / ticks_delta  utime+stime of a process tree from /proc/PID/stat
#   start_bg NAME CMD...          run CMD in the background, record its PID in $BG_PID

set -euo pipefail

bench_require_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "SKIP: $(basename "$0") needs root (network namespaces, TUN, port 443)" >&2
        exit 77
    fi
}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
BIN=${BIN:-$ROOT/.build-bench/release}

NS_C=mstbc$$
NS_G=mstbg$$
NS_I=mstbi$$

CLI_IP=198.18.0.2
GW_IP=198.18.0.1
GW_IN_IP=198.18.1.1
CORP_IP=198.18.1.2
POOL=100.64.0.0/24
POOL_NET=100.64.0.0
POOL_MASK=255.255.255.0
SPLIT_NET=198.18.1.0
SPLIT_MASK=255.255.255.0
SPLIT=198.18.1.0/24
PORT=443
DPD=90
KEEPALIVE=300
TUNNEL_MTU=1434
# mstunnel's `mtu` is the tunnel MTU itself (min(mtu, base MTU - 66)), whatever the channel.
# ocserv's `mtu` is the *link* MTU: it hands out link - 66 as the tunnel MTU when the client
# may use DTLS (AES-GCM over IPv4) and link - 28 with --no-dtls (measured: mtu = 1500 gives
# tun0 1434 with DTLS but 1472 with --no-dtls). So ocserv gets 1500 for the DTLS runs and
# 1462 for the TLS-only runs; both gateways then hand out 1434 (tun0's MTU is recorded per run).
ocserv_link_mtu() { if [ "$1" = tls ]; then echo $((TUNNEL_MTU + 28)); else echo $((TUNNEL_MTU + 66)); fi; }
# Debian's default ocserv.conf priority string (TLS 1.3 off for Cisco-client compatibility).
OCSERV_TLS_PRIORITIES=${OCSERV_TLS_PRIORITIES:-NORMAL:%SERVER_PRECEDENCE:%COMPAT:-VERS-SSL3.0:-VERS-TLS1.0:-VERS-TLS1.1:-VERS-TLS1.3}

OC_USER=bench
OC_PASS='bench horse battery staple'
TENANT=11111111-2222-3333-4444-555555555555
ISSUER=https://issuer.test/$TENANT/v2.0
AUD=3678c9e9-9681-447a-974d-d19f668fcd88

WORK=
PIDS=()
declare -A PID_START=()

# --- process bookkeeping ---------------------------------------------------------------

# stat_fields PID: fields 3.. of /proc/PID/stat (after the comm, which may hold spaces) into
# the array STAT; index = field number - 3 (ppid 1, utime 11, stime 12, starttime 19).
STAT=()
stat_fields() {
    local line
    read -r line 2>/dev/null < "/proc/$1/stat" || return 1
    read -r -a STAT <<< "${line##*) }"
}

record_pid() {
    local pid=$1
    [ -n "${PID_START[$pid]:-}" ] && return 0
    stat_fields "$pid" || return 0
    PIDS+=("$pid")
    PID_START[$pid]=${STAT[19]}
}

# True only if PID is alive and is still the process we recorded (no PID reuse).
pid_is_ours() {
    local pid=$1
    [ -n "${PID_START[$pid]:-}" ] || return 1
    stat_fields "$pid" || return 1
    [ "${STAT[19]}" = "${PID_START[$pid]}" ] && [ "${STAT[0]}" != Z ]
}

signal_pid() { if pid_is_ours "$2"; then kill "-$1" "$2" 2>/dev/null || true; fi; }

# wait_gone SECONDS PID...: bounded wait until none of the PIDs is alive.
wait_gone() {
    local secs=$1 i pid alive; shift
    for ((i = 0; i < secs * 10; i++)); do
        alive=0
        for pid in "$@"; do pid_is_ours "$pid" && alive=1; done
        [ "$alive" = 0 ] && return 0
        sleep 0.1
    done
    return 1
}

# stop_pids SIGNAL SECONDS PID...: signal, wait, then SIGKILL what is left (ours only).
stop_pids() {
    local sig=$1 secs=$2 pid; shift 2
    for pid in "$@"; do signal_pid "$sig" "$pid"; done
    wait_gone "$secs" "$@" && return 0
    for pid in "$@"; do signal_pid KILL "$pid"; done
    wait_gone 5 "$@" || true
}

# start_bg LOG CMD...: CMD in the background, stdout+stderr to LOG, PID recorded in BG_PID.
BG_PID=
start_bg() {
    local log=$1; shift
    "$@" > "$log" 2>&1 < /dev/null &
    BG_PID=$!
    record_pid "$BG_PID"
}

bench_cleanup() {
    local rc=$? i pid
    trap - EXIT INT TERM
    # newest first: clients before servers before the corporate iperf3
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PIDS[$i]}
        pid_is_ours "$pid" && stop_pids TERM 10 "$pid"
    done
    for pid in "${MSTC_CONTAINERS[@]}"; do podman rm -f -t 5 "$pid" > /dev/null 2>&1 || true; done
    local ns
    for ns in "$NS_C" "$NS_G" "$NS_I"; do
        ip netns del "$ns" 2>/dev/null || true
        rm -rf "/etc/netns/$ns"
    done
    if [ -n "$WORK" ]; then
        if [ "${KEEP_WORK:-0}" = 1 ]; then echo "work dir kept: $WORK"; else rm -rf "$WORK"; fi
    fi
    exit "$rc"
}

bench_init() {
    bench_require_root
    local need
    for need in ip openconnect iperf3 ocserv ocpasswd openssl nft python3 ss; do
        command -v "$need" >/dev/null || { echo "missing tool: $need (apt-get install openconnect iperf3 ocserv nftables iproute2 openssl python3)" >&2; exit 1; }
    done
    [ -x /usr/share/vpnc-scripts/vpnc-script ] || { echo "missing /usr/share/vpnc-scripts/vpnc-script (apt-get install vpnc-scripts)" >&2; exit 1; }
    WORK=$(mktemp -d /tmp/mstunnel-bench.XXXXXX)
    # ocserv's workers run as nobody and must reach the IPC socket and the certificate
    chmod 755 "$WORK"
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# --- the lab ----------------------------------------------------------------------------

lab_setup() {
    local ns
    for ns in "$NS_C" "$NS_G" "$NS_I"; do
        if ip netns list | grep -qw "$ns"; then echo "namespace $ns exists already" >&2; return 1; fi
    done
    ip netns add "$NS_C"
    ip netns add "$NS_G"
    ip netns add "$NS_I"
    # vpnc-script may rewrite resolv.conf; `ip netns exec` bind-mounts this one over it.
    mkdir -p "/etc/netns/$NS_C"
    : > "/etc/netns/$NS_C/resolv.conf"
    ip link add cli0 netns "$NS_C" type veth peer name gw0 netns "$NS_G"
    ip link add gw1 netns "$NS_G" type veth peer name corp0 netns "$NS_I"
    ip -n "$NS_C" addr add "$CLI_IP/24" dev cli0
    ip -n "$NS_G" addr add "$GW_IP/24" dev gw0
    ip -n "$NS_G" addr add "$GW_IN_IP/24" dev gw1
    ip -n "$NS_I" addr add "$CORP_IP/24" dev corp0
    for ns in "$NS_C" "$NS_G" "$NS_I"; do ip -n "$ns" link set lo up; done
    ip -n "$NS_C" link set cli0 up
    ip -n "$NS_G" link set gw0 up
    ip -n "$NS_G" link set gw1 up
    ip -n "$NS_I" link set corp0 up
    ip netns exec "$NS_G" sysctl -qw net.ipv4.ip_forward=1
}

# Raw routed path (no VPN) for the baseline: client -> gateway (kernel forwarding) -> corp.
raw_routes() {
    local op=$1
    ip -n "$NS_C" route "$op" "$SPLIT" via "$GW_IP"
    ip -n "$NS_I" route "$op" 198.18.0.0/24 via "$GW_IN_IP"
}

# One certificate for both gateways (EC P-256, SAN IP 198.18.0.1), its pin, the ocpasswd file.
make_pki() {
    mkdir -p "$WORK/pki"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 \
        -subj "/CN=$GW_IP" -addext "subjectAltName=IP:$GW_IP" \
        -keyout "$WORK/pki/site.key" -out "$WORK/pki/site.crt" 2>/dev/null
    chmod 644 "$WORK/pki/site.crt"
    chmod 600 "$WORK/pki/site.key"
    PIN="pin-sha256:$(openssl x509 -in "$WORK/pki/site.crt" -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)"
    printf '%s\n%s\n' "$OC_PASS" "$OC_PASS" | ocpasswd -c "$WORK/pki/ocpasswd" "$OC_USER"
    chmod 644 "$WORK/pki/ocpasswd"
    # vpnc-script wrapper: marks each call (reason=connect, disconnect, …), then configures tun0
    cat > "$WORK/vpnc-wrapper.sh" <<'SH'
#!/bin/sh
[ -n "${OC_MARK:-}" ] && env > "$OC_MARK.$reason"
exec /usr/share/vpnc-scripts/vpnc-script "$@"
SH
    chmod 755 "$WORK/vpnc-wrapper.sh"
}

corp_iperf_start() {
    start_bg "$WORK/iperf3-server.log" ip netns exec "$NS_I" iperf3 -s -B "$CORP_IP"
    export CORP_IPERF_PID=$BG_PID
    local i
    for ((i = 0; i < 100; i++)); do
        ip netns exec "$NS_I" ss -Hltn "sport = :5201" | grep -q LISTEN && return 0
        sleep 0.1
    done
    echo "iperf3 server did not start" >&2; cat "$WORK/iperf3-server.log" >&2; return 1
}

# Bounded wait until nothing listens on port 443 (TCP or UDP) in the gateway namespace.
wait_port_free() {
    local i
    for ((i = 0; i < 150; i++)); do
        [ -z "$(ip netns exec "$NS_G" ss -Hlntu "sport = :$PORT")" ] && return 0
        sleep 0.1
    done
    echo "port $PORT still in use in $NS_G:" >&2
    ip netns exec "$NS_G" ss -lntup "sport = :$PORT" >&2
    return 1
}

wait_listen() { # PID LOG (LISTEN_WAIT: tenths of a second to wait, default 150)
    local i
    for ((i = 0; i < ${LISTEN_WAIT:-150}; i++)); do
        ip netns exec "$NS_G" ss -Hltn "sport = :$PORT" | grep -q LISTEN && return 0
        pid_is_ours "$1" || break
        sleep 0.1
    done
    echo "gateway did not start listening; log:" >&2; tail -30 "$2" >&2; return 1
}

# --- ocserv -----------------------------------------------------------------------------

ocserv_config() { # MODE (dtls|tls)
    local d=$WORK/ocserv link_mtu
    link_mtu=$(ocserv_link_mtu "${1:-dtls}")
    mkdir -p "$d"
    chmod 755 "$d"
    cat > "$d/ocserv.conf" <<CONF
# Rendered by bench/lib.sh: the same settings as mstunnel's admin-settings.json below.
auth = "plain[passwd=$WORK/pki/ocpasswd]"
listen-host = $GW_IP
tcp-port = $PORT
udp-port = $PORT
run-as-user = nobody
run-as-group = nogroup
socket-file = $d/ocserv.sock
occtl-socket-file = $d/occtl.sock
use-occtl = true
pid-file = $d/ocserv.pid
# the Debian default is true (seccomp); off as in the team's lab, and mstunnel has no seccomp filter
isolate-workers = false
server-cert = $WORK/pki/site.crt
server-key = $WORK/pki/site.key
max-clients = 16
max-same-clients = 4
rate-limit-ms = 0
max-ban-score = 0
server-stats-reset-time = 604800
keepalive = $KEEPALIVE
dpd = $DPD
mobile-dpd = $DPD
switch-to-tcp-timeout = 25
try-mtu-discovery = false
# link MTU for ${1:-dtls} runs: ocserv hands out $TUNNEL_MTU as the tunnel MTU (see bench/lib.sh)
mtu = $link_mtu
tls-priorities = "$OCSERV_TLS_PRIORITIES"
auth-timeout = 240
min-reauth-time = 0
cookie-timeout = 300
deny-roaming = false
rekey-time = 172800
rekey-method = ssl
log-level = 1
device = vpns
predictable-ips = true
ipv4-network = $POOL_NET
ipv4-netmask = $POOL_MASK
route = $SPLIT_NET/$SPLIT_MASK
ping-leases = false
cisco-client-compat = true
dtls-legacy = true
client-bypass-protocol = false
CONF
    ocserv -t -c "$d/ocserv.conf" > "$d/config-test.log" 2>&1 || { cat "$d/config-test.log" >&2; return 1; }
}

ocserv_start() { # [MODE]
    wait_port_free
    ocserv_config "${1:-dtls}"
    # A caller may adjust the rendered config (e.g. bench/connect-memory.sh's larger pool).
    if declare -F ocserv_config_hook > /dev/null; then ocserv_config_hook "$WORK/ocserv/ocserv.conf"; fi
    # PAT like mstunnel's: the pool is masqueraded towards every interface but the tunnels.
    ip netns exec "$NS_G" nft -f - <<NFT
table ip mstbench_pat {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr $POOL oifname != "vpns*" masquerade
    }
}
NFT
    start_bg "$WORK/ocserv/ocserv.log" ip netns exec "$NS_G" ocserv -f -c "$WORK/ocserv/ocserv.conf"
    OCSERV_PID=$BG_PID
    wait_listen "$OCSERV_PID" "$WORK/ocserv/ocserv.log"
    record_tree "$OCSERV_PID"
}

ocserv_stop() {
    [ -n "${OCSERV_PID:-}" ] || return 0
    record_tree "$OCSERV_PID"
    local -a tree
    read -r -a tree <<< "$(tree_pids "$OCSERV_PID")"
    # ocserv's main process stops its workers and security module itself on SIGTERM
    stop_pids TERM 15 "$OCSERV_PID"
    [ "${#tree[@]}" -gt 0 ] && stop_pids TERM 5 "${tree[@]}"
    ip netns exec "$NS_G" nft delete table ip mstbench_pat 2>/dev/null || true
    OCSERV_PID=
    wait_port_free
}

# --- mstunnel ---------------------------------------------------------------------------

mst_state() {
    local s=$WORK/mst/state
    mkdir -p "$s/certs" "$s/private" "$WORK/mst/run"
    chmod 700 "$s/private"
    cp "$WORK/pki/site.crt" "$s/certs/site.crt"
    cp "$WORK/pki/site.key" "$s/private/site.key"
    if [ ! -f "$WORK/mst/issuer/jwks.json" ]; then
        "$BIN/mst-dev-issuer" init --dir "$WORK/mst/issuer" --issuer "$ISSUER" > /dev/null
    fi
    cat > "$s/auth.json" <<JSON
{ "issuer": "$ISSUER", "jwksFile": "$WORK/mst/issuer/jwks.json", "allowedTenants": ["$TENANT"] }
JSON
    cat > "$s/admin-settings.json" <<JSON
{
  "displayName": "bench",
  "network": "$POOL",
  "routeIncludes": ["$SPLIT"],
  "listenPort": $PORT,
  "advancedSettings": [
    { "name": "listen-address", "value": "$GW_IP" },
    { "name": "dpd", "value": "$DPD" },
    { "name": "keepalive", "value": "$KEEPALIVE" },
    { "name": "mtu", "value": "$TUNNEL_MTU" }
  ]
}
JSON
    # A caller may adjust the settings (e.g. bench/connect-memory.sh's larger pool).
    if declare -F mst_settings_hook > /dev/null; then mst_settings_hook "$s/admin-settings.json"; fi
    "$BIN/mstunnel-server" --state-dir "$s" --check-config > "$WORK/mst/check-config.log" 2>&1 || { cat "$WORK/mst/check-config.log" >&2; return 1; }
}

# mint_token_file ISSUER_DIR COUNT FILE UPN_PREFIX: COUNT tokens of distinct users (oid and
# upn numbered), two hours each, one a line: what mst-loadgen --token-file reads.
mint_token_file() {
    local dir=$1 count=$2 file=$3 prefix=$4 k
    : > "$file"
    for ((k = 0; k < count; k++)); do
        "$BIN/mst-dev-issuer" mint --dir "$dir" --iss "$ISSUER" --aud "$AUD" --tid "$TENANT" \
            --oid "$(printf '0b1f7a3e-0000-4000-8000-%012d' "$k")" --upn "$prefix$k@corp.test" --exp-in 7200 >> "$file"
        echo >> "$file"
    done
}

# A fresh token from the development issuer for each connection.
mst_token() {
    local file=$1
    printf %s "$("$BIN/mst-dev-issuer" mint --dir "$WORK/mst/issuer" --iss "$ISSUER" --aud "$AUD" --tid "$TENANT" \
        --oid 0b1f7a3e-0000-4000-8000-00000000b001 --upn bench@corp.test --deviceid bench-client --exp-in 3600)" > "$file"
}

mst_start() {
    local b
    for b in mstunnel-server mstunnel-auth mst-dev-issuer; do
        [ -x "$BIN/$b" ] || { echo "missing $BIN/$b: build with swift build -c release --scratch-path .build-bench (bench/run.sh does)" >&2; return 1; }
    done
    wait_port_free
    mst_state
    local run=$WORK/mst/run i
    # The gateway runs as it ships: confined to MST_RUN_AS (uid:gid, default 994:990) once its
    # port and TUN are open, so the figures include the seccomp filter. MST_RUN_AS= (empty)
    # keeps it root (bench/callgrind.sh: valgrind runs the guest's system calls itself).
    local account=${MST_RUN_AS-994:990} confine=() allow=()
    if [ -n "$account" ]; then
        chgrp "${account#*:}" "$WORK" "$WORK/mst" "$WORK/mst/state" "$WORK/mst/state/private" "$WORK/mst/state/private/site.key" "$run"
        chmod g+rx "$WORK" "$WORK/mst" "$WORK/mst/state" "$WORK/mst/state/private"
        chmod g+r "$WORK/mst/state/private/site.key"
        chmod 2770 "$run"
        confine=(--run-as "$account")
        allow=(--allow-uid "${account%%:*}")
    fi
    rm -f "$run/auth.sock" "$run/server.sock"
    start_bg "$WORK/mst/auth.log" ip netns exec "$NS_G" "$BIN/mstunnel-auth" --state-dir "$WORK/mst/state" --socket "$run/auth.sock" "${allow[@]}"
    MST_AUTH_PID=$BG_PID
    for ((i = 0; i < 100; i++)); do [ -S "$run/auth.sock" ] && break; sleep 0.1; done
    [ -S "$run/auth.sock" ] || { echo "mstunnel-auth did not start" >&2; cat "$WORK/mst/auth.log" >&2; return 1; }
    # MST_SERVER_WRAP: a command to run the server under (bench/callgrind.sh: valgrind).
    # shellcheck disable=SC2086
    start_bg "$WORK/mst/server.log" ip netns exec "$NS_G" ${MST_SERVER_WRAP:-} "$BIN/mstunnel-server" --state-dir "$WORK/mst/state" --run-dir "$run" "${confine[@]}" ${MST_SERVER_ARGS:-}
    MST_SERVER_PID=$BG_PID
    wait_listen "$MST_SERVER_PID" "$WORK/mst/server.log"
}

mst_stop() {
    [ -n "${MST_SERVER_PID:-}" ] && stop_pids TERM 15 "$MST_SERVER_PID"
    [ -n "${MST_AUTH_PID:-}" ] && stop_pids TERM 10 "$MST_AUTH_PID"
    MST_SERVER_PID=
    MST_AUTH_PID=
    wait_port_free
}

# --- mstunnel from its images (bench/container.sh) ------------------------------------------
# The same state as mst_start, run as compose.yaml runs it: the auth plugin and the gateway
# containers, host networking (here: the gateway namespace, through nsenter), every
# capability dropped but NET_ADMIN and NET_BIND_SERVICE, the stack's uid/gid layout.
MSTC_IMAGE_REPO=${MSTC_IMAGE_REPO:-localhost}
MSTC_TAG=${MSTC_TAG:-latest}
MSTC_CONTAINERS=()
mstc_start() {
    wait_port_free
    mst_state
    local s=$WORK/mst/state run=$WORK/mst/run i
    chown -R 992:990 "$s"; chmod 0750 "$s" "$s/private"; chown 0:990 "$s/private/site.key"; chmod 0640 "$s/private/site.key"
    chmod 0644 "$s/auth.json" "$s/admin-settings.json"
    chmod 0755 "$WORK/mst" "$WORK/mst/issuer"; chmod 0644 "$WORK/mst/issuer/jwks.json"
    rm -rf "$run"; install -d -m 2770 -o 0 -g 990 "$run"
    podman rm -f mstbench-server mstbench-auth >/dev/null 2>&1 || true
    MSTC_CONTAINERS=(mstbench-server mstbench-auth)
    # As compose.yaml runs it: the gateway confined to MST_RUN_AS (default 994:990) after start.
    local account=${MST_RUN_AS-994:990} confine=() allow=()
    if [ -n "$account" ]; then
        confine=(--run-as "$account")
        allow=(--allow-uid "${account%%:*}")
    fi
    nsenter --net="/run/netns/$NS_G" podman run -d --name mstbench-auth --network host --user 991:990 --cap-drop ALL \
        --security-opt no-new-privileges -v "$s:/etc/mstunnel" -v "$run:/run/mstunnel" -v "$WORK/mst/issuer:$WORK/mst/issuer:ro" \
        "$MSTC_IMAGE_REPO/mstunnel-auth:$MSTC_TAG" --socket /run/mstunnel/auth.sock "${allow[@]}" > /dev/null
    for ((i = 0; i < 100; i++)); do [ -S "$run/auth.sock" ] && break; sleep 0.1; done
    [ -S "$run/auth.sock" ] || { echo "the auth container did not start" >&2; podman logs mstbench-auth >&2; return 1; }
    # shellcheck disable=SC2086
    nsenter --net="/run/netns/$NS_G" podman run -d --name mstbench-server --network host --cap-drop ALL --cap-add NET_ADMIN \
        --cap-add NET_BIND_SERVICE --cap-add SETUID --cap-add SETGID --cap-add SETPCAP --security-opt no-new-privileges --group-add 990 --device /dev/net/tun \
        --ulimit nofile=16384:16384 --ulimit nproc=4096:4096 -v "$s:/etc/mstunnel" -v "$run:/run/mstunnel" \
        "$MSTC_IMAGE_REPO/mstunnel-server:$MSTC_TAG" --allow-gid 990 "${confine[@]}" ${MST_SERVER_ARGS:-} > /dev/null
    MSTC_SERVER_PID=$(podman inspect -f '{{.State.Pid}}' mstbench-server)
    MSTC_AUTH_PID=$(podman inspect -f '{{.State.Pid}}' mstbench-auth)
    MINE_ROOTS=("$(podman inspect -f '{{.State.ConmonPid}}' mstbench-server)" "$(podman inspect -f '{{.State.ConmonPid}}' mstbench-auth)")
    for ((i = 0; i < 150; i++)); do
        ip netns exec "$NS_G" ss -Hltn "sport = :$PORT" | grep -q . && return 0
        sleep 0.1
    done
    echo "the gateway container is not listening:" >&2; podman logs mstbench-server 2>&1 | tail -5 >&2; return 1
}
mstc_stop() {
    local c
    for c in "${MSTC_CONTAINERS[@]}"; do
        podman logs "$c" > "$WORK/mst/$c.log" 2>&1 || true
        podman rm -f -t 10 "$c" > /dev/null 2>&1 || true
    done
    MSTC_CONTAINERS=() MINE_ROOTS=() MSTC_SERVER_PID= MSTC_AUTH_PID=
    wait_port_free
}

gateway_pid() {
    case $1 in
        ocserv) echo "$OCSERV_PID" ;;
        mstunnel) echo "$MST_SERVER_PID" ;;
        mstunnel-container) echo "$MSTC_SERVER_PID" ;;
        *) echo "unknown gateway $1" >&2; return 1 ;;
    esac
}

# --- the client -------------------------------------------------------------------------

# oc_connect SERVER MODE TAG: stock openconnect, quiet (no -v), against 198.18.0.1:443.
# MODE dtls = openconnect's default (DTLS if the server offers it), tls = --no-dtls.
# Log in $WORK/oc-TAG.log; returns once tun0 has a pool address (bounded wait).
oc_connect() {
    local server=$1 mode=$2 tag=$3
    OC_LOG=$WORK/oc-$tag.log
    OC_MARK=$WORK/oc-$tag
    rm -f "$OC_MARK".*
    local -a args=(--protocol=anyconnect --servercert "$PIN" --non-inter --script "$WORK/vpnc-wrapper.sh" --interface tun0)
    [ "$mode" = tls ] && args+=(--no-dtls)
    case $server in
        ocserv)
            args+=(-u "$OC_USER" --passwd-on-stdin)
            # a here-string, not a pipe: $! must be openconnect itself
            ip netns exec "$NS_C" env OC_MARK="$OC_MARK" openconnect "${args[@]}" "https://$GW_IP/" \
                <<< "$OC_PASS" > "$OC_LOG" 2>&1 &
            ;;
        mstunnel|mstunnel-container)
            mst_token "$WORK/token-$tag.jwt"
            args+=(--token-mode=oidc --token-secret=@"$WORK/token-$tag.jwt")
            ip netns exec "$NS_C" env OC_MARK="$OC_MARK" openconnect "${args[@]}" "https://$GW_IP/" \
                < /dev/null > "$OC_LOG" 2>&1 &
            ;;
        *) echo "unknown gateway $server" >&2; return 1 ;;
    esac
    OC_PID=$!
    record_pid "$OC_PID"
    local i
    for ((i = 0; i < 300; i++)); do
        if [ -f "$OC_MARK.connect" ] && ip -n "$NS_C" -4 addr show dev tun0 2>/dev/null | grep -q 'inet 100\.64\.'; then
            return 0
        fi
        pid_is_ours "$OC_PID" || break
        sleep 0.1
    done
    echo "tunnel to $server ($mode) did not come up; openconnect log:" >&2
    tail -20 "$OC_LOG" >&2
    return 1
}

# Bounded wait for openconnect's DTLS outcome (only meaningful in dtls mode).
oc_wait_dtls() {
    local secs=${1:-10} i
    for ((i = 0; i < secs * 10; i++)); do
        grep -q 'Established DTLS connection' "$OC_LOG" && return 0
        grep -Eq 'No DTLS address|DTLS disabled|using SSL instead|DTLS handshake failed|DTLS handshake timed out' "$OC_LOG" && return 1
        sleep 0.1
    done
    return 1
}

# Which channel carried data, from openconnect's own (quiet) log:
#   DTLS                      "Established DTLS connection" and no fallback line afterwards
#   TLS                       --no-dtls
#   TLS (DTLS not offered)    "No DTLS address": the server's CONNECT answer had no DTLS headers
#   TLS (DTLS failed)         a DTLS failure/fallback line after (or without) "Established"
#   TLS (no DTLS line)        none of these lines (should not happen)
oc_channel() {
    local mode=$1 last_ok last_bad
    if [ "$mode" = tls ]; then
        if grep -q 'Established DTLS connection' "$OC_LOG"; then echo "DTLS (unexpected)"; else echo TLS; fi
        return 0
    fi
    last_ok=$(grep -n 'Established DTLS connection' "$OC_LOG" | tail -1 | cut -d: -f1 || true)
    last_bad=$(grep -Ein 'DTLS disabled|using SSL instead|DTLS handshake failed|DTLS handshake timed out|Dead Peer|DTLS.*(fail|error)' "$OC_LOG" | grep -v 'Configured as' | tail -1 | cut -d: -f1 || true)
    if [ -n "$last_ok" ] && { [ -z "$last_bad" ] || [ "$last_bad" -lt "$last_ok" ]; }; then echo DTLS
    elif [ -z "$last_ok" ] && grep -q 'No DTLS address' "$OC_LOG"; then echo "TLS (DTLS not offered)"
    elif [ -n "$last_bad" ]; then echo "TLS (DTLS failed)"
    else echo "TLS (no DTLS line)"; fi
}

oc_ciphers() { # prints "TLS-suite|DTLS-suite" from openconnect's log
    local tls dtls
    tls=$(sed -n 's/.*with ciphersuite \(.*\)$/\1/p' "$OC_LOG" | tail -1 || true)
    dtls=$(sed -n 's/.*Established DTLS connection.*Ciphersuite \(.*\)\.$/\1/p' "$OC_LOG" | tail -1 || true)
    echo "${tls:-?}|${dtls:--}"
}

oc_disconnect() {
    [ -n "${OC_PID:-}" ] || return 0
    stop_pids INT 10 "$OC_PID"
    OC_PID=
    local i
    for ((i = 0; i < 50; i++)); do ip -n "$NS_C" link show tun0 > /dev/null 2>&1 || return 0; sleep 0.1; done
    ip -n "$NS_C" link del tun0 2>/dev/null || true
}

# --- CPU accounting from /proc/PID/stat -------------------------------------------------

# tree_ticks ROOT: "pid=ticks pid=ticks …" (utime+stime, clock ticks) for ROOT and every
# descendant (ocserv forks a worker per session and a security module).
tree_ticks() { snapshot "$1" | cut -d'|' -f1; }

tree_pids() { local t e out=(); t=$(tree_ticks "$1"); for e in $t; do out+=("${e%%=*}"); done; echo "${out[*]}"; }

record_tree() { local p; for p in $(tree_pids "$1"); do record_pid "$p"; done; }

# snapshot ROOT [PID...]: one pass over /proc, printed as
#   "ROOT-tree|ticks of PID1|ticks of PID2|…|foreign"
# ROOT-tree as in tree_ticks; each PID's own utime+stime (threads included); foreign =
# utime+stime+cutime+cstime summed over every process that is neither a kernel thread nor
# started by this script (other users of the machine: their CPU competes with the run).
snapshot() {
    local root=$1 d pid p c foreign=0; shift
    local -A pp=() tk=() ctk=() mine=()
    for d in /proc/[0-9]*; do
        pid=${d#/proc/}
        stat_fields "$pid" || continue
        pp[$pid]=${STAT[1]}
        tk[$pid]=$((STAT[11] + STAT[12]))
        ctk[$pid]=$((STAT[13] + STAT[14]))
    done
    # descendants of a pid (BFS over the ppid map)
    local -A kids=()
    for c in "${!pp[@]}"; do kids[${pp[$c]}]+="$c "; done
    descend() { # $1 root; fills DESC
        DESC=()
        [ -n "${tk[$1]:-}" ] || return 0
        local -a q=("$1")
        while [ "${#q[@]}" -gt 0 ]; do
            DESC+=("${q[0]}")
            # shellcheck disable=SC2206 # word splitting of a pid list is intended
            q=("${q[@]:1}" ${kids[${q[0]}]:-})
        done
    }
    local -a DESC out=()
    descend "$root"
    for p in "${DESC[@]}"; do out+=("$p=${tk[$p]}"); done
    local line="${out[*]}"
    for p in "$@"; do line+="|${tk[$p]:-0}"; done
    descend "$BASHPID_ROOT"
    for p in "${DESC[@]}"; do mine[$p]=1; done
    # Containers this script started run under conmon, not under the script.
    for c in "${MINE_ROOTS[@]}"; do descend "$c"; for p in "${DESC[@]}"; do mine[$p]=1; done; done
    for p in "${!tk[@]}"; do
        if [ "$p" = 2 ] || [ "${pp[$p]}" = 2 ] || [ -n "${mine[$p]:-}" ]; then continue; fi
        foreign=$((foreign + tk[$p] + ctk[$p]))
    done
    echo "$line|$foreign"
}
BASHPID_ROOT=$$
MINE_ROOTS=()

# ticks_delta BEFORE AFTER: ticks used between two tree_ticks snapshots. A process that
# appeared in between counts from zero; one that exited in between is lost (none do here:
# the session's worker lives for the whole connection).
ticks_delta() {
    local -A b=()
    local e sum=0 v
    for e in $1; do b[${e%%=*}]=${e#*=}; done
    for e in $2; do v=${e#*=}; sum=$((sum + v - ${b[${e%%=*}]:-0})); done
    echo "$sum"
}

# Whole-machine CPU ticks from /proc/stat: "busy softirq total".
sys_ticks() {
    local _cpu user nice system idle iowait irq softirq steal _rest
    read -r _cpu user nice system idle iowait irq softirq steal _rest < /proc/stat
    echo "$((user + nice + system + irq + softirq + steal)) $softirq $((user + nice + system + idle + iowait + irq + softirq + steal))"
}

# wait_quiet MAX: bounded wait (at most MAX seconds, and at most QUIET_BUDGET seconds summed
# over the whole script, default 900) until the machine is idle apart from the lab's idle
# tunnel: less than QUIET_TICKS (default 10 ticks = 0.1 CPU-second) busy in one second.
# Returns 1 if it did not get quiet (the run goes ahead and is flagged by its foreign CPU).
QUIET_SPENT=0
wait_quiet() {
    local max=$1 i
    local -a a b
    for ((i = 0; i < max; i++)); do
        [ "$QUIET_SPENT" -ge "${QUIET_BUDGET:-900}" ] && return 1
        read -r -a a <<< "$(sys_ticks)"
        sleep 1
        read -r -a b <<< "$(sys_ticks)"
        [ $((b[0] - a[0])) -lt "${QUIET_TICKS:-10}" ] && return 0
        QUIET_SPENT=$((QUIET_SPENT + 1))
    done
    return 1
}

# UDP datagrams and TCP segments in+out of the gateway namespace's own sockets (forwarded
# packets are not counted): "udp tcp". Tells which channel actually carried the tunnel.
gw_sock_counters() {
    if [ "$1" = 0 ]; then echo "0 0"; return 0; fi
    awk '/^Udp:/ { if (!u) { for (i = 1; i <= NF; i++) h[i] = $i; u = 1 } else { for (i = 1; i <= NF; i++) { if (h[i] == "InDatagrams" || h[i] == "OutDatagrams") udp += $i } } }
         /^Tcp:/ { if (!t) { for (i = 1; i <= NF; i++) g[i] = $i; t = 1 } else { for (i = 1; i <= NF; i++) { if (g[i] == "InSegs" || g[i] == "OutSegs") tcp += $i } } }
         END { print udp + 0, tcp + 0 }' "/proc/$1/net/snmp"
}

# --- a Site of servers behind the balancer (bench/failover.sh, bench/site-throughput.sh) ---
#
#   site_init NAME          work dir /tmp/mstunnel-NAME.*, the balancer's namespace NS_LB, and an
#                           EXIT trap that stops what was started and deletes every namespace
#                           in SITE_NS (add client namespaces to it)
#   site_gateways N         N gateway namespaces (GW_NS), each 198.18.(2+i).2/24 behind the
#                           balancer's 198.18.(2+i).1, routing through it; BACKENDS for the balancer
#   site_state              one certificate (SAN 198.18.0.1, the balancer's address; PIN), one
#                           issuer, one Site key file for every server: $WORK/state, $WORK/site-keys.json
#   site_member I DIR LOGS SETTINGS_JSON
#                           server I's auth then gateway, confined as they ship (994:990), state
#                           and run directories under DIR, logs LOGS with %s = auth, server
#                           (e.g. "$OUT/round1-%s0.log"); PIDs in APID[I] and SPID[I]
SITE_NS=()
GW_NS=()
BACKENDS=()
declare -A SPID APID
site_init() {
    WORK=$(mktemp -d "/tmp/mstunnel-$1.XXXXXX")
    chmod 755 "$WORK"
    NS_LB=mstbl$$
    SITE_NS=("$NS_LB")
    trap site_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}
site_cleanup() {
    local rc=$? i pid ns
    trap - EXIT INT TERM
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do pid=${PIDS[$i]}; pid_is_ours "$pid" && stop_pids TERM 10 "$pid"; done
    for ns in "${SITE_NS[@]}"; do ip netns del "$ns" 2>/dev/null || true; rm -rf "/etc/netns/$ns"; done
    if [ "${KEEP_WORK:-0}" = 1 ]; then echo "work dir kept: $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
site_gateways() {
    local n=$1 i ns
    ip netns add "$NS_LB"; ip -n "$NS_LB" link set lo up
    ip netns exec "$NS_LB" sysctl -qw net.ipv4.ip_forward=1
    for ((i = 0; i < n; i++)); do
        ns=mstbs$i-$$
        GW_NS+=("$ns"); SITE_NS+=("$ns")
        ip netns add "$ns"; ip -n "$ns" link set lo up
        ip link add "lb$i" netns "$NS_LB" type veth peer name gw0 netns "$ns"
        ip -n "$NS_LB" addr add "198.18.$((2 + i)).1/24" dev "lb$i"; ip -n "$NS_LB" link set "lb$i" up
        ip -n "$ns" addr add "198.18.$((2 + i)).2/24" dev gw0; ip -n "$ns" link set gw0 up
        ip -n "$ns" route add default via "198.18.$((2 + i)).1"
        BACKENDS+=(--backend "198.18.$((2 + i)).2")
    done
}
site_state() {
    mkdir -p "$WORK/state/certs" "$WORK/state/private" "$WORK/issuer"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 -subj "/CN=198.18.0.1" \
        -addext "subjectAltName=IP:198.18.0.1" -keyout "$WORK/state/private/site.key" -out "$WORK/state/certs/site.crt" 2>/dev/null
    PIN="pin-sha256:$(openssl x509 -in "$WORK/state/certs/site.crt" -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)"
    "$BIN/mst-dev-issuer" init --dir "$WORK/issuer" --issuer "$ISSUER" > /dev/null
    cat > "$WORK/state/auth.json" <<JSON
{ "issuer": "$ISSUER", "jwksFile": "$WORK/issuer/jwks.json", "allowedTenants": ["$TENANT"] }
JSON
    python3 -c 'import base64,json,os; print(json.dumps({"sealing":"site-1","keys":[{"id":"site-1","key":base64.b64encode(os.urandom(32)).decode()}]}))' > "$WORK/site-keys.json"
    chmod 600 "$WORK/site-keys.json"
}
site_member() {
    local i=$1 dir=$2 settings=$4 st=$2/state-$1 run=$2/run-$1 alog slog
    # shellcheck disable=SC2059 # the pattern is the caller's
    alog=$(printf "$3" auth); slog=$(printf "$3" server)
    mkdir -p "$run"; cp -a "$WORK/state" "$st"
    printf '%s\n' "$settings" > "$st/admin-settings.json"
    chgrp -R 990 "$dir"; chmod -R g+rX "$dir"; chmod 2770 "$run"; chmod 750 "$st/private"
    chgrp 990 "$WORK"
    start_bg "$alog" ip netns exec "${GW_NS[$i]}" "$BIN/mstunnel-auth" --state-dir "$st" --socket "$run/auth.sock" \
        --allow-uid 994 --ticket-keys "$WORK/site-keys.json"
    APID[$i]=$BG_PID
    for _ in $(seq 100); do [ -S "$run/auth.sock" ] && break; sleep 0.1; done
    start_bg "$slog" ip netns exec "${GW_NS[$i]}" "$BIN/mstunnel-server" --state-dir "$st" --run-dir "$run" --run-as 994:990
    SPID[$i]=$BG_PID
    for _ in $(seq 150); do ip netns exec "${GW_NS[$i]}" ss -ltn 'sport = :443' | grep -q LISTEN && return 0; sleep 0.1; done
    echo "server $i did not start" >&2; tail -5 "$slog" >&2; return 1
}
