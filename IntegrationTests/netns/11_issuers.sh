#!/usr/bin/env bash
# Several issuers at once (`issuers` in auth.json), through the stock openconnect
# (--token-mode=oidc). Two real mst-dev-issuer instances with keys of their own:
#   A  an Entra-style multi-tenant template, https://login.entra.test/{tenantid}/v2.0,
#      one allowed tenant, keys from a file;
#   B  a second OIDC issuer on http://127.0.0.1:8088 in the gateway namespace, keys found
#      by OpenID discovery, its own audience and a required role.
# A token from each logs in (B's also gets a tunnel and reaches the corporate host); a
# token from a third, unconfigured issuer C is refused `badIssuer` without any key fetch;
# B's key cannot speak for A; each issuer's own rules apply; a `groups` claim that is not
# an array of strings is refused. Every refusal's code and reason are in the gateway's
# login.rejected line, and no token reaches a log.
source "$(dirname "$0")/../lib.sh"

A_DIR=$WORK/issuer-a
B_DIR=$WORK/issuer-b
C_DIR=$WORK/issuer-c
A_TEMPLATE='https://login.entra.test/{tenantid}/v2.0'
A_ISS=https://login.entra.test/$TENANT/v2.0
OTHER_TENANT=99999999-8888-4777-8666-555555555555
B_ISS=http://127.0.0.1:8088
B_AUD=api://partner-vpn
C_ISS=https://idp.unconfigured.test

setup_namespaces
make_pki
write_settings
# Every refusal here is on purpose: no ban score (09_abuse.sh tests banning).
set_advanced max-ban-score 0
make_script_wrapper
start_corp

"$BIN/mst-dev-issuer" init --dir "$A_DIR" --issuer "$A_ISS" >/dev/null
"$BIN/mst-dev-issuer" init --dir "$B_DIR" --issuer "$B_ISS" >/dev/null
"$BIN/mst-dev-issuer" init --dir "$C_DIR" --issuer "$C_ISS" >/dev/null

# B serves its discovery document and JWKS (and nothing else: its private keys stay out).
mkdir -p "$WORK/www-b"
cp "$B_DIR/jwks.json" "$WORK/www-b/jwks.json"
"$BIN/mst-dev-issuer" discovery --dir "$WORK/www-b" --issuer "$B_ISS" --jwks-uri "$B_ISS/jwks.json" >/dev/null
(cd "$WORK/www-b" && exec ip netns exec "$NS_G" python3 -m http.server 8088 --bind 127.0.0.1) > "$WORK/http-b.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do ip netns exec "$NS_G" ss -ltn 'sport = :8088' | grep -q LISTEN && break; sleep 0.1; done

cat > "$STATE/auth.json" <<JSON
{ "issuers": [
    { "issuer": "$A_TEMPLATE", "jwksFile": "$A_DIR/jwks.json", "allowedTenants": ["$TENANT"] },
    { "issuer": "$B_ISS", "audiences": ["$B_AUD"], "requiredClaims": { "roles": "vpn" },
      "jwksMinRefreshSeconds": 5 }
] }
JSON

echo "== configuration"
out=$("$BIN/mstunnel-auth" --state-dir "$STATE" --check-config 2>&1) && rc=0 || rc=$?
if [ "$rc" = 0 ] && printf %s "$out" | grep -qF "2 issuers: issuer $A_TEMPLATE, keys from file $A_DIR/jwks.json" \
        && printf %s "$out" | grep -qF "issuer $B_ISS, keys from discovery $B_ISS/.well-known/openid-configuration"; then
    pass "--check-config accepts both issuers"
else
    fail "--check-config accepts both issuers: $out"
