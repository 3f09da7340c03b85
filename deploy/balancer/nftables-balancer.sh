#!/usr/bin/env bash
# An L4 balancer for a Site of mstunnel servers on nftables alone (docs/operations.md,
# "A Site behind a balancer"): DNAT of TCP and UDP on one port to the servers, by a hash of
# the client's address, so a client's TLS and its DTLS reach the same server. It probes
# each server's liveness page and leaves out one that fails it; a client of that server
# reconnects, lands on a sibling, and resumes its session there with its cookie.
#
# Buckets, not "hash mod the number of live servers": each of the 64 buckets has a home
# server, and a dead server's buckets are dealt round the live ones (its clients spread over
# every sibling rather than doubling the load of one). When a server fails or returns, only
# the clients of its buckets move (with two down, also those of the first that were dealt
# to the second). The whole table is replaced in one nft transaction, so packets never see
# a half-written rule.
#
#   nftables-balancer.sh --vip 203.0.113.10 --backend 10.0.0.11 --backend 10.0.0.12 [--port 443]
#                        [--interval 2] [--fails 2] [--seed 0x6d737476] [--once]
#                        [--tcp-only --probe-path /healthz --table NAME]   (control-plane instances)
# Runs until stopped (SIGTERM removes the table); --once writes the table for all servers
# and exits. Needs root (or CAP_NET_ADMIN), nft and curl, and conntrack (Debian package
# `conntrack`) to move a dead server's DTLS flows at once; net.ipv4.ip_forward=1.
set -euo pipefail

VIP="" PORT=443 INTERVAL=2 FAILS=2 ONCE=0 TABLE=mstunnel_lb BUCKETS=64 PROBE_PATH=/ TCP_ONLY=0
# One seed for both rules and every rewrite: without it nft picks a random seed per rule,
# and a client's TLS and DTLS would hash to different servers (seen in the Site test).
SEED=0x6d737476
BACKENDS=()
usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
    case $1 in
        --vip) VIP=$2; shift 2 ;;
        --backend) BACKENDS+=("$2"); shift 2 ;;
        --port) PORT=$2; shift 2 ;;
        --interval) INTERVAL=$2; shift 2 ;;
        --fails) FAILS=$2; shift 2 ;;
        --table) TABLE=$2; shift 2 ;;
        --seed) SEED=$2; shift 2 ;;
        --once) ONCE=1; shift ;;
        # Control-plane instances (docs/control-plane.md, "Several instances"): HTTPS only,
        # and /healthz answers 503 when the instance cannot reach its database.
        --tcp-only) TCP_ONLY=1; shift ;;
        --probe-path) PROBE_PATH=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "nftables-balancer: unknown argument '$1'" >&2; usage 2 >&2 ;;
    esac
