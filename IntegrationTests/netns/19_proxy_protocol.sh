#!/usr/bin/env bash
# The gateway behind proxies that are not transparent (docs/operations.md, "A Site behind a
# balancer"): HAProxy in TCP mode and nginx `stream` connect to the gateway from their own
# address and put a PROXY protocol header (HAProxy v2, nginx v1) before the client's bytes;
# with `proxy-protocol-from` naming the proxy, the gateway logs, limits and bans the client's
# own address. The stock client connects through each: HAProxy carries TLS only (the client
# stays on TLS), nginx carries TLS and, on UDP, DTLS. HAProxy's TLS health checks (with
# their own PROXY header) pass. A trusted proxy's connection without a header is refused and
# logged; an untrusted sender's forged header is never believed.
#
#   [cli] cli0 198.18.0.2 ── lb0 198.18.0.1 (HAProxy), 198.18.0.3 (nginx) [lb]
#                                lbg 198.18.2.1 (+ .9, untrusted) ── gw0 198.18.2.2 [gw] gw1 198.18.1.1 ── corp0 198.18.1.2 [corp]
source "$(dirname "$0")/../lib.sh"
command -v haproxy >/dev/null && command -v nginx >/dev/null && [ -f /usr/lib/nginx/modules/ngx_stream_module.so ] \
    || { echo "FAIL: haproxy, nginx and libnginx-mod-stream are needed (.ci/run installs them)"; exit 1; }

NS_LB=mstlb$$
EXTRA_NS+=("$NS_LB")
for ns in "$NS_C" "$NS_LB" "$NS_G" "$NS_I"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
mkdir -p "/etc/netns/$NS_C"; : > "/etc/netns/$NS_C/resolv.conf"
veth_link "$NS_C" cli0 198.18.0.2/24 "$NS_LB" lb0 198.18.0.1/24
ip -n "$NS_LB" addr add 198.18.0.3/24 dev lb0
veth_link "$NS_LB" lbg 198.18.2.1/24 "$NS_G" gw0 198.18.2.2/24
ip -n "$NS_LB" addr add 198.18.2.9/24 dev lbg
veth_link "$NS_G" gw1 198.18.1.1/24 "$NS_I" corp0 198.18.1.2/24
ip -n "$NS_G" route add default via 198.18.2.1
ip netns exec "$NS_G" sysctl -qw net.ipv4.ip_forward=1

make_pki
make_issuer
write_settings
set_advanced proxy-protocol-from 198.18.2.1
make_script_wrapper
start_stack
start_corp
mint --oid 0b1f7a3e-0000-4000-8000-0000000000c1 --upn cleo@corp.test > "$WORK/cleo.jwt"

cat > "$WORK/haproxy.cfg" <<CFG
global
    log stdout format raw local0 info
    stats socket $WORK/haproxy.sock
defaults
    mode tcp
    log global
    option tcplog
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend vpn
    bind 198.18.0.1:443
    default_backend gateways
backend gateways
    option httpchk GET /
    server gw1 198.18.2.2:443 send-proxy-v2 check check-ssl verify none check-send-proxy inter 500ms fall 2 rise 1
CFG
ip netns exec "$NS_LB" haproxy -db -f "$WORK/haproxy.cfg" > "$WORK/haproxy.log" 2>&1 &
PIDS+=($!)
cat > "$WORK/nginx.conf" <<CFG
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log info;
events {}
stream {
    upstream gw_tcp { hash \$remote_addr consistent; server 198.18.2.2:443; }
    upstream gw_udp { hash \$remote_addr consistent; server 198.18.2.2:443; }
    server { listen 198.18.0.3:443; proxy_pass gw_tcp; proxy_protocol on; }
    server { listen 198.18.0.3:443 udp; proxy_pass gw_udp; }
}
CFG
ip netns exec "$NS_LB" nginx -e "$WORK/nginx-error.log" -c "$WORK/nginx.conf" -g 'daemon off;' > "$WORK/nginx.log" 2>&1 &
PIDS+=($!)
wait_for "HAProxy and nginx listening" 50 sh -c "ip netns exec $NS_LB ss -ltn | grep -q 198.18.0.1:443 && ip netns exec $NS_LB ss -ltn | grep -q 198.18.0.3:443"

