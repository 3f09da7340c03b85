#!/usr/bin/env bash
# Builds everything, runs the unit tests, then (as root) the namespace integration
# tests with the real openconnect client, then the container tests (images, compose,
# installer). Exit status is non-zero if anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build --build-tests
swift test --skip-build
status=0
for t in IntegrationTests/netns/[0-9]*.sh; do
    echo "== $t"
    rc=0
    BIN="$(swift build --show-bin-path)" bash "$t" || rc=$?
    if [ "$rc" = 77 ]; then
        echo "skipped: $t"
    elif [ "$rc" != 0 ]; then
        echo "FAILED: $t (exit $rc)"
        status=1
    fi
done
# The stack as it ships: images built with deploy/build-images (a release build, reused
# from .build-release), run with podman compose.
for t in IntegrationTests/containers/[0-9]*.sh; do
    echo "== $t"
    rc=0
    bash "$t" || rc=$?
    if [ "$rc" = 77 ]; then
        echo "skipped: $t"
    elif [ "$rc" != 0 ]; then
        echo "FAILED: $t (exit $rc)"
        status=1
    fi
done
exit $status
