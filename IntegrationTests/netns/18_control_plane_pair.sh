#!/usr/bin/env bash
# Two control-plane instances on one PostgreSQL behind an L4 balancer (docs/control-plane.md,
# "Several instances"): they start at the same moment and agree on one CA, one admin token,
# one download-link key; agents and the admin reach them through one address. Kill either
# instance: the balancer leaves it out, the admin API keeps answering, both agents keep
# checking in, a Site key rotation asked of the survivor reaches both servers; the killed
# instance comes back with the same CA. The database gone for a while: each instance says so
# (/healthz 503, the API 503 with Retry-After), and all carries on when it is back.
#
#   [gwa] gwa1 198.18.4.1 ── corpa 198.18.4.2 ┐
#   [gwb] gwb1 198.18.5.1 ── corpb 198.18.5.2 ┴ [corp] 198.18.1.2:8443 (nftables DNAT, by source)
#                                                        → cp1 198.18.1.3, cp2 198.18.1.4
#   PostgreSQL: the host's, through its Unix socket (a file, so it reaches into the namespaces).
source "$(dirname "$0")/../lib.sh"
REPO=$(cd "$(dirname "$0")/../.." && pwd)
DB=mst_it_$$
PG_URL=$("$REPO/scripts/postgres-test-db.sh" "$DB") || { rc=$?; [ "$rc" = 77 ] && exit 77; echo "FAIL: no PostgreSQL"; exit 1; }
trap 'cleanup; "$REPO/scripts/postgres-test-db.sh" --drop "$DB" >/dev/null 2>&1 || true' EXIT

NS_GA=mstgwa$$ NS_GB=mstgwb$$
EXTRA_NS+=("$NS_GA" "$NS_GB")
for ns in "$NS_GA" "$NS_GB" "$NS_I"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
veth_link "$NS_GA" gwa1 198.18.4.1/24 "$NS_I" corpa 198.18.4.2/24
veth_link "$NS_GB" gwb1 198.18.5.1/24 "$NS_I" corpb 198.18.5.2/24
for a in 198.18.1.3 198.18.1.4; do ip -n "$NS_I" addr add "$a/32" dev lo; done
ip -n "$NS_GA" route add 198.18.1.0/24 via 198.18.4.2
ip -n "$NS_GB" route add 198.18.1.0/24 via 198.18.5.2
API_NS=$NS_GA   # the admin calls from outside the corp namespace, through the balancer

make_pki
make_issuer

declare -A CPADDR=([1]=198.18.1.3 [2]=198.18.1.4) CPPID=()
start_instance() {  # start_instance 1|2 : mstunnel-control on the shared database
    local n=$1
    ip netns exec "$NS_I" env MSTUNNEL_LOG_DIR="$LOGS" "$BIN/mstunnel-control" serve --state-dir "$WORK/control-$n" \
        --listen "${CPADDR[$n]}:8443" --hostname 198.18.1.2 --hostname "${CPADDR[$n]}" --database "$PG_URL" \
        --checkin-interval 1 --report-interval 1 --offline-after 15 >> "$WORK/control-$n.log" 2>&1 &
    CPPID[$n]=$!
    PIDS+=($!)
}
listening() { ip netns exec "$NS_I" ss -ltn "sport = :8443" | grep -q "${CPADDR[$1]}:8443"; }
ca_of() { grep '"msg":"control.starting"' "$WORK/control-$1.log" | tail -1 | json 'd["ca.sha256"]'; }

