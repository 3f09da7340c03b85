#!/usr/bin/env bash
# Control plane + agent + gateway, all real processes:
#   [corp]  mstunnel-control on 198.18.1.2:8443 (HTTPS, its own CA), the internal probe page
#   [gw]    mstunnel-agent (enrolled with a join token), mstunnel-server, mstunnel-auth,
#           tinyproxy on 127.0.0.1 for the proxy checks
#   [cli]   the stock openconnect client (and a second client in [cli2])
# An admin creates a Server configuration and a Site, gets a join token; the agent enrolls,
# writes admin-settings.json, the gateway starts from it; a configuration change is pushed
# while a client is connected (the session survives, a new session gets the new route);
# health, metrics, time series and a log collection are visible through the Graph-shaped
# API; the control plane goes down and comes back and every queued report arrives once;
# a bad join token, an expired agent certificate and proxies (plain and authenticated).
source "$(dirname "$0")/../lib.sh"

setup_namespaces
make_pki
make_issuer
make_script_wrapper
start_corp

# wait_for WHAT TRIES CMD... : runs CMD (a command or a function of this script) every
# 0.2 s until it succeeds; a pass, or a fail after TRIES attempts (the test goes on).
server_json() { api GET "/microsoftTunnelSites/$SITE/microsoftTunnelServers/$SERVER"; }
server_listed() { local out; out=$(api GET "/microsoftTunnelSites/$SITE/microsoftTunnelServers") && echo "$out" | grep -q "$SERVER" && echo "$out" | grep -q lastCheckinDateTime; }
status_is() { server_json | grep -Eq "\"tunnelServerHealthStatus\" *: *\"($1)\""; }
metric_is() { api POST "/microsoftTunnelSites/$SITE/microsoftTunnelServers/$SERVER/getHealthMetrics" "{\"metricNames\":[\"$1\"]}" | python3 -c "import json,sys; v=json.load(sys.stdin)['value']; sys.exit(0 if v and v[0]['value'] == $2 else 1)"; }
log_collection_done() { api GET "/microsoftTunnelServerLogCollectionResponses/$LC" | grep -Eq '"status" *: *"completed"'; }
outbox_depth() { ip netns exec "$NS_G" "$BIN/mstunnel-agent" status --state-dir "$STATE" --json | json 'd["outboxDepth"]'; }
outbox_empty() { test "$(outbox_depth)" = 0; }

echo "== control plane: first start"
CERT_LIFETIME=3600 start_control --metrics-listen 127.0.0.1:9465   # its own /metrics, read below
check "CA and admin token created, 0600" sh -c "test \"\$(stat -c %a '$CONTROL/admin-token')\" = 600 && test \"\$(stat -c %a '$CONTROL/ca.key')\" = 600"
check "anonymous read refused (401)" sh -c "ip netns exec $NS_I curl -s -o /dev/null -w '%{http_code}' --cacert '$CONTROL/ca.crt' $API/microsoftTunnelSites | grep -q 401"
check "path tricks do not skip admin auth (//beta, /./beta)" sh -c "for p in //beta/deviceManagement/microsoftTunnelSites /./beta/deviceManagement/microsoftTunnelSites /beta//deviceManagement/microsoftTunnelSites; do c=\$(ip netns exec $NS_I curl -s --path-as-is -o /dev/null -w '%{http_code}' --cacert '$CONTROL/ca.crt' $CP\$p); case \$c in 400|401) ;; *) exit 1;; esac; done"
check "web console served with a strict CSP" sh -c "ip netns exec $NS_I curl -sS -D - -o /dev/null --cacert '$CONTROL/ca.crt' $CP/console | grep -qi \"^content-security-policy: default-src 'none'\""
check "wrong admin token refused (401)" sh -c "ip netns exec $NS_I curl -s -o /dev/null -w '%{http_code}' --cacert '$CONTROL/ca.crt' -H 'Authorization: Bearer nope' $API/microsoftTunnelSites | grep -q 401"

