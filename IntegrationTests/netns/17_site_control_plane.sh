#!/usr/bin/env bash
# A Site of two servers run by the control plane (docs/site.md, steps 1–2): each server's
# agent enrolls with its own join token and hands the Site's ticket keys from its check-ins to
# its mstunnel-auth — no key file is copied between hosts. A ticket made on one server opens
# on the other; a logoff on one revokes the ticket on the other within a couple of check-ins
# (auth → agent → control plane → the other agent → its auth and its gateway).
#
#   [cli]  cli0 198.18.0.2 ── gwa0 198.18.0.1 [gwa] gwa1 198.18.4.1 ── corpa 198.18.4.2 ┐
#          cli1 198.18.6.2 ── gwb0 198.18.6.1 [gwb] gwb1 198.18.5.1 ── corpb 198.18.5.2 ┴ [corp] 198.18.1.2: mstunnel-control
source "$(dirname "$0")/../lib.sh"

NS_GA=mstgwa$$ NS_GB=mstgwb$$
EXTRA_NS+=("$NS_GA" "$NS_GB")
for ns in "$NS_C" "$NS_GA" "$NS_GB" "$NS_I"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
veth_link "$NS_C" cli0 198.18.0.2/24 "$NS_GA" gwa0 198.18.0.1/24
veth_link "$NS_C" cli1 198.18.6.2/24 "$NS_GB" gwb0 198.18.6.1/24
veth_link "$NS_GA" gwa1 198.18.4.1/24 "$NS_I" corpa 198.18.4.2/24
veth_link "$NS_GB" gwb1 198.18.5.1/24 "$NS_I" corpb 198.18.5.2/24
ip -n "$NS_I" addr add 198.18.1.2/32 dev lo
ip -n "$NS_GA" route add 198.18.1.0/24 via 198.18.4.2
ip -n "$NS_GB" route add 198.18.1.0/24 via 198.18.5.2
for ns in "$NS_GA" "$NS_GB"; do ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1; done

make_pki
make_issuer

echo "== the control plane, a Site, a join token per server"
start_control
# session-timeout 20 s: a ticket's deadline (sealed at login) passes within the test.
create_site '[{"name":"session-timeout","value":"20"}]'

declare -A NSOF=([a]=$NS_GA [b]=$NS_GB) ADDROF=([a]=198.18.0.1 [b]=198.18.6.1)
start_member() { start_site_member "$1" "${NSOF[$1]}"; }
start_member a
start_member b
same_site_key() { [ -n "$(site_key a)" ] && [ "$(site_key a)" = "$(site_key b)" ]; }
wait_for "both auths seal with the same Site key, handed over by their agents" 100 same_site_key
K=$(site_key a)
check "  … the control plane's ($K), not a file" sh -c "echo '$K' | grep -q '^s-'"

slice_of() { grep '"msg":"pool.slice"' "$WORK/server-$1.log" | tail -1 | json 'd["slice"]'; }
distinct_slices() { [ -n "$(slice_of a)" ] && [ -n "$(slice_of b)" ] && [ "$(slice_of a)" != "$(slice_of b)" ]; }
wait_for "each server got its own slice of the Site's pool from the control plane" 100 distinct_slices
echo "  (server a: $(slice_of a), server b: $(slice_of b))"

echo "== a ticket made on server a opens on server b"
mint --oid 0b1f7a3e-0000-4000-8000-0000000000b2 --upn bob@corp.test > "$WORK/bob.jwt"
timeout 20 ip netns exec "$NS_C" openconnect --protocol=anyconnect --servercert "$PIN" --non-inter --token-mode=oidc \
    --token-secret=@"$WORK/bob.jwt" --authenticate https://198.18.0.1/ > "$WORK/bob-auth.out" 2>/dev/null || true
