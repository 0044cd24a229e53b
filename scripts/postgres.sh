#!/usr/bin/env bash
# A throwaway PostgreSQL 15 + PostGIS server for tests and benchmarks, all state in one directory.
#
#   scripts/postgres.sh start DIR   initdb DIR/data if new, start on 127.0.0.1 (free port, socket in
#                                   DIR), create database citytwin with PostGIS; print its URL
#   scripts/postgres.sh url DIR     print the URL of the server started in DIR
#   scripts/postgres.sh stop DIR    stop it (the directory stays; rm -rf it to forget everything)
#
# Durability is off (fsync, synchronous_commit, full_page_writes): never use this for real data.
# As root, the server runs as the `postgres` OS user (initdb refuses root) and DIR is chowned to it.
# PG_BIN overrides where the server binaries are (default: /usr/lib/postgresql/15/bin);
# PG_OPTIONS adds server settings, e.g. PG_OPTIONS="-c shared_buffers=4GB" for a load test.
set -euo pipefail

usage() { echo "usage: $0 start|stop|url DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$(realpath -m "$2")
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
DB=citytwin

if [ ! -x "$PG_BIN/pg_ctl" ]; then
  echo "PostgreSQL server binaries not found in $PG_BIN; install postgresql-15 and" \
       "postgresql-15-postgis-3 (make system-deps) or set PG_BIN" >&2
  exit 3
fi

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

url() {
  local user port
  user=$(cat "$dir/user")
  port=$(cat "$dir/port")
  echo "postgresql://$user@127.0.0.1:$port/$DB"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  mkdir -p "$dir"
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$dir"
    echo postgres >"$dir/user"
  else
    id -un >"$dir/user"
  fi
  if [ ! -s "$dir/data/PG_VERSION" ]; then
    as_owner "$PG_BIN/initdb" -D "$dir/data" -U "$(cat "$dir/user")" --auth=trust \
      --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; exit 1; }
  fi
  free_port >"$dir/port"
  as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start -o \
    "-p $(cat "$dir/port") -k $dir -c listen_addresses=127.0.0.1 -c fsync=off \
     -c synchronous_commit=off -c full_page_writes=off -c max_connections=50 ${PG_OPTIONS:-}" \
    >/dev/null ||
    { tail -n 20 "$dir/server.log" >&2; exit 1; }
  local psql=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$(cat "$dir/port")"
              -U "$(cat "$dir/user")")
  if ! as_owner "${psql[@]}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'" |
      grep -q 1; then
    as_owner "${psql[@]}" -d postgres -c "CREATE DATABASE $DB"
  fi
  as_owner "${psql[@]}" -d "$DB" -c "CREATE EXTENSION IF NOT EXISTS postgis" ||
    { echo "PostGIS is missing: install postgresql-15-postgis-3 (make system-deps)" >&2
      as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null; exit 4; }
  url
}

stop() {
  if [ -s "$dir/data/postmaster.pid" ]; then
    as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
  fi
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  url) url ;;
  *) usage ;;
esac