echo "== admin: Server configuration, Site, join token"
if out=$(api POST /microsoftTunnelConfigurations '{"displayName":"cfg","network":"100.64.0.0/24","dnsServers":["198.18.1.2"],"routeIncludes":["198.18.1.0/25"],"listenPort":443,"advancedSettings":[{"name":"dpd","value":"5"},{"name":"keepalive","value":"5"}]}'); then
    pass "configuration created"; CFG=$(echo "$out" | json 'd["id"]')
else fail "configuration created: $out"; fi
rules=$(python3 -c 'import json; print(json.dumps({"displayName":"big","network":"100.64.0.0/24","routeIncludes":["198.19.%d.%d/32" % (i//250, i%250) for i in range(501)]}))')
if out=$(api POST /microsoftTunnelConfigurations "$rules"); then fail "501 split rules refused"; else
    check "501 split rules refused with the count" sh -c "echo '$out' | grep -q 501"
fi
if out=$(api POST /microsoftTunnelConfigurations '{"displayName":"bad","network":"100.64.0.0/33"}'); then fail "bad CIDR refused"; else
    check "bad CIDR refused, OData error names it" sh -c "echo '$out' | grep -q '\"error\"' && echo '$out' | grep -q '100.64.0.0/33'"
fi
if out=$(api POST /microsoftTunnelSites "{\"displayName\":\"site1\",\"internalNetworkProbeUrl\":\"http://198.18.1.2:8080/\",\"microsoftTunnelConfiguration\":{\"id\":\"$CFG\"}}"); then
    pass "site created"; SITE=$(echo "$out" | json 'd["id"]')
else fail "site created: $out"; fi
if out=$(api POST "/microsoftTunnelSites/$SITE/createJoinToken" '{"expirationMinutes":30}'); then
    pass "join token issued"; echo "$out" | json 'd["joinToken"]' > "$WORK/join.token"
else fail "join token issued: $out"; fi

echo "== a bad join token is refused, nothing written"
python3 - "$WORK/join.token" > "$WORK/bad.token" <<'PY'
import sys
p = open(sys.argv[1]).read().strip().split(".")
p[2] = "A" * len(p[2])
print(".".join(p))
PY
if ip netns exec "$NS_G" "$BIN/mstunnel-agent" enroll --control-url "$CP" --join-token-file "$WORK/bad.token" --state-dir "$STATE" > "$WORK/enroll-bad.log" 2>&1; then
    fail "bad join token refused"
else pass "bad join token refused"; fi
check "the refusal says why" grep -qi 'join token' "$WORK/enroll-bad.log"
check "no identity written" test ! -e "$STATE/agent-info.json"
check "the token is not echoed" sh -c "! grep -q \"\$(cut -d. -f3 '$WORK/bad.token')\" '$WORK/enroll-bad.log'"

echo "== enrollment"
if ip netns exec "$NS_G" "$BIN/mstunnel-agent" enroll --control-url "$CP" --join-token-file "$WORK/join.token" --state-dir "$STATE" > "$WORK/enroll.log" 2>&1; then
    pass "agent enrolled"; else fail "agent enrolled"; cat "$WORK/enroll.log"; fi
check "agent-info.json written" test -s "$STATE/agent-info.json"
check "agent key is 0600" sh -c "test \"\$(stat -c %a '$STATE/private/agent.key')\" = 600"
SERVER=$(json 'd["serverId"]' < "$STATE/agent-info.json")
check "agent certificate chains to the control plane's CA" openssl verify -CAfile "$CONTROL/ca.crt" "$STATE/certs/agent.crt"
if ip netns exec "$NS_G" "$BIN/mstunnel-agent" enroll --control-url "$CP" --join-token-file "$WORK/join.token" --state-dir "$WORK/other-state" > "$WORK/enroll-reuse.log" 2>&1; then
    fail "join token is one-time"; else pass "join token is one-time"; fi
cp -a "$STATE" "$WORK/state-first-identity"

