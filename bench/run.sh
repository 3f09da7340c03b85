#!/usr/bin/env bash
# The benchmark suite in one command, as root:
#
#   sudo bench/run.sh
#
# 1. builds the release binaries (swift build -c release --scratch-path .build-bench; never
#    touches .build; SKIP_BUILD=1 skips this when .build-bench/release is current),
# 2. runs bench/throughput.sh: ocserv and mstunnel-server side by side in one lab, DTLS and
#    TLS-only, iperf3 up and down, gateway CPU per GB, plus a raw routed baseline,
# 3. runs bench/connect-memory.sh if that file exists (connect rate and memory with
#    mst-loadgen; written separately), bounded by CONNECT_MEMORY_TIMEOUT seconds (3600).
#    Contract: it is run with BIN (release binaries),
#    BENCH_OUT (a directory for its raw files) and BENCH_MD_FRAGMENT (a file it may write
#    Markdown to, which goes into docs/benchmarks.md); exit 0 = done, 77 = skipped,
#    anything else = failed (the rest of the report is still written),
# 4. writes docs/benchmarks.md (bench/report.py) with the exact command, date, machine,
#    versions, absolute figures, ratios mstunnel/ocserv and the targets met / not met.
#
# Environment (passed on to throughput.sh): DURATION (10 s per iperf3 run), ROUNDS (3),
# ATTEMPTS (3), QUIET_WAIT (60 s), QUIET_BUDGET (900 s), CONTENDED_CPU (0.05), KEEP_WORK.
# Raw results and logs: bench/results/<UTC timestamp>/ (git-ignored via bench/.gitignore).
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
    echo "SKIP: $(basename "$0") needs root (network namespaces, TUN, port 443): sudo $0" >&2
    exit 77
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SCRATCH=$ROOT/.build-bench
BIN=$SCRATCH/release
export BIN
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$ROOT/bench/results/$STAMP
DOC=$ROOT/docs/benchmarks.md
START=$(date +%s)
ENVS=
for v in DURATION ROUNDS ATTEMPTS QUIET_WAIT QUIET_BUDGET CONTENDED_CPU SKIP_BUILD CONNECT_MEMORY_TIMEOUT; do
    if [ -n "${!v:-}" ]; then ENVS+="$v=${!v} "; fi
done
COMMAND="sudo ${ENVS:+env $ENVS}bench/run.sh"

CHILD=
on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    # our only background child is the benchmark script in progress; it cleans up its own
    # namespaces and processes (by PID) when it gets SIGTERM
    if [ -n "$CHILD" ] && kill -0 "$CHILD" 2>/dev/null; then
        kill -TERM "$CHILD" 2>/dev/null || true
        for _ in $(seq 300); do kill -0 "$CHILD" 2>/dev/null || break; sleep 0.1; done
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run_child CMD...: in the background (PID recorded for the trap), waited for; returns its status
run_child() {
    local rc=0
    "$@" &
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=
    return "$rc"
}

for tool in ocserv ocpasswd openconnect iperf3 nft python3 openssl; do
    command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install ocserv openconnect vpnc-scripts iperf3 nftables python3 openssl" >&2; exit 1; }
done
mkdir -p "$OUT"

dirty=
# the source state being built; a read-only look at the work tree (GIT_OPTIONAL_LOCKS=0: git must not write its index)
if [ -n "$(GIT_OPTIONAL_LOCKS=0 git -C "$ROOT" status --porcelain -- Sources Package.swift 2>/dev/null)" ]; then
    dirty=" + uncommitted changes in Sources/"
fi
commit=$(GIT_OPTIONAL_LOCKS=0 git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
echo "== 1/4 release build ($SCRATCH)"
if [ "${SKIP_BUILD:-0}" = 1 ]; then
    echo "SKIP_BUILD=1: using $BIN as it is"
else
    # the tree is shared with people editing it: a source file changed mid-build is retried
    for attempt in 1 2 3; do
        rc=0
        run_child swift build -c release --scratch-path "$SCRATCH" > "$OUT/build.log" 2>&1 || rc=$?
        [ "$rc" = 0 ] && break
        if [ "$attempt" = 3 ] || ! grep -q 'was modified during the build' "$OUT/build.log"; then
            tail -30 "$OUT/build.log" >&2
            echo "release build failed (log: $OUT/build.log)" >&2
            exit 1
        fi
        echo "a source file changed during the build; building again ($((attempt + 1))/3)"
        sleep 5
    done
    tail -1 "$OUT/build.log"
fi
for b in mstunnel-server mstunnel-auth mst-dev-issuer; do
    [ -x "$BIN/$b" ] || { echo "missing $BIN/$b" >&2; exit 1; }
done

echo "== 2/4 throughput and CPU: ocserv vs mstunnel (this takes several minutes)"
run_child "$ROOT/bench/throughput.sh" "$OUT/throughput.jsonl"

echo "== 3/4 connect rate and memory"
CM_STATUS="bench/connect-memory.sh not present yet"
CM_MD=
if [ -f "$ROOT/bench/connect-memory.sh" ]; then
    CM_MD=$OUT/connect-memory.md
    mkdir -p "$OUT/connect-memory"
    rc=0
    # bounded: CONNECT_MEMORY_TIMEOUT seconds (default 3600), then SIGTERM (its own trap cleans up)
    run_child timeout --kill-after=60 "${CONNECT_MEMORY_TIMEOUT:-3600}" \
        env BENCH_OUT="$OUT/connect-memory" BENCH_MD_FRAGMENT="$CM_MD" bash "$ROOT/bench/connect-memory.sh" || rc=$?
    case $rc in
        0) CM_STATUS="done" ;;
        77) CM_STATUS="bench/connect-memory.sh skipped itself (exit 77)" ;;
        124) CM_STATUS="bench/connect-memory.sh stopped after ${CONNECT_MEMORY_TIMEOUT:-3600} s (CONNECT_MEMORY_TIMEOUT)" ;;
        *) CM_STATUS="bench/connect-memory.sh failed (exit $rc; log in bench/results/$STAMP/)" ;;
    esac
    if [ "$rc" != 0 ] || [ ! -s "$CM_MD" ]; then CM_MD=; fi
    echo "$CM_STATUS"
