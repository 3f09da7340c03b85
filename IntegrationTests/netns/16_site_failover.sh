#!/usr/bin/env bash
# A Site of two servers behind an L4 balancer (docs/site.md, docs/operations.md): the stock
# client's server is killed (gateway and auth, as a container or host dies), the balancer's
# probe leaves it out, and the client reconnects through the balancer to the sibling with
# its cookie — a resumption ticket sealed by mstunnel-auth under the Site key — and keeps
# its tunnel addresses without a new login — IPv4 and IPv6 (`ipv6Network`: the IPv6 address
# carries the IPv4 lease, so a sibling gives the same one). A ticket opens on either server; a forged one and
# one whose session logged off do not.
#
#   [cli]  cli0 198.18.0.2 ── lb0 198.18.0.1 (VIP)  [lb: nftables-balancer.sh]
#                                 lba 198.18.2.1 ── gwa0 198.18.2.2 [gwa] gwa1 198.18.4.1 ── corpa 198.18.4.2 ┐
#                                 lbb 198.18.3.1 ── gwb0 198.18.3.2 [gwb] gwb1 198.18.5.1 ── corpb 198.18.5.2 ┴ [corp] 198.18.1.2
source "$(dirname "$0")/../lib.sh"

NS_LB=mstlb$$ NS_GA=mstgwa$$ NS_GB=mstgwb$$
EXTRA_NS+=("$NS_LB" "$NS_GA" "$NS_GB")
for ns in "$NS_C" "$NS_LB" "$NS_GA" "$NS_GB" "$NS_I"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
mkdir -p "/etc/netns/$NS_C"; : > "/etc/netns/$NS_C/resolv.conf"
veth_link "$NS_C" cli0 198.18.0.2/24 "$NS_LB" lb0 198.18.0.1/24
veth_link "$NS_LB" lba 198.18.2.1/24 "$NS_GA" gwa0 198.18.2.2/24
veth_link "$NS_LB" lbb 198.18.3.1/24 "$NS_GB" gwb0 198.18.3.2/24
veth_link "$NS_GA" gwa1 198.18.4.1/24 "$NS_I" corpa 198.18.4.2/24
veth_link "$NS_GB" gwb1 198.18.5.1/24 "$NS_I" corpb 198.18.5.2/24
ip -n "$NS_I" addr add 198.18.1.2/32 dev lo
ip -n "$NS_GA" route add default via 198.18.2.1
ip -n "$NS_GB" route add default via 198.18.3.1
ip -n "$NS_GA" route add 198.18.1.0/24 via 198.18.4.2
ip -n "$NS_GB" route add 198.18.1.0/24 via 198.18.5.2
for ns in "$NS_LB" "$NS_GA" "$NS_GB"; do ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1; done
for ns in "$NS_C" "$NS_GA" "$NS_GB"; do ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0; done

make_pki
make_issuer
write_settings
python3 - "$STATE/admin-settings.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); d["ipv6Network"] = "fd00:198:18:64::/64"; json.dump(d, open(sys.argv[1], "w"))
PY
make_script_wrapper
# The Site key: what the control plane will hand every server's auth (here: a file).
python3 -c 'import base64,json,os; print(json.dumps({"sealing":"site-1","keys":[{"id":"site-1","key":base64.b64encode(os.urandom(32)).decode()}]}))' > "$WORK/site-keys.json"
chmod 600 "$WORK/site-keys.json"

