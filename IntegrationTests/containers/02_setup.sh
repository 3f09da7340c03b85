#!/usr/bin/env bash
# deploy/mstunnel-setup as an operator meets it, on the images deploy/build-images made:
#   [mstst-cli] 198.18.0.2 ── 198.18.0.1 [mstst-gw] 198.18.1.1 ── 198.18.1.2 [mstst-corp]
#                                 the "server": mstunnel-control in a container (its own CA,
#                                 development issuer), then the gateway the installer sets up
# 1. interactive (drive.py types the answers through a terminal at the prompts): licence, control plane URL and CA,
#    admin credential, the Site list and a wrong Site ID (asked again), the identity provider,
#    five bad certificates refused one by one (expired, key mismatch, no SAN, over 2 years,
#    out of order, incomplete chain), then Ctrl-C;
# 2. the same command again, piped into sh as `curl … | sh` would, continues the interrupted run; a PFX; the gateway comes
#    up; openconnect connects through it; mst-cli works on it; a third run changes nothing;
# 3. mst-cli uninstall: the server leaves its Site, containers and state are gone;
# 4. unattended from environment variables: a bad certificate is refused (exit 2, nothing
#    installed), then a join token install that openconnect connects through; uninstall.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
if [ "$(id -u)" != 0 ]; then echo "SKIP: $(basename "$0") needs root"; exit 77; fi
for tool in podman; do command -v $tool >/dev/null || { echo "SKIP: $(basename "$0") needs $tool"; exit 77; }; done
podman image exists localhost/mstunnel-server:latest || { echo "FAIL: build the images first (deploy/build-images)"; exit 1; }
NS_C=mstst-cli NS_G=mstst-gw NS_I=mstst-corp
W=$(mktemp -d /tmp/mstunnel-setup-test.XXXXXX)
export MSTUNNEL_DIR=$W/etc MSTUNNEL_RUN_DIR=$W/run MSTUNNEL_LOG_DIR=$W/log MSTUNNEL_INSTALL_DIR=$W/opt
PASSES=0 FAILS=0 PIDS=()
pass() { PASSES=$((PASSES + 1)); echo "  ok: $*"; }
fail() { FAILS=$((FAILS + 1)); echo "  FAIL: $*"; if [ -n "${MST_FAIL_LOG:-}" ]; then echo "$*" >> "$MST_FAIL_LOG"; fi; }
check() { local what=$1; shift; if "$@" >/dev/null 2>&1; then pass "$what"; else fail "$what"; fi; }
wait_for() { local what=$1 n=$2; shift 2; for _ in $(seq "$n"); do if "$@" >/dev/null 2>&1; then pass "$what"; return 0; fi; sleep 0.2; done; fail "$what"; }
in_gw() { nsenter --net=/run/netns/$NS_G "$@"; }
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    [ -n "${DRIVE_PID:-}" ] && kill "$DRIVE_PID" 2>/dev/null
    for c in mstunnel-server mstunnel-auth mstunnel-agent mstunnel-control; do podman rm -f -t 3 $c >/dev/null 2>&1; done
    for ns in $NS_C $NS_G $NS_I; do ip netns del $ns 2>/dev/null; rm -rf /etc/netns/$ns; done
    [ "${KEEP_WORK:-0}" = 1 ] && echo "kept $W" || rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for ns in $NS_C $NS_G $NS_I; do ip netns add $ns; ip -n $ns link set lo up; done
mkdir -p /etc/netns/$NS_C; : > /etc/netns/$NS_C/resolv.conf
ip link add cli0 netns $NS_C type veth peer name gw0 netns $NS_G
ip link add gw1 netns $NS_G type veth peer name corp0 netns $NS_I
ip -n $NS_C addr add 198.18.0.2/24 dev cli0; ip -n $NS_C link set cli0 up
ip -n $NS_G addr add 198.18.0.1/24 dev gw0; ip -n $NS_G link set gw0 up
ip -n $NS_G addr add 198.18.1.1/24 dev gw1; ip -n $NS_G link set gw1 up
ip -n $NS_I addr add 198.18.1.2/24 dev corp0; ip -n $NS_I link set corp0 up
ip netns exec $NS_I python3 -m http.server 8080 --bind 198.18.1.2 >/dev/null 2>&1 & PIDS+=($!)
mkdir -p "$W/certs" && python3 IntegrationTests/containers/make-test-certs.py "$W/certs"

