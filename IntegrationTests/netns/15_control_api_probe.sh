#!/usr/bin/env bash
# The control plane's admin and agent APIs probed with schemathesis, from the OpenAPI
# description the control plane itself serves (GET /openapi.json):
#   [corp]  mstunnel-control on 198.18.1.2:8443 (SQLite in a temp state dir) and schemathesis
#   [gw]    mstunnel-agent, enrolled with a join token as in production, run for a few
#           seconds so the database holds its check-ins, health reports and an uploaded log
# schemathesis gets the local admin token (as the product's `mstunnel-control admin-token`
# prints it) for the admin API and the agent's certificate and key for the mTLS agent API.
# Real ids (Site, server, configuration, log collections, a signed download link, fresh
# join tokens, a real CSR) are offered for about half the generated values, so requests get
# past "not found" into the handlers; the rest are generated.
#
# Run 1 probes every operation but the four that delete the fixture (deleteServer, leave,
# deleteSite, deleteConfiguration); run 2 probes those last. Checks: no 5xx, and every
# answer (status, content type, headers, body) conforms to the description; bodies the
# description says are invalid must be refused (4xx). Afterwards the control plane must
# still answer and its log must hold no internal error.
#
#   PROBE_EXAMPLES=N   examples per operation and phase (default 60: about 4,300 cases,
#                      75 s on 2 cores; 500: about 18,700 cases, 12.5 min)
#   PROBE_SEED=N       schemathesis seed (default: random; printed, to replay a run)
#   SCHEMATHESIS=PATH  the schemathesis CLI (default /opt/mst-venv/bin/schemathesis;
#                      scripts/test.sh installs it there)
source "$(dirname "$0")/../lib.sh"

ST=${SCHEMATHESIS:-/opt/mst-venv/bin/schemathesis}
if [ ! -x "$ST" ]; then
    echo "SKIP: schemathesis not found at $ST (python3 -m venv /opt/mst-venv && /opt/mst-venv/bin/pip install schemathesis==4.32.5)"
    exit 77
fi
EXAMPLES=${PROBE_EXAMPLES:-60}
SEED=${PROBE_SEED:-$(( (RANDOM << 15) | RANDOM ))}

setup_namespaces
mkdir -p "$STATE" "$RUN"
chgrp 990 "$STATE" "$RUN"; chmod 2770 "$RUN"

echo "== control plane, Server configuration, Site, enrolled agent"
# The failed-admin-authentication throttle is off for the probe (AdminThrottleTests cover
# it): schemathesis sends malformed Authorization headers on purpose, and after 10 the
# lockout would answer every later admin request 429 and hide the handlers behind it.
CERT_LIFETIME=3600 start_control --admin-auth-max-failures 1000000000
if out=$(api POST /microsoftTunnelConfigurations '{"displayName":"probe","network":"100.64.0.0/24","dnsServers":["198.18.1.2"],"routeIncludes":["198.18.1.0/24"]}'); then
    pass "configuration created"; CFG=$(echo "$out" | json 'd["id"]')
else fail "configuration created: $out"; summary; exit 1; fi
if out=$(api POST /microsoftTunnelSites "{\"displayName\":\"probe site\",\"internalNetworkProbeUrl\":\"http://198.18.1.2:8080/\",\"microsoftTunnelConfiguration\":{\"id\":\"$CFG\"}}"); then
    pass "site created"; SITE=$(echo "$out" | json 'd["id"]')
else fail "site created: $out"; summary; exit 1; fi
join_token() { api POST "/microsoftTunnelSites/$SITE/createJoinToken" '{"expirationMinutes":60}' | json 'd["joinToken"]'; }
join_token > "$WORK/join.token"
if ip netns exec "$NS_G" "$BIN/mstunnel-agent" enroll --control-url "$CP" --join-token-file "$WORK/join.token" --state-dir "$STATE" > "$WORK/enroll.log" 2>&1; then
    pass "agent enrolled with a join token"
else fail "agent enrolled"; cat "$WORK/enroll.log"; summary; exit 1; fi
SERVER=$(json 'd["serverId"]' < "$STATE/agent-info.json")

