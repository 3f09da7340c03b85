#!/usr/bin/env bash
# The re-check at session-timeout, with the stock client: a certificate session is verified
# again by mstunnel-auth at each deadline and goes on while its certificate is good; once
# the CRL lists it, the next deadline ends it. A token session goes on past session-timeout
# while its token is valid and ends when the token expires. While mstunnel-auth is down a
# certificate session is kept (asked again later), not dropped.
source "$(dirname "$0")/../lib.sh"

PKI_SRC=$ROOT/Tests/Fixtures/client-certs
PKI=$WORK/pki
setup_namespaces
make_pki
make_issuer
write_settings
set_advanced session-timeout 3 max-ban-score 0
make_script_wrapper
start_corp
mkdir -p "$PKI"
cp "$PKI_SRC"/*.pem "$PKI_SRC"/*.key "$PKI"/
cp "$PKI_SRC/crl.pem" "$PKI/crl-in-use.pem"
cat > "$STATE/auth.json" <<JSON
{ "issuer": "$ISSUER", "jwksFile": "$WORK/issuer/jwks.json", "allowedTenants": ["$TENANT"],
  "authenticationMode": "certificate-or-token",
  "clientCertificates": { "caFile": "$PKI/ca-bundle.pem", "crlFile": "$PKI/crl-in-use.pem", "userFrom": "upn" } }
JSON
start_stack
count() { grep -c "$1" "$WORK/server.log" || true; }

echo "== a certificate session is verified again at each deadline and goes on"
oc alice -c "$PKI/alice-chain.pem" -k "$PKI/alice.key"
if wait_tunnel alice; then pass "alice: tunnel up"; else fail "alice: tunnel up"; fi
for _ in $(seq 100); do [ "$(count '"msg":"session.rechecked".*alice')" -ge 2 ] && break; sleep 0.1; done
check "alice: re-checked twice (session-timeout 3 s)" sh -c "[ \$(grep -c '\"msg\":\"session.rechecked\".*alice' $WORK/server.log) -ge 2 ]"
check "auth verified her certificate again each time" sh -c "[ \$(grep -c '\"msg\":\"auth.accepted\".*alice' $WORK/auth.log) -ge 3 ]"
check "alice: still up past two deadlines" kill -0 "$OC_PID"
check "alice: traffic still flows" ip netns exec "$NS_C" ping -c 1 -W 2 198.18.1.2

echo "== mstunnel-auth down at a deadline: the session is kept and asked about later"
stop_pid "$AUTH_PID"
sleep 4
check "alice: kept while auth is down" kill -0 "$OC_PID"
check "alice: traffic flows while auth is down" ip netns exec "$NS_C" ping -c 1 -W 2 198.18.1.2
check "the deferral is logged" grep -q '"msg":"session.recheck_deferred"' "$WORK/server.log"
rm -f "$RUN/auth.sock"
start_auth

echo "== her certificate is revoked: the next re-check ends the session"
cp "$PKI/crl-alice-revoked.pem" "$PKI/crl-in-use.pem.new" && mv "$PKI/crl-in-use.pem.new" "$PKI/crl-in-use.pem"
# The deferred re-check is asked again within its 30 s grace.
for _ in $(seq 400); do grep -q '"msg":"session.ended".*re-check refused: certificateRevoked' "$WORK/server.log" && break; sleep 0.1; done
check "alice: session ended as revoked" grep -q '"msg":"session.ended".*re-check refused: certificateRevoked' "$WORK/server.log"
for _ in $(seq 150); do kill -0 "$OC_PID" 2>/dev/null || break; sleep 0.1; done
check "alice: her client was told and stopped" sh -c "! kill -0 $OC_PID 2>/dev/null"
cp "$PKI_SRC/crl.pem" "$PKI/crl-in-use.pem.new" && mv "$PKI/crl-in-use.pem.new" "$PKI/crl-in-use.pem"

echo "== a token session goes on while its token is valid, and ends when it expires"
mint --oid 0b1f7a3e-0000-4000-8000-0000000000b2 --upn bob@corp.test --exp-in 8 > "$WORK/bob.jwt"
oc bob --token-mode=oidc --token-secret=@"$WORK/bob.jwt"
start=$(date +%s)
if wait_tunnel bob; then pass "bob: tunnel up"; else fail "bob: tunnel up"; fi
for _ in $(seq 150); do grep -q '"msg":"session.ended".*bob@corp.test' "$WORK/server.log" && break; sleep 0.1; done
lived=$(( $(date +%s) - start ))
check "bob: re-checked at the 3 s deadline and kept (token still valid)" grep -q '"msg":"session.rechecked".*bob@corp.test' "$WORK/server.log"
check "bob: ended because his token expired" sh -c "grep '\"msg\":\"session.ended\"' $WORK/server.log | grep 'bob@corp.test' | grep -q 'the credential it logged in with has expired'"
check "bob: lived past session-timeout, until his token's exp (${lived} s, token 8 s)" sh -c "[ $lived -ge 6 ] && [ $lived -le 12 ]"
echo "== certificate+token: the re-check verifies the certificate (the token was checked at login)"
sed -i 's/"authenticationMode": "certificate-or-token"/"authenticationMode": "certificate+token"/' "$STATE/auth.json"
stop_pid "$AUTH_PID"
rm -f "$RUN/auth.sock"
start_auth
sleep 1.2
mint --oid 0b1f7a3e-0000-4000-8000-00000000a11c --upn alice@corp.test --exp-in 300 > "$WORK/alice.jwt"
oc alice2 -c "$PKI/alice-chain.pem" -k "$PKI/alice.key" --token-mode=oidc --token-secret=@"$WORK/alice.jwt"
if wait_tunnel alice2; then pass "alice (certificate and token): tunnel up"; else fail "alice (certificate and token): tunnel up"; fi
before=$(grep -c '"msg":"session.rechecked".*alice' "$WORK/server.log" || true)
for _ in $(seq 100); do [ "$(grep -c '"msg":"session.rechecked".*alice' "$WORK/server.log")" -ge $((before + 2)) ] && break; sleep 0.1; done
check "alice: re-checked twice and kept" sh -c "[ \$(grep -c '\"msg\":\"session.rechecked\".*alice' $WORK/server.log) -ge $((before + 2)) ]"
check "auth logged the re-checks as such" grep -q '"msg":"auth.accepted".*"method":"recheck"' "$WORK/auth.log"
check "alice: still up" kill -0 "$OC_PID"
stop_oc

check "gateway still running" kill -0 "$SERVER_PID"

summary