declare -A NSOF=([a]=$NS_GA [b]=$NS_GB) ADDROF=([a]=198.18.2.2 [b]=198.18.3.2) SPID APID
start_member() {  # start_member a|b : its auth, then its gateway
    local m=$1 run=$WORK/run-$1
    mkdir -p "$run"; chgrp 990 "$run"; chmod 2770 "$run"
    ip netns exec "${NSOF[$m]}" "$BIN/mstunnel-auth" --state-dir "$STATE" --socket "$run/auth.sock" --allow-gid 990 --allow-uid 994 \
        --ticket-keys "$WORK/site-keys.json" >> "$WORK/auth-$m.log" 2>&1 &
    APID[$m]=$!; PIDS+=(${APID[$m]})
    for _ in $(seq 100); do [ -S "$run/auth.sock" ] && break; sleep 0.1; done
    ip netns exec "${NSOF[$m]}" "$BIN/mstunnel-server" --state-dir "$STATE" --run-dir "$run" "${SERVER_ARGS[@]}" >> "$WORK/server-$m.log" 2>&1 &
    SPID[$m]=$!; PIDS+=(${SPID[$m]})
    for _ in $(seq 100); do ip netns exec "${NSOF[$m]}" ss -ltn 'sport = :443' | grep -q LISTEN && return 0; sleep 0.1; done
    echo "member $m did not start"; tail -5 "$WORK/server-$m.log" "$WORK/auth-$m.log"; return 1
}
start_member a
start_member b
check "both auths loaded the Site key" sh -c "grep -q '\"msg\":\"auth.tickets.keys\".*\"scope\":\"the Site\"' $WORK/auth-a.log && grep -q '\"msg\":\"auth.tickets.keys\".*\"scope\":\"the Site\"' $WORK/auth-b.log"
ip netns exec "$NS_LB" "$ROOT/deploy/balancer/nftables-balancer.sh" --vip 198.18.0.1 --backend 198.18.2.2 --backend 198.18.3.2 --interval 0.5 --fails 2 \
    > "$WORK/balancer.log" 2>&1 &
LB_PID=$!; PIDS+=($LB_PID)
for _ in $(seq 50); do ip netns exec "$NS_LB" nft list table ip mstunnel_lb >/dev/null 2>&1 && break; sleep 0.1; done
check "the balancer's table is in place" ip netns exec "$NS_LB" nft list table ip mstunnel_lb

accepted() { cat "$WORK"/auth-*.log | grep -c '"msg":"auth.accepted"' || true; }
tun_address() { ip -n "$NS_C" -4 -o addr show dev tun0 2>/dev/null | awk '{print $4}' | cut -d/ -f1; }
tun_address6() { ip -n "$NS_C" -6 -o addr show dev tun0 scope global 2>/dev/null | awk '{print $4}' | cut -d/ -f1; }
# The gateway's own IPv6 address on its TUN: the same on every server of the Site.
GW6=fd00:198:18:64::6440:1
who_has() { grep -l "\"msg\":\"$1\".*\"session.id\":\"$2\"" "$WORK"/server-a.log "$WORK"/server-b.log 2>/dev/null | sed 's/.*server-\(.\)\.log/\1/' | head -1; }

echo "== alice connects through the balancer"
mint --oid 0b1f7a3e-0000-4000-8000-0000000000a1 --upn alice@corp.test > "$WORK/alice.jwt"
oc alice --token-mode=oidc --token-secret=@"$WORK/alice.jwt" --reconnect-timeout 60
if wait_tunnel alice; then pass "alice: tunnel up through the balancer"; else fail "alice: tunnel up through the balancer"; cat "$WORK"/server-*.log | tail -20; fi
ADDRESS=$(tun_address)
ADDRESS6=$(tun_address6)
SESSION=$(cat "$WORK"/server-*.log | grep '"msg":"session.created"' | sed 's/.*"session.id":"\([0-9a-f]*\)".*/\1/' | tail -1)
FIRST=$(who_has session.created "$SESSION")
OTHER=$([ "$FIRST" = a ] && echo b || echo a)
check "alice: traffic flows ($ADDRESS on server $FIRST)" ip netns exec "$NS_C" ping -c 1 -W 2 198.18.1.2
check "alice: IPv6 too ($ADDRESS6), through the tunnel to the gateway" sh -c "[ -n '$ADDRESS6' ] && ip netns exec $NS_C ping -6 -c 1 -W 2 $GW6"
check "her cookie is a sealed ticket" grep -q "\"msg\":\"session.created\".*\"cookie\":\"ticket\".*\"session.id\":\"$SESSION\"" "$WORK/server-$FIRST.log"
LOGINS=$(accepted)

