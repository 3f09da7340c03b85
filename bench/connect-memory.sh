#!/usr/bin/env bash
# Connect rate, connect latency and memory per idle session, ocserv and mstunnel-server side
# by side in one run, measured by the same tool (mst-loadgen) from the same client namespace:
#
#   1. connect rate + p50/p99 latency: RATE_SESSIONS sessions at concurrency 32, logoff at once
#   2. memory (PSS of the gateway's whole process tree) per idle session with SMALL sessions held
#   3. mstunnel only (ocserv with OCSERV_LARGE=1): LARGE sessions held HOLD_LARGE seconds,
#      memory per session and sessions dropped
#
# mstunnel logs in with tokens from the development issuer (distinct user ids), ocserv with its
# plain password. Writes one mst-loadgen JSON report per run to $BENCH_OUT and a Markdown
# fragment to $BENCH_MD_FRAGMENT (bench/run.sh includes it in docs/benchmarks.md).
# Environment: RATE_SESSIONS (1000), SMALL (1000), LARGE (15000), HOLD_SMALL (30),
# HOLD_LARGE (600), LARGE_CONCURRENCY (256), OCSERV_LARGE (0), TOKENS (1000).
source "$(dirname "$0")/lib.sh"
bench_init
lab_setup
make_pki

OUT=${BENCH_OUT:-$WORK/connect-memory}
MD=${BENCH_MD_FRAGMENT:-$OUT/connect-memory.md}
RATE_SESSIONS=${RATE_SESSIONS:-1000}
SMALL=${SMALL:-1000}
LARGE=${LARGE:-15000}
HOLD_SMALL=${HOLD_SMALL:-30}
HOLD_LARGE=${HOLD_LARGE:-600}
LARGE_CONCURRENCY=${LARGE_CONCURRENCY:-256}
OCSERV_LARGE=${OCSERV_LARGE:-0}
TOKENS=${TOKENS:-1000}
mkdir -p "$OUT"
[ -x "$BIN/mst-loadgen" ] || { echo "missing $BIN/mst-loadgen (bench/run.sh builds it)" >&2; exit 1; }

# Big enough pools and limits for LARGE sessions on both gateways; otherwise the settings
# of the throughput suite (DPD 90 s, keepalive 300 s).
# shellcheck disable=SC2034  # read by the bench/lib.sh functions
POOL=100.64.0.0/16
POOL_MASK=255.255.0.0

# Hooks bench/lib.sh calls after rendering each gateway's configuration.
mst_settings_hook() {
    python3 - "$1" <<'PY'
import json, sys
p = sys.argv[1]; s = json.load(open(p))
s["network"] = "100.64.0.0/16"
s["advancedSettings"].append({"name": "max-sessions-per-user", "value": "0"})
# mst-loadgen is thousands of clients from one address: the per-address login limit (64 by
# default, docs/security.md) would refuse most of its 256 concurrent logins (ocserv's
# max-same-clients is lifted the same way below).
s["advancedSettings"].append({"name": "max-login-connections-per-ip", "value": "0"})
json.dump(s, open(p, "w"), indent=1)
PY
}

ocserv_config_hook() {
    sed -i -e "s/^max-clients = .*/max-clients = $((LARGE + 100))/" -e "s/^max-same-clients = .*/max-same-clients = 0/" \
        -e "s/^ipv4-netmask = .*/ipv4-netmask = $POOL_MASK/" "$1"
}


mint_tokens() { mint_token_file "$WORK/mst/issuer" "$TOKENS" "$WORK/tokens.txt" bench; }

# loadgen NAME SERVER ARGS...: one mst-loadgen run from the client namespace.
loadgen() {
    local name=$1 server=$2; shift 2
    local login=()
    if [ "$server" = mstunnel ]; then login=(--token-file "$WORK/tokens.txt"); else login=(--user "$OC_USER" --password "$OC_PASS"); fi
    local rc=0
    ip netns exec "$NS_C" "$BIN/mst-loadgen" --url "https://$GW_IP:$PORT/" --pin "$PIN" "${login[@]}" \
        --gateway-pid "$(gateway_pid "$server")" --json "$@" > "$OUT/$name.json" 2> "$OUT/$name.err" || rc=$?
    echo "  $name: exit $rc ($(python3 - "$OUT/$name.json" <<'PY' 2>/dev/null || echo "no report"
import json, sys
r = json.load(open(sys.argv[1])); s = r["sessions"]
print("%d/%d up, %.0f/s, dropped %d" % (s["established"], s["requested"], r["connectPhase"]["establishedPerSecond"], s["droppedDuringHold"]))
PY
))"
}

# Each measurement starts a fresh gateway: a process that already served sessions keeps its
# heap (malloc does not give freed memory back), which would hide the per-session cost.
echo "== mstunnel-server"
mst_start  # mst_state keeps the issuer, so the minted tokens stay valid
echo "  minting $TOKENS tokens"
mint_tokens
loadgen mst-rate mstunnel --sessions "$RATE_SESSIONS" --concurrency 32 --hold 0 --logoff
mst_stop
mst_start  # mst_state keeps the issuer, so the minted tokens stay valid
loadgen mst-small mstunnel --sessions "$SMALL" --concurrency 32 --hold "$HOLD_SMALL" --logoff
mst_stop
mst_start  # mst_state keeps the issuer, so the minted tokens stay valid
loadgen mst-large mstunnel --sessions "$LARGE" --concurrency "$LARGE_CONCURRENCY" --hold "$HOLD_LARGE" --logoff
mst_stop

