#!/usr/bin/env bash
# The whole stack in containers on this machine, proven with the stock openconnect client.
#
#   sudo ./scripts/quickstart.sh        # build the images, bring the stack up, connect, print how to use it
#   sudo ./scripts/quickstart.sh down   # remove it again (containers, namespaces, state)
#
# What `up` does:
#   1. installs what is missing (podman, podman-compose, openconnect, …) and builds the four
#      images with deploy/build-images;
#   2. makes three throw-away network namespaces, so nothing touches this host's own network:
#        [mstqs-cli] 198.18.0.2 ── 198.18.0.1 [mstqs-gw] 198.18.1.1 ── 198.18.1.2 [mstqs-corp]
#        a client       the "gateway host": the compose stack         a corporate host
#                       (host networking = this namespace)             (ping, iperf3, web page)
#      and, unless --no-host-link, a link from this host to the gateway namespace
#      (198.18.3.2 ── 198.18.3.1) so the console and the token endpoint open from here;
#   3. `podman compose --profile all-in-one up -d`: the control plane (SQLite, its own CA, a
#      development OIDC issuer), then creates a Server configuration, a Site, a local user and
#      a one-time join token through the Graph-shaped API, enrolls the agent, and brings up
#      mstunnel-server, mstunnel-auth and mstunnel-agent;
#   4. gets the user a token from the development issuer, connects openconnect from the
#      client namespace, pings the corporate host and runs a short iperf3 through the tunnel;
#   5. prints the openconnect command line, the console URL and the admin token.
# Every file lives under /var/lib/mstunnel-quickstart; a real install (/etc/mstunnel) is
# never touched. Running `up` again rebuilds what changed and starts over cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
QS=${MSTUNNEL_QUICKSTART_DIR:-/var/lib/mstunnel-quickstart}
NS_C=mstqs-cli NS_G=mstqs-gw NS_I=mstqs-corp
HOST_LINK=1
ACTION=up
for arg in "$@"; do
    case $arg in
        up|down) ACTION=$arg ;;
        --no-host-link) HOST_LINK=0 ;;
        -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "quickstart: unknown argument '$arg' (up, down, --no-host-link)" >&2; exit 2 ;;
    esac
done
if [ "$(id -u)" != 0 ]; then echo "run as root: sudo $0 $*" >&2; exit 1; fi
step() { echo "== [$(date -u +%H:%M:%S)] $*"; }
die() { echo "quickstart: $*" >&2; exit 1; }

# --- the container engine and its compose front end ---------------------------------
compose_cmd() {
    if podman compose version >/dev/null 2>&1; then echo "podman compose"; return; fi
    if command -v podman-compose >/dev/null; then echo "podman-compose"; return; fi
    return 1
}
# The stack's variables: where compose binds its state, sockets, logs and control plane.
export MSTUNNEL_DIR=$QS/etc MSTUNNEL_RUN_DIR=$QS/run MSTUNNEL_LOG_DIR=$QS/log MSTUNNEL_CONTROL_DIR=$QS/control MSTUNNEL_UPDATER_DIR=$QS/updater
compose() { nsenter --net=/run/netns/$NS_G $COMPOSE -f "$ROOT/compose.yaml" --profile all-in-one "$@"; }

down() {
    if COMPOSE=$(compose_cmd) && [ -e /run/netns/$NS_G ]; then
        step "podman compose down"
        compose down -t 5 >/dev/null 2>&1 || true
    fi
    for c in mstunnel-server mstunnel-auth mstunnel-agent mstunnel-control; do
        podman rm -f -t 5 "$c" >/dev/null 2>&1 || true
    done
    if [ -f "$QS/openconnect.pid" ]; then kill "$(cat "$QS/openconnect.pid")" 2>/dev/null || true; fi
    for pid_file in "$QS"/corp-*.pid; do [ -f "$pid_file" ] && kill "$(cat "$pid_file")" 2>/dev/null || true; done
    for ns in $NS_C $NS_G $NS_I; do ip netns del $ns 2>/dev/null || true; rm -rf /etc/netns/$ns; done
    ip link del mstqs-host 2>/dev/null || true
    rm -rf "$QS"
}

if [ "$ACTION" = down ]; then down; step "removed"; exit 0; fi

# --- 1. packages, container runtime, images ------------------------------------------
need=()
for tool in podman:podman openconnect:openconnect iperf3:iperf3 nft:nftables curl:curl debootstrap:debootstrap \
            ip:iproute2 ping:iputils-ping objcopy:binutils python3:python3; do
    command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