echo "== two instances start at the same moment on one empty database"
start_instance 1
start_instance 2
wait_for "instance 1 listening" 150 listening 1
wait_for "instance 2 listening" 150 listening 2
check "one CA for both (made once, kept in the database)" sh -c "[ -n '$(ca_of 1)' ] && [ '$(ca_of 1)' = '$(ca_of 2)' ]"
check "one admin token for both" cmp -s "$WORK/control-1/admin-token" "$WORK/control-2/admin-token"
check "one migration run: the schema once, no error" sh -c "[ \$(cat '$WORK'/control-*.log | grep -c '\"migration\":\"v3\"') = 1 ] && ! grep -q 'start.failed' '$WORK'/control-*.log"
check "no CA key in either state directory (it lives in the database)" sh -c "! ls '$WORK'/control-*/ca.key 2>/dev/null | grep -q ."
CA_FIRST=$(ca_of 1)
CONTROL=$WORK/control-1   # its ca.crt and admin-token are the operator's, as on either instance

ip netns exec "$NS_I" bash "$REPO/deploy/balancer/nftables-balancer.sh" --vip 198.18.1.2 --port 8443 \
    --backend 198.18.1.3 --backend 198.18.1.4 --tcp-only --probe-path /healthz --interval 0.5 --table mstcp_lb \
    >> "$WORK/balancer.log" 2>&1 &
PIDS+=($!)
wait_for "the balancer is up" 50 grep -q balancer.started "$WORK/balancer.log"

echo "== a Site of two servers through the balancer"
create_site
start_site_member a "$NS_GA"
start_site_member b "$NS_GB"
same_site_key() { [ -n "$(site_key a)" ] && [ "$(site_key a)" = "$(site_key b)" ]; }
wait_for "both servers' auths seal with one Site key" 100 same_site_key
K1=$(site_key a)

# checkins_after T : both servers checked in after Unix time T (as the control plane saw it).
checkins_after() {
    api GET "/microsoftTunnelSites/$SITE/microsoftTunnelServers" | python3 -c "
import json, sys, datetime
v = json.load(sys.stdin)['value']
t = [datetime.datetime.fromisoformat(s['lastCheckinDateTime'].replace('Z', '+00:00')).timestamp() for s in v if s.get('lastCheckinDateTime')]
sys.exit(0 if len(v) == 2 and len(t) == 2 and min(t) > $1 else 1)"
}
# api_burst N : N admin reads through the balancer, all answered.
api_burst() { local i; for i in $(seq "$1"); do api GET /microsoftTunnelSites >/dev/null || return 1; done; }
wait_for "both servers check in" 50 checkins_after "$(date +%s -d '-60 sec')"

echo "== a log collection uploaded through the balancer downloads from either instance"
SERVER_A=$(api GET "/microsoftTunnelSites/$SITE/microsoftTunnelServers" | json 'd["value"][0]["id"]')
if out=$(api POST "/microsoftTunnelSites/$SITE/microsoftTunnelServers/$SERVER_A/createServerLogCollectionRequest" \
        "{\"startDateTime\":\"$(date -u -d '-10 min' +%Y-%m-%dT%H:%M:%SZ)\",\"endDateTime\":\"$(date -u -d '+1 min' +%Y-%m-%dT%H:%M:%SZ)\"}"); then
    pass "log collection requested"; LC=$(echo "$out" | json 'd["id"]')