echo "== a control plane to join (mstunnel-control in a container, development issuer)"
install -d -m 0700 -o 993 -g 993 "$W/control"
in_gw podman run -d --name mstunnel-control --network host --user 993:993 --cap-drop ALL -v "$W/control:/var/lib/mstunnel-control" \
    localhost/mstunnel-control:latest serve --state-dir /var/lib/mstunnel-control --listen 0.0.0.0:8443 --hostname 198.18.0.1 \
    --dev-issuer --checkin-interval 5 --report-interval 10 >/dev/null
CP=https://198.18.0.1:8443
cp_up() { in_gw curl -fsS --cacert "$W/control/ca.crt" $CP/healthz; }
wait_for "control plane up" 100 cp_up
cp_up >/dev/null 2>&1 || { podman logs mstunnel-control 2>&1 | tail -5; echo "$PASSES passed, $((FAILS + 1)) failed"; exit 1; }
ADMIN=$(cat "$W/control/admin-token")
api() {
    local args=(-fsS --cacert "$W/control/ca.crt" -H "Authorization: Bearer $ADMIN" -X "$1")
    [ $# -gt 2 ] && args+=(-H 'Content-Type: application/json' --data "$3")
    in_gw curl "${args[@]}" "$CP$2"
}
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
G=/beta/deviceManagement
CFG=$(api POST $G/microsoftTunnelConfigurations '{"displayName":"setup-test","network":"100.64.0.0/24","dnsServers":["198.18.1.2"],"routeIncludes":["198.18.1.0/24"],"listenPort":443}' | json 'd["id"]')
api POST $G/microsoftTunnelSites "{\"displayName\":\"Other site\",\"microsoftTunnelConfiguration\":{\"id\":\"$CFG\"}}" >/dev/null
SITE=$(api POST $G/microsoftTunnelSites "{\"displayName\":\"Branch office\",\"microsoftTunnelConfiguration\":{\"id\":\"$CFG\"}}" | json 'd["id"]')
PASSWORD=correct-horse-battery-staple
api POST /beta/devIssuer/users "{\"userPrincipalName\":\"olga@corp.test\",\"password\":\"$PASSWORD\"}" >/dev/null
TOKEN_URL=$(api GET /beta/devIssuer | json 'd["tokenEndpoint"]')
ISSUER=$(api GET /beta/devIssuer | json 'd["issuer"]')

echo "== deploy/mst-readiness before installing"
readiness() { in_gw env MSTUNNEL_CONTROL_URL=$CP MSTUNNEL_CONTROL_CA="$W/control/ca.crt" "$@"; }
check "utils: no FAIL on this host" readiness sh deploy/mst-readiness utils
readiness MSTUNNEL_IDP=oidc MSTUNNEL_OIDC_ISSUER="$ISSUER" MSTUNNEL_OIDC_CA="$W/control/ca.crt" sh deploy/mst-readiness network > "$W/readiness-network.txt" 2>&1; rc=$?
check "network: control plane and issuer reachable, 443 free, TUN" sh -c "test $rc = 0 && grep -q 'ok    issuer' '$W/readiness-network.txt' && grep -q 'ok    control plane' '$W/readiness-network.txt'"
check "account: the admin credential is accepted" readiness MSTUNNEL_ADMIN_TOKEN="$ADMIN" sh deploy/mst-readiness account
readiness MSTUNNEL_ADMIN_TOKEN=wrong sh deploy/mst-readiness account > "$W/readiness-bad.txt" 2>&1; rc=$?
check "account: a wrong admin credential is a FAIL with what to do (exit 1)" sh -c "test $rc = 1 && grep -q 'refused (401)' '$W/readiness-bad.txt'"
JOIN0=$(api POST "$G/microsoftTunnelSites/$SITE/createJoinToken" '{"expirationMinutes":10}' | json 'd["joinToken"]')
readiness MSTUNNEL_JOIN_TOKEN="$JOIN0" sh deploy/mst-readiness account > "$W/readiness-join.txt" 2>&1; rc=$?
check "account: a join token of this control plane (its CA hash matches)" sh -c "test $rc = 0 && grep -q 'CA hash matches' '$W/readiness-join.txt'"
readiness MSTUNNEL_JOIN_TOKEN="mstj1.x.y.$(printf '%064d' 0)" sh deploy/mst-readiness account > "$W/readiness-other.txt" 2>&1; rc=$?
check "account: a join token of another control plane is a FAIL" sh -c "test $rc = 1 && grep -q 'another control plane' '$W/readiness-other.txt'"
in_gw sysctl -qw net.ipv4.ip_forward=0   # the installer must turn it on

connect_and_ping() { # connect_and_ping LABEL: a fresh token, openconnect, ping the corporate host
    local label=$1 token pin
    token=$(in_gw curl -fsS --cacert "$W/control/ca.crt" "$TOKEN_URL" -d grant_type=password -d username=olga@corp.test -d password=$PASSWORD | json 'd["access_token"]')
    printf %s "$token" > "$W/token.jwt"
    pin="pin-sha256:$(openssl x509 -in "$W/etc/certs/site.crt" -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)"
    ip netns exec $NS_C openconnect --protocol=anyconnect --token-mode=oidc --token-secret=@"$W/token.jwt" --servercert "$pin" \
        --non-inter --interface tun0 https://198.18.0.1/ > "$W/oc-$label.log" 2>&1 &
    OC=$!; PIDS+=($OC)
    tun_up() { ip -n $NS_C -4 addr show dev tun0 | grep -q 'inet 100\.64\.'; }
    wait_for "$label: openconnect connects through the installed gateway" 150 tun_up
    check "$label: the corporate host answers through the tunnel" ip netns exec $NS_C curl -fsS -m 5 -o /dev/null http://198.18.1.2:8080/
    kill $OC 2>/dev/null; wait $OC 2>/dev/null
}

echo "== 1. interactive: wrong answers, five bad certificates, then Ctrl-C"
python3 - "$W" "$ADMIN" "$SITE" > "$W/first.json" <<'PY'
import json, sys
w, admin, site = sys.argv[1:4]
steps = [["expect", "accept the licence terms"], ["send", "yes"],
         ["expect", "Control plane URL"], ["send", "http://198.18.0.1:8443"], ["expect", "must start with https://"],
         ["expect", "Control plane URL"], ["send", "https://198.18.0.1:8443"],
         ["expect", "CA certificate file"], ["send", f"{w}/control/ca.crt"],
         ["expect", "Join with"], ["send", "2"],
         ["expect", "Admin token"], ["send-secret", "not-the-admin-token"], ["expect", "refused the admin credential"],
         ["expect", "Admin token"], ["send-secret", admin],
         ["expect", "Branch office"], ["expect", "Enter Site ID to join :"], ["send", "00000000-0000-0000-0000-000000000000"],
         ["expect", "is not a Site on this control plane"],
         ["expect", "Enter Site ID to join :"], ["send", site], ["expect", "a one-time join token"],
         ["expect", "Users' tokens come from"], ["send", "dev"]]
for cert, key, message in [("expired.pem", "expired.key", "expired on"), ("good.pem", "mismatch.key", "does not belong"),
                           ("nosan.pem", "nosan.key", "no subject alternative name"), ("long.pem", "long.key", "at most 2 years"),
                           ("misordered.pem", "good.key", "out of order"), ("incomplete.pem", "good.key", "chain is incomplete")]:
    steps += [["expect", "PEM chain + key files, or"], ["send", "1"], ["expect", "Certificate chain file"], ["send", f"{w}/certs/{cert}"],
              ["expect", "Private key file"], ["send", f"{w}/certs/{key}"], ["expect", message], ["expect", "Try again"]]
steps += [["expect", "PEM chain + key files, or"], ["interrupt"], ["expect", "Run mstunnel-setup again to continue"]]
print(json.dumps(steps))
PY
python3 IntegrationTests/containers/drive.py "$W/first.log" "$W/first.json" -- nsenter --net=/run/netns/$NS_G sh deploy/mstunnel-setup > "$W/first.out" 2>&1; rc=$?
if [ $rc = 0 ]; then pass "interactive run: every wrong answer refused with its reason, then interrupted"; else
    fail "interactive run (drive.py exit $rc)"; cat "$W/first.out"; fi
for m in "The certificate expired on" "The private key does not belong" "no subject alternative name" "at most 2 years" "out of order" "chain is incomplete"; do
    check "one sentence: '$m'" grep -q "$m" "$W/first.log"
done
check "nothing was started after the interrupt" sh -c "! podman ps -a --format '{{.Names}}' | grep -q mstunnel-server"
check "IPv4 forwarding was turned on" sh -c "test \"\$(ip netns exec $NS_G cat /proc/sys/net/ipv4/ip_forward)\" = 1"
check "no admin token in what it printed" sh -c "! grep -q '$ADMIN' '$W/first.log'"

echo "== 2. the same command continues; a PFX; the gateway comes up"
python3 - "$W" "$ADMIN" "$SITE" > "$W/second.json" <<'PY'
import json, sys
w, admin, site = sys.argv[1:4]
print(json.dumps([["expect", "Continuing an earlier run"], ["expect", "accepted earlier"], ["expect", "answers"],
    ["expect", "Join with"], ["send", "2"], ["expect", "Admin token"], ["send-secret", admin],
    ["expect", "Enter Site ID to join :"], ["send", site], ["expect", "Users' tokens come from"], ["send", "dev"],
    ["expect", "PEM chain + key files, or"], ["send", "2"], ["expect", "PFX file"], ["send", f"{w}/certs/good.pfx"],
    ["expect", "PFX password"], ["send-secret", "wrong"], ["expect", "cannot be opened"],
    ["expect", "PEM chain + key files, or"], ["send", "2"], ["expect", "PFX file"], ["send", f"{w}/certs/good.pfx"],
    ["expect", "PFX password"], ["send-secret", "pfx-password"], ["expect", "chain of 3"],
    ["expect", "enrolled: server"], ["expect", "mstunnel is installed"]]))
PY
# Piped, as `curl … | sudo sh` runs it: the script arrives on stdin, the answers come from /dev/tty.
python3 IntegrationTests/containers/drive.py "$W/second.log" "$W/second.json" -- nsenter --net=/run/netns/$NS_G sh -c "cat deploy/mstunnel-setup | sh" > "$W/second.out" 2>&1; rc=$?
if [ $rc = 0 ]; then pass "resumed run, piped into sh, installed the gateway from a PFX"; else fail "resumed run (drive.py exit $rc)"; cat "$W/second.out"; fi
check "the PFX's chain was put in order (leaf, intermediate, root)" sh -c "grep -c BEGIN '$W/etc/certs/site.crt' | grep -qx 3 && openssl x509 -in '$W/etc/certs/site.crt' -noout -subject | grep -q gateway.corp.test"
check "site.key is root:990 0640, private/ 0750" sh -c "test \"\$(stat -c '%u:%g %a' '$W/etc/private/site.key')\" = '0:990 640' && test \"\$(stat -c %a '$W/etc/private')\" = 750"
check "no PFX password or admin token in what it printed" sh -c "! grep -q -e pfx-password -e '$ADMIN' '$W/second.log'"
SERVER=$(json 'd["serverId"]' < "$W/etc/agent-info.json")
check "the server is in the chosen Site" sh -c "api() { in_gw curl -fsS --cacert '$W/control/ca.crt' -H 'Authorization: Bearer $ADMIN' \"$CP\$1\"; }; in_gw() { nsenter --net=/run/netns/$NS_G \"\$@\"; }; api $G/microsoftTunnelSites/$SITE/microsoftTunnelServers | grep -q $SERVER"
for c in mstunnel-server mstunnel-auth mstunnel-agent; do check "$c running" sh -c "podman ps --format '{{.Names}}' | grep -qx $c"; done
connect_and_ping installed
check "mst-cli was installed on the host" test -x /usr/local/bin/mst-cli
# mst-cli as the operator runs it on the host (here: the gateway namespace), for sh -c checks too.
printf '#!/bin/sh\nexec nsenter --net=/run/netns/%s /usr/local/bin/mst-cli "$@"\n' $NS_G > "$W/mst-cli"; chmod +x "$W/mst-cli"
cli() { "$W/mst-cli" "$@"; }
check "mst-cli server status --json: answering" sh -c "$W/mst-cli server status --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"answering\"] and d[\"container\"][\"state\"]==\"running\"'"
agent_checked_in() { cli agent status --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["agent"]["lastSuccessfulCheckinDateTime"]'; }
wait_for "mst-cli agent status --json: checked in" 100 agent_checked_in
check "mst-cli auth status --json" sh -c "$W/mst-cli auth status --json | python3 -c 'import json,sys; assert json.load(sys.stdin)[\"process\"]==\"mstunnel-auth\"'"
check "mst-cli server show sessions --json (a list)" sh -c "$W/mst-cli server show sessions --json | python3 -c 'import json,sys; assert isinstance(json.load(sys.stdin), list)'"
check "mst-cli diagnose --json: nothing failed" sh -c "$W/mst-cli diagnose --json | python3 -c 'import json,sys; c=json.load(sys.stdin)[\"checks\"]; bad=[x for x in c if x[\"status\"]==\"failed\"]; assert not bad, bad'"
check "mst-cli diagnose --json: the installed gateway is confined" sh -c "$W/mst-cli diagnose --json | python3 -c 'import json,sys; c=[x for x in json.load(sys.stdin)[\"checks\"] if x[\"name\"]==\"gateway confinement\"]; assert c and c[0][\"status\"]==\"ok\", c'"
check "mst-cli server logs --tail 5 (JSON lines)" sh -c "$W/mst-cli server logs --tail 5 2>&1 | head -1 | python3 -c 'import json,sys; json.loads(sys.stdin.readline())'"
check "mst-cli server stop" cli server stop
check "mst-cli diagnose says the server is down and what to do (exit 1)" sh -c "$W/mst-cli diagnose > '$W/diag.txt'; test \$? = 1 && grep -q 'FAILED  mstunnel-server' '$W/diag.txt' && grep -q 'mst-cli server start' '$W/diag.txt'"
check "mst-cli server start" cli server start
server_answers() { cli server status; }
wait_for "the server answers again" 100 server_answers
check "mst-cli server --help lists start, stop, restart, logs" sh -c "/usr/local/bin/mst-cli server --help | grep -q restart && /usr/local/bin/mst-cli server --help | grep -q logs"
rerun=$(in_gw sh deploy/mstunnel-setup </dev/null 2>&1); rc=$?
check "a third run changes nothing and says how to reinstall" sh -c "test $rc = 0 && echo '$rerun' | grep -q 'already installed' && echo '$rerun' | grep -q 'mst-cli uninstall'"

echo "== 3. mst-cli uninstall"
if cli uninstall --yes > "$W/uninstall.log" 2>&1; then pass "mst-cli uninstall --yes"; else fail "mst-cli uninstall"; cat "$W/uninstall.log"; fi
check "the server left its Site" sh -c "! nsenter --net=/run/netns/$NS_G curl -fsS --cacert '$W/control/ca.crt' -H 'Authorization: Bearer $ADMIN' $CP$G/microsoftTunnelSites/$SITE/microsoftTunnelServers | grep -q $SERVER"
check "no gateway container left" sh -c "! podman ps -a --format '{{.Names}}' | grep -Eq 'mstunnel-(server|auth|agent)$'"
check "state and install directories removed" sh -c "test ! -e '$W/etc' && test ! -e '$W/opt'"

echo "== 4. unattended"
JOIN=$(api POST "$G/microsoftTunnelSites/$SITE/createJoinToken" '{"expirationMinutes":10}' | json 'd["joinToken"]')
unattended() {
    in_gw env MSTUNNEL_UNATTENDED=1 MSTUNNEL_ACCEPT_EULA=yes MSTUNNEL_CONTROL_URL=$CP MSTUNNEL_CONTROL_CA="$W/control/ca.crt" \
        MSTUNNEL_JOIN_TOKEN="$JOIN" MSTUNNEL_IDP=oidc MSTUNNEL_OIDC_ISSUER="$ISSUER" MSTUNNEL_OIDC_CA="$W/control/ca.crt" "$@" \
        sh deploy/mstunnel-setup < /dev/null
}
unattended MSTUNNEL_CERT_FILE="$W/certs/expired.pem" MSTUNNEL_KEY_FILE="$W/certs/expired.key" > "$W/unattended-bad.log" 2>&1; rc=$?
check "unattended with an expired certificate: exit 2 with the reason" sh -c "test $rc = 2 && grep -q 'expired on' '$W/unattended-bad.log'"
check "... and nothing was enrolled or started" sh -c "test ! -e '$W/etc/agent-info.json' && ! podman ps -a --format '{{.Names}}' | grep -q mstunnel-server"
unattended MSTUNNEL_CERT_FILE="$W/certs/good.pem" MSTUNNEL_KEY_FILE="$W/certs/good.key" > "$W/unattended.log" 2>&1; rc=$?
if [ $rc = 0 ] && grep -q 'mstunnel is installed' "$W/unattended.log"; then pass "unattended install from environment variables"; else
    fail "unattended install (exit $rc)"; tail -20 "$W/unattended.log"; fi
check "no join token in its output" sh -c "! grep -q '$JOIN' '$W/unattended.log'"
connect_and_ping unattended
check "mst-cli uninstall --yes again" cli uninstall --yes

echo "$PASSES passed, $FAILS failed"
[ "$FAILS" = 0 ]
