#!/usr/bin/env bash
# Where the gateway's CPU goes, per direction: a perf profile of one gateway during one
# iperf3 stream through the stock openconnect, in the bench lab (bench/lib.sh).
#
#   sudo bench/profile.sh [SERVER] [MODE]       SERVER mstunnel|ocserv, MODE dtls|tls
#
# For each direction (up = client -> corp, down = corp -> client) it records
# `perf record -e cpu-clock -g` of the gateway's process tree for PERF_SECS (default 6) in
# the middle of a DURATION-second iperf3 run (default 10; PERF_CALLGRAPH="--call-graph dwarf"
# for full call chains through Swift code, which keeps no frame pointers), then prints the samples grouped by
# the system call they were taken under (or user space), and how many of those were softirq
# work (packet processing the kernel did on the back of that system call: forwarding, NAT,
# the peer namespace's receive). Raw perf.data files stay in OUT (default a temp dir).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
SERVER=${1:-mstunnel}
MODE=${2:-dtls}
DURATION=${DURATION:-10}
PERF_SECS=${PERF_SECS:-6}
command -v perf > /dev/null || { echo "missing perf (apt-get install linux-perf)" >&2; exit 1; }
bench_init
OUT=${OUT:-$(mktemp -d /tmp/mstunnel-profile.XXXXXX)}
lab_setup
make_pki
corp_iperf_start
case $SERVER in
    ocserv) ocserv_start "$MODE" ;;
    mstunnel) mst_start; if [ -n "${CHRT:-}" ]; then chrt -a $CHRT -p 0 "$MST_SERVER_PID"; fi ;;
    *) echo "SERVER must be mstunnel or ocserv" >&2; exit 2 ;;
esac
oc_connect "$SERVER" "$MODE" prof
[ "$MODE" = dtls ] && { oc_wait_dtls 10 || true; }
sleep 1
gw=$(gateway_pid "$SERVER")
for dir in ${DIRS:-up down}; do
    a=(-c "$CORP_IP" -t "$DURATION" -J)
    [ "$dir" = down ] && a+=(-R)
    if [ -n "${PING:-}" ]; then
        echo "   ping idle:    $(ip netns exec "$NS_C" ping -q -c 100 -i 0.01 "$CORP_IP" | tail -1)"
    fi
    t0=$(tree_ticks "$gw")
    for ns in "$NS_C" "$NS_G"; do ip netns exec "$ns" nstat -n > /dev/null 2>&1 || true; done
    ip netns exec "$NS_C" iperf3 "${a[@]}" > "$OUT/iperf-$dir.json" 2>&1 &
    ipid=$!
    record_pid "$ipid"
    sleep 2
    if [ -n "${PING:-}" ]; then
        echo "   ping loaded:  $(ip netns exec "$NS_C" ping -q -c 100 -i 0.01 "$CORP_IP" | tail -1)"
    fi
    if [ -n "${CAPTURE:-}" ]; then  # a short packet capture on the gateway's TUN (diagnosis)
        ip netns exec "$NS_G" timeout 1 tcpdump -ni mstun0 -c "$CAPTURE" -w "$OUT/tun-$dir.pcap" 2> /dev/null || true
    fi
    if [ "${NOPERF:-0}" = 1 ]; then
        wait "$ipid" || true
        t1=$(tree_ticks "$gw")
        python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["end"]; e=d["sum_received"]; print("== %s: %.0f Mbit/s, gateway %.2f CPU-s/GB, inner TCP retransmits %s (%.1f per MB)" % (sys.argv[4], e["bits_per_second"]/1e6, int(sys.argv[2])/int(sys.argv[3])/(e["bytes"]/1e9), d["sum_sent"].get("retransmits"), d["sum_sent"].get("retransmits", 0)/(d["sum_sent"]["bytes"]/1e6)))' "$OUT/iperf-$dir.json" "$(ticks_delta "$t0" "$t1")" "$(getconf CLK_TCK)" "$SERVER $MODE $dir"
        for ns in "$NS_C" "$NS_G"; do echo "   $([ "$ns" = "$NS_C" ] && echo client || echo gateway) ns: $(ip netns exec "$ns" nstat 2> /dev/null | awk '/Udp(Rcvbuf|Sndbuf|In)Errors|UdpInDatagrams|UdpOutDatagrams|TcpRetransSegs|IpOutDiscards|IpInDiscards|TcpExtTCPBacklogDrop|TcpExtTCPRcvQDrop|TcpExtTCPOFOQueue|IpExtInNoRoutes/ { printf "%s=%s ", $1, $2 }')"; done
        continue
    fi
    pids=$(tree_pids "$gw" | tr ' ' ',')
    perf stat -x, -e context-switches,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_recvmmsg,syscalls:sys_enter_sendmmsg,syscalls:sys_enter_sendmsg,syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_read,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_readv \
        -p "$pids" -o "$OUT/stat-$SERVER-$MODE-$dir.csv" -- sleep "$PERF_SECS" 2> /dev/null &
    spid=$!
    perf record -q -e cpu-clock ${PERF_CALLGRAPH:--g} -p "$pids" -o "$OUT/perf-$SERVER-$MODE-$dir.data" -- sleep "$PERF_SECS" 2> /dev/null
    wait "$spid" || true
    wait "$ipid" || true
    t1=$(tree_ticks "$gw")
    fig=$(python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["end"]["sum_received"]; print("%.0f Mbit/s, gateway %.2f CPU-s/GB (whole run, perf attached for part of it)" % (e["bits_per_second"]/1e6, int(sys.argv[2])/int(sys.argv[3])/(e["bytes"]/1e9)))' "$OUT/iperf-$dir.json" "$(ticks_delta "$t0" "$t1")" "$(getconf CLK_TCK)" 2>/dev/null || echo "?")
    echo "== $SERVER $MODE $dir: $fig"
    awk -F, -v s="$PERF_SECS" '$1 ~ /^[0-9]+$/ && $1 > 0 { printf "  %-36s %9.0f /s\n", $3, $1 / s }' "$OUT/stat-$SERVER-$MODE-$dir.csv"
    perf script -i "$OUT/perf-$SERVER-$MODE-$dir.data" -F comm,ip,sym,dso 2> /dev/null | python3 "$BENCH_DIR/profile-summary.py"
done
echo "perf data in $OUT"