[ -x /usr/share/vpnc-scripts/vpnc-script ] || need+=(vpnc-scripts)
[ -e /usr/lib/x86_64-linux-gnu/libssl.so ] || [ -e /usr/lib/aarch64-linux-gnu/libssl.so ] || need+=(libssl-dev)
dpkg -s libcurl4-openssl-dev >/dev/null 2>&1 || need+=(libcurl4-openssl-dev)
dpkg -s libsqlite3-dev >/dev/null 2>&1 || need+=(libsqlite3-dev)
if [ ${#need[@]} -gt 0 ]; then
    step "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" runc uidmap >/dev/null
fi
if ! COMPOSE=$(compose_cmd); then
    # Debian bookworm's podman-compose (1.0.3) cannot do network_mode: host; 1.1 and later can.
    step "installing podman-compose from PyPI (podman 4.3 has no 'podman compose' verb)"
    python3 -m pip install -q 'podman-compose>=1.1' 2>&1 | grep -v -i 'warning' || true
    hash -r
    COMPOSE=$(compose_cmd) || die "podman-compose is not on PATH after installing it"
fi
./deploy/prepare-podman
step "building the images (deploy/build-images)"
./deploy/build-images

# --- 2. namespaces ------------------------------------------------------------------
step "a clean slate: removing any earlier quickstart"
down >/dev/null 2>&1 || true
step "network namespaces: $NS_C (client), $NS_G (gateway host), $NS_I (corporate host)"
for ns in $NS_C $NS_G $NS_I; do ip netns add $ns; ip -n $ns link set lo up; done
mkdir -p /etc/netns/$NS_C; : > /etc/netns/$NS_C/resolv.conf   # vpnc-script rewrites resolv.conf: give it the namespace's own
ip link add cli0 netns $NS_C type veth peer name gw0 netns $NS_G
ip link add gw1 netns $NS_G type veth peer name corp0 netns $NS_I
ip -n $NS_C addr add 198.18.0.2/24 dev cli0; ip -n $NS_C link set cli0 up
ip -n $NS_G addr add 198.18.0.1/24 dev gw0; ip -n $NS_G link set gw0 up
ip -n $NS_G addr add 198.18.1.1/24 dev gw1; ip -n $NS_G link set gw1 up
ip -n $NS_I addr add 198.18.1.2/24 dev corp0; ip -n $NS_I link set corp0 up
# The gateway host forwards (a real host gets this from deploy/mstunnel-setup's sysctl file).
ip netns exec $NS_G sysctl -qw net.ipv4.ip_forward=1
CONTROL_HOST=198.18.0.1
if [ $HOST_LINK = 1 ]; then
    ip link add mstqs-host type veth peer name host0 netns $NS_G
    ip addr add 198.18.3.2/24 dev mstqs-host; ip link set mstqs-host up
    ip -n $NS_G addr add 198.18.3.1/24 dev host0; ip -n $NS_G link set host0 up
    CONTROL_HOST=198.18.3.1
fi
mkdir -p "$QS/corp"; echo "hello from the corporate network" > "$QS/corp/index.html"
ip netns exec $NS_I iperf3 -s -B 198.18.1.2 -D -I "$QS/corp-iperf3.pid" >/dev/null
(cd "$QS/corp" && exec ip netns exec $NS_I python3 -m http.server 8080 --bind 198.18.1.2) >/dev/null 2>&1 &
echo $! > "$QS/corp-http.pid"

# --- 3. the stack -------------------------------------------------------------------
# Ownership as the images expect: group 990 is the stack's; the agent (992) owns the state
# it writes, the gateway (root in group 990) reads the site key through the group.
install -d -m 0750 -o 992 -g 990 "$QS/etc" "$QS/etc/certs"
install -d -m 0750 -o 992 -g 990 "$QS/etc/private"
chmod 0755 "$QS/etc/certs"
install -d -m 2770 -o root -g 990 "$QS/run" "$QS/log"
install -d -m 0700 -o 993 -g 993 "$QS/control"
install -d -m 0755 "$QS/updater"   # the agent mounts it read-only; no updater runs in the quickstart
step "the gateway's TLS certificate (self-signed, SAN IP:198.18.0.1)"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 90 -subj "/CN=198.18.0.1" \
    -addext "subjectAltName=IP:198.18.0.1" -keyout "$QS/etc/private/site.key" -out "$QS/etc/certs/site.crt" 2>/dev/null
chown root:990 "$QS/etc/private/site.key"; chmod 0640 "$QS/etc/private/site.key"; chmod 0644 "$QS/etc/certs/site.crt"
PIN="pin-sha256:$(openssl x509 -in "$QS/etc/certs/site.crt" -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)"

export MSTUNNEL_CONTROL_HOSTNAME=$CONTROL_HOST
# Agents check in every 5 s (production default: 60 s), so a change made in the console
# reaches the gateway while you watch.
export MSTUNNEL_CHECKIN_INTERVAL=${MSTUNNEL_CHECKIN_INTERVAL:-5} MSTUNNEL_REPORT_INTERVAL=${MSTUNNEL_REPORT_INTERVAL:-10}
CP=https://$CONTROL_HOST:8443
step "control plane: $COMPOSE --profile all-in-one up -d control"
compose up -d control >"$QS/compose-up.log" 2>&1 || { cat "$QS/compose-up.log"; die "the control plane did not start"; }
for _ in $(seq 100); do [ -s "$QS/control/admin-token" ] && [ -s "$QS/control/ca.crt" ] && ip netns exec $NS_G curl -fsS --cacert "$QS/control/ca.crt" "$CP/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
ip netns exec $NS_G curl -fsS --cacert "$QS/control/ca.crt" "$CP/healthz" >/dev/null || { podman logs mstunnel-control | tail; die "the control plane does not answer on $CP"; }
ADMIN_TOKEN=$(cat "$QS/control/admin-token")
api() {  # api METHOD PATH [JSON]: the admin API, as an operator calls it with curl
    local args=(-fsS --cacert "$QS/control/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" -X "$1")
    [ $# -gt 2 ] && args+=(-H 'Content-Type: application/json' --data "$3")
    ip netns exec $NS_G curl "${args[@]}" "$CP$2"
}
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
step "admin API: a Server configuration, a Site, a one-time join token, a local user"
G=/beta/deviceManagement
CFG=$(api POST $G/microsoftTunnelConfigurations '{"displayName":"quickstart","network":"100.64.0.0/24","dnsServers":["198.18.1.2"],"defaultDomainSuffix":"corp.test","routeIncludes":["198.18.1.0/24"],"splitDNS":["corp.test"],"listenPort":443}' | json 'd["id"]')
SITE=$(api POST $G/microsoftTunnelSites "{\"displayName\":\"Quickstart site\",\"internalNetworkProbeUrl\":\"http://198.18.1.2:8080/\",\"microsoftTunnelConfiguration\":{\"id\":\"$CFG\"}}" | json 'd["id"]')
JOIN=$(api POST "$G/microsoftTunnelSites/$SITE/createJoinToken" '{"expirationMinutes":30}' | json 'd["joinToken"]')
USER_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr '+/' 'xy')
api POST /beta/devIssuer/users "{\"userPrincipalName\":\"alice@corp.test\",\"displayName\":\"Alice\",\"password\":\"$USER_PASSWORD\"}" >/dev/null
printf '%s\n' "$USER_PASSWORD" > "$QS/alice.password"; chmod 600 "$QS/alice.password"
ISSUER_JSON=$(api GET /beta/devIssuer)
ISSUER=$(echo "$ISSUER_JSON" | json 'd["issuer"]'); TENANT=$(echo "$ISSUER_JSON" | json 'd["tenantId"]')
TOKEN_URL=$(echo "$ISSUER_JSON" | json 'd["tokenEndpoint"]')
echo "   configuration $CFG, site $SITE, issuer $ISSUER"

step "auth.json: trust the development issuer (discovery over the control plane's CA)"
cat > "$QS/etc/auth.json" <<JSON
{ "issuer": "$ISSUER", "allowedTenants": ["$TENANT"], "caBundle": "certs/control-ca.crt" }
JSON
chown 992:990 "$QS/etc/auth.json"; chmod 0640 "$QS/etc/auth.json"

step "enrollment: mstunnel-agent enroll --control-url $CP (join token from the environment)"
AGENT_IMAGE=${MSTUNNEL_IMAGE_REPO:-localhost}/mstunnel-agent:${MSTUNNEL_TAG:-latest}
MSTUNNEL_JOIN_TOKEN=$JOIN nsenter --net=/run/netns/$NS_G podman run --rm --network host --user 992:990 --cap-drop ALL \
    -e MSTUNNEL_JOIN_TOKEN -v "$QS/etc:/etc/mstunnel" "$AGENT_IMAGE" enroll --control-url "$CP"
unset JOIN

step "gateway: $COMPOSE --profile all-in-one up -d (server, auth, agent)"
compose up -d >>"$QS/compose-up.log" 2>&1 || { cat "$QS/compose-up.log"; die "compose up failed"; }
for _ in $(seq 150); do ip netns exec $NS_G ss -ltn 'sport = :443' | grep -q LISTEN && break; sleep 0.2; done
ip netns exec $NS_G ss -ltn 'sport = :443' | grep -q LISTEN || { podman logs mstunnel-server 2>&1 | tail; die "the gateway is not listening on 443"; }
for c in mstunnel-server mstunnel-auth mstunnel-control; do
    # nsenter: `podman exec` of a host-network container runs in the caller's namespace.
    nsenter --net=/run/netns/$NS_G podman healthcheck run $c >/dev/null 2>&1 || { sleep 2;
        nsenter --net=/run/netns/$NS_G podman healthcheck run $c >/dev/null || die "$c is unhealthy: podman logs $c"; }
done
echo "   $(podman ps --format '{{.Names}} ({{.Status}})' | grep mstunnel | tr '\n' ' ')"

# --- 4. a user connects -------------------------------------------------------------
step "a token for alice@corp.test from the development issuer (OAuth 2.0 password grant)"
ip netns exec $NS_G curl -fsS --cacert "$QS/control/ca.crt" "$TOKEN_URL" \
    --data-urlencode grant_type=password --data-urlencode username=alice@corp.test --data-urlencode "password=$USER_PASSWORD" \
    | json 'd["access_token"]' | tr -d '\n' > "$QS/token.jwt"
chmod 600 "$QS/token.jwt"
step "openconnect --token-mode=oidc from the client namespace"
ip netns exec $NS_C openconnect --protocol=anyconnect --token-mode=oidc --token-secret=@"$QS/token.jwt" \
    --servercert "$PIN" --non-inter --interface tun0 https://198.18.0.1/ > "$QS/openconnect.log" 2>&1 &
echo $! > "$QS/openconnect.pid"
for _ in $(seq 150); do ip -n $NS_C -4 addr show dev tun0 2>/dev/null | grep -q 'inet 100\.64\.' && break; sleep 0.2; done
ip -n $NS_C -4 addr show dev tun0 2>/dev/null | grep -q 'inet 100\.64\.' || { tail -20 "$QS/openconnect.log"; podman logs mstunnel-server 2>&1 | tail; die "openconnect did not connect"; }
echo "   tunnel address $(ip -n $NS_C -4 -o addr show dev tun0 | awk '{print $4}'), $(grep -m1 -o 'DTLS connected.*\|Established DTLS.*' "$QS/openconnect.log" || echo 'TLS channel')"
step "ping the corporate host 198.18.1.2 through the tunnel"
ip netns exec $NS_C ping -c 3 -i 0.3 198.18.1.2 | tail -2
step "iperf3 through the tunnel (2 s)"
ip netns exec $NS_C iperf3 -c 198.18.1.2 -t 2 | grep -E 'sender|receiver'
step "the gateway's log (podman logs mstunnel-server)"
podman logs mstunnel-server 2>&1 | grep -E '"msg":"(session\.|gateway\.listening|settings\.)' | tail -4
kill "$(cat "$QS/openconnect.pid")" 2>/dev/null || true

# --- 5. how to use it ---------------------------------------------------------------
if [ $HOST_LINK = 1 ]; then CONSOLE="https://198.18.3.1:8443/console (CA: $QS/control/ca.crt)"; else CONSOLE="https://198.18.0.1:8443/console (inside $NS_G)"; fi
cat <<TXT

The stack is up: $(podman ps --format '{{.Names}}' | grep -c mstunnel) containers (podman ps), in namespace $NS_G.

Connect as alice@corp.test (the token is good for an hour):
  sudo ip netns exec $NS_C openconnect --protocol=anyconnect --token-mode=oidc --token-secret=@$QS/token.jwt --servercert $PIN https://198.18.0.1/
A fresh token:
  curl -sS --cacert $QS/control/ca.crt $TOKEN_URL -d grant_type=password -d username=alice@corp.test -d password=\$(cat $QS/alice.password)
Admin console: $CONSOLE
Admin token:   $ADMIN_TOKEN
Logs:          podman logs -f mstunnel-server   (mstunnel-auth, mstunnel-agent, mstunnel-control)
Status:        sudo MSTUNNEL_RUN_DIR=$QS/run mst-cli server show status   (or: podman exec mstunnel-server mst-cli server show sessions)
Remove it:     sudo ./scripts/quickstart.sh down     (runs podman compose down, removes the namespaces and $QS)
TXT