echo "== server $FIRST dies (gateway and auth killed)"
T0=$(date +%s.%N)
kill -KILL "${SPID[$FIRST]}" "${APID[$FIRST]}"
for _ in $(seq 300); do grep -q "\"msg\":\"session.reconnected\".*\"session.id\":\"$SESSION\"" "$WORK/server-$OTHER.log" && break; sleep 0.1; done
T1=$(date +%s.%N)
check "the balancer's probe left server $FIRST out" grep -q "\"msg\":\"backend.down\".*\"backend\":\"${ADDROF[$FIRST]}\"" "$WORK/balancer.log"
check "server $OTHER opened her ticket (mstunnel-auth, Site key)" grep -q '"msg":"auth.ticket.opened".*"key":"site-1"' "$WORK/auth-$OTHER.log"
check "server $OTHER resumed her session (same id)" grep -q "\"msg\":\"session.resumed\".*\"session.id\":\"$SESSION\"" "$WORK/server-$OTHER.log"
check "her client reconnected to server $OTHER with her cookie" grep -q "\"msg\":\"session.reconnected\".*\"session.id\":\"$SESSION\"" "$WORK/server-$OTHER.log"
echo "  (back $(python3 -c "print(round($T1 - $T0, 1))") s after the kill; the probe needs 2 misses at 0.5 s)"
for _ in $(seq 100); do [ "$(tun_address)" = "$ADDRESS" ] && ip netns exec "$NS_C" ping -c 1 -W 1 198.18.1.2 >/dev/null 2>&1 && break; sleep 0.2; done
check "she keeps her address ($(tun_address))" test "$(tun_address)" = "$ADDRESS"
check "traffic flows again, through server $OTHER" ip netns exec "$NS_C" ping -c 1 -W 2 198.18.1.2
check "she keeps her IPv6 address ($(tun_address6)) and it works on server $OTHER" sh -c "[ '$(tun_address6)' = '$ADDRESS6' ] && ip netns exec $NS_C ping -6 -c 1 -W 2 $GW6"
check "no new login (her token was validated once, on server $FIRST)" test "$(accepted)" = "$LOGINS"
check "her client is still running" kill -0 "$OC_PID"
for _ in $(seq 100); do grep -q "\"msg\":\"dtls.established\".*\"session.id\":\"$SESSION\"" "$WORK/server-$OTHER.log" && break; sleep 0.1; done
check "  … and is on DTLS again, through the balancer's UDP rule" grep -q "\"msg\":\"dtls.established\".*\"session.id\":\"$SESSION\"" "$WORK/server-$OTHER.log"
check "the balancer cleared server $FIRST's flows (conntrack)" grep -q "\"msg\":\"backend.flows_cleared\".*\"backend\":\"${ADDROF[$FIRST]}\"" "$WORK/balancer.log"

echo "== server $FIRST returns; a ticket opens on whichever server it is shown to"
start_member "$FIRST"
for _ in $(seq 50); do grep -q "\"msg\":\"backend.up\".*\"backend\":\"${ADDROF[$FIRST]}\"" "$WORK/balancer.log" && break; sleep 0.1; done
check "the balancer took server $FIRST back" grep -q "\"msg\":\"backend.up\".*\"backend\":\"${ADDROF[$FIRST]}\"" "$WORK/balancer.log"