else fail "log collection requested: $out"; fi
log_collection_done() { api GET "/microsoftTunnelServerLogCollectionResponses/$LC" | grep -Eq '"status" *: *"completed"'; }
wait_for "  … completed" 100 log_collection_done
URL=$(api POST "/microsoftTunnelServerLogCollectionResponses/$LC/createDownloadUrl" '' | json 'd["value"]')
QUERY=${URL#*/downloads/}
for n in 1 2; do
    ip netns exec "$NS_I" curl -sS --cacert "$CONTROL/ca.crt" --connect-to "198.18.1.2:8443:${CPADDR[$n]}:8443" \
        "https://198.18.1.2:8443/downloads/$QUERY" > "$WORK/collected-$n.log" 2>/dev/null || true
    check "  … the signed link downloads the logs from instance $n" grep -q 'mstunnel-agent' "$WORK/collected-$n.log"
done

lose_instance() {  # lose_instance N OTHER
    local n=$1 other=$2 t0
    echo "== instance $n killed (SIGKILL)"
    kill -9 "${CPPID[$n]}"; wait "${CPPID[$n]}" 2>/dev/null || true
    t0=$(date +%s)
    wait_for "the balancer leaves instance $n out" 50 grep -q "backend.down.*${CPADDR[$n]}" "$WORK/balancer.log"
    check "the admin API answers 20 requests in a row through the balancer" api_burst 20
    wait_for "both agents check in after the kill (with instance $other)" 100 checkins_after "$t0"
}
bring_back() {  # bring_back N
    local n=$1
    start_instance "$n"
    wait_for "instance $n back, listening" 150 listening "$n"
    check "  … with the same CA, from the database" sh -c "[ '$(ca_of "$n")' = '$CA_FIRST' ]"
    wait_for "the balancer takes instance $n back" 50 sh -c "grep -c 'backend.up.*${CPADDR[$n]}' '$WORK/balancer.log' | grep -qv '^0$'"
}

lose_instance 1 2
if out=$(api POST "/microsoftTunnelSites/$SITE/rotateTicketKey" '{}'); then pass "a Site key rotation asked of the survivor"; else fail "rotation: $out"; fi
rotated() { [ -n "$(site_key a)" ] && [ "$(site_key a)" != "$K1" ] && [ "$(site_key a)" = "$(site_key b)" ]; }
wait_for "  … reaches both servers, which then seal with the new key" 150 rotated
bring_back 1
lose_instance 2 1
bring_back 2
check "the admin token did not change across the restarts" cmp -s "$WORK/control-1/admin-token" "$WORK/control-2/admin-token"

echo "== the database away: each instance says so, and all resumes when it is back"
pg() { su postgres -s /bin/sh -c "psql -X -q -At -v ON_ERROR_STOP=1 -c \"$1\""; }
pg "ALTER DATABASE $DB ALLOW_CONNECTIONS false" && pg "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '$DB'" >/dev/null
healthz() { ip netns exec "$NS_I" curl -sk -o "$WORK/healthz.out" -w '%{http_code}' --max-time 30 "https://$1:8443/healthz"; }
check "instance 1 /healthz: 503" test "$(healthz 198.18.1.3)" = 503
check "  … saying the database does not answer" grep -q '"unavailable"' "$WORK/healthz.out"
direct=$(ip netns exec "$NS_I" curl -sk -D "$WORK/direct.h" -o "$WORK/direct.out" -w '%{http_code}' --max-time 30 \
    -H "Authorization: Bearer $(cat "$CONTROL/admin-token")" "https://198.18.1.4:8443/beta/deviceManagement/microsoftTunnelSites")
check "the admin API on instance 2: 503 (not 500)" test "$direct" = 503
check "  … with Retry-After" grep -qi '^retry-after:' "$WORK/direct.h"
wait_for "the balancer leaves both out" 50 sh -c "[ \$(grep -c 'backend.down' '$WORK/balancer.log') -ge 4 ]"
pg "ALTER DATABASE $DB ALLOW_CONNECTIONS true"
t_back=$(date +%s)
both_healthy() { [ "$(healthz 198.18.1.3)" = 200 ] && [ "$(healthz 198.18.1.4)" = 200 ]; }
wait_for "the database back: /healthz 200 on both" 100 both_healthy
wait_for "the balancer takes both back" 50 sh -c "[ \$(grep -c 'backend.up' '$WORK/balancer.log') -ge 4 ]"
wait_for "both agents check in again" 150 checkins_after "$t_back"
check "no instance crashed while the database was away" sh -c "kill -0 ${CPPID[1]} && kill -0 ${CPPID[2]}"
check "no password in any log" sh -c "! grep -rq 'mstunnel-test' '$WORK'/*.log '$LOGS' 2>/dev/null"

summary
