#!/usr/bin/env bash
# A Site's rolling upgrade under load, with real containers (docs/site.md, "Rolling upgrade"):
# three gateway hosts (network namespaces), each running the compose stack (server, auth,
# agent) and deploy/mstunnel-updater, behind deploy/balancer/nftables-balancer.sh; the control
# plane beside the balancer. mst-loadgen holds sessions through the balancer with --resume,
# and the stock openconnect keeps a ping going.
#
#   1. The operator upgrades the control plane first (here: --gateway-release ru-2): the Site
#      shows upgradeAvailable; requestUpgrade moves the servers to ru-2 one at a time — drain,
#      hand-over, new containers, health check, next. No session is lost: every tunnel a
#      server handed over comes back on a sibling with its cookie and its address, none is
#      asked to log in again; openconnect keeps its address and its ping.
#   2. A broken release (ru-bad: its gateway exits at start): the first server's updater
#      finds it unhealthy and rolls back to ru-2; the Site shows upgradeFailed and goes no
#      further; the server takes clients again.
#
#   [cli] 198.18.0.2 + 16 more ── 198.18.0.1 [lb] (nftables DNAT 443/tcp+udp; control plane :8443;
#                                      │           corp host 198.18.1.2 on lo)
#                           198.18.{2,3,4}.1 ── 198.18.{2,3,4}.2 [rua] [rub] [ruc]  (compose stacks)
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
if [ "$(id -u)" != 0 ]; then echo "SKIP: $(basename "$0") needs root"; exit 77; fi
if ! command -v podman >/dev/null; then echo "SKIP: $(basename "$0") needs podman"; exit 77; fi
BIN=${BIN:-$ROOT/${MSTUNNEL_BUILD_PATH:-.build-release}/release}
REPO=localhost
source IntegrationTests/containers/lib.sh

W=$(mktemp -d /tmp/mstunnel-ru.XXXXXX)
chmod 0755 "$W"   # the updater reads the agent's requests as uid 992, through this directory
NS_C=rucli NS_LB=rulb
HOSTS=(a b c)
declare -A NS ADDR UPD
for i in 0 1 2; do h=${HOSTS[$i]}; NS[$h]=ru$h; ADDR[$h]=198.18.$((2 + i)).2; done
PIDS=()
[ -n "$COMPOSE" ] || { echo "SKIP: no compose front end (pip install podman-compose)"; exit 77; }

stack() { local h=$1; shift; (cd "$W/$h/install" && nsenter --net=/run/netns/${NS[$h]} $COMPOSE --env-file .env -f compose.yaml "$@"); }
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for h in "${HOSTS[@]}"; do [ -f "$W/$h/install/.env" ] && stack "$h" down -t 5 >/dev/null 2>&1; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    for ns in $NS_C $NS_LB "${NS[@]}"; do ip netns del "$ns" 2>/dev/null; done
    for t in ru-1 ru-2 ru-bad; do for c in server auth agent; do podman rmi -f "$REPO/mstunnel-$c:$t" >/dev/null 2>&1; done; done
    [ "$FAILS" = 0 ] && rm -rf "$W" || echo "(kept $W for a look)"
}
trap cleanup EXIT

echo "== images: ru-1 and ru-2 (the same build under two tags), ru-bad (its gateway exits at start)"
if ! podman image exists "$REPO/mstunnel-server:latest"; then
    ./deploy/build-images > "$W/build-images.log" 2>&1 || { tail -20 "$W/build-images.log"; echo "build-images failed"; exit 1; }
fi
for c in server auth agent; do
    podman tag "$REPO/mstunnel-$c:latest" "$REPO/mstunnel-$c:ru-1" "$REPO/mstunnel-$c:ru-2"
    [ $c = server ] || podman tag "$REPO/mstunnel-$c:latest" "$REPO/mstunnel-$c:ru-bad"
done
printf 'FROM %s/mstunnel-server:latest\nENTRYPOINT ["/bin/sh", "-c", "echo this release is broken >&2; exit 1"]\n' "$REPO" > "$W/Containerfile.bad"
podman build -q -t "$REPO/mstunnel-server:ru-bad" -f "$W/Containerfile.bad" "$W" >/dev/null
check "three tags of the images" podman image exists "$REPO/mstunnel-server:ru-bad"