BOB=$(sed -n "s/^COOKIE='\(.*\)'$/\1/p" "$WORK/bob-auth.out"); BOB=${BOB##*webvpn=}
check "bob logged in on server a: a ticket under the Site key" sh -c "echo '$BOB' | grep -q '^mst\.1\.$K\.'"
BOB_ID=$(grep '"msg":"session.created".*bob@corp.test' "$WORK/server-a.log" | json 'd["session.id"]')
connect_at() {  # connect_at SERVER OUT [logoff]
    { printf 'CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: 198.18.0.1\r\nCookie: webvpn=%s\r\n\r\n' "$BOB"; sleep 0.5
      [ "${3:-}" = logoff ] && printf 'STF\001\000\007\005\000\260logoff'; sleep 0.5; } |
        timeout 5 ip netns exec "$NS_C" openssl s_client -quiet -connect "${ADDROF[$1]}:443" > "$2" 2>/dev/null || true
}
connect_at b "$WORK/b-open.out"
check "his ticket opens a tunnel on server b" grep -q '200 CONNECTED' "$WORK/b-open.out"
check "  … server b resumed his session ($BOB_ID)" grep -q "\"msg\":\"session.resumed\".*\"session.id\":\"$BOB_ID\"" "$WORK/server-b.log"
BOB_ADDR=$(grep '"msg":"session.created".*bob@corp.test' "$WORK/server-a.log" | json 'd["client.address"]')
in_slice() {  # in_slice ADDRESS I/N : the address lies in slice I of N of 100.64.0.0/24
    python3 -c "
i, n = map(int, '$2'.split('/')); a = int('$1'.split('.')[-1]); each = 253 // n
lo = 2 + i * each; hi = 255 if i == n - 1 else lo + each
raise SystemExit(0 if lo <= a < hi else 1)"
}
check "his address ($BOB_ADDR) is in server a's slice, and server b kept it for him (outside its own)" sh -c "$(declare -f in_slice); in_slice $BOB_ADDR $(slice_of a) && ! in_slice $BOB_ADDR $(slice_of b)"
reserved_at_a() { python3 -c "
import json, sys
s = json.load(open('$WORK/state-a/admin-settings.json'))
v = [kv['value'] for kv in s.get('advancedSettings', []) if kv['name'] == 'pool-reserved']
sys.exit(0 if v and '$BOB_ADDR' in v[0].split(',') else 1)"; }
wait_for "server b reported it holds his address (a foreign lease); server a's agent now keeps it from new logins there" 100 reserved_at_a
# Server a still holds its own copy of his session (made at login, never connected there):
# the address is held here too, which is no conflict (no tunnel here), so nothing is warned.
check "  … server a's gateway took the reservation (pool.reserved), no conflict logged" sh -c \
    "grep -q '\"msg\":\"pool.reserved\".*\"addresses\":\"1\"' '$WORK/server-a.log' && ! grep -q pool.reserved_conflict '$WORK/server-a.log'"

echo "== a ticket whose deadline passed since the login opens too (re-checked, not refused)"
mint --oid 0b1f7a3e-0000-4000-8000-0000000000c3 --upn carol@corp.test > "$WORK/carol.jwt"
timeout 20 ip netns exec "$NS_C" openconnect --protocol=anyconnect --servercert "$PIN" --non-inter --token-mode=oidc \
    --token-secret=@"$WORK/carol.jwt" --authenticate https://198.18.0.1/ > "$WORK/carol-auth.out" 2>/dev/null || true
CAROL=$(sed -n "s/^COOKIE='\(.*\)'$/\1/p" "$WORK/carol-auth.out"); CAROL=${CAROL##*webvpn=}
check "carol logged in on server a" sh -c "echo '$CAROL' | grep -q '^mst\.1\.'"
sleep 21
{ printf 'CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: 198.18.0.1\r\nCookie: webvpn=%s\r\n\r\n' "$CAROL"; sleep 1; } |
    timeout 5 ip netns exec "$NS_C" openssl s_client -quiet -connect 198.18.6.1:443 > "$WORK/carol-b.out" 2>/dev/null || true
check "21 s later (session-timeout 20 s) her ticket opens a tunnel on server b" grep -q '200 CONNECTED' "$WORK/carol-b.out"
check "  … and her ticket was not revoked for it" sh -c "! grep -q '\"reason\":\"session-timeout\".*carol@corp.test' $WORK/server-b.log"

echo "== he logs off on server b; server a learns it through the control plane"
connect_at b "$WORK/b-logoff.out" logoff
for _ in $(seq 30); do grep -q '"msg":"session.ended".*"reason":"logoff".*bob@corp.test' "$WORK/server-b.log" && break; sleep 0.1; done
check "bob logged off on server b" grep -q '"msg":"session.ended".*"reason":"logoff".*bob@corp.test' "$WORK/server-b.log"
wait_for "server b's agent reported the revocation, server a's took it" 100 grep -q '"msg":"agent.tickets_revoked".*"new_here":"1"' "$WORK/agent-a.log"
check "server a ended its own copy of his session (made at login, never connected)" grep -q "\"msg\":\"session.ended\".*\"reason\":\"revoked on another server of the Site (logoff there)\".*\"session.id\":\"$BOB_ID\"" "$WORK/server-a.log"
connect_at a "$WORK/a-after.out"
check "his ticket now gets 401 on server a, where he never logged off" grep -q '401' "$WORK/a-after.out"
check "  … refused by server a's auth as revoked" grep -q '"msg":"auth.ticket.refused".*"reason":"revoked"' "$WORK/auth-a.log"
echo "== an administrator drains server b through the control plane"
SERVER_B=$(json 'd["serverId"]' < "$WORK/state-b/agent-info.json")
if out=$(api POST "/microsoftTunnelSites/$SITE/microsoftTunnelServers/$SERVER_B/drain" '{"handOverAfterSeconds":0}'); then pass "drain requested"; else fail "drain requested: $out"; fi
wait_for "server b's agent drained its gateway at the next check-in" 100 grep -q '"msg":"gateway.draining"' "$WORK/server-b.log"
check "  … logged by the agent" grep -q '"msg":"agent.drain.started"' "$WORK/agent-b.log"
check "server b's liveness page answers 503" sh -c "ip netns exec $NS_C curl -sk -o /dev/null -w '%{http_code}' https://198.18.6.1/ | grep -q 503"
drain_shown() { api GET "/microsoftTunnelSites/$SITE/microsoftTunnelServers/$SERVER_B" | grep -Eq '"drainRequested" *: *true'; }
check "the admin API shows the drain" drain_shown
check "server a is not drained" sh -c "ip netns exec $NS_C curl -sk -o /dev/null -w '%{http_code}' https://198.18.0.1/ | grep -q 200"
if out=$(api POST "/microsoftTunnelSites/$SITE/microsoftTunnelServers/$SERVER_B/undrain" ""); then pass "undrain requested"; else fail "undrain requested: $out"; fi
wait_for "server b takes clients again" 100 grep -q '"msg":"gateway.drain_ended"' "$WORK/server-b.log"
check "  … its liveness page answers 200" sh -c "ip netns exec $NS_C curl -sk -o /dev/null -w '%{http_code}' https://198.18.6.1/ | grep -q 200"

check "no ticket key or cookie in any log" sh -c "! grep -qF '$BOB' $WORK/*.log && ! python3 -c \"import json; print('\\\\n'.join(k['key'] for k in json.load(open('$WORK/run-a/mstunnel-auth/site-keys.json'))['keys']))\" | grep -F -f - $WORK/*.log"
summary
