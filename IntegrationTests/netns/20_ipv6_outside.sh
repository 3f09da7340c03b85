#!/usr/bin/env bash
# The outside over IPv6 (issue 14, "IPv6"; docs/operations.md): the stock client reaches the
# gateway at an IPv6 address (ULA test prefix) — TLS and DTLS both over IPv6 on the outside,
# the tunnel inside as usual — and the gateway logs, limits and bans the client by its /64.
# IPv6 inside the tunnel (ipv6Network) is 21_ipv6_tunnel.sh.
#
#   [cli] cli0 198.18.0.2, fd00:198:18::2/64 ── gw0 198.18.0.1, fd00:198:18::1/64 [gw] ── [corp] 198.18.1.2
source "$(dirname "$0")/../lib.sh"

setup_namespaces
for ns in "$NS_C" "$NS_G"; do ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=0; done
ip -n "$NS_C" addr add fd00:198:18::2/64 dev cli0 nodad
ip -n "$NS_G" addr add fd00:198:18::1/64 dev gw0 nodad
make_pki
make_issuer
write_settings
make_script_wrapper
start_stack
start_corp
mint --oid 0b1f7a3e-0000-4000-8000-0000000000d1 --upn dana@corp.test > "$WORK/dana.jwt"
check "the gateway listens on both families (one dual-stack socket each for TCP and UDP)" \
    sh -c "ip netns exec $NS_G ss -ltnH 'sport = :443' | grep -q '\*:443' && ip netns exec $NS_G ss -lunH 'sport = :443' | grep -q '\*:443'"

echo "== the stock client over IPv6"
oc_in "$NS_C" tun0 "[fd00:198:18::1]" v6 --token-mode=oidc --token-secret=@"$WORK/dana.jwt"
if wait_tunnel_in "$NS_C" tun0 'inet 100\.64\.' v6; then pass "tunnel up through https://[fd00:198:18::1]/"; else fail "tunnel up over IPv6"; fi
check "the session's peer is the client's IPv6 address" sh -c "grep '\"msg\":\"session.created\"' '$WORK/server.log' | tail -1 | grep -q '\"peer.address\":\"\[fd00:198:18::2\]:'"
wait_for "DTLS established over IPv6" 50 grep -q 'Established DTLS' "$WORK/oc-v6.log"
check "  … the gateway's DTLS peer is the IPv6 address" sh -c "grep '\"msg\":\"dtls.established\"' '$WORK/server.log' | tail -1 | grep -q 'fd00:198:18::2'"
check "traffic through the tunnel (IPv4 inside)" ip netns exec "$NS_C" ping -c 3 -i 0.2 -W 2 198.18.1.2
if ip netns exec "$NS_C" iperf3 -c 198.18.1.2 -t 2 -J > "$WORK/iperf-v6.json" 2>&1; then pass "iperf3 through the tunnel, DTLS over IPv6"; else fail "iperf3 through the tunnel"; fi
stop_oc

echo "== a ban falls on the /64, not on one address"
# Eight failed logins (score 80) from one address of the /64 ban its neighbours too: a host
# commonly holds a whole /64, so one address per attempt would otherwise dodge the ban.
ip -n "$NS_C" addr add fd00:198:18::77/64 dev cli0 nodad
mint --oid u1 --exp-in -600 > "$WORK/expired.jwt"
login_from() { ip netns exec "$NS_C" python3 "$ROOT/IntegrationTests/abuse_client.py" login "$1" "$2" fd00:198:18::1; }
rejected=0
for _ in $(seq 8); do [ "$(login_from fd00:198:18::2 "$WORK/expired.jwt")" = 401 ] && rejected=$((rejected + 1)); done
check "8 logins with an expired token from fd00:198:18::2 got 401 ($rejected)" test "$rejected" = 8
check "the ban logged, for the /64" grep -q '"msg":"source.banned".*fd00:198:18::' "$WORK/server.log"
check "a good token from another address of that /64 is refused at accept" test "$(login_from fd00:198:18::77 "$WORK/dana.jwt")" = closed
check "an IPv4 client is not affected" test "$(ip netns exec "$NS_C" python3 "$ROOT/IntegrationTests/abuse_client.py" login 198.18.0.2 "$WORK/dana.jwt")" = 200
check "no token in any log" sh -c "! grep -q \"\$(cut -d. -f3 '$WORK/dana.jwt')\" '$WORK/server.log' '$WORK/auth.log'"

summary
