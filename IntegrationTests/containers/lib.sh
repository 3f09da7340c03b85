# shellcheck shell=bash
# Shared by the container tests 03–05 (sourced): counters and checks, and the compose front
# end. A wait_for tries every 0.5 s, N times.
PASSES=0 FAILS=0
pass() { PASSES=$((PASSES + 1)); echo "  ok: $*"; }
fail() { FAILS=$((FAILS + 1)); echo "  FAIL: $*"; if [ -n "${MST_FAIL_LOG:-}" ]; then echo "$*" >> "$MST_FAIL_LOG"; fi; }
check() { local what=$1; shift; if "$@" >/dev/null 2>&1; then pass "$what"; else fail "$what"; fi; }
wait_for() { local what=$1 n=$2; shift 2; for _ in $(seq "$n"); do if "$@" >/dev/null 2>&1; then pass "$what"; return 0; fi; sleep 0.5; done; fail "$what"; return 1; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
# COMPOSE: `podman compose` where podman has the verb, else podman-compose; empty if neither.
COMPOSE=
if podman compose version >/dev/null 2>&1; then COMPOSE="podman compose"; elif command -v podman-compose >/dev/null; then COMPOSE=podman-compose; fi
