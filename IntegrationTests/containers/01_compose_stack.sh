#!/usr/bin/env bash
# The stack as an operator runs it: four images built from this repository, `podman compose
# --profile all-in-one up -d` (through scripts/quickstart.sh, the README's first command,
# without the host link so only namespaces are touched), the agent enrolled, the stock
# openconnect connected from a client namespace to a corporate host behind the gateway
# namespace; then: a configuration change pushed through the control plane and applied with
# the session kept, the logs (a login line, no secret), the health checks, least privilege
# inside the containers, mst-cli --json, image labels; `podman compose down`, and the
# quickstart run a second time.
#
# Note: the stack uses host networking and lives in the namespace mstqs-gw. `podman exec`
# (and so `podman healthcheck run`) starts its process in the caller's network namespace
# when a container has none of its own, so calls that use the network go through nsenter.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
if [ "$(id -u)" != 0 ]; then echo "SKIP: $(basename "$0") needs root"; exit 77; fi
if ! command -v podman >/dev/null; then echo "SKIP: $(basename "$0") needs podman"; exit 77; fi
QS=/var/lib/mstunnel-quickstart
NS_C=mstqs-cli NS_G=mstqs-gw
PASSES=0 FAILS=0
OC_PID=
pass() { PASSES=$((PASSES + 1)); echo "  ok: $*"; }
fail() { FAILS=$((FAILS + 1)); echo "  FAIL: $*"; if [ -n "${MST_FAIL_LOG:-}" ]; then echo "$*" >> "$MST_FAIL_LOG"; fi; }
check() { local what=$1; shift; if "$@" >/dev/null 2>&1; then pass "$what"; else fail "$what"; fi; }
wait_for() { local what=$1 n=$2; shift 2; for _ in $(seq "$n"); do if "$@" >/dev/null 2>&1; then pass "$what"; return 0; fi; sleep 0.2; done; fail "$what"; }
cleanup() {
    [ -n "$OC_PID" ] && kill "$OC_PID" 2>/dev/null
    ./scripts/quickstart.sh down >/dev/null 2>&1 || true
}
trap cleanup EXIT
in_gw() { nsenter --net=/run/netns/$NS_G "$@"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
api() {
    local args=(-fsS --cacert "$QS/control/ca.crt" -H "Authorization: Bearer $(cat "$QS/control/admin-token")" -X "$1")
    [ $# -gt 2 ] && args+=(-H 'Content-Type: application/json' --data "$3")
    in_gw curl "${args[@]}" "https://198.18.0.1:8443$2"
}

echo "== quickstart (builds the images, compose up, enroll, connect, ping, iperf3)"
if ./scripts/quickstart.sh --no-host-link > /tmp/mstunnel-quickstart-test.log 2>&1; then
    pass "scripts/quickstart.sh brought the stack up and connected openconnect"
else
    fail "scripts/quickstart.sh"; tail -40 /tmp/mstunnel-quickstart-test.log
    echo "$PASSES passed, $FAILS failed"; exit 1
fi
check "the quickstart pinged the corporate host through the tunnel" grep -q '3 received' /tmp/mstunnel-quickstart-test.log
check "the quickstart's iperf3 ran through the tunnel" grep -q 'receiver' /tmp/mstunnel-quickstart-test.log
check "it printed the openconnect line with the pin and the token file" grep -q "openconnect --protocol=anyconnect --token-mode=oidc --token-secret=@$QS/token.jwt --servercert pin-sha256:" /tmp/mstunnel-quickstart-test.log
check "it printed the console URL and the admin token" sh -c "grep -q 'Admin console: https://198.18.0.1:8443/console' /tmp/mstunnel-quickstart-test.log && grep -q \"Admin token:   \$(cat $QS/control/admin-token)\" /tmp/mstunnel-quickstart-test.log"
for c in mstunnel-server mstunnel-auth mstunnel-agent mstunnel-control; do
    check "$c is running" sh -c "podman ps --format '{{.Names}}' | grep -qx $c"
done

echo "== the printed openconnect line works (a second session, tun1)"
PIN=$(grep -o 'pin-sha256:[^ ]*' /tmp/mstunnel-quickstart-test.log | head -1)
ip netns exec $NS_C openconnect --protocol=anyconnect --token-mode=oidc --token-secret=@"$QS/token.jwt" --servercert "$PIN" \
    --non-inter --interface tun1 https://198.18.0.1/ > /tmp/mstunnel-oc-test.log 2>&1 &
OC_PID=$!
tunnel_up() { ip -n $NS_C -4 addr show dev tun1 | grep -q 'inet 100\.64\.'; }
wait_for "openconnect connected through the containerised gateway" 150 tunnel_up
ADDR=$(ip -n $NS_C -4 -o addr show dev tun1 | awk '{print $4}')
check "ping the corporate host through the tunnel" ip netns exec $NS_C ping -c 2 -i 0.2 -W 2 198.18.1.2
check "iperf3 (1 s) through the tunnel" ip netns exec $NS_C iperf3 -c 198.18.1.2 -t 1
check "the corporate host's web page through the tunnel" sh -c "ip netns exec $NS_C curl -fsS http://198.18.1.2:8080/ | grep -q 'corporate network'"

echo "== a configuration change through the control plane, applied live"
CFG=$(api GET /beta/deviceManagement/microsoftTunnelConfigurations | json 'd["value"][0]["id"]')
if api PATCH "/beta/deviceManagement/microsoftTunnelConfigurations/$CFG" '{"routeIncludes":["198.18.1.0/25"],"advancedSettings":[{"name":"banner","value":"changed by the test"}]}' >/dev/null; then
    pass "configuration patched"; else fail "configuration patched"; fi
applied() { podman logs mstunnel-server 2>&1 | grep -q '"msg":"settings.applied"'; }
wait_for "the gateway applied it (settings.applied in podman logs)" 150 applied
check "admin-settings.json carries the change" grep -q '198.18.1.0/25' "$QS/etc/admin-settings.json"
check "the session survived: openconnect still running" kill -0 $OC_PID
check "the session survived: still pings" ip netns exec $NS_C ping -c 2 -i 0.2 -W 2 198.18.1.2
check "the session kept its address" sh -c "ip -n $NS_C -4 -o addr show dev tun1 | grep -q 'inet $ADDR'"

echo "== mst-cli import_cert while the session is connected"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 60 -subj "/CN=gw2.corp.test" \
    -addext "subjectAltName=IP:198.18.0.1,DNS:gw2.corp.test" -keyout /tmp/mstunnel-new.key -out /tmp/mstunnel-new.pem 2>/dev/null
NEW_PIN="pin-sha256:$(openssl x509 -in /tmp/mstunnel-new.pem -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)"
CLI=$ROOT/.build-images/context/bin/mst-cli   # the binary the images carry
if MSTUNNEL_DIR=$QS/etc MSTUNNEL_RUN_DIR=$QS/run $CLI import_cert --cert /tmp/mstunnel-new.pem --key /tmp/mstunnel-new.key > /tmp/mstunnel-import.log 2>&1; then
    pass "mst-cli import_cert"; else fail "mst-cli import_cert"; cat /tmp/mstunnel-import.log; fi
reloaded() { podman logs mstunnel-server 2>&1 | grep -q '"msg":"tls.certificate_reloaded"'; }
wait_for "the gateway loaded the new certificate (tls.certificate_reloaded)" 50 reloaded
served_pin() { echo | ip netns exec $NS_C openssl s_client -connect 198.18.0.1:443 2>/dev/null | openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64; }
check "a new connection sees the new certificate's pin" test "pin-sha256:$(served_pin)" = "$NEW_PIN"
check "the connected session survived the rotation" sh -c "kill -0 $OC_PID && ip netns exec $NS_C ping -c 2 -i 0.2 -W 2 198.18.1.2"
check "the previous certificate is kept as site.crt.previous" test -s "$QS/etc/certs/site.crt.previous"
check "import_cert refuses a certificate without SAN, one sentence, exit 1" sh -c "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 60 -subj /CN=x -keyout /tmp/mstunnel-nosan.key -out /tmp/mstunnel-nosan.pem 2>/dev/null; MSTUNNEL_DIR=$QS/etc $CLI import_cert --cert /tmp/mstunnel-nosan.pem --key /tmp/mstunnel-nosan.key > /tmp/mstunnel-import2.log 2>&1; test \$? = 1 && grep -q 'no subject alternative name' /tmp/mstunnel-import2.log && cmp -s /tmp/mstunnel-new.pem $QS/etc/certs/site.crt"
rm -f /tmp/mstunnel-new.key /tmp/mstunnel-nosan.key

echo "== logs: one structured line per event, no secret"
podman logs mstunnel-server > /tmp/mstunnel-server-test.log 2>&1
for c in mstunnel-auth mstunnel-agent mstunnel-control; do podman logs $c >> /tmp/mstunnel-all-test.log 2>&1; done
cat /tmp/mstunnel-server-test.log >> /tmp/mstunnel-all-test.log
check "podman logs mstunnel-server has the login line (session.created for alice)" grep -q '"msg":"session.created".*"user.name":"alice@corp.test"' /tmp/mstunnel-server-test.log
check "every server log line is one JSON object" python3 -c "
import json,sys
for line in open('/tmp/mstunnel-server-test.log'):
    json.loads(line)"
check "no JWT in any container's log" sh -c "! grep -q 'eyJ' /tmp/mstunnel-all-test.log"
# The compose wiring of the Site's ticket keys (docs/site.md): the agent (uid 992) hands the
# control plane's key to auth (uid 991, --site-keys-uid 992), and the login's cookie is sealed
# with it.
check "the agent container handed the Site's ticket key to the auth container" sh -c "podman logs mstunnel-auth 2>&1 | grep -q '\"msg\":\"auth.tickets.keys\".*\"from\":\"the agent\".*\"sealing\":\"s-'"
check "alice's session got a ticket as its cookie" grep -q '"msg":"session.created".*"cookie":"ticket".*"user.name":"alice@corp.test"' /tmp/mstunnel-server-test.log
check "no token signature, admin token or user password in any log" sh -c "! grep -q -e \"\$(cut -d. -f3 $QS/token.jwt)\" -e \"\$(cat $QS/control/admin-token)\" -e \"\$(cat $QS/alice.password)\" /tmp/mstunnel-all-test.log"

echo "== log collection from the containerised agent"
SITE=$(api GET /beta/deviceManagement/microsoftTunnelSites | json 'd["value"][0]["id"]')
SERVER=$(api GET "/beta/deviceManagement/microsoftTunnelSites/$SITE/microsoftTunnelServers" | json 'd["value"][0]["id"]')
START=$(date -u -d '-10 min' +%Y-%m-%dT%H:%M:%SZ); END=$(date -u -d '+1 min' +%Y-%m-%dT%H:%M:%SZ)
LC=$(api POST "/beta/deviceManagement/microsoftTunnelSites/$SITE/microsoftTunnelServers/$SERVER/createServerLogCollectionRequest" \
    "{\"startDateTime\":\"$START\",\"endDateTime\":\"$END\"}" | json 'd["id"]')
collected() { api GET "/beta/deviceManagement/microsoftTunnelServerLogCollectionResponses/$LC" | grep -Eq '"status" *: *"completed"'; }
wait_for "a log collection completes (the agent reads the stack's log directory)" 150 collected
URL=$(api POST "/beta/deviceManagement/microsoftTunnelServerLogCollectionResponses/$LC/createDownloadUrl" '' | json 'd["value"]')
in_gw curl -fsS --cacert "$QS/control/ca.crt" "$URL" > /tmp/mstunnel-collected.log 2>/dev/null || true
check "the collected logs hold the gateway's, the auth plugin's and the agent's lines" sh -c "grep -q '\"label\":\"mstunnel.server\"' /tmp/mstunnel-collected.log && grep -q '\"label\":\"mstunnel-auth\"' /tmp/mstunnel-collected.log && grep -q '\"label\":\"mstunnel-agent\"' /tmp/mstunnel-collected.log"
check "no token in the collected logs" sh -c "! grep -q 'eyJ' /tmp/mstunnel-collected.log"

echo "== health checks (podman healthcheck run; no systemd here to schedule them)"
check "mstunnel-server healthy (control socket answers)" podman healthcheck run mstunnel-server
check "mstunnel-auth healthy (answers a ping)" podman healthcheck run mstunnel-auth
check "mstunnel-agent healthy (recent check-in)" podman healthcheck run mstunnel-agent
check "mstunnel-control healthy (/healthz)" in_gw podman healthcheck run mstunnel-control
podman stop -t 5 mstunnel-auth >/dev/null 2>&1
check "a stopped auth plugin shows in the server's status" sh -c "podman exec mstunnel-server mst-cli server show status | grep -q 'auth service: *NOT CONNECTED' || { sleep 2; podman exec mstunnel-server mst-cli server show status | grep -q 'NOT CONNECTED'; }"
podman start mstunnel-auth >/dev/null 2>&1
wait_for "mstunnel-auth healthy again after a restart" 50 podman healthcheck run mstunnel-auth

echo "== least privilege"
status() { podman exec "$1" grep "^$2:" /proc/1/status | awk '{print $2}'; }
# The gateway (PID 1 of its container) gave up root after binding 443 and opening the TUN;
# its host-network helper (its only child) keeps NET_ADMIN alone.
srv_status() { podman exec mstunnel-server awk -v k="$2:" '$1 == k { print $2; exit }' "/proc/$1/status"; }
check "server: the gateway runs as uid 994" test "$(srv_status 1 Uid)" = 994
check "server: the gateway has no capability (CapEff 0)" test "$(srv_status 1 CapEff)" = 0000000000000000
check "server: the gateway runs under its seccomp filter, no new privileges" sh -c "test \"\$(podman exec mstunnel-server awk '/^Seccomp:/ {print \$2}' /proc/1/status)\" = 2 && podman exec mstunnel-server grep -q '^NoNewPrivs:.1' /proc/1/status"
SRV_HELPER=$(podman exec mstunnel-server cat /proc/1/task/1/children | awk '{print $1}')
check "server: the host-network helper holds NET_ADMIN only (CapEff 0x1000)" test "$(srv_status "${SRV_HELPER:-0}" CapEff)" = 0000000000001000
check "server: --check-sandbox passes in the image" podman exec mstunnel-server mstunnel-server --check-sandbox --run-as 994:990
check "auth: uid 991, no capabilities" sh -c "podman exec mstunnel-auth grep -q '^Uid:.991' /proc/1/status && podman exec mstunnel-auth grep -q '^CapEff:.0000000000000000' /proc/1/status"
check "agent: uid 992, no capabilities" sh -c "podman exec mstunnel-agent grep -q '^Uid:.992' /proc/1/status && podman exec mstunnel-agent grep -q '^CapEff:.0000000000000000' /proc/1/status"
check "control: uid 993, no capabilities" sh -c "podman exec mstunnel-control grep -q '^Uid:.993' /proc/1/status && podman exec mstunnel-control grep -q '^CapEff:.0000000000000000' /proc/1/status"
check "no container is privileged" sh -c "! podman inspect mstunnel-server mstunnel-auth mstunnel-agent mstunnel-control --format '{{.HostConfig.Privileged}}' | grep -q true"
check "the auth plugin cannot read the agent's key" sh -c "! podman exec mstunnel-auth cat /etc/mstunnel/private/agent.key"
check "sockets are 0660 in a directory others cannot enter" sh -c "test \"\$(stat -c %a $QS/run/auth.sock)\" = 660 && test \"\$(stat -c %a $QS/run/server.sock)\" = 660 && test \"\$(stat -c %a $QS/run)\" = 2770"

echo "== mst-cli --json (inside the server image)"
check "server status --json" sh -c "podman exec mstunnel-server mst-cli server status --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"process\"]'"
check "server show status --json: 1 active session" sh -c "podman exec mstunnel-server mst-cli server show status --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"activeSessions\"] >= 1, d'"
check "server show sessions --json: alice, her address" sh -c "podman exec mstunnel-server mst-cli server show sessions --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert any(s[\"userName\"]==\"alice@corp.test\" and s[\"address\"]==\"${ADDR%/*}\" for s in d), d'"
check "server show users --json" sh -c "podman exec mstunnel-server mst-cli server show users --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[0][\"userName\"]==\"alice@corp.test\"'"
check "server show user alice@corp.test --json" sh -c "podman exec mstunnel-server mst-cli server show user alice@corp.test --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert len(d) >= 1'"
check "auth status --json (the host's view of the auth socket)" sh -c "podman exec mstunnel-server mst-cli auth status --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"process\"]==\"mstunnel-auth\"'"
check "a runtime failure exits 1 with what to do, no usage text" sh -c "podman exec mstunnel-server mst-cli server status --run-dir /nonexistent > /tmp/mst-cli-err.txt 2>&1; test \$? = 1 && grep -q 'Is the stack running' /tmp/mst-cli-err.txt && ! grep -q USAGE /tmp/mst-cli-err.txt"

echo "== images and control plane"
check "images carry OCI version and revision labels" sh -c "podman image inspect localhost/mstunnel-server:latest --format '{{index .Labels \"org.opencontainers.image.version\"}} {{index .Labels \"org.opencontainers.image.revision\"}}' | grep -Eq '^[0-9]+\.[0-9]+\.[0-9]+ [0-9a-f]{40}'"
check "https://HOST:8443/ leads to the console" sh -c "in_gw() { nsenter --net=/run/netns/$NS_G \"\$@\"; }; in_gw curl -sS -o /dev/null -w '%{http_code} %{redirect_url}' --cacert $QS/control/ca.crt https://198.18.0.1:8443/ | grep -q '^302 https://198.18.0.1:8443/console'"
check "the control plane's start line names the console URL" sh -c "podman logs mstunnel-control 2>&1 | grep '\"msg\":\"control.starting\"' | grep -q '\"console\":\"https://198.18.0.1:8443/console\"'"
check "the development issuer refuses a wrong password" sh -c "in_gw() { nsenter --net=/run/netns/$NS_G \"\$@\"; }; url=\$(grep -o 'https://[^ ]*/oauth2/v2.0/token' /tmp/mstunnel-quickstart-test.log | head -1); in_gw curl -sS --cacert $QS/control/ca.crt \$url -d grant_type=password -d username=alice@corp.test -d password=wrong-password-1 | grep -q invalid_grant"

echo "== podman compose down, then the quickstart again"
kill $OC_PID 2>/dev/null; OC_PID=
COMPOSE=podman-compose; podman compose version >/dev/null 2>&1 && COMPOSE="podman compose"
if MSTUNNEL_DIR=$QS/etc MSTUNNEL_RUN_DIR=$QS/run MSTUNNEL_LOG_DIR=$QS/log MSTUNNEL_CONTROL_DIR=$QS/control \
   nsenter --net=/run/netns/$NS_G $COMPOSE -f compose.yaml --profile all-in-one down -t 5 >/dev/null 2>&1; then
    pass "podman compose down"; else fail "podman compose down"; fi
check "no mstunnel container left" sh -c "! podman ps -a --format '{{.Names}}' | grep -q mstunnel"
if ./scripts/quickstart.sh --no-host-link > /tmp/mstunnel-quickstart-test2.log 2>&1; then
    pass "the quickstart works a second time"; else fail "the quickstart a second time"; tail -30 /tmp/mstunnel-quickstart-test2.log; fi
check "second run: connected and pinged" grep -q '3 received' /tmp/mstunnel-quickstart-test2.log
./scripts/quickstart.sh down >/dev/null 2>&1
check "quickstart down: no container, namespace or state left" sh -c "! podman ps -a --format '{{.Names}}' | grep -q mstunnel && ! ip netns list | grep -q mstqs && test ! -e $QS"

echo "$PASSES passed, $FAILS failed"
[ "$FAILS" = 0 ]
