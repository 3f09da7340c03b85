#!/usr/bin/env bash
# Throughput and gateway CPU, ocserv vs mstunnel-server, side by side in one lab.
#
#   sudo bench/throughput.sh [RESULTS.jsonl]
#
# For each round, for each gateway (the order alternates between rounds), for each mode
# (dtls = openconnect's default, tls = --no-dtls): start the gateway (fresh, on
# 198.18.0.1:443 once the previous one has exited), connect the stock openconnect (quiet),
# run iperf3 up (client -> corp) and down (-R) through the tunnel, and record Mbit/s, bytes
# received (iperf3 JSON end.sum_received), and the gateway's CPU seconds during that iperf3
# run: utime+stime from /proc/PID/stat summed over the gateway's process tree (ocserv: main,
# security module, the session's worker; mstunnel: mstunnel-server; mstunnel-auth is
# recorded separately). A raw routed baseline (no VPN) runs once first.
#
# Environment: DURATION (s per iperf3 run, default 10), ROUNDS (default 3), SERVERS
# (default "ocserv mstunnel"), MODES (default "dtls tls"), BIN (release binaries, default
# .build-bench/release), KEEP_WORK=1 keeps logs and configs in /tmp.
# One JSON object per measured run goes to RESULTS (default bench/results/throughput-DATE.jsonl).
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
    echo "SKIP: $(basename "$0") needs root (network namespaces, TUN, port 443)" >&2
    exit 77
