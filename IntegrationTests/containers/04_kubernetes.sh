#!/usr/bin/env bash
# deploy/kubernetes as written: validated against the Kubernetes schemas (strict), then run
# under `podman kube play` — the control plane's Deployment on PostgreSQL and the gateway's
# Deployment (host network, NET_ADMIN, the TUN device, init containers that lay out the
# node's state and enroll it with a join token made for several servers) — and the stock
# openconnect connected through the played gateway to a corporate host.
#
# What differs from a cluster, and why: ConfigMaps hold this lab's values (a copy of the
# example with them); Secrets are created as podman secrets in the shape podman 4.3 reads for
# `secretKeyRef` (a JSON object of base64 values) from the same keys; the control plane pod
# is played with `--network host` (no pod network or Service here); one replica of each
# (podman plays one pod per Deployment). The Deployments themselves are played unchanged.
#
#   [cli] 198.18.0.2 ── 198.18.0.1 [node: the played pods, host network] 198.18.1.1 ── 198.18.1.2 [corp]
#   PostgreSQL: Debian's cluster on this host, reached from the node namespace's 127.0.0.1:5432
#   through a small relay to its Unix socket (the lab's namespaces have no route to the host).
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
if [ "$(id -u)" != 0 ]; then echo "SKIP: $(basename "$0") needs root"; exit 77; fi
for tool in podman catatonit; do command -v $tool >/dev/null || { echo "SKIP: $(basename "$0") needs $tool"; exit 77; }; done
VALIDATE=/opt/mst-venv/bin/kubernetes-validate
[ -x $VALIDATE ] || { echo "SKIP: $VALIDATE missing (scripts/test.sh installs it)"; exit 77; }
# The gateway's hostPath volumes are the product's paths: never touch an install on this host.
for d in /etc/mstunnel /var/log/mstunnel; do
    [ -e $d ] && { echo "SKIP: $d exists (a gateway is installed on this host); this test plays the manifests with their hostPaths"; exit 77; }
done
BIN=${BIN:-$ROOT/${MSTUNNEL_BUILD_PATH:-.build-release}/release}
K=deploy/kubernetes
source IntegrationTests/containers/lib.sh

W=$(mktemp -d /tmp/mstunnel-k8s.XXXXXX)
NS_C=mstkc NS_N=mstkn NS_I=mstki
DB=mstunnel_k8s
PIDS=()
in_node() { nsenter --net=/run/netns/$NS_N "$@"; }
cleanup() {
    in_node podman kube down "$W/gateway.yaml" >/dev/null 2>&1
    in_node podman kube down "$W/control.yaml" >/dev/null 2>&1
    # A pod that failed to start is not taken down by `kube down`: these names are this test's.
    for p in mstunnel-gateway-pod-0 mstunnel-control-pod-0; do podman pod exists $p && podman pod rm -f -t 5 $p >/dev/null 2>&1; done
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    for s in mstunnel-join mstunnel-site-tls mstunnel-control-db; do podman secret rm $s >/dev/null 2>&1; done
    for ns in $NS_C $NS_N $NS_I; do ip netns del $ns 2>/dev/null; rm -rf /etc/netns/$ns; done
    rm -rf /etc/mstunnel /var/log/mstunnel
    bash scripts/postgres-test-db.sh --drop $DB >/dev/null 2>&1
    [ "$FAILS" = 0 ] && rm -rf "$W" || echo "(kept $W for a look)"
}
trap cleanup EXIT