fi
python3 - "$STATE/auth.json" "$WORK/auth-duplicate.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["issuers"].append(dict(c["issuers"][1], audiences=["another"]))
json.dump(c, open(sys.argv[2], "w"))
PY
out=$("$BIN/mstunnel-auth" --state-dir "$STATE" --config "$WORK/auth-duplicate.json" --check-config 2>&1) && rc=0 || rc=$?
if [ "$rc" = 1 ] && printf %s "$out" | grep -qF "'issuers[2].issuer' '$B_ISS' is the same as 'issuers[1].issuer'"; then
    pass "--check-config refuses a duplicate issuer, naming the entries"
else
    fail "--check-config refuses a duplicate issuer (rc $rc): $out"
fi

start_stack
echo "stack up (pin $PIN)"

# token NAME ISSUER-DIR ARGS…: mints into $WORK/tok-NAME (no trailing newline: openconnect
# sends the file's bytes as they are).
token() {
    local name=$1 dir=$2; shift 2
    "$BIN/mst-dev-issuer" mint --dir "$dir" "$@" | tr -d '\n' > "$WORK/tok-$name"
}
login() {  # NAME: openconnect --authenticate with the token; output in oc-NAME.log
    timeout 20 ip netns exec "$NS_C" openconnect --protocol=anyconnect --servercert "$PIN" --non-inter \
        --token-mode=oidc --token-secret=@"$WORK/tok-$1" --authenticate https://198.18.0.1/ > "$WORK/oc-$1.log" 2>&1
}
new_lines() { tail -n +"$(($2 + 1))" "$1"; }
key_fetches() { grep -c '"msg":"auth.jwks.\(loaded\|failed\)"' "$WORK/auth.log" || true; }

# accepted NAME USER: logs in, and the gateway's session is USER's.
accepted() {
    local name=$1 user=$2 before
    before=$(wc -l < "$WORK/server.log")
    if login "$name"; then pass "$name: logged in"; else fail "$name: logged in ($(tail -2 "$WORK/oc-$name.log" | tr '\n' ' '))"; fi
    check "$name: the gateway's session is $user's" sh -c \
        "tail -n +$((before + 1)) '$WORK/server.log' | grep '\"msg\":\"session.created\"' | grep -qF '$user'"
}
# refused NAME CODE REASON: the login fails; the gateway logs CODE and the plugin's REASON.
refused() {
    local name=$1 code=$2 reason=$3 before line
    before=$(wc -l < "$WORK/server.log")
    if login "$name"; then fail "$name: refused (it was ACCEPTED)"; return; fi
    line=$(new_lines "$WORK/server.log" "$before" | grep '"msg":"login.rejected"' | head -1 || true)
    if [ -z "$line" ]; then fail "$name: login.rejected logged"; return; fi
    if printf %s "$line" | grep -q "\"code\":\"$code\""; then pass "$name: code $code"; else fail "$name: code $code, got: $line"; fi
    if printf %s "$line" | grep -qF -- "$reason"; then pass "$name: reason says '$reason'"; else fail "$name: reason lacks '$reason': $line"; fi
}

echo "== a token from each configured issuer"
token a "$A_DIR" --iss "$A_ISS" --aud "$AUD" --tid "$TENANT" --oid a-oid-1 --upn alice@entra.test \
    --claim-json 'groups=["0b1f0b1f-0000-4000-8000-00000000e001","0b1f0b1f-0000-4000-8000-00000000e002"]' \
    --claim-json 'roles=["Tunnel.Users"]'
accepted a alice@entra.test
check "a: the plugin accepted it for issuer A, with its 2 groups and 1 role" sh -c \
    "grep '\"msg\":\"auth.accepted\"' '$WORK/auth.log' | grep -F 'alice@entra.test' | grep -F '\"iss\":\"$A_ISS\"' | grep -F '\"groups.count\":\"2\"' | grep -qF '\"roles.count\":\"1\"'"