echo "== the agent writes the configuration, the gateway starts from it"
rm -f "$STATE/admin-settings.json"
AGENT_EXTRA=(--metrics-listen 127.0.0.1:9464)   # the Prometheus endpoint, read below
agent_run
wait_for "admin-settings.json written by the agent" 100 test -s "$STATE/admin-settings.json"
check "it carries the Site's configuration" grep -q '198.18.1.0/25' "$STATE/admin-settings.json"
MSTUNNEL_LOG_DIR=$LOGS start_stack
printf %s "$(mint --oid 0b1f7a3e-0000-4000-8000-000000000051 --upn fay@corp.test)" > "$WORK/token.jwt"
printf %s "$(mint --oid 0b1f7a3e-0000-4000-8000-000000000052 --upn gus@corp.test)" > "$WORK/token2.jwt"
oc first --token-mode=oidc --token-secret=@"$WORK/token.jwt"
FIRST_OC=$OC_PID
if wait_tunnel first; then pass "client connected"; else fail "client connected"; fi
check "first session has the /25 route" grep -q 'CISCO_SPLIT_INC_0_MASKLEN=25' "$WORK/env-first.connect"
addr1=$(ip -n "$NS_C" -4 -o addr show dev tun0 | awk '{print $4}' | cut -d/ -f1)

echo "== the server in its Site: check-in, health, metrics"
wait_for "server listed with a recent check-in" 50 server_listed
# A CI machine is busy (the release build runs beside these tests, at the lowest priority but
# counted in CPU use): the CPU threshold is lifted, as an operator would on a shared host, so
# the status says whether reports arrive and are evaluated, not how loaded the machine is.
check "the CPU threshold lifted to 100 %" api PATCH /microsoftTunnelHealthThresholds/cpuUsage '{"healthyThreshold":100,"unhealthyThreshold":100}'
wait_for "server is healthy or warning (not unknown/offline)" 100 status_is 'healthy|warning'
status_is 'healthy|warning' || echo "    (status $(server_json | json 'd.get("tunnelServerHealthStatus")'); checks: $(api GET "/microsoftTunnelSites/$SITE/microsoftTunnelServers/$SERVER/healthChecks" 2>/dev/null | head -c 600))"
# latency is the gateway's transit time: a report has it when packets went through since the
# previous one, so each try sends a ping through the tunnel first.
has_metrics() { ip netns exec "$NS_C" ping -c 1 -W 1 198.18.1.2 >/dev/null; api POST "/microsoftTunnelSites/$SITE/microsoftTunnelServers/$SERVER/getHealthMetrics" '{"metricNames":["cpuUsage","memoryUsage","diskSpace","latency"]}' | python3 -c "import json,sys; v={m['name'] for m in json.load(sys.stdin)['value']}; sys.exit(0 if v == {'cpuUsage','memoryUsage','diskSpace','latency'} else 1)"; }
wait_for "getHealthMetrics: cpu, memory, disk and latency reported" 100 has_metrics
if out=$(api GET "/microsoftTunnelSites/$SITE/microsoftTunnelServers/$SERVER/healthChecks"); then
    check "health checks explain each status (internal probe reachable)" sh -c "echo '$out' | grep -q '198.18.1.2:8080/ reachable'"
else fail "healthChecks: $out"; fi
wait_for "current connections = 1 reported" 100 metric_is currentConnections 1

