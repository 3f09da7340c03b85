#!/usr/bin/env bash
# IPv6 inside the tunnel (issue 14, "IPv6"; docs/operations.md "IPv6"): with `ipv6Network`
# the stock client gets an IPv6 address beside its IPv4 one (the IPv4 lease in the last 32
# bits, so it is the same on every reconnect and every server of the Site), IPv6 split
# routes, and reaches an IPv6 corporate host through the gateway's IPv6 PAT, over DTLS; a
# client that spoofs another IPv6 source is dropped; a client without IPv6 is given none;
# a gateway restart keeps the address (the stock client gives up if it changes).
#
#   [cli] 198.18.0.2 ── 198.18.0.1 [gw] 198.18.1.1, fd00:198:18:1::1 ── [corp] 198.18.1.2, fd00:198:18:1::2
#   client pools 100.64.0.0/24 and fd00:198:18:64::/64
source "$(dirname "$0")/../lib.sh"

setup_namespaces
for ns in "$NS_C" "$NS_G" "$NS_I"; do ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0; done
ip -n "$NS_G" addr add fd00:198:18:1::1/64 dev gw1 nodad
ip -n "$NS_I" addr add fd00:198:18:1::2/64 dev corp0 nodad
make_pki
make_issuer
cat > "$STATE/admin-settings.json" <<JSON
{
  "displayName": "integration",
  "network": "100.64.0.0/24",
  "ipv6Network": "fd00:198:18:64::/64",
  "dnsServers": ["198.18.1.2"],
  "routeIncludes": ["198.18.1.0/24", "fd00:198:18:1::/64"],
  "listenPort": 443
}
JSON
make_script_wrapper
start_corp
(cd "$WORK/www" && exec ip netns exec "$NS_I" python3 -m http.server 8081 --bind fd00:198:18:1::2) > "$WORK/http6.log" 2>&1 &
PIDS+=($!)
ip netns exec "$NS_I" iperf3 -s -B fd00:198:18:1::2 -p 5202 > "$WORK/iperf3-v6-server.log" 2>&1 &
PIDS+=($!)
start_stack
env_of() { grep "^$2=" "$WORK/env-$1.connect" | cut -d= -f2-; }
status_json() { "$BIN/mst-cli" server show status --run-dir "$RUN" --json; }

echo "== the gateway's side"
check "the TUN carries the gateway's IPv6 address (its IPv4 one, 100.64.0.1, in the last 32 bits)" \
    sh -c "ip -n $NS_G -6 addr show dev mstun0 | grep -q 'inet6 fd00:198:18:64::6440:1/64'"
check "the IPv6 pool is routed to the TUN" sh -c "ip -n $NS_G -6 route show fd00:198:18:64::/64 | grep -q 'dev mstun0'"
check "IPv6 PAT: the pool is masqueraded on the way out" sh -c "ip netns exec $NS_G nft list table inet mstunnel | grep -q 'ip6 saddr fd00:198:18:64::/64 oifname != \"mstun0\" masquerade'"
check "IPv6 forwarding turned on by the helper" test "$(ip netns exec "$NS_G" sysctl -n net.ipv6.conf.all.forwarding)" = 1
check "  … after setting accept_ra=2 on the links that took router advertisements (logged)" \
    sh -c "[ \$(ip netns exec $NS_G sysctl -n net.ipv6.conf.gw0.accept_ra) = 2 ] && grep -q '\"msg\":\"host.accept_ra\".*gw0' $WORK/server.log"