echo "== the manifests against the Kubernetes schemas (kubernetes-validate --strict)"
check "every object in deploy/kubernetes validates" $VALIDATE --strict --quiet $K/*.yaml
sed 's/allowPrivilegeEscalation: false/allowPrivilegeEscalation: "no"/; s/containerPort: 443/containerPort: "https"/' $K/20-gateway.yaml > "$W/broken.yaml"
check "  … and a broken copy does not (the check can fail)" sh -c "! $VALIDATE --strict --quiet $W/broken.yaml"

echo "== images, the lab, PostgreSQL"
if ! podman image exists localhost/mstunnel-server:latest; then
    ./deploy/build-images > "$W/build-images.log" 2>&1 || { tail -20 "$W/build-images.log"; echo "build-images failed"; exit 1; }
fi
for ns in $NS_C $NS_N $NS_I; do ip netns add $ns; ip -n $ns link set lo up; done
ip link add cli0 netns $NS_C type veth peer name gw0 netns $NS_N
ip link add gw1 netns $NS_N type veth peer name corp0 netns $NS_I
ip -n $NS_C addr add 198.18.0.2/24 dev cli0; ip -n $NS_C link set cli0 up
ip -n $NS_N addr add 198.18.0.1/24 dev gw0; ip -n $NS_N link set gw0 up
ip -n $NS_N addr add 198.18.1.1/24 dev gw1; ip -n $NS_N link set gw1 up
ip -n $NS_I addr add 198.18.1.2/24 dev corp0; ip -n $NS_I link set corp0 up
ip netns exec $NS_N sysctl -qw net.ipv4.ip_forward=1
mkdir -p /etc/netns/$NS_C; : > /etc/netns/$NS_C/resolv.conf
DB_URL=$(bash scripts/postgres-test-db.sh $DB) || { echo "no PostgreSQL"; exit 1; }
# 127.0.0.1:5432 in the node namespace → the cluster's Unix socket (a file: it reaches across namespaces).
ip netns exec $NS_N python3 -c '
import asyncio
async def pipe(r, w):
    try:
        while (b := await r.read(65536)): w.write(b); await w.drain()
    finally: w.close()
async def serve(r, w):
    ur, uw = await asyncio.open_unix_connection("/var/run/postgresql/.s.PGSQL.5432")
    await asyncio.gather(pipe(r, uw), pipe(ur, w))
async def main():
    s = await asyncio.start_server(serve, "127.0.0.1", 5432)
    async with s: await s.serve_forever()
asyncio.run(main())' > "$W/relay.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do ip netns exec $NS_N ss -ltn 'sport = :5432' | grep -q LISTEN && break; sleep 0.1; done

echo "== this lab's ConfigMaps and Secrets (from the examples' keys)"
"$BIN/mst-dev-issuer" init --dir "$W/issuer" --issuer https://issuer.test/11111111-2222-3333-4444-555555555555/v2.0 >/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=198.18.0.1" \
    -addext "subjectAltName=IP:198.18.0.1" -keyout "$W/site.key" -out "$W/site.crt" 2>/dev/null
PIN="pin-sha256:$(openssl x509 -in "$W/site.crt" -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)"
python3 - "$K/10-config.example.yaml" "$W/config.yaml" <<'PY'
import sys
text = open(sys.argv[1]).read()
text = text.replace('controlURL: "https://mstunnel-control.mstunnel.svc:8443"', 'controlURL: "https://127.0.0.1:8443"')
text = text.replace('''    { "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
      "allowedTenants": ["00000000-0000-0000-0000-000000000000"] }''',
    '''    { "issuer": "https://issuer.test/11111111-2222-3333-4444-555555555555/v2.0", "jwksFile": "/etc/mstunnel/jwks.json",
      "allowedTenants": ["11111111-2222-3333-4444-555555555555"] }''')
text = text.replace('databaseURL: "postgres://mstunnel@postgres.mstunnel.svc:5432/mstunnel?sslmode=require"',
                    'databaseURL: "postgres://mstunnel_test@127.0.0.1:5432/mstunnel_k8s?sslmode=disable"')
text = text.replace('hostnames: "mstunnel-control mstunnel-control.mstunnel.svc mstunnel-control.mstunnel.svc.cluster.local"', 'hostnames: "127.0.0.1"')
assert text.count("127.0.0.1") == 3 and "issuer.test" in text, "the example ConfigMap changed: update this test"
open(sys.argv[2], "w").write(text)
# podman 4.3 reads one ConfigMap per --configmap file.
gateway, control = text.split("\n---\n")
open(sys.argv[2].replace(".yaml", "-gateway.yaml"), "w").write(gateway)
open(sys.argv[2].replace(".yaml", "-control.yaml"), "w").write(control)
PY
check "this lab's ConfigMaps validate too" $VALIDATE --strict --quiet "$W/config.yaml"
# podman 4.3 reads a secretKeyRef's secret as a JSON object of base64 values.
podman_secret() { # podman_secret NAME KEY=FILE...
    local name=$1; shift
    python3 - "$@" <<'PY' | podman secret create "$name" - >/dev/null
import base64, json, sys
print(json.dumps({k: base64.b64encode(open(f, "rb").read()).decode() for k, f in (a.split("=", 1) for a in sys.argv[1:])}))
PY
}
printf 'mstunnel-test' > "$W/db-password"
podman_secret mstunnel-control-db password="$W/db-password"
podman_secret mstunnel-site-tls tls.crt="$W/site.crt" tls.key="$W/site.key"

echo "== the control plane's Deployment (podman kube play --network host), on PostgreSQL"
# podman plays every replica in this one network namespace, where two would both bind 8443:
# the control plane is played with one replica (the only change; netns 18 runs two instances
# on one database, and kills one).
sed 's/^  replicas: 2$/  replicas: 1/' $K/30-control.yaml > "$W/control.yaml"
check "the control plane's manifest played differs only in its replicas" sh -c "[ \$(diff $K/30-control.yaml $W/control.yaml | grep -c '^[<>]') = 2 ]"
in_node podman kube play --network host --configmap "$W/config-control.yaml" "$W/control.yaml" > "$W/play-control.log" 2>&1 \
    || { fail "kube play 30-control.yaml"; cat "$W/play-control.log"; echo "$PASSES passed, $FAILS failed"; exit 1; }
CP=mstunnel-control-pod-0-control
healthz() { ip netns exec $NS_N curl -fsSk https://127.0.0.1:8443/healthz; }
wait_for "the control plane answers /healthz" 120 healthz
check "  … on PostgreSQL (its start line)" sh -c "podman logs $CP 2>&1 | grep -q 'postgres'"
check "  … as mstunnel-control (993), no capability" sh -c "podman top $CP user capeff | grep -Eq '^mstunnel-control +none'"
check "  … the database password is not in its arguments" sh -c "podman top $CP args > $W/args.txt && grep -q 'mstunnel-control serve' $W/args.txt && ! grep -q mstunnel-test $W/args.txt"
ADMIN=$(podman exec $CP mstunnel-control admin-token --state-dir /var/lib/mstunnel-control)
podman exec $CP cat /var/lib/mstunnel-control/ca.crt > "$W/ca.crt" 2>/dev/null
api() {
    local args=(-fsS --cacert "$W/ca.crt" -H "Authorization: Bearer $ADMIN" -X "$1")
    [ $# -gt 2 ] && args+=(-H 'Content-Type: application/json' --data "$3")
    ip netns exec $NS_N curl "${args[@]}" "https://127.0.0.1:8443/beta/deviceManagement$2"
}
CFG=$(api POST /microsoftTunnelConfigurations '{"displayName":"k8s","network":"100.64.0.0/24","dnsServers":["198.18.1.2"],"routeIncludes":["198.18.1.0/24"],"listenPort":443}' | json 'd["id"]')
SITE=$(api POST /microsoftTunnelSites "{\"displayName\":\"k8s\",\"microsoftTunnelConfiguration\":{\"id\":\"$CFG\"}}" | json 'd["id"]')
check "a Site through the played control plane" test -n "$SITE"
api POST "/microsoftTunnelSites/$SITE/createJoinToken" '{"expirationMinutes":30,"maxUses":3}' > "$W/join.json"
check "a join token for three gateway nodes (maxUses 3)" sh -c "python3 -c 'import json,sys; sys.exit(json.load(open(\"$W/join.json\"))[\"maxUses\"] != 3)'"
json 'd["joinToken"]' < "$W/join.json" | tr -d '\n' > "$W/join.token"
podman_secret mstunnel-join joinToken="$W/join.token"

echo "== the gateway's Deployment (played unchanged)"
# The issuer's keys, where this lab's auth.json points (the operator's files in the node's state directory stay).
install -d -m 0750 -o 992 -g 990 /etc/mstunnel
install -m 0644 "$W/issuer/jwks.json" /etc/mstunnel/jwks.json
cp $K/20-gateway.yaml "$W/gateway.yaml"
check "the gateway manifest played is the repository's, byte for byte" cmp $K/20-gateway.yaml "$W/gateway.yaml"
in_node podman kube play --configmap "$W/config-gateway.yaml" "$W/gateway.yaml" > "$W/play-gateway.log" 2>&1 \
    || { fail "kube play 20-gateway.yaml"; cat "$W/play-gateway.log"; echo "$PASSES passed, $FAILS failed"; exit 1; }
GW=mstunnel-gateway-pod-0
wait_for "the played gateway listens on 443 in the node's network" 240 sh -c "ip netns exec $NS_N ss -ltn 'sport = :443' | grep -q LISTEN"
check "the prepare init container laid out the state: site key 0640 root:990" sh -c "[ \"\$(stat -c '%a %u:%g' /etc/mstunnel/private/site.key)\" = '640 0:990' ]"
check "  … auth.json 0640 992:990, certificate 0644" sh -c "[ \"\$(stat -c '%a %u:%g' /etc/mstunnel/auth.json)\" = '640 992:990' ] && [ \"\$(stat -c '%a' /etc/mstunnel/certs/site.crt)\" = 644 ]"
check "the init container joined the Site (agent-info.json)" test -s /etc/mstunnel/agent-info.json
servers_are() { [ "$(api GET "/microsoftTunnelSites/$SITE/microsoftTunnelServers" | json 'len(d["value"])')" = "$1" ]; }
check "  … one server in the Site" servers_are 1
for c in server auth agent; do check "$GW-$c is running" sh -c "podman ps --format '{{.Names}}' | grep -qx $GW-$c"; done
check "the gateway process confined: mstunnel-gw (994), no capability" sh -c "podman top $GW-server user capeff | grep -Eq '^mstunnel-gw +none'"
check "auth as mstunnel-auth (991), the agent as mstunnel-agent (992), no capability" sh -c "podman top $GW-auth user capeff | grep -Eq '^mstunnel-auth +none' && podman top $GW-agent user capeff | grep -Eq '^mstunnel-agent +none'"
check "no secret in the long-running containers' environment" sh -c "podman inspect $GW-server $GW-auth $GW-agent --format '{{.Config.Env}}' > $W/env.txt && ! grep -Eq 'SITE_TLS_KEY|JOIN_TOKEN|PRIVATE KEY|mstj1' $W/env.txt"
applied() { [ -s /etc/mstunnel/admin-settings.json ] && podman logs $GW-server 2>&1 | grep -q '"msg":"gateway.started"'; }
wait_for "the agent wrote the Site's configuration; the gateway runs it" 120 applied

echo "== the stock openconnect through the played gateway"
ip netns exec $NS_I python3 -m http.server 8080 --bind 198.18.1.2 > /dev/null 2>&1 &
PIDS+=($!)
"$BIN/mst-dev-issuer" mint --dir "$W/issuer" --iss https://issuer.test/11111111-2222-3333-4444-555555555555/v2.0 \
    --aud 3678c9e9-9681-447a-974d-d19f668fcd88 --tid 11111111-2222-3333-4444-555555555555 \
    --oid 0b1f7a3e-0000-4000-8000-00000000c001 --upn carol@corp.test --exp-in 3600 > "$W/carol.jwt"
ip netns exec $NS_C openconnect --protocol=anyconnect --token-mode=oidc --token-secret=@"$W/carol.jwt" --servercert "$PIN" \
    --non-inter --interface tun0 https://198.18.0.1/ > "$W/openconnect.log" 2>&1 &
OC=$!; PIDS+=($OC)
wait_for "openconnect connected" 120 sh -c "ip -n $NS_C -4 addr show dev tun0 | grep -q 'inet 100\.64\.'"
check "ping the corporate host through the tunnel" ip netns exec $NS_C ping -c 2 -i 0.3 -W 2 198.18.1.2
check "its web page through the tunnel" ip netns exec $NS_C curl -fsS -o /dev/null http://198.18.1.2:8080/
checked_in() { [ "$(api GET "/microsoftTunnelSites/$SITE/microsoftTunnelServers" | json 'd["value"][0]["lastCheckinDateTime"] is not None')" = True ]; }
wait_for "the played agent checks in" 60 checked_in
kill $OC 2>/dev/null; wait $OC 2>/dev/null

echo "== the pod again (a restart on the same node): no second enrollment"
SERVER_ID=$(json 'd["serverId"]' < /etc/mstunnel/agent-info.json)
in_node podman kube down "$W/gateway.yaml" > "$W/down-gateway.log" 2>&1 || { echo "   (kube down: $(grep -v 'systemd' "$W/down-gateway.log" | tail -1))"; }
# podman 4.3's kube down has been seen to return with the pod still there (CI, once):
# wait for it to go, then remove it ourselves, so the second play is a fresh pod.
for _ in $(seq 60); do podman pod exists $GW || break; sleep 0.5; done
if podman pod exists $GW; then echo "   (the pod outlived kube down: podman pod rm -f)"; podman pod rm -f -t 10 $GW > /dev/null 2>&1; fi
check "the first pod is gone" sh -c "! podman pod exists $GW"
in_node podman kube play --configmap "$W/config-gateway.yaml" "$W/gateway.yaml" > "$W/play-gateway2.log" 2>&1 || fail "kube play again"
wait_for "the gateway listens again" 240 sh -c "ip netns exec $NS_N ss -ltn 'sport = :443' | grep -q LISTEN"
check "the init container said it was already enrolled" sh -c "podman logs $GW-prepare 2>&1 | grep -q 'already enrolled: server $SERVER_ID'"
same_server() { [ -n "$SERVER_ID" ] && [ "$(json 'd["serverId"]' < /etc/mstunnel/agent-info.json)" = "$SERVER_ID" ]; }
check "  … the same identity" same_server
check "  … still one server in the Site" servers_are 1
check "no join token or key in the pods' logs" sh -c "for c in $GW-prepare $GW-agent $GW-server $CP; do podman logs \$c >> $W/all-logs.txt 2>&1 || exit 1; done; [ -s $W/join.token ] && ! grep -qF -f $W/join.token $W/all-logs.txt && ! grep -q 'PRIVATE KEY' $W/all-logs.txt"

echo "$PASSES passed, $FAILS failed"
[ "$FAILS" = 0 ]
