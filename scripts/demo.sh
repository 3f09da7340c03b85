#!/usr/bin/env bash
# Brings the whole stack up on embedded defaults inside throw-away network namespaces:
# the control plane (mstunnel-control) with a Server configuration and a Site, the agent
# enrolled with a one-time join token, the gateway started from the configuration the
# agent wrote; connects the stock openconnect client with a token from the development
# issuer, shows traffic flowing, pushes a configuration change without dropping the
# session, shows the server's health in the control plane, then cleans everything up.
# Needs root (namespaces, TUN). Nothing leaves this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "run as root: sudo $0"; exit 1; fi
if ! command -v openconnect >/dev/null || ! command -v iperf3 >/dev/null || ! command -v nft >/dev/null; then
    echo "installing the demo's Debian packages (openconnect, iperf3, nftables, …)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libssl-dev libcurl4-openssl-dev libxml2 \
        libsqlite3-dev openssl openconnect vpnc-scripts iperf3 nftables iproute2 iputils-ping curl python3 >/dev/null
fi
swift build
export BIN
BIN=$(swift build --show-bin-path)
source IntegrationTests/lib.sh

setup_namespaces; make_pki; make_issuer; make_script_wrapper; start_corp
echo "== control plane: mstunnel-control serve on $CP (its own CA; admin token in $CONTROL/admin-token)"
start_control
echo "== admin: create a Server configuration and a Site, get a join token (Graph-shaped API, curl)"
CFG=$(api POST /microsoftTunnelConfigurations '{"displayName":"demo","network":"100.64.0.0/24","dnsServers":["198.18.1.2"],
  "defaultDomainSuffix":"corp.test","routeIncludes":["198.18.1.0/24"],"splitDNS":["corp.test"],"listenPort":443}' | json 'd["id"]')
SITE=$(api POST /microsoftTunnelSites "{\"displayName\":\"demo site\",\"internalNetworkProbeUrl\":\"http://198.18.1.2:8080/\",
  \"microsoftTunnelConfiguration\":{\"id\":\"$CFG\"}}" | json 'd["id"]')
api POST "/microsoftTunnelSites/$SITE/createJoinToken" '{"expirationMinutes":10}' | json 'd["joinToken"]' > "$WORK/join.token"
echo "   configuration $CFG, site $SITE"
echo "== agent: mstunnel-agent enroll --control-url $CP --join-token-file join.token"
ip netns exec "$NS_G" "$BIN/mstunnel-agent" enroll --control-url "$CP" --join-token-file "$WORK/join.token" --state-dir "$STATE"
SERVER=$(json 'd["serverId"]' < "$STATE/agent-info.json")
agent_run
for _ in $(seq 100); do [ -s "$STATE/admin-settings.json" ] && break; sleep 0.1; done
echo "== the agent wrote admin-settings.json from the Site's configuration:"
cat "$STATE/admin-settings.json"
start_stack
echo "== gateway up in namespace $NS_G, certificate $PIN"
printf %s "$(mint --oid 0b1f7a3e-0000-4000-8000-000000000001 --upn alice@corp.test --deviceid demo-laptop)" > "$WORK/token.jwt"
echo "== openconnect --token-mode=oidc --token-secret=@token.jwt https://198.18.0.1/"
oc demo --token-mode=oidc --token-secret=@"$WORK/token.jwt"
wait_tunnel demo
grep -E '^(INTERNAL_IP4_ADDRESS|INTERNAL_IP4_DNS|CISCO_DEF_DOMAIN|CISCO_SPLIT_DNS|CISCO_SPLIT_INC_0_ADDR|CISCO_SPLIT_EXC_0_ADDR)=' "$WORK/env-demo.connect"
echo "== ping the corporate host through the tunnel"
ip netns exec "$NS_C" ping -c 3 -i 0.3 198.18.1.2
echo "== iperf3 through the tunnel (2 s)"
ip netns exec "$NS_C" iperf3 -c 198.18.1.2 -t 2 | tail -4
echo "== the corporate host sees the gateway's address (PAT):"
ip netns exec "$NS_C" curl -s -o /dev/null http://198.18.1.2:8080/; sleep 0.2; tail -1 "$WORK/http.log"
echo "== mst-cli server show status"
"$BIN/mst-cli" server show status --run-dir "$RUN"
echo "== mst-cli server show sessions"
"$BIN/mst-cli" server show sessions --run-dir "$RUN"
echo "== admin: change the configuration (a banner, a narrower route); the agent applies it live"
api PATCH "/microsoftTunnelConfigurations/$CFG" '{"routeIncludes":["198.18.1.0/25"],"advancedSettings":[{"name":"banner","value":"hello from the control plane"}]}' >/dev/null
for _ in $(seq 100); do grep -q '"msg":"settings.applied"' "$WORK/server.log" && break; sleep 0.1; done
grep '"msg":"settings.applied"' "$WORK/server.log"
echo "== the connected session is still there:"
ip netns exec "$NS_C" ping -c 2 -i 0.3 198.18.1.2 | tail -2
echo "== the server in its Site, as the admin sees it (first health report; its CPU figure covers the iperf3 run above)"
for _ in $(seq 150); do api POST "/microsoftTunnelSites/$SITE/microsoftTunnelServers/$SERVER/getHealthMetrics" '{}' | grep -q cpuUsage && break; sleep 0.1; done
api GET "/microsoftTunnelSites/$SITE/microsoftTunnelServers/$SERVER" | python3 -m json.tool
api GET "/microsoftTunnelSites/$SITE/microsoftTunnelServers/$SERVER/healthChecks" | python3 -c '
import json,sys
d=json.load(sys.stdin)
print("overall:", d["tunnelServerHealthStatus"])
for c in d["value"]: print("  %13s  %-22s %s" % (c["status"], c["id"], c["message"]))'
stop_oc
echo "== gateway log (JSON lines, as 'podman logs' shows them)"
cat "$WORK/server.log"
echo "== demo done; cleaning up"