echo "== the Site's ticket keys: from the control plane, through the agent, to mstunnel-auth (docs/site.md)"
printf %s "$(mint --oid 0b1f7a3e-0000-4000-8000-000000000053 --upn hal@corp.test)" > "$WORK/token3.jwt"
wait_for "auth seals with the Site's key, handed over by the agent" 100 grep -q '"msg":"auth.tickets.keys".*"from":"the agent".*"scope":"the Site"' "$WORK/auth.log"
K1=$(grep '"msg":"auth.tickets.keys"' "$WORK/auth.log" | tail -1 | json 'd["sealing"]')
check "auth keeps them in its own directory, 0600" sh -c "test \"\$(stat -c %a $RUN/mstunnel-auth/site-keys.json)\" = 600"
site_cookie() {
    local c
    c=$(timeout 20 ip netns exec "$NS_C" openconnect --protocol=anyconnect --servercert "$PIN" --non-inter --token-mode=oidc \
        --token-secret=@"$WORK/token3.jwt" --authenticate https://198.18.0.1/ 2>/dev/null | sed -n "s/^COOKIE='\(.*\)'$/\1/p")
    echo "${c##*webvpn=}"
}
COOKIE1=$(site_cookie)
check "a new login's cookie is a ticket sealed with the Site's key ($K1)" sh -c "echo '$COOKIE1' | grep -q '^mst\.1\.$K1\.'"
if out=$(api POST "/microsoftTunnelSites/$SITE/rotateTicketKey" ""); then pass "rotateTicketKey accepted"; else fail "rotateTicketKey: $out"; fi
K2=$(grep '"msg":"site.ticket_key.added"' "$WORK/control.log" | tail -1 | json 'd["key"]')
wait_for "the new key ($K2) reached auth, for opening first" 100 grep -q "\"msg\":\"auth.tickets.keys\".*\"keys\":\"[^\"]*$K2" "$WORK/auth.log"
wait_for "  … and seals once the server reported having it" 100 grep -q "\"msg\":\"auth.tickets.keys\".*\"sealing\":\"$K2\"" "$WORK/auth.log"
check "the control plane logged the promotion" grep -q "\"msg\":\"site.ticket_key.sealing\".*\"key\":\"$K2\"" "$WORK/control.log"
COOKIE2=$(site_cookie)
check "a login now gets a ticket sealed with $K2" sh -c "echo '$COOKIE2' | grep -q '^mst\.1\.$K2\.'"
{ printf 'CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nHost: 198.18.0.1\r\nCookie: webvpn=%s\r\n\r\n' "$COOKIE1"; sleep 1; } |
    timeout 5 ip netns exec "$NS_C" openssl s_client -quiet -connect 198.18.0.1:443 > "$WORK/old-key-cookie.out" 2>/dev/null || true
check "the ticket sealed with $K1 before the rotation still opens a tunnel" grep -q '200 CONNECTED' "$WORK/old-key-cookie.out"
KEYS=$(python3 -c "import json; print('\n'.join(k['key'] for k in json.load(open('$RUN/mstunnel-auth/site-keys.json'))['keys']))")
check "no ticket key in any log" sh -c "! echo '$KEYS' | grep -F -f - '$WORK/control.log' '$WORK/agent.log' '$WORK/server.log' '$WORK/auth.log'"
# Malformed input reaches the control plane through the agent's report: 5 datagrams that
# are not DTLS (informational; the status does not change).
ip netns exec "$NS_C" python3 -c "
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(5): s.sendto(b'\\x00not dtls %d' % i, ('198.18.0.1', 443))"
refused_shown() { api GET "/microsoftTunnelSites/$SITE/microsoftTunnelServers/$SERVER/healthChecks" | python3 -c "
import json,sys
c=[x for x in json.load(sys.stdin)['value'] if x['id']=='refusedInput']
sys.exit(0 if c and c[0]['status']=='informational' and 'dtlsNotDTLS 5' in c[0]['message'] else 1)"; }
wait_for "healthChecks: refusedInput shows the 5 datagrams that were not DTLS" 100 refused_shown
wait_for "getHealthMetrics: malformedInput = 5" 100 metric_is malformedInput 5
# The same counters for Prometheus, from the agent (docs/metrics.md), read with
# prometheus_client's own text parser.
metrics_ok() {
    ip netns exec "$NS_G" curl -sf http://127.0.0.1:9464/metrics > "$WORK/metrics.txt" || return 1
    /opt/mst-venv/bin/python3 - "$WORK/metrics.txt" <<'PY'
import sys
from prometheus_client.parser import text_string_to_metric_families
samples, families = {}, list(text_string_to_metric_families(open(sys.argv[1]).read()))
for f in families:
    assert f.documentation and f.type in ("counter", "gauge", "histogram"), f.name
    for s in f.samples:
        samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
def v(name, **labels): return samples.get((name, tuple(sorted(labels.items()))))
assert v("mstunnel_gateway_up") == 1
assert v("mstunnel_sessions", state="connected") == 1
assert v("mstunnel_auth_available") == 1
# The stock client is on DTLS: its pings went both ways over it.
assert v("mstunnel_tunnel_bytes_total", direction="from_clients", channel="dtls") > 0
assert v("mstunnel_tunnel_packets_total", direction="to_clients", channel="dtls") > 0
assert v("mstunnel_malformed_input_total", **{"class": "dtlsNotDTLS"}) == 5
assert v("mstunnel_logins_total", outcome="success") >= 1
# Each login was one validation by mstunnel-auth.
assert v("mstunnel_auth_latency_seconds_count") >= 1
assert v("mstunnel_auth_latency_seconds_bucket", le="+Inf") == v("mstunnel_auth_latency_seconds_count")
PY
}
wait_for "the agent's /metrics (Prometheus text, parsed): gateway up, 1 session, DTLS traffic both ways, 5 dtlsNotDTLS, logins, auth latency" 60 metrics_ok
check "the metrics endpoint answers nothing else" sh -c "ip netns exec '$NS_G' curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9464/ | grep -qx 404"
check "no user name in the metrics" sh -c "! grep -q '@' '$WORK/metrics.txt'"
# The control plane's own: API requests by route pattern (never a raw path), check-ins,
# reports received, servers by health status.
control_metrics_ok() {
    ip netns exec "$NS_I" curl -sf http://127.0.0.1:9465/metrics > "$WORK/control-metrics.txt" || return 1
    /opt/mst-venv/bin/python3 - "$WORK/control-metrics.txt" "$SERVER" <<'PY'
import sys
from prometheus_client.parser import text_string_to_metric_families
samples = {}
for f in text_string_to_metric_families(open(sys.argv[1]).read()):
    assert f.documentation is not None and f.type in ("counter", "gauge", "histogram"), f.name
    for s in f.samples:
        samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
def v(name, **labels): return samples.get((name, tuple(sorted(labels.items()))), 0)
assert v("mstunnel_control_agent_checkins_total") >= 2
assert v("mstunnel_control_reports_received_total", kind="health") >= 1
# One server, counted under whatever status it has now (CPU use alone can make it unhealthy
# on a busy machine).
assert sum(val for (n, _), val in samples.items() if n == "mstunnel_control_servers") == 1
routes = {dict(k[1]).get("route") for k in samples if k[0] == "mstunnel_control_http_requests_total"}
assert "/agent/v1/checkin" in routes, sorted(r or "" for r in routes)
assert not any(sys.argv[2] in (r or "") for r in routes), "a raw server id in a route label"
assert any(k[0] == "mstunnel_control_http_request_duration_seconds_count" for k in samples)
PY
}
wait_for "the control plane's /metrics (parsed): check-ins, health reports, 1 server by status, API requests by route pattern" 60 control_metrics_ok
control_metrics_ok >/dev/null 2>&1 || { echo "  what it read:"; control_metrics_ok 2>&1 | tail -2 | sed 's/^/    /'; grep -E '^mstunnel_control_(servers|agent_checkins|reports_received)' "$WORK/control-metrics.txt" | sed 's/^/    /'; }

echo "== a configuration change reaches the gateway; the connected session survives"
if api PATCH "/microsoftTunnelConfigurations/$CFG" '{"routeIncludes":["198.18.1.0/24"],"advancedSettings":[{"name":"dpd","value":"5"},{"name":"keepalive","value":"5"},{"name":"banner","value":"pushed by the control plane"}]}' >/dev/null; then
    pass "configuration patched"; else fail "configuration patched"; fi
wait_for "gateway applied the new configuration" 100 grep -q '"msg":"settings.applied"' "$WORK/server.log"
wait_for "admin-settings.json updated on disk" 50 grep -q '198.18.1.0/24' "$STATE/admin-settings.json"
check "connected client still running" kill -0 "$FIRST_OC"
check "connected session still pings corp" ip netns exec "$NS_C" ping -c 2 -i 0.2 -W 2 198.18.1.2
check "connected session kept its address" sh -c "ip -n $NS_C -4 -o addr show dev tun0 | grep -q 'inet $addr1/'"
add_second_client
oc2 second --token-mode=oidc --token-secret=@"$WORK/token2.jwt"
if wait_tunnel2 second; then pass "second client connected"; else fail "second client connected"; fi
check "new session gets the new /24 route" grep -q 'CISCO_SPLIT_INC_0_MASKLEN=24' "$WORK/env-second.connect"
check "new session sees the pushed banner" grep -q 'pushed by the control plane' "$WORK/oc-second.log"

echo "== log collection"
now=$(date -u +%Y-%m-%dT%H:%M:%SZ); start=$(date -u -d '-10 min' +%Y-%m-%dT%H:%M:%SZ)
if out=$(api POST "/microsoftTunnelSites/$SITE/microsoftTunnelServers/$SERVER/createServerLogCollectionRequest" "{\"startDateTime\":\"$start\",\"endDateTime\":\"$(date -u -d '+1 min' +%Y-%m-%dT%H:%M:%SZ)\"}"); then
    pass "log collection requested"; LC=$(echo "$out" | json 'd["id"]')
else fail "log collection requested: $out"; fi
wait_for "log collection completed" 100 log_collection_done
if out=$(api POST "/microsoftTunnelServerLogCollectionResponses/$LC/createDownloadUrl" ''); then
    URL=$(echo "$out" | json 'd["value"]')
    ip netns exec "$NS_I" curl -sS --cacert "$CONTROL/ca.crt" "$URL" > "$WORK/collected.log" || true
    check "collected logs contain the gateway's settings.applied line" grep -q 'settings.applied' "$WORK/collected.log"
    check "collected logs contain the agent's lines" grep -q 'mstunnel-agent' "$WORK/collected.log"
    check "no token in the collected logs" sh -c "! grep -q 'eyJ' '$WORK/collected.log'"
else fail "download URL: $out"; fi

echo "== control plane down for 60 reports (an hour at the default 60 s interval): the gateway keeps serving, reports queue, then arrive once"
outage_start=$(date -u +%s)
stop_pid "$CONTROL_PID"
sleep 1
stop_oc   # a session ends during the outage: its event must arrive later
sleep 29
check "gateway still serves during the outage" ip netns exec "$NS_C2" ping -c 2 -i 0.2 -W 2 198.18.1.2
depth=$(outbox_depth)
check "reports queued in the outbox during the outage ($depth)" test "$depth" -ge 20
stop_pid "$AGENT_PID"   # the agent restarts during the outage too: the queue is durable
agent_run
sleep 30
depth=$(outbox_depth)
check "the queue survived the agent restart and kept growing ($depth)" test "$depth" -ge 45
outage_end=$(date -u +%s)
start_control
wait_for "outbox drained after recovery" 200 outbox_empty
api POST "/microsoftTunnelSites/$SITE/microsoftTunnelServers/$SERVER/getHealthMetricTimeSeries" '{"metricName":"cpuUsage"}' > "$WORK/series.json" || true
check "time series has no duplicate points" python3 -c "
import json,sys
v=json.load(open('$WORK/series.json'))['value']
t=[p['dateTime'] for p in v]
sys.exit(0 if len(t) == len(set(t)) and len(t) >= 10 else 1)"
check "time series covers the outage (no gap > 5 s)" python3 -c "
import json,sys,datetime
v=json.load(open('$WORK/series.json'))['value']
t=sorted(datetime.datetime.fromisoformat(p['dateTime'].replace('Z','+00:00')) for p in v)
gaps=[(b-a).total_seconds() for a,b in zip(t,t[1:])]
sys.exit(0 if gaps and max(gaps) <= 5 else 1)"
check "the outage's reports are all there (at least 50 of its ~60 s)" python3 -c "
import json,sys,datetime
v=json.load(open('$WORK/series.json'))['value']
t=[datetime.datetime.fromisoformat(p['dateTime'].replace('Z','+00:00')).timestamp() for p in v]
n=sum(1 for x in t if $outage_start <= x <= $outage_end)
print(n, 'points during the outage')
sys.exit(0 if n >= 50 else 1)"
api GET "/microsoftTunnelSites/$SITE/microsoftTunnelServers/$SERVER/sessionEvents" > "$WORK/events.json" || true
check "the session that ended during the outage arrived as one event" python3 -c "
import json,sys
v=json.load(open('$WORK/events.json'))['value']
ended=[e for e in v if e['type']=='sessionDisconnected' and e['userName']=='fay@corp.test']
sys.exit(0 if len(ended)==1 and ended[0]['bytesIn'] is not None else 1)"
check "each connect event is there exactly once" python3 -c "
import json,sys
v=json.load(open('$WORK/events.json'))['value']
c=sorted(e['userName'] for e in v if e['type']=='sessionConnected' and e['userName']!='hal@corp.test')
ids=[e['id'] for e in v]
sys.exit(0 if c==['fay@corp.test','gus@corp.test'] and len(ids)==len(set(ids)) else 1)"

echo "== proxies"
cat > "$WORK/tinyproxy.conf" <<CONF
Port 8888
Listen 127.0.0.1
Timeout 60
Allow 127.0.0.1
ConnectPort 8443
LogFile "$WORK/tinyproxy.log"
LogLevel Connect
PidFile "$WORK/tinyproxy.pid"
CONF
sed -e 's/^Port 8888/Port 8889/' -e "s#tinyproxy.log#tinyproxy-auth.log#" -e "s#tinyproxy.pid#tinyproxy-auth.pid#" "$WORK/tinyproxy.conf" > "$WORK/tinyproxy-auth.conf"
echo 'BasicAuth proxyuser proxypass' >> "$WORK/tinyproxy-auth.conf"
ip netns exec "$NS_G" tinyproxy -d -c "$WORK/tinyproxy.conf" > /dev/null 2>&1 & PIDS+=($!)
ip netns exec "$NS_G" tinyproxy -d -c "$WORK/tinyproxy-auth.conf" > /dev/null 2>&1 & PIDS+=($!)
sleep 0.5
stop_pid "$AGENT_PID"
agent_run https_proxy=http://127.0.0.1:8888
wait_for "check-ins go through the proxy" 50 grep -q 'CONNECT.*198.18.1.2:8443' "$WORK/tinyproxy.log"
stop_pid "$AGENT_PID"
: > "$WORK/agent-authproxy.log"
ip netns exec "$NS_G" env https_proxy=http://127.0.0.1:8889 timeout 5 "$BIN/mstunnel-agent" run --state-dir "$STATE" --run-dir "$RUN" > "$WORK/agent-authproxy.log" 2>&1 || true
check "an authenticating proxy (407) is refused with a clear error" grep -q '407' "$WORK/agent-authproxy.log"
ip netns exec "$NS_G" env https_proxy=http://proxyuser:proxypass@127.0.0.1:8889 timeout 5 "$BIN/mstunnel-agent" run --state-dir "$STATE" --run-dir "$RUN" > "$WORK/agent-credproxy.log" 2>&1 || true
check "proxy credentials in https_proxy are refused" grep -qi 'authenticated prox' "$WORK/agent-credproxy.log"
check "the proxy password is not logged" sh -c "! grep -q proxypass '$WORK/agent-credproxy.log'"
agent_run

echo "== agent certificate renewal, and an expired certificate"
# A control plane issuing 9-second certificates: a second agent identity renews before
# expiry and keeps checking in past its first certificate's end; a copy of the first
# certificate, left to expire, is refused and the agent says how to recover.
stop_pid "$CONTROL_PID"
CERT_LIFETIME=9 start_control
if out=$(api POST "/microsoftTunnelSites/$SITE/createJoinToken" '{}'); then echo "$out" | json 'd["joinToken"]' > "$WORK/join2.token"; fi
if ip netns exec "$NS_G" "$BIN/mstunnel-agent" enroll --control-url "$CP" --join-token-file "$WORK/join2.token" --state-dir "$WORK/short-state" > "$WORK/enroll-short.log" 2>&1; then
    pass "second identity enrolled"; else fail "second identity enrolled"; cat "$WORK/enroll-short.log"; fi
cp -a "$WORK/short-state" "$WORK/short-state-first-cert"
first_serial=$(openssl x509 -noout -serial -in "$WORK/short-state/certs/agent.crt")
# Its own run dir: this identity must not drive the test's gateway.
ip netns exec "$NS_G" "$BIN/mstunnel-agent" run --state-dir "$WORK/short-state" --run-dir "$WORK/no-gateway" > "$WORK/agent-short.log" 2>&1 &
SHORT_PID=$!; PIDS+=($SHORT_PID)
sleep 13
check "renewed before expiry (agent.renewed)" grep -q '"msg":"agent.renewed"' "$WORK/agent-short.log"
check "renewed certificate is a new one" sh -c "test \"\$(openssl x509 -noout -serial -in '$WORK/short-state/certs/agent.crt')\" != '$first_serial'"
check "renewed certificate chains to the CA" openssl verify -CAfile "$CONTROL/ca.crt" "$WORK/short-state/certs/agent.crt"
check "no expiry error while renewing on time" sh -c "! grep -q 'agent.certificate.expired' '$WORK/agent-short.log'"
stop_pid "$SHORT_PID"
ip netns exec "$NS_G" timeout 5 "$BIN/mstunnel-agent" run --state-dir "$WORK/short-state-first-cert" --run-dir "$WORK/no-gateway" > "$WORK/agent-expired.log" 2>&1 || true
check "expired certificate: the agent says so and how to re-enroll" sh -c "grep -q 'agent.certificate.expired' '$WORK/agent-expired.log' && grep -q 'enroll' '$WORK/agent-expired.log'"
stop_pid "$CONTROL_PID"
CERT_LIFETIME=3600 start_control --admin-auth-config "$STATE/auth.json"

echo "== admin bearer tokens from the issuer: the admin role is required"
code_with() { ip netns exec "$NS_I" curl -s -o /dev/null -w '%{http_code}' --cacert "$CONTROL/ca.crt" -H "Authorization: Bearer $1" "$API/microsoftTunnelSites"; }
admin_jwt=$(mint --oid 0b1f7a3e-0000-4000-8000-0000000000a1 --upn admin@corp.test --claim-json roles='["MSTunnel.Admin"]')
user_jwt=$(mint --oid 0b1f7a3e-0000-4000-8000-0000000000a2 --upn user@corp.test --claim-json roles='["Tunnel.Users"]')
old_jwt=$(mint --oid 0b1f7a3e-0000-4000-8000-0000000000a1 --upn admin@corp.test --claim-json roles='["MSTunnel.Admin"]' --exp-in -600)
check "JWT with the admin role: 200" test "$(code_with "$admin_jwt")" = 200
check "JWT without the admin role: 403" test "$(code_with "$user_jwt")" = 403
check "expired admin JWT: 401" test "$(code_with "$old_jwt")" = 401
check "the local admin token still works" api GET /microsoftTunnelSites

echo "== offline after no check-ins"
stop_pid "$AGENT_PID"
wait_for "server shows offline without check-ins" 150 status_is offline

check "no admin token, join token or bearer token in any log" sh -c "! grep -h -e \"\$(cat '$CONTROL/admin-token')\" -e \"\$(cut -d. -f3 '$WORK/join.token')\" -e 'eyJ' '$WORK/control.log' '$WORK/agent.log' '$WORK/server.log' '$WORK/auth.log'"
summary
