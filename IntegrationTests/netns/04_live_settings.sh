#!/usr/bin/env bash
# Live configuration: a new Server configuration pushed to the running gateway over
# the wire module (what the agent does) changes routes and even the pool without
# dropping the connected openconnect session; new sessions get the new settings; a
# bad configuration is refused with the field named and changes nothing; the session
# events the agent forwards are there.
source "$(dirname "$0")/../lib.sh"
WIRE="python3 $ROOT/IntegrationTests/wire.py $RUN/server.sock"

setup_namespaces
make_pki
make_issuer
make_script_wrapper
start_corp
cat > "$STATE/admin-settings.json" <<JSON
{ "network": "100.64.0.0/24", "routeIncludes": ["198.18.1.0/25"],
  "advancedSettings": [ { "name": "dpd", "value": "5" }, { "name": "keepalive", "value": "5" } ] }
JSON
start_stack
printf %s "$(mint --oid 0b1f7a3e-0000-4000-8000-000000000041 --upn dana@corp.test)" > "$WORK/token.jwt"
printf %s "$(mint --oid 0b1f7a3e-0000-4000-8000-000000000042 --upn erik@corp.test)" > "$WORK/token2.jwt"

echo "== a session on the first configuration"
oc first --token-mode=oidc --token-secret=@"$WORK/token.jwt"
FIRST_OC=$OC_PID
if wait_tunnel first; then pass "tunnel up"; else fail "tunnel up"; fi
addr1=$(ip -n "$NS_C" -4 -o addr show dev tun0 | awk '{print $4}' | cut -d/ -f1)
check "address from the first pool" sh -c "echo $addr1 | grep -q '^100\.64\.0\.'"
check "route 198.18.1.0/25 pushed" grep -q 'CISCO_SPLIT_INC_0_ADDR=198.18.1.0' "$WORK/env-first.connect"
check "ping corp" ip netns exec "$NS_C" ping -c 2 -i 0.2 -W 2 198.18.1.2

echo "== a bad configuration is refused and changes nothing"
printf '%s' '{ "network": "100.64.0.0/24", "routeIncludes": ["198.18.1.0/33"] }' > "$WORK/bad.json"
if out=$($WIRE applySettings "$WORK/bad.json" 7); then fail "bad settings refused"; else
    if echo "$out" | grep -q '"applied": false' && echo "$out" | grep -q '198.18.1.0/33'; then pass "bad settings refused, value named"; else fail "bad settings refused: $out"; fi
fi
printf '%s' '{ "network": "100.64.0.0/24", "dnsServer": ["1.2.3.4"] }' > "$WORK/typo.json"
if out=$($WIRE applySettings "$WORK/typo.json"); then fail "unknown key refused"; else
    check "unknown key named" sh -c "echo '$out' | grep -q dnsServer"
fi

echo "== a new configuration: other pool, other route; the session stays"
cat > "$WORK/new.json" <<JSON
{ "network": "100.65.0.0/24", "routeIncludes": ["198.18.1.0/24"], "listenPort": 8443,
  "advancedSettings": [ { "name": "dpd", "value": "5" }, { "name": "keepalive", "value": "5" },
                        { "name": "banner", "value": "second configuration" } ] }
JSON
if out=$($WIRE applySettings "$WORK/new.json" 8); then pass "new settings applied"; else fail "new settings applied: $out"; fi
check "listenPort reported as needing a restart" sh -c "echo '$out' | grep -q '\"restartRequired\": \[\"listenPort\"\]'"
check "sessions kept = 1" sh -c "echo '$out' | grep -q '\"sessionsKept\": 1'"
check "gateway logged settings.applied" grep -q '"msg":"settings.applied".*"version":"8"' "$WORK/server.log"
check "old session's openconnect still running" kill -0 "$FIRST_OC"
check "old session still pings corp" ip netns exec "$NS_C" ping -c 3 -i 0.2 -W 2 198.18.1.2
check "old session kept its address" sh -c "ip -n $NS_C -4 -o addr show dev tun0 | grep -q 'inet $addr1/'"
check "NAT covers both prefixes" sh -c "ip netns exec $NS_G nft list table inet mstunnel | grep -q 100.64.0.0/24 && ip netns exec $NS_G nft list table inet mstunnel | grep -q 100.65.0.0/24"
check "still listening on 443 (port change waits for a restart)" sh -c "ip netns exec $NS_G ss -ltn 'sport = :443' | grep -q LISTEN"

