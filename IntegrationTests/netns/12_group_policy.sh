#!/usr/bin/env bash
# Group policy through the stock client: users in a group, an app role or none get their
# own split routes and DNS; a denied group gets no tunnel (403 at login, named in the log
# and in `mst-cli server show status`); `mst-cli server show user` shows what matched; a
# live change that denies a connected user's group ends that session; the 500-rule limit
# counts every policy's rules.
source "$(dirname "$0")/../lib.sh"

setup_namespaces
make_pki
make_issuer
make_script_wrapper
start_corp

G_ENG=0e1a0000-0000-4000-8000-00000000e001
G_CON=0e1a0000-0000-4000-8000-00000000c002
write_policies() {  # write_policies DENY_ENGINEERING(true|false)
    python3 - "$STATE/admin-settings.json" "$G_ENG" "$G_CON" "$1" <<'PY'
import json, sys
path, eng, con, deny_eng = sys.argv[1:]
s = json.load(open(path))
s["groupPolicies"] = [
    {"displayName": "Contractors", "groups": [con], "deny": True},
    {"displayName": "Engineering", "groups": [eng.upper()], "routeIncludes": ["198.18.1.2/32"],
     "dnsServers": ["198.18.1.53"], "splitDNS": ["eng.corp.test"]} if deny_eng == "false" else
    {"displayName": "Engineering", "groups": [eng], "deny": True},
    {"displayName": "Tunnel admins", "roles": ["Tunnel.Admin"], "routeIncludes": [], "routeExcludes": []},
]
json.dump(s, open(path, "w"), indent=1)
PY
}

