#!/usr/bin/env bash
# Failover of a Site (issue 14, docs/site.md): SESSIONS sessions from mst-loadgen held across
# SERVERS mstunnel servers behind deploy/balancer/nftables-balancer.sh (its defaults: a probe
# every 2 s, out after 2 misses); one server is killed (gateway and auth, SIGKILL, as a host or
# container dies) KILL_AFTER seconds into the hold; every tunnel it had reconnects through the
# balancer with its cookie (mst-loadgen --resume, retrying every 0.5 s): how long until each is
# back (p50, p99, all), how many were asked to log in again, how many came back with another
# address. ROUNDS rounds, fresh servers each.
#
# ocserv is not run: it keeps a session in the memory of the process that served it, so a
# sibling cannot take its cookie and every client of a dead server logs in again — there is
# no same-run figure to set beside these, and none is made up.
#
#   sudo bench/failover.sh        (BIN: release binaries, default .build-bench/release)
# Environment: SESSIONS (3000), SERVERS (3), ROUNDS (3), HOLD (90), KILL_AFTER (10),
# SOURCES (64 client addresses, so the balancer's source hash spreads them), TOKENS (300),
# CONCURRENCY (64), KEEP_WORK=1. Writes $OUT (bench/results/failover-<stamp>/): one
# mst-loadgen JSON per round, the servers' logs, failover.md (the fragment for docs/benchmarks.md).
source "$(dirname "$0")/lib.sh"
bench_require_root
SESSIONS=${SESSIONS:-3000} SERVERS=${SERVERS:-3} ROUNDS=${ROUNDS:-3} HOLD=${HOLD:-90} KILL_AFTER=${KILL_AFTER:-10}
SOURCES=${SOURCES:-64} TOKENS=${TOKENS:-300} CONCURRENCY=${CONCURRENCY:-64}
for b in mstunnel-server mstunnel-auth mst-dev-issuer mst-loadgen; do
    [ -x "$BIN/$b" ] || { echo "missing $BIN/$b (swift build -c release --scratch-path .build-bench)" >&2; exit 1; }
done
for need in nft curl conntrack; do command -v "$need" >/dev/null || { echo "missing tool: $need" >&2; exit 1; }; done
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${BENCH_OUT:-$ROOT/bench/results/failover-$STAMP}
mkdir -p "$OUT"
site_init failover
SITE_NS+=("$NS_C")

echo "== the lab: $SOURCES client addresses, the balancer, $SERVERS servers"
site_gateways "$SERVERS"
ip netns add "$NS_C"
ip link add cli0 netns "$NS_C" type veth peer name lbc netns "$NS_LB"
for ((k = 0; k < SOURCES; k++)); do ip -n "$NS_C" addr add "198.18.0.$((10 + k))/24" dev cli0; done
ip -n "$NS_LB" addr add 198.18.0.1/24 dev lbc
ip -n "$NS_C" link set lo up
ip -n "$NS_C" link set cli0 up; ip -n "$NS_LB" link set lbc up

# One certificate (SAN: the balancer's address), one issuer, one Site key for every server.
site_state
echo "   minting $TOKENS tokens"
mint_token_file "$WORK/issuer" "$TOKENS" "$WORK/tokens.txt" fo
BIND=()
for ((k = 0; k < SOURCES; k++)); do BIND+=(--bind-address "198.18.0.$((10 + k))"); done