echo "== a second client gets the new configuration"
add_second_client
oc2 second --token-mode=oidc --token-secret=@"$WORK/token2.jwt"
SECOND_OC=$OC2_PID
wait_tunnel2 second || true
check "second session got an address from the new pool" sh -c "ip -n $NS_C2 -4 -o addr show dev tun1 | grep -q 'inet 100\.65\.0\.'"
check "second session got the new route" grep -q 'CISCO_SPLIT_INC_0_ADDR=198.18.1.0' "$WORK/env-second.connect"
check "second session got the new route's /24 mask" grep -q 'CISCO_SPLIT_INC_0_MASKLEN=24' "$WORK/env-second.connect"
check "second session saw the new banner" grep -q 'second configuration' "$WORK/oc-second.log"
check "second session pings corp" ip netns exec "$NS_C2" ping -c 2 -i 0.2 -W 2 198.18.1.2
check "first session still pings corp" ip netns exec "$NS_C" ping -c 2 -i 0.2 -W 2 198.18.1.2

echo "== the old prefix is released with its last lease"
stop_oc
for _ in $(seq 50); do grep -q '"msg":"pool.retired_prefix_released"' "$WORK/server.log" && break; sleep 0.1; done
check "retired prefix released when its session ended" grep -q '"msg":"pool.retired_prefix_released".*100.64.0.0/24' "$WORK/server.log"
check "NAT no longer lists the old prefix" sh -c "! ip netns exec $NS_G nft list table inet mstunnel | grep -q 100.64.0.0/24"
check "TUN no longer has the old gateway address" sh -c "! ip -n $NS_G -4 addr show dev mstun0 | grep -q '100.64.0.1/24'"
check "second session unaffected" ip netns exec "$NS_C2" ping -c 2 -i 0.2 -W 2 198.18.1.2

echo "== session events for the agent"
if ev=$($WIRE sessionEvents 0); then pass "sessionEvents answered"; else fail "sessionEvents answered"; fi
check "connect events for both users" sh -c "echo '$ev' | python3 -c 'import json,sys; e=json.load(sys.stdin)[\"events\"]; u={x.get(\"userName\") for x in e if x[\"type\"]==\"sessionConnected\"}; sys.exit(0 if {\"dana@corp.test\",\"erik@corp.test\"} <= u else 1)'"
check "disconnect event for the first user, with byte counts" sh -c "echo '$ev' | python3 -c 'import json,sys; e=json.load(sys.stdin)[\"events\"]; d=[x for x in e if x[\"type\"]==\"sessionDisconnected\" and x.get(\"userName\")==\"dana@corp.test\"]; sys.exit(0 if d and d[0].get(\"rxBytes\",0)>0 else 1)'"
check "no token or cookie in the events" sh -c "! echo '$ev' | grep -q 'eyJ'"

echo "== SIGHUP re-reads admin-settings.json the same way"
cp "$WORK/new.json" "$STATE/admin-settings.json"
sed -i 's/198.18.1.0\/24/198.18.1.0\/26/' "$STATE/admin-settings.json"
kill -HUP "$SERVER_PID"
for _ in $(seq 50); do grep -q '"msg":"gateway.reloaded"' "$WORK/server.log" && break; sleep 0.1; done
check "reloaded on SIGHUP" grep -q '"msg":"gateway.reloaded"' "$WORK/server.log"
check "second session survives the reload" ip netns exec "$NS_C2" ping -c 2 -i 0.2 -W 2 198.18.1.2
check "no token in any log" sh -c "! grep -h 'eyJ' '$WORK/server.log' '$WORK/auth.log'"
summary