done
ipv4() { [[ $1 =~ ^([0-9]{1,3}\.){3}[0-9]{1,3}$ ]]; }
ipv4 "$VIP" || { echo "nftables-balancer: --vip must be an IPv4 address (got '$VIP')" >&2; exit 2; }
[ ${#BACKENDS[@]} -ge 1 ] || { echo "nftables-balancer: at least one --backend" >&2; exit 2; }
for b in "${BACKENDS[@]}"; do ipv4 "$b" || { echo "nftables-balancer: backend '$b' is not an IPv4 address" >&2; exit 2; }; done
[[ $SEED =~ ^(0x[0-9a-fA-F]{1,8}|[0-9]{1,10})$ ]] || { echo "nftables-balancer: bad --seed '$SEED'" >&2; exit 2; }
[[ $PROBE_PATH =~ ^/[A-Za-z0-9/._-]*$ ]] || { echo "nftables-balancer: --probe-path must be a path like /healthz" >&2; exit 2; }
[[ $TABLE =~ ^[A-Za-z0-9_]+$ ]] || { echo "nftables-balancer: bad --table '$TABLE'" >&2; exit 2; }
[[ $PORT =~ ^[0-9]+$ ]] && [ "$PORT" -ge 1 ] && [ "$PORT" -le 65535 ] || { echo "nftables-balancer: bad --port '$PORT'" >&2; exit 2; }

log() { printf '{"ts":"%s","msg":"%s"%s}\n' "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" "$1" "${2:-}"; }

# live[i]=1 when backend i answers its liveness page; misses[i] counts failed probes in a row.
declare -a live misses
for i in "${!BACKENDS[@]}"; do live[i]=1; misses[i]=0; done

write_table() {
    local map="" b home chosen any=0 n=${#BACKENDS[@]} i
    local alive=()
    for ((i = 0; i < n; i++)); do [ "${live[i]}" = 1 ] && alive+=("${BACKENDS[i]}"); done
    for ((b = 0; b < BUCKETS; b++)); do
        home=$((b % n))
        if [ "${live[home]}" = 1 ]; then
            chosen=${BACKENDS[home]}
        elif [ ${#alive[@]} -gt 0 ]; then
            # A dead home's buckets go round the live servers (its k-th bucket to the k-th
            # live one), so its clients spread over every sibling instead of doubling one.
            chosen=${alive[$(((b / n) % ${#alive[@]}))]}
        else
            continue
        fi
        any=1
        map+="${map:+, }$b : $chosen"
    done
    {
        echo "add table ip $TABLE"
        echo "delete table ip $TABLE"
        echo "table ip $TABLE {"
        echo "  chain prerouting {"
        echo "    type nat hook prerouting priority dstnat; policy accept;"
        if [ $any = 1 ]; then
            echo "    ip daddr $VIP tcp dport $PORT dnat to jhash ip saddr mod $BUCKETS seed $SEED map { $map }"
            [ $TCP_ONLY = 1 ] || echo "    ip daddr $VIP udp dport $PORT dnat to jhash ip saddr mod $BUCKETS seed $SEED map { $map }"
        fi
        echo "  }"
        echo "}"
    } | nft -f -
}

# The liveness page's status: 200 up, 503 draining (it closes its own tunnels, which must
# still reach their clients), anything else (000: no answer) down. With --tcp-only (control
# planes) 503 is down too: that instance cannot reach its database, and its flows are
# cleared so agents on kept-alive connections reconnect to a sibling.
probe() { curl -sk -o /dev/null --max-time 1 -w '%{http_code}' "https://$1:$PORT$PROBE_PATH" 2>/dev/null || true; }

write_table
log "balancer.started" ",\"vip\":\"$VIP\",\"port\":$PORT,\"backends\":\"${BACKENDS[*]}\""
[ $ONCE = 1 ] && exit 0
trap 'nft delete table ip "$TABLE" 2>/dev/null; log balancer.stopped; exit 0' TERM INT
down=() draining=()
while :; do
    changed=0
    for i in "${!BACKENDS[@]}"; do
        code=$(probe "${BACKENDS[i]}")
        if [ "$code" = 200 ]; then
            misses[i]=0
            if [ "${live[i]}" = 0 ]; then live[i]=1; changed=1; log "backend.up" ",\"backend\":\"${BACKENDS[i]}\""; fi
        else
            misses[i]=$((misses[i] + 1))
            if [ "${live[i]}" = 1 ] && [ "${misses[i]}" -ge "$FAILS" ]; then
                live[i]=0; changed=1; log "backend.down" ",\"backend\":\"${BACKENDS[i]}\",\"failed_probes\":${misses[i]},\"status\":\"$code\""
                if [ "$code" = 503 ] && [ $TCP_ONLY = 0 ]; then draining+=("${BACKENDS[i]}"); else down+=("${BACKENDS[i]}"); fi
            fi
        fi
    done
    [ $changed = 1 ] && write_table
    # A client's UDP keeps its port across its reconnect, and its conntrack entry would keep
    # sending its DTLS to the dead server for minutes: forget the dead server's flows.
    # A draining server closes its clients' TLS itself (they must see it, so its TCP flows
    # stay) and their DTLS is moved now, so the new handshake after the hand-over reaches
    # the sibling.
    for b in "${down[@]}" "${draining[@]}"; do
        proto=()
        for d in "${draining[@]}"; do [ "$d" = "$b" ] && proto=(-p udp); done
        if command -v conntrack >/dev/null; then
            conntrack -D "${proto[@]}" --orig-dst "$VIP" --reply-src "$b" >/dev/null 2>&1 || true
            log "backend.flows_cleared" ",\"backend\":\"$b\",\"flows\":\"${proto[1]:-all}\""
        else
            log "backend.flows_kept" ",\"backend\":\"$b\",\"why\":\"conntrack is not installed; its clients' DTLS may reach it until their flows expire (they fall back to TLS meanwhile)\""
        fi
    done
    down=() draining=()
    sleep "$INTERVAL" & wait $!
done
