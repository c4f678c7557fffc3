#!/usr/bin/env bash
# Runs a command against a private, throwaway PostgreSQL cluster. The script initializes the
# cluster in a new temporary folder, listens on 127.0.0.1 on a free port and exports
# DATABASE_URL for a fresh database. It stops the cluster on exit, also when the command fails.
#
# Usage: scripts/with-postgres.sh CMD [ARG...]
# PG_SERVER_OPTIONS adds server settings after the defaults below, which it can override, for
# example PG_SERVER_OPTIONS='-c fsync=on -c shared_preload_libraries=pg_stat_statements'.
# PG_BIN selects the PostgreSQL binaries. By default it is /usr/lib/postgresql/15/bin, or the
# newest version under /usr/lib/postgresql when 15 is not installed. Run as root, the server
# runs as the postgres user, because PostgreSQL refuses to run as root.
set -euo pipefail

if [ "$#" -eq 0 ]; then
  echo "usage: $0 CMD [ARG...]" >&2
  exit 2
fi

if [ -z "${PG_BIN:-}" ]; then
  PG_BIN=/usr/lib/postgresql/15/bin
  if [ ! -x "$PG_BIN/initdb" ]; then
    newest="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    PG_BIN="${newest:-$PG_BIN}"
  fi
fi
if [ ! -x "$PG_BIN/initdb" ]; then
  echo "with-postgres: $PG_BIN/initdb not found; install PostgreSQL or set PG_BIN" >&2
  exit 2
fi

pg_dir="$(mktemp -d /tmp/cdil-pg.XXXXXX)"
as_owner=()
if [ "$(id -u)" -eq 0 ]; then
  chown postgres:postgres "$pg_dir"
  as_owner=(runuser -u postgres --)
fi
chmod 700 "$pg_dir"

stop_cluster() {
  local status=$?
  if [ -f "$pg_dir/data/postmaster.pid" ]; then
    "${as_owner[@]}" "$PG_BIN/pg_ctl" -D "$pg_dir/data" -m fast -w -t 60 stop >/dev/null ||
      kill -TERM "$(head -n 1 "$pg_dir/data/postmaster.pid")" 2>/dev/null || true
  fi
  rm -rf "$pg_dir"
  exit "$status"
}
trap stop_cluster EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The kernel picks a free port for a socket bound to port 0. Another program could take the
# port before the server starts, and the server then fails to start and logs why.
port="$(node -e 'const s=require("node:net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"

"${as_owner[@]}" "$PG_BIN/initdb" -D "$pg_dir/data" -U postgres --auth=trust \
  --encoding=UTF8 --locale=C.UTF-8 >"$pg_dir/initdb.log" 2>&1 || {
  cat "$pg_dir/initdb.log" >&2
  exit 1
}
# Durability settings are off because the cluster is thrown away: tests need speed, not
# crash safety. max_connections covers parallel test files with several pools each.
"${as_owner[@]}" "$PG_BIN/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w -t 30 \
  -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$pg_dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 ${PG_SERVER_OPTIONS:-}" \
  start >/dev/null || {
  cat "$pg_dir/server.log" >&2
  exit 1
}
"$PG_BIN/psql" -h 127.0.0.1 -p "$port" -U postgres -q -v ON_ERROR_STOP=1 \
  -c 'CREATE DATABASE cdil_test' postgres

export DATABASE_URL="postgres://postgres@127.0.0.1:$port/cdil_test"
export PG_BIN
echo "with-postgres: PostgreSQL on 127.0.0.1:$port, DATABASE_URL=$DATABASE_URL"
"$@"