fi
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
SERVERS=${SERVERS:-ocserv mstunnel}
MODES=${MODES:-dtls tls}
in_range() { [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }
in_range "$DURATION" 1 600 || { echo "DURATION must be 1..600 seconds" >&2; exit 2; }
in_range "$ROUNDS" 1 20 || { echo "ROUNDS must be 1..20" >&2; exit 2; }
RESULTS=${1:-${RESULTS:-$BENCH_DIR/results/throughput-$(date +%Y%m%dT%H%M%S).jsonl}}
mkdir -p "$(dirname "$RESULTS")"
: > "$RESULTS"
LOGS=${RESULTS%.jsonl}.logs
mkdir -p "$LOGS"

bench_init
lab_setup
make_pki
corp_iperf_start
HZ=$(getconf CLK_TCK)
echo "lab: namespaces $NS_C $NS_G $NS_I, work dir $WORK, ${DURATION}s per iperf3 run, $ROUNDS round(s)"

# iperf3 through whatever route the client namespace has; bounded in time. The client runs
# in the background with its PID recorded so the EXIT trap can stop it.
IPERF_JSON=
iperf_run() { # TAG up|down
    local tag=$1 dir=$2 pid
    local -a a=(-c "$CORP_IP" -t "$DURATION" -J)
    [ "$dir" = down ] && a+=(-R)
    IPERF_JSON=$WORK/iperf-$tag-$dir.json
    ip netns exec "$NS_C" timeout $((DURATION + 30)) iperf3 "${a[@]}" > "$IPERF_JSON" 2> "$IPERF_JSON.err" &
    pid=$!
    record_pid "$pid"
    wait "$pid"
}

# emit KEY=VALUE...: one JSON line into RESULTS; iperf3's figures are read from IPERF_JSON.
emit() {
    python3 - "$IPERF_JSON" "$HZ" "$@" >> "$RESULTS" <<'PY'
import json, sys
path, hz, pairs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
row = {}
for p in pairs:
    k, _, v = p.partition("=")
    row[k] = v
if row.get("server") == "raw":
    for k in ("gw_ticks", "gw_procs", "client_ticks", "udp_pkts", "tcp_segs"):
        row.pop(k, None)
for k in [k for k, v in row.items() if v == ""]:
    del row[k]
for k in ("round", "attempt", "tun_mtu", "udp_pkts", "tcp_segs", "gw_procs"):
    if row.get(k, "") != "":
        row[k] = int(row[k])
for k in ("contended", "quiet_before"):
    if k in row:
        row[k] = row[k] == "true"
for k in ("gw_ticks", "auth_ticks", "client_ticks", "foreign_ticks", "sys_busy_ticks", "sys_softirq_ticks"):
    if row.get(k, "") != "":
        row[k.replace("_ticks", "_cpu_s")] = int(row.pop(k)) / hz
    else:
        row.pop(k, None)
try:
    d = json.load(open(path))
    if "error" in d:
        row["error"] = d["error"]
    e = d["end"]["sum_received"]
    cu = d["end"].get("cpu_utilization_percent", {})
    if cu:
        row["iperf_client_cpu_pct"] = cu.get("host_total")
        row["iperf_server_cpu_pct"] = cu.get("remote_total")
    row["bytes"] = e["bytes"]
    row["seconds"] = e["seconds"]
    row["mbps"] = e["bits_per_second"] / 1e6
    if row.get("gw_cpu_s") is not None and e["bytes"] > 0:
        row["gw_cpu_s_per_gb"] = row["gw_cpu_s"] / (e["bytes"] / 1e9)
except Exception as ex:  # a failed run is recorded as such, never as a figure
    row.setdefault("error", "iperf3 output unreadable: %s" % ex)
print(json.dumps(row, sort_keys=True))
PY
}

# measure ROUND SERVER MODE DIR: one iperf3 run with CPU accounting around it. Waits (bounded)
# for the machine to be quiet first; a run during which other processes on the machine used
# more than CONTENDED_CPU (CPU-seconds per second of run, default 0.05) is kept but flagged
# "contended" and repeated, up to ATTEMPTS runs in all (default 3).
measure() {
    local round=$1 server=$2 mode=$3 dir=$4 tag auth_pid=0 attempt rc snap0 snap1 s0 s1 n0 n1
    local g0 g1 a0 a1 k0 k1 f0 f1 t0 t1 quiet contended
    tag=r$round-$server-$mode
    local oc=${OC_PID:-0} gw=0
    [ "$server" = raw ] && oc=0
    [ "$server" != raw ] && gw=$(gateway_pid "$server")
    [ "$server" = mstunnel ] && auth_pid=$MST_AUTH_PID
    [ "$server" = mstunnel-container ] && auth_pid=$MSTC_AUTH_PID
    for ((attempt = 1; attempt <= ${ATTEMPTS:-3}; attempt++)); do
        [ "$gw" != 0 ] && record_tree "$gw"
        quiet=true
        wait_quiet "${QUIET_WAIT:-60}" || quiet=false
        local -a sa sb na nb procs extra=()
        rc=0
        snap0=$(snapshot "$gw" "$auth_pid" "$oc")
        s0=$(sys_ticks)
        n0=$(gw_sock_counters "$gw")
        t0=$(date +%s.%N)
        iperf_run "$tag" "$dir" || rc=$?
        t1=$(date +%s.%N)
        n1=$(gw_sock_counters "$gw")
        s1=$(sys_ticks)
        snap1=$(snapshot "$gw" "$auth_pid" "$oc")
        [ "$gw" != 0 ] && record_tree "$gw"
        IFS='|' read -r g0 a0 k0 f0 <<< "$snap0"
        IFS='|' read -r g1 a1 k1 f1 <<< "$snap1"
        read -r -a sa <<< "$s0"
        read -r -a sb <<< "$s1"
        read -r -a na <<< "$n0"
        read -r -a nb <<< "$n1"
        read -r -a procs <<< "$g1"
        contended=$(python3 -c 'import sys; f, w, hz, lim = map(float, sys.argv[1:]); print("true" if f / hz > lim * w else "false")' \
            "$((f1 - f0))" "$(python3 -c "print($t1 - $t0)")" "$HZ" "${CONTENDED_CPU:-0.05}")
        local channel=routed ciphers="|" mtu=
        if [ "$server" != raw ]; then
            channel=$(oc_channel "$mode")
            ciphers=$(oc_ciphers)
            mtu=$(ip -n "$NS_C" -o link show tun0 2>/dev/null | sed -n 's/.* mtu \([0-9]*\) .*/\1/p')
        fi
        [ "$rc" != 0 ] && extra+=("error=iperf3 exited $rc: $(tr '\n' ' ' < "$IPERF_JSON.err" | cut -c1-200)")
        [ "${server#mstunnel}" != "$server" ] && extra+=(auth_ticks=$((a1 - a0)))
        emit round="$round" attempt="$attempt" server="$server" mode="$mode" dir="$dir" channel="$channel" \
            tls_cipher="${ciphers%%|*}" dtls_cipher="${ciphers#*|}" tun_mtu="$mtu" \
            gw_ticks="$(ticks_delta "$g0" "$g1")" gw_procs="${#procs[@]}" client_ticks=$((k1 - k0)) \
            foreign_ticks=$((f1 - f0)) contended="$contended" quiet_before="$quiet" \
            sys_busy_ticks=$((sb[0] - sa[0])) sys_softirq_ticks=$((sb[1] - sa[1])) \
            udp_pkts=$((nb[0] - na[0])) tcp_segs=$((nb[1] - na[1])) "${extra[@]}"
        show_last
        if [ "$contended" = false ]; then break; fi
        if [ "$attempt" -lt "${ATTEMPTS:-3}" ]; then echo "    (other processes used the CPU during that run; repeating)"; fi
    done
}

show_last() {
    tail -1 "$RESULTS" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
cpu = r.get("gw_cpu_s_per_gb")
print("  %-8s %-4s %-4s %-24s %8s Mbit/s  gw %5.2f s CPU  %7s s/GB  other procs %4.2f s%s%s" % (
      r["server"], r["mode"], r["dir"], r["channel"],
      "%.0f" % r["mbps"] if "mbps" in r else "-", r.get("gw_cpu_s", 0), "%.2f" % cpu if cpu is not None else "-",
      r.get("foreign_cpu_s", 0), "  CONTENDED" if r.get("contended") else "",
      "  ERROR " + r["error"] if "error" in r else ""))'
}

echo "== raw routed baseline (no VPN): client -> gateway (kernel forwarding) -> corp"
raw_routes add
measure 0 raw none up
measure 0 raw none down
raw_routes del

for ((round = 1; round <= ROUNDS; round++)); do
    read -r -a order <<< "$SERVERS"
    if [ $((round % 2)) = 0 ] && [ "${#order[@]}" = 2 ]; then order=("${order[1]}" "${order[0]}"); fi
    for server in "${order[@]}"; do
        for mode in $MODES; do
            echo "== round $round/$ROUNDS: $server, $mode"
            tag=r$round-$server-$mode
            case $server in
                ocserv) ocserv_start "$mode" ;;
                mstunnel) mst_start ;;
                mstunnel-container) mstc_start ;;
                *) echo "unknown server $server" >&2; exit 2 ;;
            esac
            if oc_connect "$server" "$mode" "$tag"; then
                if [ "$mode" = dtls ]; then oc_wait_dtls 10 || true; fi
                sleep 1
                measure "$round" "$server" "$mode" up
                measure "$round" "$server" "$mode" down
            else
                IPERF_JSON=/nonexistent
                for dir in up down; do
                    emit round="$round" server="$server" mode="$mode" dir="$dir" channel="no tunnel" error="tunnel did not come up"
                done
            fi
            oc_disconnect
            cp "$OC_LOG" "$LOGS/openconnect-$tag.log"
            case $server in
                ocserv) ocserv_stop; cp "$WORK/ocserv/ocserv.log" "$LOGS/ocserv-$tag.log" ;;
                mstunnel) mst_stop; cp "$WORK/mst/server.log" "$LOGS/mstunnel-server-$tag.log"; cp "$WORK/mst/auth.log" "$LOGS/mstunnel-auth-$tag.log" ;;
                mstunnel-container) mstc_stop; cp "$WORK/mst/mstbench-server.log" "$LOGS/mstunnel-container-server-$tag.log" ;;
            esac
        done
    done
done
echo "results: $RESULTS"
