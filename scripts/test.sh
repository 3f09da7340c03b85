#!/usr/bin/env bash
# Builds everything, runs the unit tests (the control plane's twice: on SQLite, then as root on
# a local PostgreSQL, scripts/postgres-test-db.sh), then (as root) the namespace integration
# tests with the real openconnect client, then the container tests (images, compose,
# installer), then the fuzz targets for a bounded time (scripts/fuzz.sh) and the unit tests
# again under AddressSanitizer and ThreadSanitizer (each in its own scratch path).
# Exit status is non-zero if anything failed.
#
#   SANITIZERS="address thread" (default) | "address" | "" to skip them
#   FUZZ_SECONDS=20 (default, per target) | 0 to skip fuzzing
set -euo pipefail
cd "$(dirname "$0")/.."
swift build --build-tests
swift test --skip-build
status=0
# Every failure is also collected here and printed again at the very end, with the failed
# checks of each script: CI shows only the tail of this output, which must say what broke.
FAILURES=()
failed() { echo "FAILED: $*"; FAILURES+=("$*"); status=1; }
# The scripts' fail() (IntegrationTests/lib.sh, containers/lib.sh) append each failed check here.
MST_FAIL_LOG=$(mktemp /tmp/mst-failed-checks.XXXXXX)
export MST_FAIL_LOG
trap 'rm -f "$MST_FAIL_LOG"' EXIT
# The control plane's tests again with their store on PostgreSQL (each test its own schema):
# the same suite proves both stores (docs/control-plane.md, "Several instances").
if [ "$(id -u)" = 0 ]; then
    echo "== control-plane unit tests on PostgreSQL"
    # The address is the script's last line; anything else it printed is shown, not used.
    if PG_OUT=$(./scripts/postgres-test-db.sh mstunnel_test) && PG_URL=$(printf '%s\n' "$PG_OUT" | tail -1) &&
       [[ $PG_URL == postgres://* ]]; then
        if [ "$PG_OUT" != "$PG_URL" ]; then echo "postgres-test-db.sh also printed: $(printf '%s\n' "$PG_OUT" | head -n -1)"; fi
        MST_TEST_POSTGRES="$PG_URL" swift test --skip-build --filter GatewayControlPlaneTests \
            || failed "control-plane unit tests on PostgreSQL"
    else
        failed "no PostgreSQL for the control-plane tests (scripts/postgres-test-db.sh printed: ${PG_OUT:-nothing})"
    fi
fi
# run_scripts GLOB…: each script in turn; exit 77 is a skip, anything else non-zero a failure.
run_scripts() {
    local t rc
    for t in "$@"; do
        echo "== $t"
        rc=0
        : > "$MST_FAIL_LOG"
        bash "$t" || rc=$?
        if [ "$rc" = 77 ]; then
            echo "skipped: $t"
        elif [ "$rc" != 0 ]; then
            local checks
            checks=$(head -20 "$MST_FAIL_LOG" | tr -d '\r' | sed 's/^/    FAIL: /')
            failed "$t (exit $rc)${checks:+$'\n'$checks}"
        fi
    done
}
BIN="$(swift build --show-bin-path)"
export BIN
# The control-plane API probe (netns 15_control_api_probe.sh) runs schemathesis, and netns 05
# reads the agent's /metrics with prometheus_client's parser, both pinned, in their own venv
# (PyPI); without them those checks would skip, so a failed install is a failure.
SCHEMATHESIS_VERSION=4.32.5
PROMETHEUS_CLIENT_VERSION=0.26.0
# The Kubernetes schemas deploy/kubernetes is validated against (IntegrationTests/containers/04).
KUBERNETES_VALIDATE_VERSION=1.37.0
if [ "$(id -u)" = 0 ] && { ! /opt/mst-venv/bin/schemathesis --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION" ||
                           ! /opt/mst-venv/bin/pip show prometheus-client 2>/dev/null | grep -qx "Version: $PROMETHEUS_CLIENT_VERSION" ||
                           ! /opt/mst-venv/bin/pip show kubernetes-validate 2>/dev/null | grep -qx "Version: $KUBERNETES_VALIDATE_VERSION"; }; then
    echo "== installing schemathesis $SCHEMATHESIS_VERSION, prometheus-client $PROMETHEUS_CLIENT_VERSION, kubernetes-validate $KUBERNETES_VALIDATE_VERSION into /opt/mst-venv"
    { python3 -m venv /opt/mst-venv &&
      /opt/mst-venv/bin/pip install -q "schemathesis==$SCHEMATHESIS_VERSION" "prometheus-client==$PROMETHEUS_CLIENT_VERSION" \
          "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"; } \
        || failed "installing schemathesis, prometheus-client and kubernetes-validate (python3-venv, PyPI)"
fi
# The release build the container tests' images need (deploy/build-images; ~17 min from
# scratch on 2 cores) runs in the background at the lowest CPU priority while the namespace
# tests run — they mostly wait on clients, timers and the network — and build-images then
# finds it (nearly) done: about 11 minutes less in CI. The tests allow for a busy machine
# (a check retries a lost first ping; the API probe waits 30 s for an answer). Its output
# goes to a file, shown if it fails.
RELEASE_LOG=$(mktemp /tmp/mst-release-build.XXXXXX)
RELEASE_PID=""
if [ "$(id -u)" = 0 ] && command -v podman >/dev/null; then
    echo "== release build in the background (log: $RELEASE_LOG)"
    nice -n 19 swift build -c release --static-swift-stdlib --scratch-path "${MSTUNNEL_BUILD_PATH:-.build-release}" \
        > "$RELEASE_LOG" 2>&1 &
    RELEASE_PID=$!
fi
run_scripts IntegrationTests/netns/[0-9]*.sh
if [ -n "$RELEASE_PID" ] && ! wait "$RELEASE_PID"; then
    tail -20 "$RELEASE_LOG"; failed "the release build (the container tests build it again and say more)"
fi
rm -f "$RELEASE_LOG"
# The stack as it ships: images built with deploy/build-images (a release build, kept in
# .build-release), run with podman compose; then the installer against them.
run_scripts IntegrationTests/containers/[0-9]*.sh

# Parsers and decoders under libFuzzer (+ASan), from the committed seed corpus.
if [ "${FUZZ_SECONDS:-20}" != 0 ]; then
    echo "== fuzzing, ${FUZZ_SECONDS:-20} s per target"
    FUZZ_SECONDS=${FUZZ_SECONDS:-20} ./scripts/fuzz.sh || failed "fuzzing"
fi

# The unit tests again under each sanitizer. LeakSanitizer (with ASan) ignores only the
# runtime libraries' own leaks (scripts/lsan.supp); ThreadSanitizer stops at nothing.
for s in ${SANITIZERS-address thread}; do
    echo "== unit tests under --sanitize=$s"
    if swift build --build-tests --sanitize="$s" --scratch-path ".build-$s" \
        && LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp:print_suppressions=0" \
           TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1" \
           swift test --skip-build --sanitize="$s" --scratch-path ".build-$s"; then
        echo "ok: unit tests under $s"
    else
        failed "unit tests under --sanitize=$s"
    fi
done
if [ "$status" != 0 ]; then
    echo "== ${#FAILURES[@]} failed:"
    for f in "${FAILURES[@]}"; do printf '  %s\n' "$f"; done
else
    echo "== all passed"
fi
exit $status