echo "== the lab: a client, the balancer (and control plane), three gateway hosts"
for ns in $NS_C $NS_LB "${NS[@]}"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip link add cli0 netns $NS_C type veth peer name lbc netns $NS_LB
ip -n $NS_C addr add 198.18.0.2/24 dev cli0
for k in $(seq 10 25); do ip -n $NS_C addr add 198.18.0.$k/24 dev cli0; done
ip -n $NS_LB addr add 198.18.0.1/24 dev lbc
ip -n $NS_LB addr add 198.18.1.2/32 dev lo
ip -n $NS_C link set cli0 up; ip -n $NS_LB link set lbc up
ip netns exec $NS_LB sysctl -qw net.ipv4.ip_forward=1
for i in 0 1 2; do
    h=${HOSTS[$i]}
    ip link add lb$i netns $NS_LB type veth peer name gw0 netns ${NS[$h]}
    ip -n $NS_LB addr add 198.18.$((2 + i)).1/24 dev lb$i; ip -n $NS_LB link set lb$i up
    ip -n ${NS[$h]} addr add ${ADDR[$h]}/24 dev gw0; ip -n ${NS[$h]} link set gw0 up
    ip -n ${NS[$h]} route add default via 198.18.$((2 + i)).1
    ip netns exec ${NS[$h]} sysctl -qw net.ipv4.ip_forward=1
done
mkdir -p /etc/netns/$NS_C; : > /etc/netns/$NS_C/resolv.conf