# A log collection the agent completes while it runs, and one left pending.
now=$(date -u +%Y-%m-%dT%H:%M:%SZ); start=$(date -u -d '-10 min' +%Y-%m-%dT%H:%M:%SZ)
LC1=$(api POST "/microsoftTunnelSites/$SITE/microsoftTunnelServers/$SERVER/createServerLogCollectionRequest" "{\"startDateTime\":\"$start\",\"endDateTime\":\"$now\"}" | json 'd["id"]')
agent_run
for _ in $(seq 100); do api GET "/microsoftTunnelServerLogCollectionResponses/$LC1" | grep -Eq '"status" *: *"completed"' && break; sleep 0.2; done
sleep 2   # a few check-ins and health reports more
stop_pid "$AGENT_PID"
if api GET "/microsoftTunnelServerLogCollectionResponses/$LC1" | grep -Eq '"status" *: *"completed"'; then
    pass "log collection completed by the agent"; else fail "log collection completed by the agent"; fi
check "health reports stored" api POST "/microsoftTunnelSites/$SITE/microsoftTunnelServers/$SERVER/getHealthMetrics" '{}'
# Pending collections for the agent routes to complete or fail (each can be used once).
PENDING=$(for _ in 1 2 3 4 5 6; do
    printf '"%s", ' "$(api POST "/microsoftTunnelSites/$SITE/microsoftTunnelServers/$SERVER/createServerLogCollectionRequest" "{\"startDateTime\":\"$start\",\"endDateTime\":\"$now\"}" | json 'd["id"]')"
done)
URL=$(api POST "/microsoftTunnelServerLogCollectionResponses/$LC1/createDownloadUrl" '' | json 'd["value"]')
EXPIRES=$(python3 -c "import sys, urllib.parse as u; print(u.parse_qs(u.urlparse(sys.argv[1]).query)['expires'][0])" "$URL")
SIG=$(python3 -c "import sys, urllib.parse as u; print(u.parse_qs(u.urlparse(sys.argv[1]).query)['sig'][0])" "$URL")
TOKENS=$(for _ in 1 2 3 4 5; do printf '"%s", ' "$(join_token)"; done)
# A CSR as the agent makes one (P-256), so enroll and renew can succeed now and then.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=probe -keyout "$WORK/probe.key" -out "$WORK/probe.csr" 2>/dev/null
CSR=$(python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()))' "$WORK/probe.csr")

# The admin token reaches schemathesis through the environment (${MST_ADMIN_TOKEN} in the
# configuration), never on a command line or in a file of the work directory; schemathesis
# masks the Authorization header in what it prints.
cat > "$WORK/schemathesis.toml" <<TOML
base-url = "$CP"
tls-verify = "$CONTROL/ca.crt"
request-cert = "$STATE/certs/agent.crt"
request-cert-key = "$STATE/private/agent.key"
# Generous: the machine may be compiling beside the test (scripts/test.sh builds the release
# binaries during the namespace tests); a slow answer is not what this probe looks for.
request-timeout = 30
workers = 2
seed = $SEED
continue-on-failure = true
suppress-health-check = ["all"]

[generation]
max-examples = $EXAMPLES
mode = "all"
no-shrink = true

[phases]
stateful.enabled = false

[checks]
enabled = true
positive_data_acceptance.enabled = false
ignored_auth.enabled = false
use_after_free.enabled = false
ensure_resource_availability.enabled = false
object_level_authorization.enabled = false
# A body over a route's limit (64 KiB for agent JSON) is refused with 413: a refusal too.
negative_data_rejection.expected-statuses = [400, 401, 403, 404, 405, 409, 413, 415, 422]

[auth.openapi.adminBearer]
bearer = "\${MST_ADMIN_TOKEN}"

[dictionaries.ids]
values = ["$CFG", "$LC1", $PENDING]
[dictionaries.completed]
values = ["$LC1"]
[dictionaries.pending]
values = [$PENDING]
[dictionaries.site]
values = ["$SITE"]
[dictionaries.server]
values = ["$SERVER"]
[dictionaries.expires]
values = ["$EXPIRES"]
[dictionaries.sig]
values = ["$SIG"]
[dictionaries.joinTokens]
values = [$TOKENS]
[dictionaries.csr]
values = [$CSR]

