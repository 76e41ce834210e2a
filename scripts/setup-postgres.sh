#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster for Cove's store tests and prints the URL.
#
#   eval "$(scripts/setup-postgres.sh)"     # exports COVE_TEST_POSTGRES_URL
#
# Idempotent: installs Debian's postgresql package only if missing, reuses a running
# cluster, creates the database only if absent. Runs as the `postgres` user on
# 127.0.0.1:${PGPORT:-5433} with its data in ${PGDATA_DIR:-/tmp/cove-pg}. Trust auth on
# loopback only: this cluster is for tests, never for real data.
set -euo pipefail

PORT="${PGPORT:-5433}"
DATA="${PGDATA_DIR:-/tmp/cove-pg}"
DB="cove_test"
log() { echo "setup-postgres: $*" >&2; }

bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1; }

if [ -z "$(bindir)" ] || [ ! -x "$(bindir)/initdb" ]; then
  log "installing postgresql (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
fi
BIN="$(bindir)"
as_pg() { if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi; }

if [ ! -s "$DATA/PG_VERSION" ]; then
  log "initdb in $DATA"
  mkdir -p "$DATA"
  chown postgres: "$DATA"
  chmod 700 "$DATA"
  as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 >/dev/null
fi

if ! as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
  log "starting on 127.0.0.1:$PORT"
  as_pg "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DATA -c fsync=off" start >/dev/null
fi

psql_() { as_pg "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -X -q -v ON_ERROR_STOP=1 "$@"; }
if [ "$(psql_ -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != "1" ]; then
  log "creating database $DB"
  psql_ -c "CREATE DATABASE $DB"
fi

URL="postgres://postgres@127.0.0.1:$PORT/$DB"
log "ready: $URL"
echo "export COVE_TEST_POSTGRES_URL=$URL"
