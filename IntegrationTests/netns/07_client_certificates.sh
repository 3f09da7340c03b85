#!/usr/bin/env bash
# Client-certificate logins with the stock openconnect (`-c CERT -k KEY`, no token) against
# the committed test PKI (Tests/Fixtures/client-certs): a trusted user gets a tunnel over
# the two TLS connections the client makes; revoked, untrusted, expired, wrong-purpose and
# nameless certificates are refused with their reason; a replaced CRL applies without a
# restart; a certificate login's cookie works only with the same certificate; then
# certificate+token mode (both needed, and the same user), then token mode (a certificate
# alone is not enough; with a token the login works as before).
source "$(dirname "$0")/../lib.sh"

PKI_SRC=$ROOT/Tests/Fixtures/client-certs
PKI=$WORK/pki
setup_namespaces
make_pki
make_issuer
write_settings
# Every refusal here is on purpose: no ban score (09_abuse.sh tests banning).
set_advanced max-ban-score 0
make_script_wrapper
start_corp
mkdir -p "$PKI"
cp "$PKI_SRC"/*.pem "$PKI_SRC"/*.key "$PKI"/
cp "$PKI_SRC/crl.pem" "$PKI/crl-in-use.pem"

auth_config() {  # MODE
    cat > "$STATE/auth.json" <<JSON
{ "issuer": "$ISSUER", "jwksFile": "$WORK/issuer/jwks.json", "allowedTenants": ["$TENANT"],
  "authenticationMode": "$1",
  "clientCertificates": { "caFile": "$PKI/ca-bundle.pem", "crlFile": "$PKI/crl-in-use.pem", "userFrom": "upn" } }
JSON
}
restart_auth() {
    stop_pid "$AUTH_PID"
    rm -f "$RUN/auth.sock"
    start_auth
    [ -S "$RUN/auth.sock" ] || { echo "auth did not start"; tail -5 "$WORK/auth.log"; return 1; }
    # The gateway reconnects to the plugin at most once a second (a login in that second
    # gets 503, as 08_auth_outage.sh shows): let that second pass.
    sleep 1.2
}
# try NAME ARGS...: openconnect --authenticate (login only); exit status of the client.
try() {
    local name=$1; shift
    timeout 20 ip netns exec "$NS_C" openconnect --protocol=anyconnect --servercert "$PIN" --non-inter \
        --authenticate "$@" https://198.18.0.1/ > "$WORK/oc-$name.log" 2>&1
}
# refused NAME CODE ARGS...: the login fails and the gateway logs CODE for it.
refused() {
    local name=$1 code=$2; shift 2
    local before; before=$(wc -l < "$WORK/server.log")
    if try "$name" "$@"; then fail "$name: refused (it was ACCEPTED)"; return; fi
    pass "$name: refused"
    check "$name: gateway logs code $code" sh -c "tail -n +$((before + 1)) '$WORK/server.log' | grep '\"msg\":\"login.rejected\"' | grep -q '\"code\":\"$code\"'"
}

echo "== authenticationMode certificate"
auth_config certificate
start_stack
echo "stack up (pin $PIN)"

oc alice -c "$PKI/alice-chain.pem" -k "$PKI/alice.key"
if wait_tunnel alice; then
    pass "alice: tunnel up with her certificate alone"
    check "alice: address from the pool" grep -q '^INTERNAL_IP4_ADDRESS=100\.64\.0\.' "$WORK/env-alice.connect"
    # The connect script sets the address first, then the routes: wait for the route.
    for _ in $(seq 50); do ip -n "$NS_C" route get 198.18.1.2 2>/dev/null | grep -q 'dev tun0' && break; sleep 0.1; done
    check "alice: ping the corporate host" ip netns exec "$NS_C" ping -c 2 -i 0.2 -W 2 198.18.1.2
    check "alice: the session is hers (user from the SAN UPN), by certificate" sh -c \
        "grep '\"msg\":\"session.created\"' '$WORK/server.log' | grep '\"transport\":\"certificate\"' | grep -q 'alice@corp.test'"
    check "alice: login and tunnel came on two TLS connections (as the client does with a certificate)" python3 -c '
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
created = next(l for l in lines if l.get("msg") == "session.created")
connected = next(l for l in lines if l.get("msg") == "session.connected" and l.get("session.id") == created.get("session.id"))
sys.exit(0 if created["peer.address"] != connected["peer.address"] else 1)' "$WORK/server.log"
    check "auth: logged the decision with the certificate's subject and serial" sh -c \
        "grep '\"msg\":\"auth.accepted\"' '$WORK/auth.log' | grep -q 'cert.serial'"
else
    fail "alice: tunnel up with her certificate alone"
fi
stop_oc

echo "== a certificate login's cookie is bound to that certificate"
try alice-cookie -c "$PKI/alice-chain.pem" -k "$PKI/alice.key" || true
COOKIE=$(sed -n "s/^COOKIE='\(.*\)'$/\1/p" "$WORK/oc-alice-cookie.log" | head -1)
check "alice: --authenticate printed a cookie" test -n "$COOKIE"
before=$(wc -l < "$WORK/server.log")
if timeout 20 ip netns exec "$NS_C" openconnect --protocol=anyconnect --servercert "$PIN" --non-inter \
    --cookie "$COOKIE" --script /bin/true https://198.18.0.1/ > "$WORK/oc-stolen.log" 2>&1; then
    fail "her cookie without her certificate: refused"
else
    pass "her cookie without her certificate: refused"
fi
check "gateway logs certificateMismatch" sh -c "tail -n +$((before + 1)) '$WORK/server.log' | grep '\"msg\":\"login.rejected\"' | grep -q certificateMismatch"

echo "== certificates that must not log in"
refused bob certificateRevoked -c "$PKI/bob.pem" -k "$PKI/bob.key"
refused carol certificateUntrusted -c "$PKI/carol.pem" -k "$PKI/carol.key"
refused dave certificateUntrusted -c "$PKI/dave.pem" -k "$PKI/dave.key"
refused erin certificateUntrusted -c "$PKI/erin.pem" -k "$PKI/erin.key"
refused frank certificateNoUser -c "$PKI/frank.pem" -k "$PKI/frank.key"
check "carol: the reason names the untrusted issuer" sh -c "grep '\"msg\":\"login.rejected\"' '$WORK/server.log' | grep certificateUntrusted | grep -qi 'carol\|issuer'"
GOOD=$(mint --oid 0b1f7a3e-0000-4000-8000-00000000a11c --upn alice@corp.test)
printf %s "$GOOD" > "$WORK/alice.jwt"
refused token-only certificateRequired --token-mode=oidc --token-secret=@"$WORK/alice.jwt"
if try nothing; then fail "no certificate, no token: refused"; else pass "no certificate, no token: refused"; fi

echo "== the CRL is reloaded when it changes"
check "alice logs in before" try alice-before -c "$PKI/alice-chain.pem" -k "$PKI/alice.key"
cp "$PKI/crl-alice-revoked.pem" "$PKI/crl-in-use.pem.new" && mv "$PKI/crl-in-use.pem.new" "$PKI/crl-in-use.pem"
sleep 1.2
refused alice-revoked certificateRevoked -c "$PKI/alice-chain.pem" -k "$PKI/alice.key"
check "auth: logged the new CRL" grep -q '"msg":"auth.crl.loaded"' "$WORK/auth.log"
check "auth plugin was not restarted" kill -0 "$AUTH_PID"
cp "$PKI_SRC/crl.pem" "$PKI/crl-in-use.pem.new" && mv "$PKI/crl-in-use.pem.new" "$PKI/crl-in-use.pem"
sleep 1.2
check "alice logs in again once the CRL no longer lists her" try alice-after -c "$PKI/alice-chain.pem" -k "$PKI/alice.key"

echo "== authenticationMode certificate+token"
auth_config certificate+token
restart_auth
BOBS=$(mint --oid 0b1f7a3e-0000-4000-8000-000000000b0b --upn bob@corp.test)
printf %s "$BOBS" > "$WORK/bob.jwt"
if try both-cert-only -c "$PKI/alice-chain.pem" -k "$PKI/alice.key"; then fail "certificate alone: refused"; else pass "certificate alone: refused"; fi
refused both-token-only certificateRequired --token-mode=oidc --token-secret=@"$WORK/alice.jwt"
before=$(wc -l < "$WORK/server.log")
if try both -c "$PKI/alice-chain.pem" -k "$PKI/alice.key" --token-mode=oidc --token-secret=@"$WORK/alice.jwt"; then
    pass "certificate and token of the same user: logged in"
else
    fail "certificate and token of the same user: logged in"
fi
refused both-mismatch certificateUserMismatch -c "$PKI/alice-chain.pem" -k "$PKI/alice.key" --token-mode=oidc --token-secret=@"$WORK/bob.jwt"

echo "== authenticationMode token (the default): a certificate alone is not a login"
auth_config token
restart_auth
if try token-cert-only -c "$PKI/alice-chain.pem" -k "$PKI/alice.key"; then fail "certificate alone: refused"; else pass "certificate alone: refused"; fi
check "…because the plugin does not take certificates in token mode" grep -q '"reason.code":"certificateNotAccepted"' "$WORK/auth.log"
check "token with a certificate presented: logged in" try token-with-cert -c "$PKI/alice-chain.pem" -k "$PKI/alice.key" --token-mode=oidc --token-secret=@"$WORK/alice.jwt"
check "token alone: logged in" try token-alone --token-mode=oidc --token-secret=@"$WORK/alice.jwt"

check "gateway still running" kill -0 "$SERVER_PID"
check "no private key in any log" sh -c "! grep -q 'PRIVATE KEY' '$WORK/server.log' '$WORK/auth.log'"
check "no token in any log" sh -c "! grep -qF '$GOOD' '$WORK/server.log' '$WORK/auth.log'"
summary
