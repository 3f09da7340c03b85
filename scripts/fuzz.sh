#!/usr/bin/env bash
# Builds the libFuzzer targets (the separate package in Fuzz/, see Fuzz/README.md) and runs
# each one for a bounded time on a copy of its seed corpus. Prints, per target, the
# executions, exec/s, coverage (libFuzzer's final cov/ft), the corpus it grew to and what
# went wrong; exits non-zero if any target crashed, leaked, timed out or ran out of memory.
#
#   scripts/fuzz.sh                        every target, FUZZ_SECONDS (default 20) each
#   scripts/fuzz.sh fuzz-jwt fuzz-wire     only these
#   LONG=1 scripts/fuzz.sh                 the long recorded run: 600 s per target
#   FUZZ_SECONDS=60 scripts/fuzz.sh        any other budget
#
# Settings (environment):
#   FUZZ_SECONDS   seconds per target (default 20; 600 with LONG=1)
#   FUZZ_CONFIG    release (default: -O, ASan, -g; the faster) or debug (-Onone, ASan)
#   FUZZ_ARTIFACTS where crash/leak/timeout inputs and each target's log go
#                  (default /tmp/fuzz-artifacts; emptied of old results first)
#   FUZZ_JOBS      build jobs (default: all cores)
#   FUZZ_CORPUS_DIR keep each target's corpus in DIR/<target> and go on from it next time (a
#                  long campaign over several runs, see docs/reliability.md); seeded from the
#                  committed corpus when empty. Unset: a temporary copy, gone after the run.
#
# The targets run one after another, never two at once. The committed corpus
# (Fuzz/Corpus/<target>) is only read: each run works on a copy in a temporary directory.
# Needs only the Swift toolchain (it ships libFuzzer and ASan) and coreutils; runs as root.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

LONG=${LONG:-0}
if [[ $LONG == 1 ]]; then FUZZ_SECONDS=${FUZZ_SECONDS:-600}; else FUZZ_SECONDS=${FUZZ_SECONDS:-20}; fi
FUZZ_CONFIG=${FUZZ_CONFIG:-release}
ARTIFACTS=${FUZZ_ARTIFACTS:-/tmp/fuzz-artifacts}
SCRATCH=$ROOT/Fuzz/.build-fuzz

# target  max_len  dictionaries  per-input leak checks
# The two that parse XML check for leaks only at exit: FoundationXML leaks on every parse
# error (Fuzz/lsan.supp), and libFuzzer then runs a full heap scan after each such input,
# which makes them 40 times slower.
TARGETS=(
    "fuzz-http-request   36000 http     1"
    "fuzz-config-auth     8192 xml      0"
    "fuzz-login-connect  16384 http,xml 0"
    "fuzz-cstp           20000 cstp     1"
    "fuzz-dtls-hello      4096 dtls     1"
    "fuzz-wire           16384 wire     1"
    "fuzz-jwt             8192 jwt      1"
    "fuzz-strict-json     4096 json     1"
    "fuzz-agent-api       8192 agent    1"
    "fuzz-ticket          4096 jwt      1"
    "fuzz-proxy-header    1024 proxy    1"
)

selected=("$@")
want() {
    [[ ${#selected[@]} -eq 0 ]] && return 0
    local s
    for s in "${selected[@]}"; do [[ $s == "$1" ]] && return 0; done
    return 1
}
for s in "${selected[@]}"; do
    printf '%s\n' "${TARGETS[@]}" | grep -q "^$s " || { echo "fuzz.sh: no target '$s'" >&2; exit 2; }
done

swift_flags=(-Xswiftc -sanitize=fuzzer,address)
case $FUZZ_CONFIG in
    release) swift_flags+=(-Xswiftc -g) ;;
    debug) ;;
    *) echo "fuzz.sh: FUZZ_CONFIG is release or debug" >&2; exit 2 ;;
esac
build=(swift build -c "$FUZZ_CONFIG" --scratch-path "$SCRATCH" --package-path "$ROOT/Fuzz" "${swift_flags[@]}")
[[ -n ${FUZZ_JOBS:-} ]] && build+=(-j "$FUZZ_JOBS")

work=$(mktemp -d /tmp/fuzz-run.XXXXXX)
trap 'rm -rf "$work"' EXIT

