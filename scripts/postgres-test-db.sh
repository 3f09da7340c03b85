#!/usr/bin/env bash
# A local PostgreSQL for the control plane's store tests (scripts/test.sh runs the control
# plane's unit tests a second time against it; IntegrationTests/netns/18_* runs two
# control-plane instances on it). Starts Debian's cluster if it is down, makes the role
# `mstunnel_test` (password login, may create databases) and an empty database of the
# given name (dropped first if it exists), and lets that role log in with its password over
# the Unix socket — the tests' processes run in network namespaces of their own, where the
# socket (a file) still reaches the server and 127.0.0.1 does not.
#
#   postgres-test-db.sh [DATABASE]     prints the postgres:// address (default mstunnel_test)
#   postgres-test-db.sh --drop DATABASE
#
# Needs root and Debian's postgresql package; exits 77 (skip) without them.
set -euo pipefail
ROLE=mstunnel_test PASSWORD=mstunnel-test SOCKET_DIR=/var/run/postgresql
command -v pg_lsclusters >/dev/null && [ "$(id -u)" = 0 ] || { echo "postgres-test-db: needs root and Debian's postgresql package" >&2; exit 77; }
psql_admin() { su postgres -s /bin/sh -c "PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 $*"; }
if [ "${1:-}" = --drop ]; then
    [[ ${2:-} =~ ^[a-z0-9_]+$ ]] || { echo "postgres-test-db: bad database name" >&2; exit 2; }
    psql_admin "-c 'DROP DATABASE IF EXISTS $2 WITH (FORCE)'" >/dev/null
    exit 0
fi
DB=${1:-mstunnel_test}
[[ $DB =~ ^[a-z0-9_]+$ ]] || { echo "postgres-test-db: bad database name '$DB'" >&2; exit 2; }
read -r VERSION CLUSTER STATUS < <(pg_lsclusters -h | awk '{print $1, $2, $4; exit}')
[ -n "${VERSION:-}" ] || { echo "postgres-test-db: no PostgreSQL cluster (pg_createcluster)" >&2; exit 1; }
HBA=/etc/postgresql/$VERSION/$CLUSTER/pg_hba.conf
if ! grep -q "^local all $ROLE scram-sha-256" "$HBA"; then
    # Before Debian's "local all all peer": the first matching line wins.
    sed -i "1i local all $ROLE scram-sha-256" "$HBA"
    # Anything the tools print goes to stderr: stdout is the address, read by the caller.
    if [ "$STATUS" = online ]; then pg_ctlcluster "$VERSION" "$CLUSTER" reload >&2; fi
fi
[ "$STATUS" = online ] || pg_ctlcluster "$VERSION" "$CLUSTER" start >&2
for _ in $(seq 50); do [ -S "$SOCKET_DIR/.s.PGSQL.5432" ] && break; sleep 0.1; done
psql_admin "-c \"DO \\\$\\\$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE') THEN CREATE ROLE $ROLE LOGIN CREATEDB; END IF;
    ALTER ROLE $ROLE PASSWORD '$PASSWORD';
END \\\$\\\$\"" >/dev/null
psql_admin "-c 'DROP DATABASE IF EXISTS $DB WITH (FORCE)'" >&2
psql_admin "-c 'CREATE DATABASE $DB OWNER $ROLE'" >&2
echo "postgres://$ROLE:$PASSWORD@/$DB?host=$SOCKET_DIR"