else
    echo "$CM_STATUS: skipped"
fi

echo "== 4/4 report -> docs/benchmarks.md"
END=$(date +%s)
irq=unknown
if [ -r /proc/config.gz ]; then
    if zcat /proc/config.gz | grep -q '^CONFIG_IRQ_TIME_ACCOUNTING=y'; then irq=y; else irq=n; fi
fi
M_COMMAND=$COMMAND M_START=$START M_END=$END M_IRQ=$irq M_DIRTY=$dirty M_COMMIT=$commit M_CM=$CM_STATUS \
M_DURATION=${DURATION:-10} M_ROUNDS=${ROUNDS:-3} M_ATTEMPTS=${ATTEMPTS:-3} M_CONTENDED=${CONTENDED_CPU:-0.05} \
    python3 - "$OUT/meta.json" <<'PY'
import json, os, subprocess, sys, time
def lines(*cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        return (r.stdout.strip() or r.stderr.strip()).splitlines() or ["?"]
    except Exception:
        return ["?"]
e = os.environ
oc = lines("openconnect", "--version")
cpu = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")]
mem = [l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal:")]
start, secs = int(e["M_START"]), int(e["M_END"]) - int(e["M_START"])
json.dump({
    "command": e["M_COMMAND"],
    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(start)),
    "elapsed": "%d min %02d s" % (secs // 60, secs % 60),
    "nproc": str(os.cpu_count()),
    "cpu_model": cpu[0] if cpu else "?",
    "mem": "%.1f GiB RAM" % (int(mem[0]) / 1048576) if mem else "?",
    "kernel": os.uname().release,
    "irq_time_accounting": e["M_IRQ"],
    "ocserv": lines("ocserv", "--version")[0],
    "openconnect": "openconnect " + oc[0].replace("OpenConnect version ", ""),
    "gnutls": oc[1].split(". ")[0].replace("Using ", "") if len(oc) > 1 else "?",
    "iperf3": lines("iperf3", "--version")[0].split(" (")[0],
    "swift": lines("swift", "--version")[0].split(" (")[0],
    "openssl": lines("openssl", "version")[0].split("  ")[0],
    "mstunnel_version": lines(os.path.join(e["BIN"], "mstunnel-auth"), "--version")[0],
    "commit": e["M_COMMIT"],
    "dirty": e["M_DIRTY"],
    "duration": e["M_DURATION"],
    "rounds": e["M_ROUNDS"],
    "attempts": e["M_ATTEMPTS"],
    "contended_cpu": e["M_CONTENDED"],
    "connect_memory": e["M_CM"],
}, open(sys.argv[1], "w"), indent=1)
PY
python3 "$ROOT/bench/report.py" "$OUT/meta.json" "$OUT/throughput.jsonl" "$CM_MD" > "$OUT/benchmarks.md"
# Sections other scripts own (bench/container.sh's, between <!-- NAME:begin --> and
# <!-- NAME:end --> markers) are carried over from the current file, not lost.
python3 - "$OUT/benchmarks.md" "$DOC" <<'PY'
import re, sys
new, doc = sys.argv[1], sys.argv[2]
text = open(new).read()
try:
    old = open(doc).read()
except FileNotFoundError:
    old = ""
for m in re.finditer(r"<!-- ([a-z-]+):begin -->.*?<!-- \1:end -->\n?", old, re.S):
    if f"<!-- {m.group(1)}:begin -->" not in text:
        text = text.rstrip("\n") + "\n\n" + m.group(0).rstrip("\n") + "\n"
open(doc, "w").write(text)
PY
echo "wrote $DOC (raw data: bench/results/$STAMP/)"
sed -n '/^### Targets/,/targets met/p' "$DOC"