echo "== server $OTHER is drained: alice is handed over to server $FIRST"
LOGINS=$(accepted)
"$BIN/mst-cli" server drain --run-dir "$WORK/run-$OTHER" --hand-over-after 2 > "$WORK/drain.out" 2>&1
check "mst-cli server drain: draining, hand-over in 2 s" grep -q 'draining since .*handed over in' "$WORK/drain.out"
check "its liveness page answers 503 while it drains" sh -c "ip netns exec $NS_LB curl -sk -o /dev/null -w '%{http_code}' https://${ADDROF[$OTHER]}/ | grep -q 503"
# Up to two of the stock client's 10 s reconnect intervals: its first try may still reach the
# draining server (503) before the balancer's probe has left it out.
for _ in $(seq 300); do grep -q "\"msg\":\"session.reconnected\".*\"session.id\":\"$SESSION\"" "$WORK/server-$FIRST.log" && break; sleep 0.1; done
check "the balancer left server $OTHER out (503)" grep -q "\"msg\":\"backend.down\".*\"backend\":\"${ADDROF[$OTHER]}\".*\"status\":\"503\"" "$WORK/balancer.log"
# Its TCP flows stay (the server closes its tunnels itself, and the clients must see that;
# deleting them made the close vanish and the client wait for its DPD, 90 s: seen here).
check "  … moving only its UDP flows" grep -q "\"msg\":\"backend.flows_cleared\",\"backend\":\"${ADDROF[$OTHER]}\",\"flows\":\"udp\"" "$WORK/balancer.log"
check "server $OTHER handed its session over (no DISCONNECT, ticket not revoked)" grep -q '"msg":"gateway.handed_over","sessions":"1"' "$WORK/server-$OTHER.log"
# Server $FIRST made her session and kept it in its store across its restart: it takes her
# back as its own (a sibling that never had her would open her ticket, as above).
check "server $FIRST took her session back (same id)" grep -q "\"msg\":\"session.reconnected\".*\"session.id\":\"$SESSION\"" "$WORK/server-$FIRST.log"
for _ in $(seq 100); do [ "$(tun_address)" = "$ADDRESS" ] && ip netns exec "$NS_C" ping -c 1 -W 1 198.18.1.2 >/dev/null 2>&1 && break; sleep 0.2; done
check "she keeps her address ($(tun_address)) and traffic flows through server $FIRST" sh -c "[ '$(tun_address)' = '$ADDRESS' ] && ip netns exec $NS_C ping -c 1 -W 2 198.18.1.2"
check "  … and her IPv6 address ($(tun_address6))" sh -c "[ '$(tun_address6)' = '$ADDRESS6' ] && ip netns exec $NS_C ping -6 -c 1 -W 2 $GW6"
check "no new login for the hand-over" test "$(accepted)" = "$LOGINS"
check "her client is still running" kill -0 "$OC_PID"
connect_at() {  # connect_at SERVER COOKIE OUT
    { printf 'CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: 198.18.0.1\r\nCookie: webvpn=%s\r\n\r\n' "$2"; sleep 1; } |
        timeout 5 ip netns exec "$NS_LB" openssl s_client -quiet -connect "${ADDROF[$1]}:443" > "$3" 2>/dev/null || true
}
"$BIN/mst-cli" server show status --run-dir "$WORK/run-$OTHER" > "$WORK/drain-status.out" 2>&1 || true
check "mst-cli server show status says DRAINING" grep -q 'DRAINING: .*1 sessions handed over' "$WORK/drain-status.out"
"$BIN/mst-cli" server undrain --run-dir "$WORK/run-$OTHER" > "$WORK/undrain.out" 2>&1
check "mst-cli server undrain: not draining" grep -q 'not draining' "$WORK/undrain.out"
for _ in $(seq 50); do grep -q "\"msg\":\"backend.up\".*\"backend\":\"${ADDROF[$OTHER]}\"" "$WORK/balancer.log" && break; sleep 0.1; done
check "  … and the balancer takes it back" grep -q "\"msg\":\"backend.up\".*\"backend\":\"${ADDROF[$OTHER]}\"" "$WORK/balancer.log"
ALICE_AT=$FIRST
mint --oid 0b1f7a3e-0000-4000-8000-0000000000b2 --upn bob@corp.test > "$WORK/bob.jwt"
timeout 20 ip netns exec "$NS_C" openconnect --protocol=anyconnect --servercert "$PIN" --non-inter --token-mode=oidc \
    --token-secret=@"$WORK/bob.jwt" --authenticate https://198.18.0.1/ > "$WORK/bob-auth.out" 2>/dev/null || true
