#!/usr/bin/env bash
# Aggregate tunnel throughput of a Site: CLIENTS stock openconnect clients (DTLS), each in a
# namespace of its own, run iperf3 at once through deploy/balancer/nftables-balancer.sh to
# ONE mstunnel server, then to THREE (issue 14: "three servers behind the balancer carry at
# least 2.5× the aggregate throughput of one, or the measurement that shows what limits it").
# Same clients, same balancer, same run, ROUNDS rounds alternating; upload and download.
#
# Every gateway, balancer, client and iperf3 shares this machine's cores, so the figure that
# says what limits it is measured beside the throughput: the gateways' CPU (utime+stime of
# each mstunnel-server, from /proc), the whole machine's busy time, and from them the
# gateway's CPU-seconds per GB — what one server needs per unit of traffic, which is what
# scales when each server has a machine of its own.
#
#   sudo bench/site-throughput.sh            # BIN=.build-bench/release by default
#   SERVERS (3) CLIENTS (6) DURATION (10 s) ROUNDS (3) BIN BENCH_OUT
# Output: bench/results/site-throughput-<UTC>/ (iperf3 JSON, logs, runs.jsonl, site-throughput.md).
source "$(dirname "$0")/lib.sh"
bench_require_root
SERVERS=${SERVERS:-3} CLIENTS=${CLIENTS:-6} DURATION=${DURATION:-10} ROUNDS=${ROUNDS:-3}
for b in mstunnel-server mstunnel-auth mst-dev-issuer; do
    [ -x "$BIN/$b" ] || { echo "missing $BIN/$b (swift build -c release --scratch-path .build-bench)" >&2; exit 1; }
done
for need in nft curl conntrack openconnect iperf3; do command -v "$need" >/dev/null || { echo "missing tool: $need" >&2; exit 1; }; done
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${BENCH_OUT:-$ROOT/bench/results/site-throughput-$STAMP}
mkdir -p "$OUT"
site_init sitetp
CL_NS=()
for ((k = 0; k < CLIENTS; k++)); do CL_NS+=("mstsc$k-$$"); done
SITE_NS+=("${CL_NS[@]}")

echo "== the lab: $CLIENTS clients, the balancer (198.18.0.1; corporate host 198.18.1.2 behind it), $SERVERS servers"
site_gateways "$SERVERS"
ip -n "$NS_LB" addr add 198.18.0.1/32 dev lo
ip -n "$NS_LB" addr add 198.18.1.2/32 dev lo
for ((k = 0; k < CLIENTS; k++)); do
    ns=${CL_NS[$k]}
    ip netns add "$ns"; ip -n "$ns" link set lo up
    ip link add "cl$k" netns "$NS_LB" type veth peer name cli0 netns "$ns"
    ip -n "$NS_LB" addr add "198.18.$((20 + k)).1/24" dev "cl$k"; ip -n "$NS_LB" link set "cl$k" up
    ip -n "$ns" addr add "198.18.$((20 + k)).2/24" dev cli0; ip -n "$ns" link set cli0 up
    ip -n "$ns" route add default via "198.18.$((20 + k)).1"
    mkdir -p "/etc/netns/$ns"; : > "/etc/netns/$ns/resolv.conf"
done
for ((k = 0; k < CLIENTS; k++)); do
    start_bg "$WORK/iperf3-s$k.log" ip netns exec "$NS_LB" iperf3 -s -B 198.18.1.2 -p $((5201 + k))
done

site_state
for ((k = 0; k < CLIENTS; k++)); do
    "$BIN/mst-dev-issuer" mint --dir "$WORK/issuer" --iss "$ISSUER" --aud "$AUD" --tid "$TENANT" \
        --oid "$(printf '0b1f7a3e-0000-4000-8000-%012d' "$k")" --upn "tp$k@corp.test" --exp-in 7200 > "$WORK/token$k.jwt"
done