mkdir -p "$ARTIFACTS"
rm -f "$ARTIFACTS"/crash-* "$ARTIFACTS"/leak-* "$ARTIFACTS"/timeout-* "$ARTIFACTS"/oom-* "$ARTIFACTS"/*.log \
      "$ARTIFACTS"/fuzz-*-crash-* "$ARTIFACTS"/fuzz-*-leak-* "$ARTIFACTS"/fuzz-*-timeout-* "$ARTIFACTS"/fuzz-*-oom-*

# The fuzz package declares the root package's libraries again (Fuzz/Package.swift says
# why): refuse to go on with a stale copy of their dependencies.
# (Own scratch paths: the root's .build may be locked by a build in progress.)
if swift package --package-path "$ROOT" --scratch-path "$work/dump-root" dump-package > "$ARTIFACTS/root-package.json" 2> "$ARTIFACTS/dump.log" &&
   swift package --package-path "$ROOT/Fuzz" --scratch-path "$work/dump-fuzz" dump-package > "$ARTIFACTS/fuzz-package.json" 2>> "$ARTIFACTS/dump.log"; then
    swift "$ROOT/Fuzz/check-mirror.swift" "$ARTIFACTS/root-package.json" "$ARTIFACTS/fuzz-package.json"
else
    echo "fuzz.sh: swift package dump-package failed (see $ARTIFACTS/dump.log)" >&2
    exit 1
fi

echo "== building the fuzz targets ($FUZZ_CONFIG, ASan + libFuzzer) in ${SCRATCH#"$ROOT"/}"
start=$(date +%s)
if ! "${build[@]}" > "$ARTIFACTS/build.log" 2>&1; then
    grep -v "Cannot export local symbol" "$ARTIFACTS/build.log" | grep -E "error|warning: unre" | head -40 >&2 || true
    echo "fuzz.sh: build failed (full log: $ARTIFACTS/build.log)" >&2
    exit 1
fi
bin=$("${build[@]}" --show-bin-path)
echo "   built in $(( $(date +%s) - start )) s; binaries in $bin"

# swift-backtrace would wait on a process libFuzzer has already ended; libFuzzer and ASan
# print the stack themselves.
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1:handle_abort=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$ROOT/Fuzz/lsan.supp:print_suppressions=0}

failed=0
results=()
for line in "${TARGETS[@]}"; do
    read -r target maxlen dicts leaks <<< "$line"
    want "$target" || continue
    corpus=$work/$target
    [[ -n ${FUZZ_CORPUS_DIR:-} ]] && corpus=$FUZZ_CORPUS_DIR/$target
    mkdir -p "$corpus"
    cp -n "$ROOT/Fuzz/Corpus/$target"/* "$corpus/"
    # Past findings run first with the seeds (libFuzzer reads the whole corpus before it
    # mutates): a regression is found in the first second.
    if [ -d "$ROOT/Fuzz/Crashes/$target" ] && [ -n "$(ls -A "$ROOT/Fuzz/Crashes/$target")" ]; then
        cp -n "$ROOT/Fuzz/Crashes/$target"/* "$corpus/"
    fi
    dict=$work/$target.dict
    : > "$dict"
    for d in ${dicts//,/ }; do cat "$ROOT/Fuzz/Dictionaries/$d.dict" >> "$dict"; done
    log=$ARTIFACTS/$target.log
    echo "== $target: ${FUZZ_SECONDS} s, -max_len=$maxlen, $(ls "$corpus" | wc -l) seeds"
    t0=$(date +%s)
    set +e
    # libFuzzer stops on its own at -max_total_time; `timeout` only guards a hang in exit.
    timeout --kill-after=30 $(( FUZZ_SECONDS + 300 )) "$bin/$target" "$corpus" \
        -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -malloc_limit_mb=2048 -max_len="$maxlen" -timeout=10 -detect_leaks="$leaks" \
        -dict="$dict" -artifact_prefix="$ARTIFACTS/$target-" -print_final_stats=1 -close_fd_mask=1 > "$log" 2>&1
    rc=$?
    set -e
    secs=$(( $(date +%s) - t0 ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 | awk '{print $2" "$4}' || true)
    [[ -n $cov ]] || cov="? ?"
    size=$(ls "$corpus" | wc -l)
    found=$(ls "$ARTIFACTS" | grep -E "^$target-(crash|leak|timeout|oom|slow-unit)-" || true)
    what=ok
    if [[ $rc -ne 0 || -n $found ]]; then
        failed=1
        if grep -q "ERROR: LeakSanitizer" "$log"; then what=LEAK
        elif grep -q "ERROR: libFuzzer: timeout" "$log"; then what=TIMEOUT
        elif grep -qE "out-of-memory|malloc limit" "$log"; then what=OOM
        elif grep -q "INVARIANT VIOLATED" "$log"; then what="INVARIANT: $(grep -m1 -o 'INVARIANT VIOLATED: .*' "$log" | cut -c21-120 || true)"
        elif grep -qE "Fatal error|ERROR: (AddressSanitizer|libFuzzer)" "$log"; then
            what="CRASH: $(grep -m1 -oE 'Fatal error: .*|ERROR: AddressSanitizer: [A-Za-z-]+|ERROR: libFuzzer: [a-z -]+' "$log" | cut -c1-100 || true)"
            top=$(grep -m1 -E '^ +#[0-9]+ .* in .*(Gateway|FoundationXML|JWTKit|fuzz_)' "$log" | sed -E 's/^ +#[0-9]+ 0x[0-9a-f]+ in //' | cut -c1-90 || true)
            [[ -n $top ]] && what="$what; at $top"
        else what="FAILED (exit $rc)"; fi
    fi
    results+=("$(printf '%-20s %5s %10s %8s %6s %7s %7s  %s' "$target" "$secs" "${execs:-?}" "${speed:-?}" "${cov% *}" "${cov#* }" "$size" "$what")")
    echo "   ${results[-1]}"
    for f in $found; do echo "   reproducer: $ARTIFACTS/$f"; done
done

echo
echo "== fuzz summary ($FUZZ_CONFIG, ${FUZZ_SECONDS} s per target; logs and reproducers in $ARTIFACTS)"
printf '%-20s %5s %10s %8s %6s %7s %7s  %s\n' target s execs exec/s cov ft corpus result
printf '%s\n' "${results[@]}"
if [[ $failed -ne 0 ]]; then
    echo "fuzz.sh: a target crashed, leaked, timed out or ran out of memory; reproduce with"
    echo "  SWIFT_BACKTRACE=enable=no LSAN_OPTIONS=suppressions=$ROOT/Fuzz/lsan.supp $bin/<target> <reproducer>"
    exit 1
fi
