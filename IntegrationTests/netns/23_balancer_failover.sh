#!/usr/bin/env bash
# The balancer itself fails over (docs/operations.md, "Two balancers with a floating address"):
# two balancers run deploy/balancer/nftables-balancer.sh with the same seed, and keepalived
# (VRRP) floats the Site's address — and the servers' gateway address behind — between them.
# The first balancer's machine goes away; the second takes both addresses, and because it
# hashes a client to the same server, its conntrack picks the client's TLS and DTLS flows up
# mid-stream: the stock client's tunnel carries on without a reconnect or a new login.
#
#   [cli] cli0 198.18.0.2 ─┐ [front switch]  ┌─ f1 198.18.0.11 [lb1] b1 198.18.2.11 ─┐ [back switch] ┌─ ga0 198.18.2.2 [gwa]
#                          └─────────────────┴─ f2 198.18.0.12 [lb2] b2 198.18.2.12 ─┴───────────────┴─ gb0 198.18.2.3 [gwb]
#   VIPs (keepalived, one VRRP instance): 198.18.0.1 on the front, 198.18.2.1 (the servers' default route) on the back
source "$(dirname "$0")/../lib.sh"
command -v keepalived >/dev/null || { echo "SKIP: keepalived is not installed (Debian package keepalived)"; exit 77; }

NS_FS=mstfs$$ NS_BS=mstbs$$ NS_L1=mstlb1$$ NS_L2=mstlb2$$ NS_GA=mstgwa$$ NS_GB=mstgwb$$
EXTRA_NS+=("$NS_FS" "$NS_BS" "$NS_L1" "$NS_L2" "$NS_GA" "$NS_GB")
for ns in "$NS_C" "$NS_FS" "$NS_BS" "$NS_L1" "$NS_L2" "$NS_GA" "$NS_GB"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
mkdir -p "/etc/netns/$NS_C"; : > "/etc/netns/$NS_C/resolv.conf"
# Two switches: a bridge in a namespace of its own each.
for sw in "$NS_FS" "$NS_BS"; do ip -n "$sw" link add br0 type bridge; ip -n "$sw" link set br0 up; done
port() {  # port NS IF ADDR SWITCH: a link from NS into SWITCH's bridge
    ip link add "$2" netns "$1" type veth peer name "p$2" netns "$4"
    ip -n "$1" addr add "$3" dev "$2"; ip -n "$1" link set "$2" up
    ip -n "$4" link set "p$2" master br0; ip -n "$4" link set "p$2" up
}
port "$NS_C" cli0 198.18.0.2/24 "$NS_FS"
port "$NS_L1" f1 198.18.0.11/24 "$NS_FS"
port "$NS_L2" f2 198.18.0.12/24 "$NS_FS"
port "$NS_L1" b1 198.18.2.11/24 "$NS_BS"
port "$NS_L2" b2 198.18.2.12/24 "$NS_BS"
port "$NS_GA" ga0 198.18.2.2/24 "$NS_BS"
port "$NS_GB" gb0 198.18.2.3/24 "$NS_BS"
ip -n "$NS_C" route add default via 198.18.0.1
for ns in "$NS_GA" "$NS_GB"; do ip -n "$ns" route add default via 198.18.2.1; done
for ns in "$NS_L1" "$NS_L2" "$NS_GA" "$NS_GB"; do ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1; done

make_pki
make_issuer
write_settings
make_script_wrapper
python3 -c 'import base64,json,os; print(json.dumps({"sealing":"site-1","keys":[{"id":"site-1","key":base64.b64encode(os.urandom(32)).decode()}]}))' > "$WORK/site-keys.json"
chmod 600 "$WORK/site-keys.json"
declare -A NSOF=([a]=$NS_GA [b]=$NS_GB)
for m in a b; do
    run=$WORK/run-$m; mkdir -p "$run"; chgrp 990 "$run"; chmod 2770 "$run"
    ip netns exec "${NSOF[$m]}" "$BIN/mstunnel-auth" --state-dir "$STATE" --socket "$run/auth.sock" --allow-gid 990 --allow-uid 994 \
        --ticket-keys "$WORK/site-keys.json" >> "$WORK/auth-$m.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do [ -S "$run/auth.sock" ] && break; sleep 0.1; done
    ip netns exec "${NSOF[$m]}" "$BIN/mstunnel-server" --state-dir "$STATE" --run-dir "$run" "${SERVER_ARGS[@]}" >> "$WORK/server-$m.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do ip netns exec "${NSOF[$m]}" ss -ltn 'sport = :443' | grep -q LISTEN && break; sleep 0.1; done
done

# Each balancer: the same nftables table (same seed: a client hashes to the same server on
# either) and keepalived for both addresses; lb1 has the higher priority.
declare -A KA_PID
for n in 1 2; do
    ns=$([ $n = 1 ] && echo "$NS_L1" || echo "$NS_L2")
    ip netns exec "$ns" "$ROOT/deploy/balancer/nftables-balancer.sh" --vip 198.18.0.1 --backend 198.18.2.2 --backend 198.18.2.3 \
        --interval 0.5 --fails 2 > "$WORK/balancer-$n.log" 2>&1 &
    PIDS+=($!)
    cat > "$WORK/keepalived-$n.conf" <<CONF