start_member() {  # start_member I TAG
    site_member "$1" "$WORK/$2" "$OUT/$2-%s$1.log" \
        "{\"displayName\":\"site-throughput\",\"network\":\"100.64.0.0/16\",\"routeIncludes\":[\"198.18.1.0/24\"],\"listenPort\":443,
          \"advancedSettings\":[{\"name\":\"pool-slice\",\"value\":\"$1/8\"},{\"name\":\"mtu\",\"value\":\"1434\"}]}"
}

declare -A OCPID
connect_clients() { # connect_clients TAG: every client connects through the balancer, DTLS
    local tag=$1 k ok
    for ((k = 0; k < CLIENTS; k++)); do
        start_bg "$OUT/$tag-oc$k.log" ip netns exec "${CL_NS[$k]}" openconnect --protocol=anyconnect --servercert "$PIN" --non-inter \
            --token-mode=oidc --token-secret=@"$WORK/token$k.jwt" --interface tun0 https://198.18.0.1/
        OCPID[$k]=$BG_PID
    done
    for ((k = 0; k < CLIENTS; k++)); do
        ok=0
        for _ in $(seq 300); do
            if ip -n "${CL_NS[$k]}" -4 addr show dev tun0 2>/dev/null | grep -q 'inet 100\.64\.' && grep -q 'Established DTLS' "$OUT/$tag-oc$k.log"; then ok=1; break; fi
            sleep 0.1
        done
        [ $ok = 1 ] || { echo "client $k did not get a DTLS tunnel ($tag):" >&2; tail -5 "$OUT/$tag-oc$k.log" >&2; return 1; }
    done
}
disconnect_clients() {
    local k
    for ((k = 0; k < CLIENTS; k++)); do signal_pid INT "${OCPID[$k]}"; done
    for ((k = 0; k < CLIENTS; k++)); do wait_gone 10 "${OCPID[$k]}" || signal_pid KILL "${OCPID[$k]}"; done
}

# measure TAG N DIR: all clients' iperf3 at once for DURATION; one JSON line in runs.jsonl.
measure() {
    local tag=$1 n=$2 dir=$3 k i pids=() rev=()
    [ "$dir" = down ] && rev=(-R)
    local before=() after=() sb sa
    for ((i = 0; i < n; i++)); do before+=("$(tree_ticks "${SPID[$i]}")"); done
    sb=$(sys_ticks)
    for ((k = 0; k < CLIENTS; k++)); do
        ip netns exec "${CL_NS[$k]}" iperf3 -c 198.18.1.2 -p $((5201 + k)) -t "$DURATION" -J "${rev[@]}" > "$OUT/$tag-$dir-c$k.json" 2>&1 &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || true; done
    sa=$(sys_ticks)
    for ((i = 0; i < n; i++)); do after+=("$(tree_ticks "${SPID[$i]}")"); done
    local gw=() ; for ((i = 0; i < n; i++)); do gw+=("$(ticks_delta "${before[$i]}" "${after[$i]}")"); done
    python3 - "$OUT" "$tag" "$n" "$dir" "$CLIENTS" "$DURATION" "$(getconf CLK_TCK)" "$sb" "$sa" "${gw[*]}" "$(nproc)" >> "$OUT/runs.jsonl" <<'PY'
import json, os, sys
out, tag, n, d, clients, dur, hz, sb, sa, gw, ncpu = sys.argv[1:12]
n, clients, hz, ncpu = int(n), int(clients), int(hz), int(ncpu)
bits = []; fails = 0
for k in range(clients):
    try:
        r = json.load(open(os.path.join(out, f"{tag}-{d}-c{k}.json")))
        bits.append(r["end"]["sum_received"]["bits_per_second"])
    except Exception:
        fails += 1; bits.append(0.0)
b0, b1 = [list(map(int, s.split())) for s in (sb, sa)]
busy = (b1[0] - b0[0]) / max(1, b1[2] - b0[2])
gw = [int(x) for x in gw.split()]
gbytes = sum(bits) * float(dur) / 8 / 1e9
print(json.dumps({"tag": tag, "servers": n, "dir": d, "clients": clients, "aggregate_gbps": sum(bits) / 1e9,
                  "per_client_gbps": [round(b / 1e9, 3) for b in bits], "failed_clients": fails,
                  "gateway_cpu_s": [round(t / hz, 2) for t in gw], "gateway_cpu_s_per_gb": round(sum(gw) / hz / gbytes, 3) if gbytes else None,
                  "machine_busy": round(busy, 3), "cores": ncpu}))
PY
    tail -1 "$OUT/runs.jsonl" | python3 -c "import json,sys; r=json.load(sys.stdin); print(f\"   {r['servers']} server(s) {r['dir']:>4}: {r['aggregate_gbps']:.2f} Gbit/s aggregate, gateway CPU {r['gateway_cpu_s']} s, machine busy {r['machine_busy']*100:.0f} %\")"
}

