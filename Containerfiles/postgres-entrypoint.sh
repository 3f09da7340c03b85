#!/bin/sh
# Entry point of the mstunnel-postgres image. First start: a cluster in the volume
# (/var/lib/mstunnel-postgres/data) whose superuser logs in only over the container's own
# Unix socket, and a role `mstunnel` (login, no superuser) owning the database `mstunnel`,
# with the password in /run/secrets/postgres-password — the same file the control plane
# reads. Every start: listen on 127.0.0.1:$MSTUNNEL_POSTGRES_PORT (default 5432) only.
set -eu
DATA=/var/lib/mstunnel-postgres/data
PASSWORD_FILE=/run/secrets/postgres-password
PORT=${MSTUNNEL_POSTGRES_PORT:-5432}
SOCKETS=/tmp
fail() { printf '{"level":"critical","msg":"postgres.cannot_start","error":"%s"}\n' "$1" >&2; exit 1; }
if [ ! -s "$DATA/PG_VERSION" ]; then
    [ -r "$PASSWORD_FILE" ] && [ -s "$PASSWORD_FILE" ] || fail "no password in $PASSWORD_FILE (compose: MSTUNNEL_POSTGRES_PASSWORD_FILE, owner 995, group 993, mode 0440)"
    echo '{"level":"notice","msg":"postgres.initializing","data":"'"$DATA"'"}'
    initdb -D "$DATA" -U postgres --auth-local=peer --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 > /tmp/initdb.log 2>&1 \
        || { cat /tmp/initdb.log >&2; fail "initdb failed (above)"; }
    pg_ctl -D "$DATA" -o "-c listen_addresses='' -c unix_socket_directories=$SOCKETS" -w start > /tmp/pg_ctl.log 2>&1 \
        || { cat /tmp/pg_ctl.log >&2; fail "the first start failed (above)"; }
    # The password reaches psql as a variable on stdin, never an argument.
    { printf '\\set pw `cat %s`\n' "$PASSWORD_FILE"
      printf "CREATE ROLE mstunnel LOGIN PASSWORD :'pw';\n"
      printf 'CREATE DATABASE mstunnel OWNER mstunnel;\n'; } | psql -X -q -v ON_ERROR_STOP=1 -h "$SOCKETS" -U postgres -d postgres \
        || fail "creating the role and database failed"
    pg_ctl -D "$DATA" -w stop > /dev/null
    echo '{"level":"notice","msg":"postgres.initialized","role":"mstunnel","database":"mstunnel"}'
fi
exec postgres -D "$DATA" -c listen_addresses=127.0.0.1 -c port="$PORT" -c unix_socket_directories=$SOCKETS