start_member() {  # start_member I ROUND
    local settings
    settings=$(python3 -c '
import json, sys
i, n = int(sys.argv[1]), int(sys.argv[2])
print(json.dumps({"displayName": "failover", "network": "100.64.0.0/16", "routeIncludes": ["198.18.200.0/24"], "listenPort": 443,
                  "advancedSettings": [{"name": "pool-slice", "value": f"{i}/{n}"},
                                       # thousands of clients on SOURCES addresses, a few hundred users
                                       {"name": "max-login-connections-per-ip", "value": "0"},
                                       {"name": "max-sessions-per-user", "value": "0"}]}))' "$1" "$SERVERS")
    site_member "$1" "$WORK/r$2" "$OUT/round$2-%s$1.log" "$settings"
}
created() { cat "$OUT"/round"$1"-server*.log | grep -c '"msg":"session.created"' || true; }

for ((r = 1; r <= ROUNDS; r++)); do
    echo "== round $r of $ROUNDS"
    for ((i = 0; i < SERVERS; i++)); do start_member "$i" "$r"; done
    start_bg "$OUT/round$r-balancer.log" ip netns exec "$NS_LB" bash "$ROOT/deploy/balancer/nftables-balancer.sh" --vip 198.18.0.1 "${BACKENDS[@]}"
    LB_PID=$BG_PID
    for _ in $(seq 50); do grep -q balancer.started "$OUT/round$r-balancer.log" && break; sleep 0.1; done
    start_bg "$OUT/round$r-loadgen.err" sh -c "exec ip netns exec $NS_C '$BIN/mst-loadgen' --url https://198.18.0.1/ --pin '$PIN' \
        --token-file '$WORK/tokens.txt' --sessions $SESSIONS --concurrency $CONCURRENCY --hold $HOLD --resume --json ${BIND[*]} \
        > '$OUT/round$r.json'"
    LG_PID=$BG_PID
    for _ in $(seq 3000); do [ "$(created "$r")" -ge "$SESSIONS" ] && break; pid_is_ours "$LG_PID" || break; sleep 0.1; done
    echo "   $(created "$r") sessions up: $(for ((i = 0; i < SERVERS; i++)); do printf 'server %d: %d  ' "$i" "$(grep -c '"msg":"session.created"' "$OUT/round$r-server$i.log")"; done)"
    sleep "$KILL_AFTER"
    victim=$(( (r - 1) % SERVERS ))
    echo "   killing server $victim (gateway and auth, SIGKILL)"
    signal_pid KILL "${SPID[$victim]}"; signal_pid KILL "${APID[$victim]}"
    wait "${SPID[$victim]}" "${APID[$victim]}" 2>/dev/null || true   # reaped quietly
    date -u +%s.%N > "$OUT/round$r-killed-at"
    wait_gone $((HOLD + 120)) "$LG_PID" || { echo "mst-loadgen did not finish" >&2; signal_pid TERM "$LG_PID"; wait_gone 30 "$LG_PID" || true; }
    python3 - "$OUT/round$r.json" <<'PY' || true
import json, sys
r = json.load(open(sys.argv[1])); x = r.get("resume") or {}; l = x.get("latencyMs") or {}
print(f"   lost {x.get('lost')}, back {x.get('resumed')}, refused {x.get('refused')}, not back {x.get('gaveUp')}, "
      f"address changed {x.get('addressesChanged')}; resume p50 {l.get('p50', 0):.0f} ms, p99 {l.get('p99', 0):.0f} ms, "
      f"all back after {x.get('allBackSeconds')} s")
PY
    # Logins on the survivors after the kill: what "none asked to log in again" means at the gateways.
    for ((i = 0; i < SERVERS; i++)); do
        [ "$i" = "$victim" ] && continue
        python3 - "$OUT/round$r-server$i.log" "$(cat "$OUT/round$r-killed-at")" <<'PY' >> "$OUT/round$r-after-kill.txt"
import json, sys, datetime
t = float(sys.argv[2]); created = resumed = 0
for line in open(sys.argv[1]):
    try: d = json.loads(line)
    except ValueError: continue
    ts = datetime.datetime.fromisoformat(d["ts"].replace("Z", "+00:00")).timestamp()
    if ts < t: continue
    created += d.get("msg") == "session.created"; resumed += d.get("msg") == "session.resumed"
print(created, resumed)
PY
    done
    for ((i = 0; i < SERVERS; i++)); do
        [ "$i" = "$victim" ] && continue
        stop_pids TERM 15 "${SPID[$i]}"; stop_pids TERM 10 "${APID[$i]}"
    done
    stop_pids TERM 10 "$LB_PID"
done

python3 - "$OUT" "$ROUNDS" "$SESSIONS" "$SERVERS" "$SOURCES" <<'PY'
import json, os, statistics, sys
out, rounds, sessions, servers, sources = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rows = []
for r in range(1, rounds + 1):
    try: rep = json.load(open(os.path.join(out, f"round{r}.json")))
    except Exception: continue
    x = rep.get("resume") or {}; l = x.get("latencyMs") or {}
    logins = resumed = 0
    try:
        for line in open(os.path.join(out, f"round{r}-after-kill.txt")):
            c, s = map(int, line.split()); logins += c; resumed += s
    except FileNotFoundError: pass
    rows.append(dict(up=rep["sessions"]["established"], lost=x.get("lost", 0), back=x.get("resumed", 0), refused=x.get("refused", 0),
                     gaveup=x.get("gaveUp", 0), changed=x.get("addressesChanged", 0), p50=l.get("p50"), p99=l.get("p99"), max=l.get("max"),
                     all=x.get("allBackSeconds"), logins=logins, gw_resumed=resumed))
def spread(k, d=0):
    v = [row[k] for row in rows if row[k] is not None]
    if not v: return "–"
    return f"{statistics.median(v):,.{d}f} ({min(v):,.{d}f}–{max(v):,.{d}f})"
L = ["## Failover: a server of the Site killed under load\n",
     f"`sudo bench/failover.sh`: {sessions:,} sessions from `mst-loadgen` ({sources} client addresses) across {servers} servers behind "
     "`deploy/balancer/nftables-balancer.sh` (defaults: probe every 2 s, out after 2 misses); one server's gateway and auth "
     "SIGKILLed under load; every lost tunnel reconnects through the balancer with its cookie (`--resume`, attempts 0.5 s apart). "
     f"Median of {len(rows)} round{'s' if len(rows) != 1 else ''} (min–max).\n",
     "| measure | mstunnel | target |", "| --- | ---: | --- |",
     f"| sessions up before the kill | {spread('up')} | {sessions:,} |",
     f"| tunnels lost with the server | {spread('lost')} | |",
     f"| back with their cookie (no new login) | {spread('back')} | all |",
     f"| asked to log in again (cookie refused) | {spread('refused')} | 0 |",
     f"| new logins at the survivors after the kill | {spread('logins')} | 0 |",
     f"| not back by the end of the hold | {spread('gaveup')} | 0 |",
     f"| back with another tunnel address | {spread('changed')} | 0 |",
     f"| time to be back, p50 (ms) | {spread('p50')} | |",
     f"| time to be back, p99 (ms) | {spread('p99')} | |",
     f"| all back after the first loss (s) | {spread('all', 2)} | ≤ 30 |",
     "",
     "ocserv is not in this table: it keeps each session in the memory of the process that served it, so when that "
     "server dies its clients must log in again at a sibling; there is no same-run figure to compare.\n"]
open(os.path.join(out, "failover.md"), "w").write("\n".join(L) + "\n")
print("\n".join(L))
PY
