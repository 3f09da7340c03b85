#!/usr/bin/env bash
# Brings the whole stack up on embedded defaults inside throw-away network namespaces,
# connects the stock openconnect client with a token from the development issuer, shows
# traffic flowing and what the gateway reports, then cleans everything up.
# Needs root (namespaces, TUN). Nothing leaves this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "run as root: sudo $0"; exit 1; fi
if ! command -v openconnect >/dev/null || ! command -v iperf3 >/dev/null || ! command -v nft >/dev/null; then
    echo "installing the demo's Debian packages (openconnect, iperf3, nftables, …)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libssl-dev libcurl4-openssl-dev libxml2 \
        openssl openconnect vpnc-scripts iperf3 nftables iproute2 iputils-ping curl python3 >/dev/null
fi
swift build
export BIN
BIN=$(swift build --show-bin-path)
source IntegrationTests/lib.sh

setup_namespaces; make_pki; make_issuer; write_settings; make_script_wrapper; start_corp; start_stack
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
stop_oc
echo "== gateway log (JSON lines, as 'podman logs' shows them)"
cat "$WORK/server.log"
echo "== demo done; cleaning up"