global_defs {
    router_id mst-lb$n
}
vrrp_instance site {
    state BACKUP
    interface f$n
    virtual_router_id 51
    priority $([ $n = 1 ] && echo 150 || echo 100)
    advert_int 1
    virtual_ipaddress {
        198.18.0.1/24 dev f$n
        198.18.2.1/24 dev b$n
    }
}
CONF
    ip netns exec "$ns" keepalived --dont-fork --log-console --use-file "$WORK/keepalived-$n.conf" \
        --pid "$WORK/ka-$n.pid" --vrrp_pid "$WORK/ka-vrrp-$n.pid" --checkers_pid "$WORK/ka-check-$n.pid" > "$WORK/keepalived-$n.log" 2>&1 &
    KA_PID[$n]=$!
    PIDS+=(${KA_PID[$n]})
done
has_vip() { ip -n "$1" -4 addr show | grep -q "inet $2/"; }
wait_for "lb1 holds the Site's address (VRRP master)" 100 has_vip "$NS_L1" 198.18.0.1
check "  … and the servers' gateway address" has_vip "$NS_L1" 198.18.2.1
check "lb2 holds neither (backup)" sh -c "! ip -n $NS_L2 -4 addr show | grep -q 'inet 198.18.[02].1/'"

echo "== alice connects through lb1"
mint --oid 0b1f7a3e-0000-4000-8000-0000000000f1 --upn alice@corp.test > "$WORK/alice.jwt"
oc alice --token-mode=oidc --token-secret=@"$WORK/alice.jwt" --reconnect-timeout 60
if wait_tunnel alice; then pass "tunnel up through the Site's address"; else fail "tunnel up"; cat "$WORK"/server-*.log | tail -5; fi
wait_for "DTLS established" 60 grep -q 'Established DTLS' "$WORK/oc-alice.log"
ADDRESS=$(ip -n "$NS_C" -4 -o addr show dev tun0 | awk '{print $4}' | cut -d/ -f1)
# The gateway's own pool address answers on whichever server carries her.
check "traffic through the tunnel ($ADDRESS)" ip netns exec "$NS_C" ping -c 3 -i 0.3 -W 2 100.64.0.1
accepted() { cat "$WORK"/auth-*.log | grep -c '"msg":"auth.accepted"' || true; }
events() { cat "$WORK"/server-*.log | grep -cE '"msg":"session.(reconnected|resumed|created)"' || true; }
LOGINS=$(accepted)
EVENTS=$(events)
ip netns exec "$NS_C" ping -i 0.2 -W 1 100.64.0.1 > "$WORK/ping.log" 2>&1 &
PING=$!
PIDS+=($PING)
sleep 2

echo "== lb1's machine goes away (both links down, its keepalived stopped dead)"
T0=$(date +%s.%N)
ip -n "$NS_L1" link set f1 down
ip -n "$NS_L1" link set b1 down
kill -KILL "${KA_PID[1]}"
wait_for "lb2 takes the Site's address" 100 has_vip "$NS_L2" 198.18.0.1
T1=$(date +%s.%N)
check "  … and the servers' gateway address" has_vip "$NS_L2" 198.18.2.1
echo "  (lb2 master $(python3 -c "print(round($T1 - $T0, 1))") s after lb1 went; VRRP declares a master dead after 3 adverts of 1 s)"
sleep 4
kill -INT "$PING" 2>/dev/null || true
wait "$PING" 2>/dev/null || true
LOSS=$(sed -n 's/.* \([0-9.]*\)% packet loss.*/\1/p' "$WORK/ping.log")
check "pings went on through lb2 (loss ${LOSS:-?}% over the failover)" ip netns exec "$NS_C" ping -c 3 -i 0.3 -W 2 100.64.0.1
check "the client's tunnel carried on: no reconnect, no resume, no new session on any server" test "$(events)" = "$EVENTS"
check "  … no new login" test "$(accepted)" = "$LOGINS"
check "  … same address, client still running" sh -c "kill -0 $OC_PID && ip -n $NS_C -4 -o addr show dev tun0 | grep -q 'inet $ADDRESS/'"
check "  … and its flows are in lb2's conntrack now (picked up mid-stream)" \
    sh -c "ip netns exec $NS_L2 conntrack -L 2>/dev/null | grep -q 'src=198.18.0.2 dst=198.18.0.1 .*dport=443'"
check "the openconnect log shows no reconnect" sh -c "! grep -qi 'reconnect' $WORK/oc-alice.log"
check "no token in any log" sh -c "! grep -qF \"\$(cut -d. -f3 $WORK/alice.jwt)\" $WORK/server-*.log $WORK/auth-*.log $WORK/keepalived-*.log"
stop_oc
summary