echo "== ocserv"
ocserv_start dtls
loadgen ocserv-rate ocserv --sessions "$RATE_SESSIONS" --concurrency 32 --hold 0 --logoff
ocserv_stop
ocserv_start dtls
loadgen ocserv-small ocserv --sessions "$SMALL" --concurrency 32 --hold "$HOLD_SMALL" --logoff
if [ "$OCSERV_LARGE" = 1 ]; then
    ocserv_stop
    ocserv_start dtls
    loadgen ocserv-large ocserv --sessions "$LARGE" --concurrency "$LARGE_CONCURRENCY" --hold "$HOLD_LARGE" --logoff
fi
ocserv_stop

python3 - "$OUT" "$MD" "$SMALL" "$LARGE" "$HOLD_LARGE" "$OCSERV_LARGE" <<'PY'
import json, os, sys
out, md, small, large, hold, ocl = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] == "1"
def load(n):
    try: return json.load(open(os.path.join(out, n + ".json")))
    except Exception: return None
def lat(r, k): return r["connectPhase"]["latencyMs"][k] if r and r["connectPhase"].get("latencyMs") else None
def rate(r): return r["connectPhase"]["establishedPerSecond"] if r else None
def mem(r):
    if not r or not r.get("gatewayMemory"): return None
    return r["gatewayMemory"].get("perSessionKBAllUp")
def anon(r):
    if not r or not r.get("gatewayMemory"): return None
    return r["gatewayMemory"].get("perSessionAnonKBAllUp")
def f(x, d=1): return "–" if x is None else f"{x:,.{d}f}"
def ratio(a, b, d=2): return "–" if a is None or b is None or b == 0 else f"{a / b:.{d}f}"
m = {k: load(k) for k in ["mst-rate", "mst-small", "mst-large", "ocserv-rate", "ocserv-small", "ocserv-large"]}
L = []
w = L.append
w("## Connect rate, latency and memory: mstunnel-server vs ocserv\n")
w("Measured with `mst-loadgen` from the client namespace (real TLS, login, CONNECT, CSTP keepalive/DPD), "
  "mstunnel with development-issuer tokens (distinct users), ocserv with its plain password login. "
  "Memory is the PSS of the gateway's whole process tree (ocserv forks a worker per session) "
  "from `/proc/PID/smaps_rollup`, per session = (all up − before) / sessions.\n")
w("| measure | ocserv | mstunnel | ratio | target | met? |")
w("| --- | ---: | ---: | ---: | --- | --- |")
ro, rm = rate(m["ocserv-rate"]), rate(m["mst-rate"])
w(f"| connect rate, concurrency 32 (sessions/s) | {f(ro)} | {f(rm)} | {ratio(rm, ro)} | ≥ 3× ocserv | {'met' if ro and rm and rm >= 3 * ro else '**not met**'} |")
w(f"| connect latency p50 (ms) | {f(lat(m['ocserv-rate'], 'p50'))} | {f(lat(m['mst-rate'], 'p50'))} | {ratio(lat(m['mst-rate'], 'p50'), lat(m['ocserv-rate'], 'p50'))} | | |")
w(f"| connect latency p99 (ms) | {f(lat(m['ocserv-rate'], 'p99'))} | {f(lat(m['mst-rate'], 'p99'))} | {ratio(lat(m['mst-rate'], 'p99'), lat(m['ocserv-rate'], 'p99'))} | | |")
mo, mm = mem(m["ocserv-small"]), mem(m["mst-small"])
w(f"| PSS per idle session at {small:,} sessions (KB) | {f(mo)} | {f(mm)} | {ratio(mm, mo, 3)} | ≤ 64 KB | {'met' if mm is not None and mm <= 64 else '**not met**'} |")
w(f"| … anonymous memory only (KB) | {f(anon(m['ocserv-small']))} | {f(anon(m['mst-small']))} | | | |")
ml = mem(m["mst-large"])
ol = mem(m["ocserv-large"]) if ocl else None
w(f"| PSS per idle session at {large:,} sessions (KB) | {f(ol) if ocl else 'not run (see below)'} | {f(ml)} | {ratio(ml, ol, 3) if ocl else '–'} | ≤ 64 KB | {'met' if ml is not None and ml <= 64 else '**not met**'} |")
r = m["mst-large"]
if r:
    s = r["sessions"]
    ok = s["established"] == large and s["droppedDuringHold"] == 0 and abs(r["hold"]["actualSeconds"] - hold) < 30
    w(f"| {large:,} sessions held {hold} s: established / dropped | {'–' if not ocl else ''} | {s['established']:,} / {s['droppedDuringHold']} | | none dropped | {'met' if ok else '**not met**'} |")
else:
    w(f"| {large:,} sessions held {hold} s | | not measured | | none dropped | **not met** |")
w("")
if not ocl:
    w(f"ocserv was not run at {large:,} sessions: it forks one worker per session "
      f"(≈{f(mo, 0)} KB PSS each at {small:,}), so {large:,} sessions would need many GB of this shared 2-core machine; "
      "`OCSERV_LARGE=1` runs it.\n")
w("Raw reports: one `mst-loadgen --json` file per run in `bench/results/<stamp>/connect-memory/`.\n")
open(md, "w").write("\n".join(L) + "\n")
print("\n".join(L))
PY