echo "== the 500-rule limit counts every group policy's rules"
write_settings
python3 - "$STATE/admin-settings.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
s["groupPolicies"] = [{"displayName": "Big", "groups": ["g"],
                       "routeIncludes": ["10.%d.%d.0/24" % (i // 256, i % 256) for i in range(499)]}]
json.dump(s, open(sys.argv[1], "w"))
PY
if "$BIN/mstunnel-server" --state-dir "$STATE" --check-config > "$WORK/check.out" 2>&1; then fail "501 rules with a policy refused"; else pass "501 rules with a policy refused"; fi
check "  … the message splits server-wide and policy rules" grep -q '501 rules (2 server-wide, 499 in groupPolicies), at most 500 allowed' "$WORK/check.out"
echo '{"network":"100.64.0.0/24","groupPolicies":[{"displayName":"A","group":["g"]}]}' > "$STATE/admin-settings.json"
if "$BIN/mstunnel-server" --state-dir "$STATE" --check-config > "$WORK/check2.out" 2>&1; then fail "misspelt policy key refused"; else pass "misspelt policy key refused"; fi
check "  … named with its index" grep -q 'groupPolicies\[0\]: unknown key(s) group' "$WORK/check2.out"

write_settings
write_policies false
start_stack
mint --oid 0b1f7a3e-0000-4000-8000-0000000000a1 --upn alice@corp.test --claim-json "groups=[\"$G_ENG\",\"0e1a0000-0000-4000-8000-000000000099\"]" > "$WORK/alice.jwt"
mint --oid 0b1f7a3e-0000-4000-8000-0000000000c3 --upn carol@corp.test --claim-json "groups=[\"$G_CON\",\"$G_ENG\"]" > "$WORK/carol.jwt"
mint --oid 0b1f7a3e-0000-4000-8000-0000000000d4 --upn dave@corp.test --claim-json 'roles=["Tunnel.Admin"]' > "$WORK/dave.jwt"
mint --oid 0b1f7a3e-0000-4000-8000-0000000000e5 --upn erin@corp.test > "$WORK/erin.jwt"

echo "== Engineering (by group id, any case): its own routes and DNS"
oc alice --token-mode=oidc --token-secret=@"$WORK/alice.jwt"
if wait_tunnel alice; then pass "alice: tunnel up"; else fail "alice: tunnel up"; fi
env=$WORK/env-alice.connect
check "alice: the policy's one split include" grep -q '^CISCO_SPLIT_INC_0_ADDR=198\.18\.1\.2$' "$env"
check "alice: … as a /32" grep -q '^CISCO_SPLIT_INC_0_MASKLEN=32$' "$env"
check "alice: … and no other" sh -c "! grep -q '^CISCO_SPLIT_INC_1_ADDR' $env"
check "alice: the server-wide exclude kept (the policy sets none)" grep -q '^CISCO_SPLIT_EXC_0_ADDR=198\.18\.1\.128$' "$env"
check "alice: the policy's DNS server" grep -q '^INTERNAL_IP4_DNS=198\.18\.1\.53$' "$env"
check "alice: the policy's split DNS" grep -q '^CISCO_SPLIT_DNS=eng\.corp\.test$' "$env"
check "alice: the server-wide domain kept" grep -q '^CISCO_DEF_DOMAIN=corp\.test$' "$env"
check "alice: reaches the host her policy routes" ip netns exec "$NS_C" ping -c 1 -W 2 198.18.1.2
"$BIN/mst-cli" server show user alice@corp.test --run-dir "$RUN" > "$WORK/alice-user.out"
check "mst-cli show user: the policy that matched" grep -q "group policy: *'Engineering'" "$WORK/alice-user.out"
check "mst-cli show user: her groups" grep -q "groups: *$G_ENG, 0e1a0000-0000-4000-8000-000000000099" "$WORK/alice-user.out"
check "mst-cli show user: the routes given" grep -q 'routes included: *198.18.1.2/32$' "$WORK/alice-user.out"
check "mst-cli show user: the DNS given" grep -q 'DNS servers: *198.18.1.53$' "$WORK/alice-user.out"
"$BIN/mst-cli" server show user alice@corp.test --run-dir "$RUN" --json > "$WORK/alice-user.json"
check "mst-cli show user --json: the policy" python3 -c "import json; s=json.load(open('$WORK/alice-user.json')); assert s[0]['policy']['policyName']=='Engineering' and s[0]['policy']['routeIncludes']==['198.18.1.2/32']"

echo "== Contractors: denied, even though carol is in Engineering too (first match wins)"
if timeout 20 ip netns exec "$NS_C" openconnect --protocol=anyconnect --servercert "$PIN" --non-inter \
    --token-mode=oidc --token-secret=@"$WORK/carol.jwt" --authenticate https://198.18.0.1/ > "$WORK/oc-carol.log" 2>&1; then
    fail "carol: login refused"
else pass "carol: login refused"; fi
check "carol: the client saw 403" grep -q '403' "$WORK/oc-carol.log"
check "carol: the log names user and policy" grep -q '"msg":"session.denied_by_policy".*"policy":"Contractors"' "$WORK/server.log"
check "carol: … with her name" sh -c "grep '\"msg\":\"session.denied_by_policy\"' $WORK/server.log | grep -q 'carol@corp.test'"
"$BIN/mst-cli" server show sessions --run-dir "$RUN" --json > "$WORK/sessions-after-carol.json"
check "carol: no session was made (alice's is listed, carol's is not)" python3 -c "import json; s=json.load(open('$WORK/sessions-after-carol.json')); n=[x['userName'] for x in s]; assert 'alice@corp.test' in n and 'carol@corp.test' not in n, n"
check "carol: not a failed login (no ban score, no auth failure)" sh -c "'$BIN/mst-cli' server show status --run-dir '$RUN' | grep -q 'auth failures: *0$'"
"$BIN/mst-cli" server show status --run-dir "$RUN" > "$WORK/status.out"
check "status counts the policy denial" grep -q 'policy denials: *1 ' "$WORK/status.out"

echo "== an app role: Tunnel admins send everything through the tunnel"
add_second_client
oc2 dave --token-mode=oidc --token-secret=@"$WORK/dave.jwt"
if wait_tunnel2 dave; then pass "dave: tunnel up"; else fail "dave: tunnel up"; fi
check "dave: no split include (all traffic)" sh -c "! grep -q '^CISCO_SPLIT_INC' $WORK/env-dave.connect"
check "dave: no split exclude (the policy cleared them)" sh -c "! grep -q '^CISCO_SPLIT_EXC' $WORK/env-dave.connect"
check "dave: the server-wide DNS" grep -q '^INTERNAL_IP4_DNS=198\.18\.1\.2$' "$WORK/env-dave.connect"
"$BIN/mst-cli" server show user dave@corp.test --run-dir "$RUN" > "$WORK/dave-user.out"
check "mst-cli show user: dave's role and policy" sh -c "grep -q 'roles: *Tunnel.Admin' $WORK/dave-user.out && grep -q \"group policy: *'Tunnel admins'\" $WORK/dave-user.out"
kill -INT "$OC2_PID" 2>/dev/null || true
for _ in $(seq 100); do kill -0 "$OC2_PID" 2>/dev/null || break; sleep 0.1; done

echo "== no policy matches erin: the server-wide settings"
if timeout 20 ip netns exec "$NS_C2" openconnect --protocol=anyconnect --servercert "$PIN" --non-inter \
    --token-mode=oidc --token-secret=@"$WORK/erin.jwt" --authenticate https://198.18.2.1/ > "$WORK/oc-erin.log" 2>&1; then
    pass "erin: login accepted"
else fail "erin: login accepted"; fi
check "erin: session logged without a policy" grep -q '"msg":"session.created".*"policy":"-".*erin@corp.test\|"msg":"session.created".*erin@corp.test.*"policy":"-"' "$WORK/server.log"

echo "== a live change that denies Engineering ends alice's session at once"
write_policies true
kill -HUP "$SERVER_PID"
for _ in $(seq 100); do grep -q '"when":"configuration changed"' "$WORK/server.log" && break; sleep 0.1; done
check "alice's session ended by the policy" grep -q '"msg":"session.denied_by_policy".*"when":"configuration changed"' "$WORK/server.log"
check "  … with the reason in session.ended" grep -q "\"msg\":\"session.ended\".*denied by group policy 'Engineering' (configuration changed)" "$WORK/server.log"
for _ in $(seq 150); do kill -0 "$OC_PID" 2>/dev/null || break; sleep 0.1; done
check "alice's client was told and stopped" sh -c "! kill -0 $OC_PID 2>/dev/null"
check "alice has no session left" sh -c "! '$BIN/mst-cli' server show user alice@corp.test --run-dir '$RUN' | grep -q alice"
if timeout 20 ip netns exec "$NS_C" openconnect --protocol=anyconnect --servercert "$PIN" --non-inter \
    --token-mode=oidc --token-secret=@"$WORK/alice.jwt" --authenticate https://198.18.0.1/ > "$WORK/oc-alice2.log" 2>&1; then
    fail "alice: a new login is refused"
else pass "alice: a new login is refused"; fi
check "gateway still running" kill -0 "$SERVER_PID"
check "no token in any log" sh -c "! grep -qF \"\$(cut -d. -f3 $WORK/alice.jwt)\" $WORK/server.log $WORK/auth.log"

summary