BOB=$(sed -n "s/^COOKIE='\(.*\)'$/\1/p" "$WORK/bob-auth.out"); BOB=${BOB##*webvpn=}
check "bob logged in and got a ticket" sh -c "echo '$BOB' | grep -q '^mst\.1\.site-1\.'"
BOB_SESSION=$(cat "$WORK"/server-*.log | grep '"msg":"session.created".*bob@corp.test' | sed 's/.*"session.id":"\([0-9a-f]*\)".*/\1/' | tail -1)
MADE=$(who_has session.created "$BOB_SESSION")
ELSEWHERE=$([ "$MADE" = a ] && echo b || echo a)
connect_at "$ELSEWHERE" "$BOB" "$WORK/bob-elsewhere.out"
check "bob's ticket, made on server $MADE, opens a tunnel on server $ELSEWHERE" grep -q '200 CONNECTED' "$WORK/bob-elsewhere.out"
check "  … with the address it was given on server $MADE" sh -c "grep -q \"\\\"msg\\\":\\\"session.resumed\\\".*\\\"session.id\\\":\\\"$BOB_SESSION\\\"\" $WORK/server-$ELSEWHERE.log"

echo "== forged and logged-off tickets do not open"
FORGED="${BOB%?????}AAAAA"
connect_at "$ELSEWHERE" "$FORGED" "$WORK/forged.out"
check "a forged ticket gets 401" grep -q '401' "$WORK/forged.out"
check "  … logged by auth as forged or damaged" grep -q '"msg":"auth.ticket.refused".*forged or damaged' "$WORK/auth-$ELSEWHERE.log"
# Bob logs off from the session he resumed on server $ELSEWHERE (a CSTP DISCONNECT with the
# logoff reason, as the stock client sends): his ticket no longer opens there.
{ printf 'CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: 198.18.0.1\r\nCookie: webvpn=%s\r\n\r\n' "$BOB"; sleep 0.5
  printf 'STF\001\000\007\005\000\260logoff'; sleep 0.5; } |
    timeout 5 ip netns exec "$NS_LB" openssl s_client -quiet -connect "${ADDROF[$ELSEWHERE]}:443" > "$WORK/bob-logoff.out" 2>/dev/null || true
for _ in $(seq 30); do grep -q '"msg":"session.ended".*"reason":"logoff".*bob@corp.test' "$WORK/server-$ELSEWHERE.log" && break; sleep 0.1; done
check "bob logged off on server $ELSEWHERE" grep -q '"msg":"session.ended".*"reason":"logoff".*bob@corp.test' "$WORK/server-$ELSEWHERE.log"
connect_at "$ELSEWHERE" "$BOB" "$WORK/bob-after-logoff.out"
check "  … and his ticket gets 401 there afterwards" grep -q '401' "$WORK/bob-after-logoff.out"
check "  … refused by auth as revoked" grep -q '"msg":"auth.ticket.refused".*"reason":"revoked"' "$WORK/auth-$ELSEWHERE.log"
stop_oc
for _ in $(seq 50); do grep -q "\"msg\":\"session.ended\".*\"reason\":\"logoff\".*\"session.id\":\"$SESSION\"" "$WORK/server-$ALICE_AT.log" && break; sleep 0.1; done
check "alice logged off on server $ALICE_AT" grep -q "\"msg\":\"session.ended\".*\"reason\":\"logoff\".*\"session.id\":\"$SESSION\"" "$WORK/server-$ALICE_AT.log"

check "no ticket, cookie or token in any log" sh -c "! grep -qF '$BOB' $WORK/server-*.log $WORK/auth-*.log $WORK/balancer.log && ! grep -qF \"\$(cut -d. -f3 $WORK/alice.jwt)\" $WORK/server-*.log $WORK/auth-*.log"
check "gateways still running" sh -c "kill -0 ${SPID[a]} && kill -0 ${SPID[b]}"
summary
