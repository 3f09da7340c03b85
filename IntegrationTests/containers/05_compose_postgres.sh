#!/usr/bin/env bash
# compose.yaml's `postgres` profile: the control plane on PostgreSQL in containers
# (mstunnel-postgres: Debian's PostgreSQL 15, built by deploy/build-images). First start
# makes the cluster and the `mstunnel` role from the password file both containers read;
# the control plane migrates and serves; what it stores survives `compose down` and up; the
# database listens on 127.0.0.1 only; no password in arguments, environment or logs.
# Everything runs in a namespace of its own (host networking inside it).
set -uo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" != 0 ]; then echo "SKIP: $(basename "$0") needs root"; exit 77; fi
if ! command -v podman >/dev/null; then echo "SKIP: $(basename "$0") needs podman"; exit 77; fi
source IntegrationTests/containers/lib.sh
[ -n "$COMPOSE" ] || { echo "SKIP: no compose front end (pip install podman-compose)"; exit 77; }

W=$(mktemp -d /tmp/mstunnel-pgc.XXXXXX)
chmod 0755 "$W"
NS=mstpgc
export MSTUNNEL_NAME=mstpg MSTUNNEL_CONTROL_DIR=$W/control MSTUNNEL_POSTGRES_DIR=$W/pg MSTUNNEL_POSTGRES_PASSWORD_FILE=$W/pg-password
export MSTUNNEL_CONTROL_HOSTNAME=127.0.0.1 MSTUNNEL_CHECKIN_INTERVAL=5 MSTUNNEL_REPORT_INTERVAL=10
compose() { nsenter --net=/run/netns/$NS $COMPOSE -f compose.yaml --profile postgres "$@"; }
cleanup() {
    compose down -t 5 >/dev/null 2>&1
    ip netns del $NS 2>/dev/null
    [ "$FAILS" = 0 ] && rm -rf "$W" || echo "(kept $W for a look)"
}
trap cleanup EXIT

if ! podman image exists localhost/mstunnel-postgres:latest || ! podman image exists localhost/mstunnel-control:latest; then
    ./deploy/build-images > "$W/build-images.log" 2>&1 || { tail -20 "$W/build-images.log"; echo "build-images failed"; exit 1; }
fi
ip netns add $NS; ip -n $NS link set lo up
install -d -m 0700 -o 993 -g 993 "$W/control"
install -d -m 0700 -o 995 -g 995 "$W/pg"
head -c 24 /dev/urandom | base64 | tr -d '\n' > "$W/pg-password"
chown 995:993 "$W/pg-password"; chmod 0440 "$W/pg-password"
PW=$(cat "$W/pg-password")

echo "== podman compose --profile postgres up -d postgres control-pg"
compose up -d postgres control-pg > "$W/up.log" 2>&1 || { fail "compose up"; tail -20 "$W/up.log"; }
healthz() { ip netns exec $NS curl -fsSk https://127.0.0.1:8443/healthz; }
wait_for "the control plane answers /healthz (it retries until the database is up)" 240 healthz
check "PostgreSQL made its cluster, the role and the database at first start" sh -c "podman logs mstpg-postgres 2>&1 | grep -q '\"msg\":\"postgres.initialized\"'"
check "the control plane runs on PostgreSQL" sh -c "podman logs mstpg-control 2>&1 | grep -q 'postgres://mstunnel@127.0.0.1:5432/mstunnel'"
check "PostgreSQL listens on 127.0.0.1 only" sh -c "ip netns exec $NS ss -Hltn 'sport = :5432' | awk '{print \$4}' | grep -qx '127.0.0.1:5432' && [ \$(ip netns exec $NS ss -Hltn 'sport = :5432' | wc -l) = 1 ]"
check "  … as uid 995, no capability" sh -c "podman top mstpg-postgres user capeff | grep -Eq '^postgres +none'"
check "its data belongs to 995 on the host" sh -c "[ \$(stat -c %u $W/pg/data) = 995 ]"
for c in mstpg-postgres mstpg-control; do
    check "$c: podman healthcheck run" nsenter --net=/run/netns/$NS podman healthcheck run $c
done

echo "== the admin API, then compose down and up: everything is still there"
ADMIN=$(cat "$W/control/admin-token")
api() {
    local args=(-fsS --cacert "$W/control/ca.crt" -H "Authorization: Bearer $ADMIN" -X "$1")
    [ $# -gt 2 ] && args+=(-H 'Content-Type: application/json' --data "$3")
    ip netns exec $NS curl "${args[@]}" "https://127.0.0.1:8443/beta/deviceManagement$2"
}
CFG=$(api POST /microsoftTunnelConfigurations '{"displayName":"pg","network":"100.64.0.0/24","listenPort":443}' | json 'd["id"]')
SITE=$(api POST /microsoftTunnelSites "{\"displayName\":\"on postgres\",\"microsoftTunnelConfiguration\":{\"id\":\"$CFG\"}}" | json 'd["id"]')
check "a Site made through the control plane" test -n "$SITE"
cp "$W/control/ca.crt" "$W/ca-before.crt"
compose down -t 5 > /dev/null 2>&1
check "compose down: no container left" sh -c "! podman ps -a --format '{{.Names}}' | grep -q '^mstpg-'"
compose up -d postgres control-pg > "$W/up2.log" 2>&1 || fail "compose up again"
wait_for "up again" 240 healthz
check "the cluster was not made again" sh -c "[ \$(podman logs mstpg-postgres 2>&1 | grep -c postgres.initialized) = 0 ]"
site_kept() { [ "$(api GET "/microsoftTunnelSites/$SITE" | json 'd["displayName"]')" = "on postgres" ]; }
check "the Site is still there (in PostgreSQL's volume)" site_kept
check "the same CA (stored in the database)" cmp "$W/ca-before.crt" "$W/control/ca.crt"
check "no password in either container's arguments or environment" sh -c "podman inspect mstpg-postgres mstpg-control --format '{{.Config.Env}} {{.Args}}' > $W/inspect.txt && ! grep -qF '$PW' $W/inspect.txt"
check "  … nor in their logs" sh -c "podman logs mstpg-postgres > $W/logs.txt 2>&1 && podman logs mstpg-control >> $W/logs.txt 2>&1 && ! grep -qF '$PW' $W/logs.txt"

echo "$PASSES passed, $FAILS failed"
[ "$FAILS" = 0 ]
