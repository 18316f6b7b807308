#!/usr/bin/env bash
# The embedded PostgreSQL cluster that lives inside the checkout (.pgclip/), run as the
# postgres OS user on its own port. Usage: cluster.sh start|stop|status|url|psql [args]
# With PG=N (make start PG=18) it is a cluster of that major: .pgclip/pgN/, port 54300+N, so
# that clusters of different majors run side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
if [ -n "${PG:-}" ]; then STATE=$ROOT/.pgclip/pg$PG; else STATE=$ROOT/.pgclip; fi
DATA=$STATE/data
RUN=$STATE/run
LOG=$STATE/log/server.log
if [ -n "${PG:-}" ]; then PORT=${PGCLIP_PORT:-$((54300 + PG))}; else PORT=${PGCLIP_PORT:-54329}; fi
DB=${PGCLIP_DB:-pgclip}
PG_CONFIG=${PG_CONFIG:-pg_config}
BIN=$($PG_CONFIG --bindir)

# PostgreSQL refuses to run as root: run its programs as the postgres OS user then.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
url() { echo "postgresql://postgres@localhost:$PORT/$DB"; }
running() { [ -f "$DATA/postmaster.pid" ] && as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

start() {
  mkdir -p "$STATE"
  if [ ! -f "$DATA/PG_VERSION" ]; then
    mkdir -p "$DATA" "$RUN" "$(dirname "$LOG")"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$DATA" "$RUN" "$(dirname "$LOG")"; fi
    chmod 700 "$DATA"
    as_pg "$BIN/initdb" -D "$DATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
    cat >>"$DATA/postgresql.conf" <<CONF
# pgclip embedded cluster (development only: trust authentication on localhost)
port = $PORT
listen_addresses = 'localhost'
unix_socket_directories = '$RUN'
logging_collector = off
# LLVM JIT loaded before torch crashes a backend; pgclip refuses with an error then (README).
jit = off
CONF
  fi
  if ! running; then
    as_pg "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start >/dev/null \
      || { tail -20 "$LOG" >&2; exit 1; }
  fi
  if ! as_pg "$BIN/psql" -h "$RUN" -p "$PORT" -U postgres -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
    as_pg "$BIN/createdb" -h "$RUN" -p "$PORT" -U postgres "$DB"
  fi
  echo "[cluster] running: data $DATA, log $LOG"
  url
}

case "${1:-}" in
  start) start ;;
  stop) if running; then as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null; fi; echo "[cluster] stopped" ;;
  status) if running; then echo "running on port $PORT"; else echo "stopped"; exit 3; fi ;;
  url) url ;;
  psql) shift; exec "$BIN/psql" "$(url)" "$@" ;;
  *) echo "usage: $0 start|stop|status|url|psql" >&2; exit 2 ;;
esac