token b "$B_DIR" --iss "$B_ISS" --aud "$B_AUD" --tid "" --oid b-oid-1 --upn pat@partner.test --claim-json 'roles=["vpn"]'
accepted b pat@partner.test
check "b: B's keys came by discovery from its own server" sh -c \
    "grep '\"msg\":\"auth.jwks.loaded\"' '$WORK/auth.log' | grep -F '\"issuer\":\"$B_ISS\"' | grep -qF 'discovery $B_ISS/.well-known/openid-configuration'"

# B's user also gets a tunnel and reaches the corporate host through it.
oc b-tunnel --token-mode=oidc --token-secret=@"$WORK/tok-b"
if wait_tunnel b-tunnel; then
    pass "b: tunnel up with B's token"
    for _ in $(seq 50); do ip -n "$NS_C" route get 198.18.1.2 2>/dev/null | grep -q 'dev tun0' && break; sleep 0.1; done
    check "b: ping the corporate host" ip netns exec "$NS_C" ping -c 2 -i 0.2 -W 2 198.18.1.2
else
    fail "b: tunnel up with B's token"
fi
stop_oc

echo "== tokens that must be refused"
fetches=$(key_fetches)
token c "$C_DIR" --iss "$C_ISS" --aud "$AUD" --tid "$TENANT" --upn mallory@unconfigured.test
refused c badIssuer "issuer '$C_ISS' is not the configured issuer of any of the 2 entries in 'issuers'"
check "c: no key was fetched for it" test "$(key_fetches)" = "$fetches"

token b-key-as-a "$B_DIR" --iss "$A_ISS" --aud "$AUD" --tid "$TENANT" --upn alice@entra.test
refused b-key-as-a badSignature "signature does not verify with key 'rsa-1'"
token b-kid-as-a "$B_DIR" --iss "$A_ISS" --aud "$AUD" --tid "$TENANT" --upn alice@entra.test --kid rsa-b
refused b-kid-as-a unknownKey "kid 'rsa-b' is not among the issuer's keys"
token a-key-as-b "$A_DIR" --iss "$B_ISS" --aud "$B_AUD" --tid "" --upn pat@partner.test --claim-json 'roles=["vpn"]'
refused a-key-as-b badSignature "signature does not verify with key 'rsa-1'"

token a-other-tenant "$A_DIR" --iss "https://login.entra.test/$OTHER_TENANT/v2.0" --aud "$AUD" --tid "$OTHER_TENANT"
refused a-other-tenant tenantNotAllowed "tenant '$OTHER_TENANT' is not in allowedTenants"
token a-iss-tid-disagree "$A_DIR" --iss "$A_ISS" --aud "$AUD" --tid "$OTHER_TENANT"
refused a-iss-tid-disagree badIssuer "filled with the token's 'tid', '$OTHER_TENANT'"
token b-for-a-audience "$B_DIR" --iss "$B_ISS" --aud "$AUD" --tid "" --claim-json 'roles=["vpn"]'
refused b-for-a-audience badAudience "is not one of the configured audiences"
token b-without-role "$B_DIR" --iss "$B_ISS" --aud "$B_AUD" --tid "" --oid b-oid-2
refused b-without-role missingClaim "required claim 'roles' is missing"
token a-groups-string "$A_DIR" --iss "$A_ISS" --aud "$AUD" --tid "$TENANT" --oid a-oid-2 --claim groups=Tunnel.Users
refused a-groups-string malformed "claim 'groups' must be an array of strings (found: string)"

check "gateway still running" kill -0 "$SERVER_PID"
check "auth plugin still running" kill -0 "$AUTH_PID"
leaked=0
for f in "$WORK"/tok-*; do
    sig=$(awk -F. '{print $NF}' "$f" | cut -c1-40)
    [ "${#sig}" -ge 20 ] || continue
    if grep -qF -- "$sig" "$WORK/server.log" "$WORK/auth.log"; then leaked=$((leaked + 1)); echo "  token of $(basename "$f") found in a log"; fi
done
check "no token (signature) in the gateway or auth log" test "$leaked" = 0
summary