echo "== HAProxy (TCP, PROXY v2): health checks pass, the client's own address reaches the gateway"
sleep 3
# check_status L7OK with code 200: the check's TLS and its GET / reached the gateway's
# liveness page through its PROXY header.
haproxy_check() {
    python3 - "$WORK/haproxy.sock" <<'PY'
import csv, io, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"show stat\n")
data = b""
while chunk := s.recv(65536): data += chunk
rows = list(csv.DictReader(io.StringIO(data.decode().lstrip("# "))))
gw = [r for r in rows if r.get("svname") == "gw1"][0]
print(gw["check_status"], gw["check_code"])
sys.exit(0 if gw["check_status"] == "L7OK" and gw["check_code"] == "200" else 1)
PY
}
wait_for "HAProxy's TLS health checks (GET /, with check-send-proxy) pass: L7OK 200" 25 haproxy_check
check "  … and the gateway refused none of them" sh -c "! grep -q 'proxy.header_invalid' '$WORK/server.log'"
oc_in "$NS_C" tun0 198.18.0.1 haproxy --token-mode=oidc --token-secret=@"$WORK/cleo.jwt"
if wait_tunnel_in "$NS_C" tun0 'inet 100\.64\.' haproxy; then pass "the stock client connected through HAProxy"; else fail "the stock client connected through HAProxy"; fi
check "the session's peer address is the client's (198.18.0.2), not HAProxy's" sh -c "created() { grep '\"msg\":\"session.created\"' '$WORK/server.log' | tail -1; }; created | grep -q '\"peer.address\":\"198.18.0.2:' && ! created | grep -q '198.18.2.1'"
check "traffic flows through the tunnel" ip netns exec "$NS_C" ping -c 2 -i 0.2 -W 2 198.18.1.2
check "HAProxy carries no DTLS: the client stays on TLS" sh -c "! grep -q 'Established DTLS' '$WORK/oc-haproxy.log'"
stop_oc

echo "== nginx stream (TCP with PROXY v1, UDP plain): TLS and DTLS"
oc_in "$NS_C" tun0 198.18.0.3 nginx --token-mode=oidc --token-secret=@"$WORK/cleo.jwt"
if wait_tunnel_in "$NS_C" tun0 'inet 100\.64\.' nginx; then pass "the stock client connected through nginx"; else fail "the stock client connected through nginx"; fi
check "the session's peer address is the client's (198.18.0.2), not nginx's" sh -c "grep '\"msg\":\"session.created\"' '$WORK/server.log' | tail -1 | grep -q '\"peer.address\":\"198.18.0.2:'"
wait_for "DTLS established through nginx's UDP proxy" 50 grep -q 'Established DTLS' "$WORK/oc-nginx.log"
check "traffic flows through the tunnel" ip netns exec "$NS_C" ping -c 2 -i 0.2 -W 2 198.18.1.2
stop_oc

echo "== what the gateway refuses"
# The trusted proxy's address, no header: refused, and logged for the operator.
ip netns exec "$NS_LB" python3 - <<'PY' > "$WORK/noheader.out" 2>&1 || true
import socket
s = socket.create_connection(("198.18.2.2", 443), timeout=5, source_address=("198.18.2.1", 0))
s.sendall(b"\x16\x03\x01\x00\x05hello")
try:
    print("closed" if s.recv(100) == b"" else "answered")
except ConnectionResetError:
    print("closed")
PY
check "a connection from the trusted proxy without a header is closed" grep -q closed "$WORK/noheader.out"
wait_for "  … and logged (proxy.header_invalid)" 20 grep -q '"msg":"proxy.header_invalid"' "$WORK/server.log"
# Anyone else: a PROXY header is just bytes in front of TLS, never an address.
ip netns exec "$NS_LB" python3 - <<'PY' > "$WORK/forged.out" 2>&1 || true
import socket
s = socket.create_connection(("198.18.2.2", 443), timeout=5, source_address=("198.18.2.9", 0))
s.sendall(b"PROXY TCP4 203.0.113.7 198.18.2.2 4444 443\r\n")
try:
    s.recv(100)  # the gateway reads it as a (broken) TLS record and closes
except OSError:
    pass
PY
sleep 0.5
check "a forged header from an untrusted address is never taken for an address" sh -c "! grep -q '203.0.113.7' '$WORK/server.log'"
check "no token in any log" sh -c "! grep -q \"\$(cut -d. -f3 '$WORK/cleo.jwt')\" '$WORK/server.log' '$WORK/auth.log' '$WORK/haproxy.log'"

summary