echo "== the control plane (release ru-1), a configuration and a Site"
install -d -m 0700 "$W/control"
start_control() {
    ip netns exec $NS_LB "$BIN/mstunnel-control" serve --state-dir "$W/control" --listen 198.18.0.1:8443 --hostname 198.18.0.1 \
        --checkin-interval 1 --report-interval 2 --offline-after 20 --gateway-release "$1" >> "$W/control.log" 2>&1 &
    CONTROL_PID=$!; PIDS+=($CONTROL_PID)
    for _ in $(seq 100); do ip netns exec $NS_LB ss -ltn 'sport = :8443' | grep -q LISTEN && return 0; sleep 0.1; done
    tail -5 "$W/control.log"; return 1
}
stop_control() { kill "$CONTROL_PID"; wait "$CONTROL_PID" 2>/dev/null; }
start_control ru-1 || { echo "the control plane did not start"; exit 1; }
G=/beta/deviceManagement
api() {
    local args=(-fsS --cacert "$W/control/ca.crt" -H "Authorization: Bearer $(cat "$W/control/admin-token")" -X "$1")
    [ $# -gt 2 ] && args+=(-H 'Content-Type: application/json' --data "$3")
    ip netns exec $NS_LB curl "${args[@]}" "https://198.18.0.1:8443$G$2"
}
CFG=$(api POST /microsoftTunnelConfigurations '{"displayName":"ru","network":"100.64.0.0/22","dnsServers":["198.18.1.2"],"routeIncludes":["198.18.1.0/24"],"listenPort":443}' | json 'd["id"]')
SITE=$(api POST /microsoftTunnelSites "{\"displayName\":\"ru\",\"upgradeAutomatically\":false,\"microsoftTunnelConfiguration\":{\"id\":\"$CFG\"}}" | json 'd["id"]')
check "Site $SITE created" test -n "$SITE"
site() { api GET "/microsoftTunnelSites/$SITE" | json "d.get('$1')"; }
site_is() { [ "$(site "$1")" = "$2" ]; }
server_status_is() { [ "$(api GET "/microsoftTunnelSites/$SITE/microsoftTunnelServers/$1" | json 'd["tunnelServerHealthStatus"]')" = "$2" ]; }
connected() { "$BIN/mst-cli" server show status --run-dir "$W/$1/run" --json 2>/dev/null | json 'd.get("connectedSessions", 0)'; }
sessions_up() { [ $(( $(connected a) + $(connected b) + $(connected c) )) -ge "$1" ]; }
stack_on() { # stack_on HOST TAG: its three containers run TAG
    local c; for c in server auth agent; do podman inspect --format '{{.Config.Image}}' "ru$1-$c" 2>/dev/null | grep -q ":$2\$" || return 1; done; }

echo "== the issuer, the certificate, three gateway stacks on ru-1 with their updaters"
"$BIN/mst-dev-issuer" init --dir "$W/issuer" --issuer https://issuer.test/11111111-2222-3333-4444-555555555555/v2.0 >/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=198.18.0.1" \
    -addext "subjectAltName=IP:198.18.0.1" -keyout "$W/site.key" -out "$W/site.crt" 2>/dev/null
PIN="pin-sha256:$(openssl x509 -in "$W/site.crt" -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)"
for h in "${HOSTS[@]}"; do
    d=$W/$h
    install -d -m 0750 -o 992 -g 990 "$d/etc" "$d/etc/private" "$d/etc/upgrade"
    install -d -m 0755 -o 992 -g 990 "$d/etc/certs"
    install -d -m 2770 -o root -g 990 "$d/run" "$d/log"
    install -d -m 0755 "$d/install"
    install -m 0644 -o 992 -g 990 "$W/site.crt" "$d/etc/certs/site.crt"
    install -m 0640 -o 0 -g 990 "$W/site.key" "$d/etc/private/site.key"
    install -m 0644 "$W/issuer/jwks.json" "$d/etc/jwks.json"
    printf '{ "issuer": "https://issuer.test/11111111-2222-3333-4444-555555555555/v2.0", "jwksFile": "/etc/mstunnel/jwks.json", "allowedTenants": ["11111111-2222-3333-4444-555555555555"] }\n' > "$d/etc/auth.json"
    chown 992:990 "$d/etc/auth.json"; chmod 0640 "$d/etc/auth.json"
    cp compose.yaml "$d/install/compose.yaml"
    cat > "$d/install/.env" <<ENV
MSTUNNEL_ENGINE=podman
MSTUNNEL_COMPOSE=$COMPOSE
MSTUNNEL_DIR=$d/etc
MSTUNNEL_RUN_DIR=$d/run
MSTUNNEL_LOG_DIR=$d/log
MSTUNNEL_IMAGE_REPO=$REPO
MSTUNNEL_TAG=ru-1
MSTUNNEL_NAME=ru$h
MSTUNNEL_UPDATER_DIR=$d/updater
MSTUNNEL_NOFILE=16384
ENV
    JOIN=$(api POST "/microsoftTunnelSites/$SITE/createJoinToken" '{"expirationMinutes":30}' | json 'd["joinToken"]')
    MSTUNNEL_JOIN_TOKEN=$JOIN nsenter --net=/run/netns/${NS[$h]} podman run --rm --network host --user 992:990 --cap-drop ALL \
        -e MSTUNNEL_JOIN_TOKEN -v "$d/etc:/etc/mstunnel" "$REPO/mstunnel-agent:ru-1" enroll --control-url https://198.18.0.1:8443 \
        > "$W/enroll-$h.log" 2>&1 || { fail "enroll $h"; tail -3 "$W/enroll-$h.log"; }
    stack "$h" up -d > "$W/up-$h.log" 2>&1 || { fail "compose up $h"; tail -5 "$W/up-$h.log"; }
    nsenter --net=/run/netns/${NS[$h]} env MSTUNNEL_INSTALL_DIR="$d/install" MSTUNNEL_UPDATER_HEALTH_TIMEOUT=40 \
        "$ROOT/deploy/mstunnel-updater" > "$W/updater-$h.log" 2>&1 &
    UPD[$h]=$!; PIDS+=(${UPD[$h]})
done
for h in "${HOSTS[@]}"; do
    wait_for "server $h listens on 443 (compose stack ru$h)" 240 sh -c "ip netns exec ${NS[$h]} ss -ltn 'sport = :443' | grep -q LISTEN"
done
ip netns exec $NS_LB bash "$ROOT/deploy/balancer/nftables-balancer.sh" --vip 198.18.0.1 \
    --backend ${ADDR[a]} --backend ${ADDR[b]} --backend ${ADDR[c]} > "$W/balancer.log" 2>&1 &
PIDS+=($!)
servers_on() { # servers_on TAG: the three servers report TAG
    [ "$(api GET "/microsoftTunnelSites/$SITE/microsoftTunnelServers" | json "sum(1 for s in d['value'] if s.get('imageTag') == '$1')")" = 3 ]
}
wait_for "all three servers check in and report image tag ru-1" 120 servers_on ru-1
check "the Site has no upgrade available (the release is ru-1)" site_is upgradeAvailable False
check "each updater runs (its heartbeat, in its own directory the agent reads)" sh -c "for h in a b c; do [ -n \"\$(find $W/\$h/updater/updater.alive -newermt '-10 seconds')\" ] || exit 1; done"
check "  … owned by root, mounted read-only in the agent's container" sh -c "[ \$(stat -c %u $W/a/updater) = 0 ] && ! podman exec rua-agent touch /var/lib/mstunnel-updater/x 2>/dev/null"

echo "== load: mst-loadgen holds 120 sessions through the balancer (--resume); openconnect pings"
: > "$W/tokens.txt"
for k in $(seq 0 39); do
    "$BIN/mst-dev-issuer" mint --dir "$W/issuer" --iss https://issuer.test/11111111-2222-3333-4444-555555555555/v2.0 \
        --aud 3678c9e9-9681-447a-974d-d19f668fcd88 --tid 11111111-2222-3333-4444-555555555555 \
        --oid "$(printf '0b1f7a3e-0000-4000-8000-%012d' "$k")" --upn "user$k@corp.test" --exp-in 7200 >> "$W/tokens.txt"; echo >> "$W/tokens.txt"
done
BIND=(); for k in $(seq 10 25); do BIND+=(--bind-address 198.18.0.$k); done
ip netns exec $NS_C "$BIN/mst-loadgen" --url https://198.18.0.1/ --pin "$PIN" --token-file "$W/tokens.txt" --sessions 120 \
    --concurrency 16 --hold 900 --resume --json "${BIND[@]}" > "$W/loadgen.json" 2> "$W/loadgen.err" &
LG=$!; PIDS+=($LG)
"$BIN/mst-dev-issuer" mint --dir "$W/issuer" --iss https://issuer.test/11111111-2222-3333-4444-555555555555/v2.0 \
    --aud 3678c9e9-9681-447a-974d-d19f668fcd88 --tid 11111111-2222-3333-4444-555555555555 \
    --oid 0b1f7a3e-0000-4000-8000-00000000a11c --upn alice@corp.test --exp-in 7200 > "$W/alice.jwt"
ip netns exec $NS_C openconnect --protocol=anyconnect --token-mode=oidc --token-secret=@"$W/alice.jwt" --servercert "$PIN" \
    --non-inter --interface tun0 https://198.18.0.1/ > "$W/openconnect.log" 2>&1 &
OC=$!; PIDS+=($OC)
wait_for "openconnect connected through the balancer" 120 sh -c "ip -n $NS_C -4 addr show dev tun0 | grep -q 'inet 100\.64\.'"
OC_ADDR=$(ip -n $NS_C -4 -o addr show dev tun0 | awk '{print $4}')
wait_for "121 tunnels up across the three servers" 240 sessions_up 121
echo "   server a: $(connected a), b: $(connected b), c: $(connected c) tunnels"
ip netns exec $NS_C ping -i 0.2 -W 1 198.18.1.2 > "$W/ping.log" 2>&1 &
PING=$!; PIDS+=($PING)

echo "== the operator upgrades the control plane first (release ru-2), then asks for the Site's upgrade"
stop_control; start_control ru-2 || fail "control plane restarted with --gateway-release ru-2"
wait_for "the Site shows upgradeAvailable" 60 site_is upgradeAvailable True
api POST "/microsoftTunnelSites/$SITE/requestUpgrade" > /dev/null && pass "requestUpgrade" || fail "requestUpgrade"
T0=$(date +%s)
wait_for "the Site's servers are all on ru-2 (site.upgrade.completed)" 1200 grep -q '"msg":"site.upgrade.completed"' "$W/control.log"
echo "   took $(( $(date +%s) - T0 )) s"
check "all three report ru-2" servers_on ru-2
for h in a b c; do
    check "ru$h's containers run ru-2" stack_on $h ru-2
    check "  … its updater upgraded it once, healthy (updater.upgrade.succeeded)" sh -c "[ \$(grep -c '\"msg\":\"updater.upgrade.succeeded\"' $W/updater-$h.log) = 1 ]"
done
check "one server at a time: no two hosts' updaters were switching at once" python3 - "$W"/updater-?.log <<'PY'
import json, sys
spans = []
for path in sys.argv[1:]:
    start = None
    for line in open(path):
        try: d = json.loads(line)
        except ValueError: continue
        if d.get("msg") == "updater.upgrade.started": start = d["time"]
        elif d.get("msg") in ("updater.upgrade.succeeded", "updater.upgrade.rolled_back") and start:
            spans.append((start, d["time"], path)); start = None
spans.sort()
if len(spans) != 3: sys.exit(f"{len(spans)} upgrades")
for (a0, a1, pa), (b0, b1, pb) in zip(spans, spans[1:]):
    if b0 < a1: sys.exit(f"{pb} started at {b0} while {pa} ran until {a1}")
PY
check "the Site shows no upgrade under way" site_is upgradeStatus none
check "  … and nothing available" site_is upgradeAvailable False
sleep 3
kill -INT $LG; wait $LG
python3 - "$W/loadgen.json" <<'PY' > "$W/resume.txt"
import json, sys
r = json.load(open(sys.argv[1])); x = r.get("resume") or {}; l = x.get("latencyMs") or {}
print(r["sessions"]["established"], x.get("lost", 0), x.get("resumed", 0), x.get("refused", 0), x.get("gaveUp", 0), x.get("addressesChanged", 0),
      round(l.get("p50", 0)), round(l.get("p99", 0)))
PY
read -r EST LOST BACK REFUSED GAVEUP CHANGED P50 P99 < "$W/resume.txt"
echo "   mst-loadgen: $EST sessions; $LOST tunnels handed over during the upgrade, $BACK back (p50 $P50 ms, p99 $P99 ms), $REFUSED refused, $GAVEUP not back, $CHANGED addresses changed"
check "mst-loadgen held 120 sessions" test "$EST" = 120
check "tunnels were handed over (every server drained in turn)" test "$LOST" -ge 100
check "every handed-over tunnel came back on a sibling with its cookie" test "$BACK" = "$LOST"
check "none was asked to log in again (no cookie refused)" test "$REFUSED" = 0
check "none gave up" test "$GAVEUP" = 0
check "none came back with another address" test "$CHANGED" = 0
check "openconnect is still connected" kill -0 $OC
check "  … with its address ($OC_ADDR)" sh -c "ip -n $NS_C -4 -o addr show dev tun0 | grep -q 'inet $OC_ADDR'"
check "  … and it never logged in again (one token login, every reconnect with its cookie)" sh -c "[ \$(grep -c 'Got HTTP response: HTTP/1.1 200 OK' $W/openconnect.log) -le 2 ] && [ \$(grep -c '^POST https://' $W/openconnect.log) = 1 ] && ! grep -qi 'login failed\|cookie is no longer valid\|authentication failed' $W/openconnect.log"
kill -INT $PING; wait $PING 2>/dev/null
echo "   ping through the upgrade: $(grep -o '[0-9]* packets transmitted, [0-9]* received[^,]*, [0-9.]*% packet loss' "$W/ping.log")"
check "the ping got through the upgrade (a pause at each hand-over, not an outage)" sh -c "grep -Eq ' ([0-9]|[1-4][0-9])(\\.[0-9]+)?% packet loss' $W/ping.log"

echo "== a broken release (ru-bad): the first server rolls back, the Site stops with upgradeFailed"
stop_control; start_control ru-bad || fail "control plane restarted with --gateway-release ru-bad"
wait_for "the Site shows upgradeAvailable again" 60 site_is upgradeAvailable True
api POST "/microsoftTunnelSites/$SITE/requestUpgrade" > /dev/null && pass "requestUpgrade (ru-bad)" || fail "requestUpgrade (ru-bad)"
wait_for "the Site shows upgradeFailed" 500 site_is upgradeStatus failed
FIRST=$(site upgradingServerId)
echo "   $(site upgradeMessage)"
message_says() { site upgradeMessage | grep -q "$1"; }
check "the message says it rolled back to ru-2" message_says 'rolled back to ru-2'
check "that server's status is upgradeFailed" server_status_is "$FIRST" upgradeFailed
check "exactly one updater tried ru-bad and rolled back" sh -c "[ \$(cat $W/updater-*.log | grep -c '\"msg\":\"updater.upgrade.rolled_back\".*\"tag\":\"ru-bad\"') = 1 ]"
RB=$(grep -l 'updater.upgrade.rolled_back' "$W"/updater-*.log | head -1 | sed 's/.*updater-\(.\)\.log/\1/')
check "  … and its stack (ru$RB) runs ru-2 again" stack_on "$RB" ru-2
check "  … healthy" nsenter --net=/run/netns/ru$RB podman healthcheck run ru$RB-server
check "  … and takes clients again (its liveness page answers 200)" sh -c "ip netns exec $NS_LB curl -sk -o /dev/null -w '%{http_code}' https://${ADDR[${RB:-a}]}/ | grep -q 200"
sleep 5
check "the other two servers were never asked (still ru-2, one upgrade each)" sh -c "[ \$(cat $W/updater-*.log | grep -c '\"msg\":\"updater.upgrade.started\"') = 4 ]"
check "openconnect is still connected with its address" sh -c "kill -0 $OC && ip -n $NS_C -4 -o addr show dev tun0 | grep -q 'inet $OC_ADDR'"
check "  … and reaches the corporate host" ip netns exec $NS_C ping -c 2 -i 0.3 -W 2 198.18.1.2
echo "== a release whose images are not there (ru-none): the updater changes nothing, the agent ends its drain"
started_at() { podman inspect --format '{{.State.StartedAt}}' "ru$1-server"; }
declare -A BEFORE; for h in a b c; do BEFORE[$h]=$(started_at $h); done
stop_control; start_control ru-none || fail "control plane restarted with --gateway-release ru-none"
api POST "/microsoftTunnelSites/$SITE/requestUpgrade" > /dev/null && pass "requestUpgrade (ru-none)" || fail "requestUpgrade (ru-none)"
# One read of the Site for both fields: two reads straddled the check-in that superseded the
# ru-bad failure (failed, then ru-none in progress) in a clean run and passed too early.
failed_on() { [ "$(api GET "/microsoftTunnelSites/$SITE" | json "d.get('upgradeStatus'), d.get('upgradeTargetTag')")" = "failed ru-none" ]; }
wait_for "the Site shows upgradeFailed for ru-none" 400 failed_on
check "the message names the missing image" message_says 'mstunnel-server:ru-none is not on this host'
NONE=$(grep -l '"msg":"updater.upgrade.failed"' "$W"/updater-?.log | head -1 | sed 's/.*updater-\(.\)\.log/\1/')
check "  … the updater of ru${NONE:-?} changed nothing: its gateway was not restarted" test "$(started_at "${NONE:-a}")" = "${BEFORE[${NONE:-a}]}"
undrained() { ip netns exec $NS_LB curl -sk -o /dev/null -w '%{http_code}' "https://${ADDR[${NONE:-a}]}/" | grep -q 200; }
wait_for "  … and its agent ended the drain the upgrade had started: the server takes clients again" 60 undrained
check "  … logged by the agent (agent.drain.ended)" sh -c "podman logs ru${NONE:-a}-agent 2>&1 | grep -q '\"msg\":\"agent.drain.ended\"'"
check "no token or cookie in the updaters' or the control plane's logs" bash -c "! grep -qF -f $W/alice.jwt $W/updater-*.log $W/control.log"

echo "$PASSES passed, $FAILS failed"
[ "$FAILS" = 0 ]