for ((r = 1; r <= ROUNDS; r++)); do
    for n in 1 "$SERVERS"; do
        tag=r$r-s$n
        echo "== round $r: $n server(s)"
        for ((i = 0; i < n; i++)); do start_member "$i" "$tag"; done
        start_bg "$OUT/$tag-balancer.log" ip netns exec "$NS_LB" bash "$ROOT/deploy/balancer/nftables-balancer.sh" --vip 198.18.0.1 "${BACKENDS[@]:0:$((2 * n))}"
        LB_PID=$BG_PID
        for _ in $(seq 50); do grep -q balancer.started "$OUT/$tag-balancer.log" && break; sleep 0.1; done
        connect_clients "$tag"
        echo "   clients per server: $(for ((i = 0; i < n; i++)); do printf '%s ' "$(grep -c '"msg":"session.created"' "$OUT/$tag-server$i.log")"; done)"
        sleep 1
        measure "$tag" "$n" up
        measure "$tag" "$n" down
        disconnect_clients
        stop_pids TERM 10 "$LB_PID"
        for ((i = 0; i < n; i++)); do stop_pids TERM 15 "${SPID[$i]}"; stop_pids TERM 10 "${APID[$i]}"; done
    done
done

python3 - "$OUT" "$SERVERS" "$CLIENTS" "$DURATION" "$ROUNDS" <<'PY'
import json, os, statistics, sys
out, servers, clients, dur, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
runs = [json.loads(l) for l in open(os.path.join(out, "runs.jsonl"))]
def med(xs): return statistics.median(xs) if xs else float("nan")
def spread(xs, f="{:.2f}"): return f"{f.format(med(xs))} ({f.format(min(xs))}–{f.format(max(xs))})" if xs else "–"
lines = ["| direction | 1 server: aggregate Gbit/s | %d servers: aggregate Gbit/s | ratio | gateway CPU-s per GB (1 / %d) | machine busy (1 / %d) |" % (servers, servers, servers),
         "| --- | --- | --- | --- | --- | --- |"]
for d in ("up", "down"):
    one = [r for r in runs if r["dir"] == d and r["servers"] == 1]
    many = [r for r in runs if r["dir"] == d and r["servers"] == servers]
    ratios = [m["aggregate_gbps"] / o["aggregate_gbps"] for o, m in zip(one, many) if o["aggregate_gbps"]]
    lines.append(f"| {d} | {spread([r['aggregate_gbps'] for r in one])} | {spread([r['aggregate_gbps'] for r in many])} | "
                 f"{spread(ratios)}× | {spread([r['gateway_cpu_s_per_gb'] for r in one], '{:.3f}')} / {spread([r['gateway_cpu_s_per_gb'] for r in many], '{:.3f}')} | "
                 f"{spread([100 * r['machine_busy'] for r in one], '{:.0f}')} % / {spread([100 * r['machine_busy'] for r in many], '{:.0f}')} % |")
cores = runs[0]["cores"] if runs else 0
text = "\n".join(lines) + f"\n\n{clients} clients (stock openconnect, DTLS, one iperf3 stream each), {dur} s per run, {rounds} rounds; median (min–max); ratio per round. {cores} cores shared by every process of the run.\n"
open(os.path.join(out, "site-throughput.md"), "w").write(text)
print(text)
PY
echo "results: $OUT"