[parameters]
"path.id" = { dictionary = "ids", probability = 0.5 }
"path.siteId" = { dictionary = "site", probability = 0.6 }
"path.serverId" = { dictionary = "server", probability = 0.6 }
"query.expires" = { dictionary = "expires", probability = 0.5 }
"query.sig" = { dictionary = "sig", probability = 0.5 }
"body.joinToken" = { dictionary = "joinTokens", probability = 0.5 }
"body.csrPEM" = { dictionary = "csr", probability = 0.5 }

# The signed download link: its id, expiry and signature together, or it is a 403.
[[operations]]
include-operation-id = "downloadLogCollection"
parameters = { "path.id" = { dictionary = "completed", probability = 0.8 }, "query.expires" = { dictionary = "expires", probability = 0.8 }, "query.sig" = { dictionary = "sig", probability = 0.8 } }
# The agent's log routes take only its own pending collections.
[[operations]]
include-operation-id = ["uploadLogCollection", "reportLogCollectionFailure"]
parameters = { "path.id" = { dictionary = "pending", probability = 0.7 } }
TOML

# probe NAME FILTER-ARGS…: one schemathesis run against the served description.
probe() {
    local name=$1; shift
    local rc=0 try
    echo "== schemathesis: $name (seed $SEED, $EXAMPLES examples per operation and phase)"
    for try in 1 2; do
        rc=0
        # From the work directory: schemathesis keeps its example database in ./.schemathesis.
        (cd "$WORK" && ip netns exec "$NS_I" env MST_ADMIN_TOKEN="$(cat "$CONTROL/admin-token")" \
            "$ST" --config-file "$WORK/schemathesis.toml" --no-color run "$CP/openapi.json" "$@" \
            --report junit --report-junit-path "$WORK/probe-$name.xml") > "$WORK/probe-$name.log" 2>&1 || rc=$?
        # Once more only when schemathesis itself broke (a Python traceback in its ERRORS
        # section, seen once in its coverage phase and gone on the replay) and it reported no
        # failure of the API: an API failure is never retried.
        if [ "$rc" != 0 ] && [ "$try" = 1 ] && grep -q '^=* ERRORS =*$' "$WORK/probe-$name.log" &&
           ! grep -q '^=* FAILURES =*$' "$WORK/probe-$name.log"; then
            echo "  schemathesis itself failed (no failure of the API); its errors, then once more:"
            sed -n '/ERRORS/,/SUMMARY/p' "$WORK/probe-$name.log" | cut -c1-300 | head -40
            cp "$WORK/probe-$name.log" "$WORK/probe-$name.first.log"
            continue
        fi
        break
    done
    # The summary: operations, test cases generated, failures.
    sed -n '/SUMMARY/,$p' "$WORK/probe-$name.log" | grep -Ev '^\s*$' | cut -c1-200 | head -40
    if [ "$rc" = 0 ]; then pass "schemathesis $name: no failure"; else
        fail "schemathesis $name (exit $rc)"; sed -n '/FAILURES\|ERRORS/,/SUMMARY/p' "$WORK/probe-$name.log" | cut -c1-300 | head -150
    fi
}
DESTRUCTIVE=(deleteServer leave deleteSite deleteConfiguration)
exclude=(); for op in "${DESTRUCTIVE[@]}"; do exclude+=(--exclude-operation-id "$op"); done
include=(); for op in "${DESTRUCTIVE[@]}"; do include+=(--include-operation-id "$op"); done
started=$(date +%s)
probe all-but-deletes "${exclude[@]}"
probe deletes "${include[@]}"
echo "probe time: $(( $(date +%s) - started )) s"

check "control plane still running" kill -0 "$CONTROL_PID"
check "control plane still answers /healthz" ip netns exec "$NS_I" curl -sf --cacert "$CONTROL/ca.crt" "$CP/healthz"
check "no internal error in the control plane's log" sh -c "! grep -q 'http.internal_error' '$WORK/control.log'"
grep '"msg":"http.internal_error"' "$WORK/control.log" | head -5 || true
check "no admin token in the control plane's log" sh -c "! grep -qF \"\$(cat '$CONTROL/admin-token')\" '$WORK/control.log'"
check "no admin token in schemathesis's output" sh -c "! grep -qF \"\$(cat '$CONTROL/admin-token')\" '$WORK'/probe-*.log '$WORK'/probe-*.xml"
summary