echo "== the stock client, dual stack"
mint --oid 0b1f7a3e-0000-4000-8000-0000000000e1 --upn erin@corp.test > "$WORK/erin.jwt"
oc erin --token-mode=oidc --token-secret=@"$WORK/erin.jwt" --reconnect-timeout 60
if wait_tunnel erin; then pass "tunnel up"; else fail "tunnel up"; fi
V4=$(env_of erin INTERNAL_IP4_ADDRESS)
V6=$(env_of erin INTERNAL_IP6_ADDRESS)
EXPECT6=$(python3 -c "import ipaddress,sys; print(ipaddress.IPv6Address(int(ipaddress.IPv6Address('fd00:198:18:64::')) | int(ipaddress.IPv4Address(sys.argv[1]))))" "$V4")
check "the client got an IPv6 address: $V6, its IPv4 lease $V4 in the last 32 bits" test -n "$V6" -a "$V6" = "$EXPECT6"
check "  … as a /128 (X-CSTP-Address-IP6)" test "$(env_of erin INTERNAL_IP6_NETMASK)" = "$V6/128"
check "  … configured on the client's tun0" sh -c "ip -n $NS_C -6 addr show dev tun0 | grep -q 'inet6 $V6/128'"
check "the IPv6 split route reached the client (CISCO_IPV6_SPLIT_INC)" sh -c "grep -q '^CISCO_IPV6_SPLIT_INC_0_ADDR=fd00:198:18:1::$' $WORK/env-erin.connect && grep -q '^CISCO_IPV6_SPLIT_INC_0_MASKLEN=64$' $WORK/env-erin.connect"
check "  … and routes the corporate IPv6 prefix into the tunnel" sh -c "ip -n $NS_C -6 route get fd00:198:18:1::2 | grep -q 'dev tun0'"
check "the session log names both addresses" sh -c "grep '\"msg\":\"session.connected\"' $WORK/server.log | tail -1 | grep -q '\"client.address6\":\"$V6\"'"
wait_for "DTLS established" 60 grep -q 'Established DTLS' "$WORK/oc-erin.log"
# Three tries: one lost first packet (a neighbour lookup on a busy machine) is not a failure.
check "ping over IPv6 to the corporate host, through the tunnel" ip netns exec "$NS_C" ping -6 -c 3 -i 0.3 -W 2 fd00:198:18:1::2
check "HTTP over IPv6 to the corporate host" sh -c "ip netns exec $NS_C curl -s -m 5 -g 'http://[fd00:198:18:1::2]:8081/' | grep -q corp-page"
check "  … which saw the gateway's inside address, not the client's (PAT)" sh -c "grep -q 'fd00:198:18:1::1' $WORK/http6.log && ! grep -q '$V6' $WORK/http6.log"
check "IPv4 still flows beside it" ip netns exec "$NS_C" ping -c 2 -i 0.3 -W 2 198.18.1.2
check "mst-cli shows the session's IPv6 address" sh -c "'$BIN/mst-cli' server show user erin@corp.test --run-dir $RUN | grep -q 'IPv6 address: *$V6'"
dtls_bytes() { status_json | python3 -c 'import json,sys; d=json.load(sys.stdin)["dtls"]; print(d["bytesFromClients"] + d["bytesToClients"])'; }
DTLS_BEFORE=$(dtls_bytes)
if ip netns exec "$NS_C" iperf3 -c fd00:198:18:1::2 -p 5202 -t 2 -J > "$WORK/iperf6.json" 2>&1; then pass "iperf3 over IPv6 through the tunnel"; else fail "iperf3 over IPv6"; fi
IPERF_BYTES=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["end"]["sum_sent"]["bytes"]))' "$WORK/iperf6.json" 2>/dev/null || echo 0)
DTLS_GREW=$(( $(dtls_bytes) - DTLS_BEFORE ))
check "  … over DTLS (its counters grew by $DTLS_GREW bytes, iperf3 sent $IPERF_BYTES)" \
    test "$IPERF_BYTES" -gt 0 -a "$DTLS_GREW" -ge "$IPERF_BYTES"

echo "== a spoofed IPv6 source is dropped"
spoofed() { status_json | python3 -c 'import json,sys; print(json.load(sys.stdin)["drops"]["spoofed"])'; }
SPOOF_BEFORE=$(spoofed)
echoes() { ip netns exec "$NS_I" nstat -asz Icmp6InEchos | awk '/Icmp6InEchos/ {print $2}'; }
ECHOES_BEFORE=$(echoes)
ip -n "$NS_C" addr add fd00:198:18:64::6440:99/128 dev tun0 nodad
ip netns exec "$NS_C" ping -6 -c 3 -i 0.2 -W 1 -I fd00:198:18:64::6440:99 fd00:198:18:1::2 > /dev/null 2>&1 || true
ip -n "$NS_C" addr del fd00:198:18:64::6440:99/128 dev tun0
check "pings from another client's IPv6 address were dropped as spoofed ($SPOOF_BEFORE → $(spoofed))" test "$(spoofed)" -ge $((SPOOF_BEFORE + 3))
check "and never reached the corporate host (its ICMPv6 echo requests: $ECHOES_BEFORE → $(echoes))" test "$(echoes)" = "$ECHOES_BEFORE"

echo "== the gateway restarts: the client comes back with the same IPv6 address"
kill -TERM "$SERVER_PID"
for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
ip netns exec "$NS_G" "$BIN/mstunnel-server" --state-dir "$STATE" --run-dir "$RUN" "${SERVER_ARGS[@]}" >> "$WORK/server.log" 2>&1 &
SERVER_PID=$!
PIDS+=($SERVER_PID)
for _ in $(seq 300); do
    [ -f "$WORK/env-erin.reconnect" ] && ip netns exec "$NS_C" ping -6 -c 1 -W 1 fd00:198:18:1::2 >/dev/null 2>&1 && break
    sleep 0.2
done
check "the client reconnected (the stock client gives up if its IPv6 address changes)" sh -c "kill -0 $OC_PID && test -f $WORK/env-erin.reconnect"
check "  … and keeps $V6" sh -c "ip -n $NS_C -6 addr show dev tun0 | grep -q 'inet6 $V6/128'"
check "IPv6 traffic flows again" ip netns exec "$NS_C" ping -6 -c 2 -i 0.3 -W 2 fd00:198:18:1::2
stop_oc

echo "== a client without IPv6 is given none"
mint --oid 0b1f7a3e-0000-4000-8000-0000000000e2 --upn frank@corp.test > "$WORK/frank.jwt"
oc frank --token-mode=oidc --token-secret=@"$WORK/frank.jwt" --disable-ipv6
if wait_tunnel frank; then pass "tunnel up (openconnect --disable-ipv6)"; else fail "tunnel up with --disable-ipv6"; fi
check "no IPv6 address and no IPv6 route given" sh -c "! grep -q '^INTERNAL_IP6\|^CISCO_IPV6' $WORK/env-frank.connect"
check "IPv4 works" ip netns exec "$NS_C" ping -c 2 -i 0.3 -W 2 198.18.1.2
stop_oc
check "no token in any log" sh -c "! grep -q \"\$(cut -d. -f3 '$WORK/erin.jwt')\" '$WORK/server.log' '$WORK/auth.log'"
check "gateway still running" kill -0 "$SERVER_PID"

summary
