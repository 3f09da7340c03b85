#!/usr/bin/env bash
# The committed bad-token corpus (Tests/Fixtures/bad-tokens) through the stock openconnect
# client: every bad token is refused (the client sees the refusal; the gateway logs the
# code and the auth plugin's reason the corpus lists), the valid tokens beside them log in
# (so this test can fail), no token reaches a log, and both processes stay up.
source "$(dirname "$0")/../lib.sh"

CORPUS=$ROOT/Tests/Fixtures/bad-tokens
setup_namespaces
make_pki
write_settings
# Every refusal here is on purpose: no ban score (09_abuse.sh tests banning).
set_advanced max-ban-score 0
cp "$CORPUS/jwks.json" "$WORK/jwks.json"
python3 - "$CORPUS/corpus.json" "$WORK/jwks.json" > "$STATE/auth.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))["configuration"]
print(json.dumps({"issuer": c["issuer"], "audiences": c["audiences"], "allowedTenants": c["allowedTenants"], "jwksFile": sys.argv[2]}))
PY
start_stack
echo "stack up (pin $PIN)"

# One line per token: kind <TAB> name <TAB> code <TAB> reason; the token itself in $WORK/tok-NAME.
python3 - "$CORPUS/corpus.json" "$WORK" > "$WORK/cases.tsv" <<'PY'
import json, sys
corpus, work = json.load(open(sys.argv[1])), sys.argv[2]
def text(e):
    if "token" in e: return e["token"]
    g = e["generated"]
    return g["prefix"] + g["fill"] * (g["length"] - len(g["prefix"]))
for e in corpus["accepted"]:
    open(f"{work}/tok-{e['name']}", "w").write(e["token"])
    print("\t".join(["accepted", e["name"], "", e["userName"]]))
for e in corpus["refused"]:
    open(f"{work}/tok-{e['name']}", "w").write(text(e))
    print("\t".join(["refused", e["name"], e["code"], e["reason"]]))
PY

login() {  # NAME: openconnect --authenticate with the token; output in oc-NAME.log
    timeout 20 ip netns exec "$NS_C" openconnect --protocol=anyconnect --servercert "$PIN" --non-inter \
        --token-mode=oidc --token-secret=@"$WORK/tok-$1" --authenticate https://198.18.0.1/ > "$WORK/oc-$1.log" 2>&1
}
# new_lines FILE FROM: the lines of FILE after line FROM.
new_lines() { tail -n +"$(($2 + 1))" "$1"; }

refused=0
while IFS=$'\t' read -r kind name code reason; do
    before=$(wc -l < "$WORK/server.log")
    if [ "$kind" = accepted ]; then
        if login "$name"; then pass "$name: logged in"; else fail "$name: logged in"; fi
        check "$name: the gateway logged the user in" sh -c "tail -n +$((before + 1)) '$WORK/server.log' | grep '\"msg\":\"session.created\"' | grep -qF '$reason'"
        continue
    fi
    refused=$((refused + 1))
    if login "$name"; then fail "$name: refused (it was ACCEPTED)"; continue; fi
    check "$name: the client was told no" grep -qi '401\|unauthori\|denied\|failed\|400\|bad request\|error' "$WORK/oc-$name.log"
    if [ "$name" = one-megabyte ]; then
        # 1 MiB never reaches the auth plugin: the gateway's 32 KiB header limit refuses it.
        check "$name: refused by the gateway's header limit" sh -c "new_lines() { tail -n +\$((\$2 + 1)) \"\$1\"; }; new_lines '$WORK/server.log' $before | grep '\"msg\":\"http.bad_request\"' | grep -q 'larger than'"
        continue
    fi
    line=$(new_lines "$WORK/server.log" "$before" | grep '"msg":"login.rejected"' | head -1 || true)
    if [ -z "$line" ]; then fail "$name: login.rejected logged"; continue; fi
    if printf %s "$line" | grep -q "\"code\":\"$code\""; then pass "$name: code $code"; else fail "$name: code $code, got: $line"; fi
    if printf %s "$line" | grep -qF -- "$reason"; then pass "$name: reason says '$reason'"; else fail "$name: reason lacks '$reason': $line"; fi
done < "$WORK/cases.tsv"
check "at least 25 bad tokens were tried ($refused)" test "$refused" -ge 25

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
