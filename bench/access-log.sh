#!/usr/bin/env bash
# What the access log costs (issue 14: "on by default — measure its cost and keep it under 2 %
# of throughput"). The gateway's access record is its `session.ended` line (user, device,
# client and tunnel address, bytes, duration, reason), with `session.created` and
# `session.connected` before it: a few lines per session, none per packet. Measured both
# where it could cost — the connect rate (sessions logged in, connected and logged off per
# second: every session writes its lines) — and where the issue asks — tunnel throughput —
# with the gateway's log on (as shipped, LOG_LEVEL info) and off (LOG_LEVEL=warning: no
# access record), alternating, ROUNDS rounds, in one run on the same client.
#
#   sudo bench/access-log.sh          # BIN=.build-bench/release by default
#   ROUNDS (3) RATE_SESSIONS (1000) DURATION (10 s) TOKENS (500) BENCH_OUT
source "$(dirname "$0")/lib.sh"
bench_init
lab_setup
make_pki
ROUNDS=${ROUNDS:-3} RATE_SESSIONS=${RATE_SESSIONS:-1000} DURATION=${DURATION:-10} TOKENS=${TOKENS:-500}
OUT=${BENCH_OUT:-$ROOT/bench/results/access-log-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
[ -x "$BIN/mst-loadgen" ] || { echo "missing $BIN/mst-loadgen" >&2; exit 1; }
mst_settings_hook() {
    python3 - "$1" <<'PY'
import json, sys
p = sys.argv[1]; s = json.load(open(p))
s["network"] = "100.64.0.0/16"
# one client address, many users and sessions (as bench/connect-memory.sh)
s["advancedSettings"] += [{"name": "max-sessions-per-user", "value": "0"}, {"name": "max-login-connections-per-ip", "value": "0"}]
json.dump(s, open(p, "w"), indent=1)
PY
}
corp_iperf_start

# run MODE ROUND: a fresh gateway with the log on or off; the connect rate, then throughput.
run() {
    local mode=$1 r=$2 level=info
    [ "$mode" = off ] && level=warning
    MST_SERVER_WRAP="env LOG_LEVEL=$level" mst_start
    [ -f "$WORK/tokens.txt" ] || mint_token_file "$WORK/mst/issuer" "$TOKENS" "$WORK/tokens.txt" al
    ip netns exec "$NS_C" "$BIN/mst-loadgen" --url "https://$GW_IP:$PORT/" --pin "$PIN" --token-file "$WORK/tokens.txt" \
        --sessions "$RATE_SESSIONS" --concurrency 32 --hold 0 --logoff --json > "$OUT/r$r-$mode-rate.json" 2> "$OUT/r$r-$mode-rate.err" || true
    oc_connect mstunnel dtls "r$r-$mode"
    oc_wait_dtls 10 || true
    ip netns exec "$NS_C" iperf3 -c "$CORP_IP" -t "$DURATION" -J > "$OUT/r$r-$mode-iperf.json" 2>&1 || true
    oc_disconnect
    cp "$WORK/mst/server.log" "$OUT/r$r-$mode-server.log"
    mst_stop
    python3 - "$OUT" "$r" "$mode" "$(oc_channel dtls)" >> "$OUT/runs.jsonl" <<'PY'
import json, os, sys
out, r, mode, channel = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
rate = json.load(open(os.path.join(out, f"r{r}-{mode}-rate.json")))
ip = json.load(open(os.path.join(out, f"r{r}-{mode}-iperf.json")))
lines = sum(1 for _ in open(os.path.join(out, f"r{r}-{mode}-server.log")))
print(json.dumps({"round": r, "log": mode, "sessions": rate["sessions"]["established"],
                  "per_second": rate["connectPhase"]["establishedPerSecond"],
                  "gbps": ip["end"]["sum_received"]["bits_per_second"] / 1e9, "channel": channel, "log_lines": lines}))
PY
    tail -1 "$OUT/runs.jsonl" | python3 -c "import json,sys; d=json.load(sys.stdin); print(f\"   round {d['round']} log {d['log']:>3}: {d['per_second']:.0f} sessions/s, {d['gbps']:.2f} Gbit/s ({d['channel']}), {d['log_lines']} log lines\")"
}

for ((r = 1; r <= ROUNDS; r++)); do
    echo "== round $r"
    if (( r % 2 )); then run on "$r"; run off "$r"; else run off "$r"; run on "$r"; fi
done

python3 - "$OUT" <<'PY'
import json, os, statistics, sys
out = sys.argv[1]
runs = [json.loads(l) for l in open(os.path.join(out, "runs.jsonl"))]
def col(mode, k): return [x[k] for x in runs if x["log"] == mode]
def spread(v, f="{:.0f}"): return f"{f.format(statistics.median(v))} ({f.format(min(v))}–{f.format(max(v))})"
rounds = sorted({x["round"] for x in runs})
cost = lambda k: [1 - next(x[k] for x in runs if x["round"] == r and x["log"] == "on") / next(x[k] for x in runs if x["round"] == r and x["log"] == "off") for r in rounds]
text = "\n".join([
    "| | access log on (as shipped) | off (LOG_LEVEL=warning) | cost of the log, per round |",
    "| --- | --- | --- | --- |",
    f"| connect rate, sessions/s (login, CONNECT, logoff) | {spread(col('on', 'per_second'))} | {spread(col('off', 'per_second'))} | {spread([100 * c for c in cost('per_second')], '{:.1f}')} % |",
    f"| throughput, Gbit/s (one DTLS tunnel, iperf3) | {spread(col('on', 'gbps'), '{:.2f}')} | {spread(col('off', 'gbps'), '{:.2f}')} | {spread([100 * c for c in cost('gbps')], '{:.1f}')} % |",
    f"| gateway log lines per run | {spread(col('on', 'log_lines'))} | {spread(col('off', 'log_lines'))} | |",
    "",
    f"{len(rounds)} rounds, on and off alternating first; a negative cost is noise (off slower than on).",
]) + "\n"
open(os.path.join(out, "access-log.md"), "w").write(text)
print(text)
PY
echo "results: $OUT"
