#!/usr/bin/env bash
# What mstunnel-server's own code costs per packet, by function: the gateway under
# `valgrind --tool=callgrind` in the bench lab (bench/lib.sh) while one iperf3 stream runs
# through the stock openconnect. perf (bench/profile.sh) says where the time goes, kernel
# included; callgrind counts the instructions the gateway executes in user space, exactly
# and independently of whatever else loads the machine, so two builds compare to the digit.
#
#   sudo bench/callgrind.sh [dtls|tls]     DIR=down|up RATE=40M DURATION=5 TOP=30 OUT=dir
#
# Only the event loop is counted (collection toggles on `Gateway.run`), so start-up is not;
# the login and the handshakes are, a small share of a stream of several thousand packets.
# Valgrind slows the gateway some 50×, so the stream is limited to RATE (iperf3 -b).
# Writes callgrind.out and the annotated listing to OUT (default a temp dir) and prints the
# instructions per tunnelled packet and the top functions by exclusive (self) count.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
MODE=${1:-dtls}
DIR=${DIR:-down}
RATE=${RATE:-40M}
DURATION=${DURATION:-5}
TOP=${TOP:-30}
case $MODE in dtls | tls) ;; *) echo "MODE must be dtls or tls" >&2; exit 2 ;; esac
case $DIR in down | up) ;; *) echo "DIR must be down or up" >&2; exit 2 ;; esac
for t in valgrind callgrind_annotate objcopy; do command -v "$t" > /dev/null || { echo "missing $t (apt-get install valgrind binutils)" >&2; exit 1; }; done
[ -x "$BIN/mstunnel-server" ] || { echo "missing $BIN/mstunnel-server: swift build -c release --scratch-path .build-bench" >&2; exit 1; }
bench_init
OUT=${OUT:-$(mktemp -d /tmp/mstunnel-callgrind.XXXXXX)}
# Valgrind 3.19 (bookworm) stops at the DWARF 5 that Swift 6 emits ("Possibly corrupted
# debuginfo file"). A copy without debug sections keeps the symbol table, which is all a
# per-function count needs (no per-line attribution).
mkdir -p "$OUT/bin"
objcopy --strip-debug "$BIN/mstunnel-server" "$OUT/bin/mstunnel-server"
ln -sf "$BIN/mstunnel-auth" "$OUT/bin/mstunnel-auth"
ln -sf "$BIN/mst-dev-issuer" "$OUT/bin/mst-dev-issuer"
BIN=$OUT/bin
lab_setup
make_pki
corp_iperf_start
f=$OUT/callgrind.out
# The toggle symbol is Swift's mangled name of GatewayDataplane.Gateway.run().
MST_RUN_AS= MST_SERVER_WRAP="valgrind --tool=callgrind --callgrind-out-file=$f --toggle-collect=\$s16GatewayDataplane0A0C3runyyF" \
    LISTEN_WAIT=600 mst_start
oc_connect mstunnel "$MODE" cg
[ "$MODE" = dtls ] && { oc_wait_dtls 60 || { echo "DTLS did not come up" >&2; exit 1; }; }
sleep 1
a=(-c "$CORP_IP" -t "$DURATION" -b "$RATE" -J)
[ "$DIR" = down ] && a+=(-R)
ip netns exec "$NS_C" iperf3 "${a[@]}" > "$OUT/iperf.json" 2>&1 || { cat "$OUT/iperf.json" >&2; exit 1; }
mst_stop
for ((i = 0; i < 100; i++)); do [ -s "$f" ] && break; sleep 0.2; done
[ -s "$f" ] || { echo "no callgrind output; server log:" >&2; tail -20 "$WORK/mst/server.log" >&2; exit 1; }
callgrind_annotate --threshold=100 "$f" > "$OUT/annotate.txt" 2> /dev/null
python3 - "$OUT/iperf.json" "$OUT/annotate.txt" "$MODE" "$DIR" "$TOP" <<'PY'
import json, re, sys
iperf, annotate, mode, direction, top = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
moved = json.load(open(iperf))["end"]["sum_received"]["bytes"]
lines = open(annotate).read().splitlines()
total = next(int(l.split()[0].replace(",", "")) for l in lines if "PROGRAM TOTALS" in l)
# Tunnel MTU 1434: an inner TCP segment carries 1,382 bytes of payload.
packets = moved / 1382
print(f"== mstunnel {mode} {direction}: {moved / 1e6:.1f} MB in {packets:,.0f} packets of 1,382 bytes, "
      f"{total / 1e6:,.0f} M instructions in the event loop, {total / packets:,.0f} per packet")
print(f"{'Ir':>14} {'share':>6} {'per pkt':>8}  function (object)")
rows = [l for l in lines if re.match(r"^\s*[\d,]+ \(\s*[\d.]+%\)\s+\S", l)]
for l in rows[:top]:
    m = re.match(r"^\s*([\d,]+) \(\s*([\d.]+)%\)\s+(.*)$", l)
    ir, share, rest = int(m.group(1).replace(",", "")), m.group(2), m.group(3)
    rest = re.sub(r" \[[^\]]*\]$", "", rest)  # object path, shortened below
    obj = re.search(r"\[([^\]]*)\]$", l)
    name = rest.split(":", 1)[1] if rest.startswith("???:") else rest
    print(f"{ir:>14,} {share:>5}% {ir / packets:>8,.0f}  {name[:110]} ({obj.group(1).rsplit('/', 1)[-1] if obj else '?'})")
PY
echo "callgrind data: $f (callgrind_annotate --inclusive=yes $f for inclusive counts)"
