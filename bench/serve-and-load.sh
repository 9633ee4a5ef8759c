#!/usr/bin/env bash
# Starts an authd on a fresh database (PostgreSQL or the embedded SQLite),
# seeds the demo account, runs authd-load against it and stops it again:
# the figures of docs/performance.md come from this script.
#
#   bench/serve-and-load.sh postgres|sqlite [authd-load flags…]
#   bench/serve-and-load.sh postgres -label postgres -clients 1,8,32,64 -scenarios me,refresh -json pg.json
#
# Environment: AUTHD (the authd binary, default: built from this checkout),
# AUTHD_LOAD (likewise), BENCH_DATABASE (PostgreSQL database to recreate,
# default authd_bench), BENCH_HTTP_PORT and BENCH_ADMIN_PORT (default 18080,
# 18081), PGHOST/PGPORT/PGUSER as for psql (default 127.0.0.1:5432, postgres; a PGHOST
# starting with / is a socket directory, as for psql). Rate limits are off and the log level is warn,
# as in every figure; nothing else differs from the defaults.
set -euo pipefail
store=${1:?usage: bench/serve-and-load.sh postgres|sqlite [authd-load flags…]}
shift
root=$(cd "$(dirname "$0")/.." && pwd)
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres} PGOPTIONS="-c client_min_messages=warning"
work=$(mktemp -d)
server=
trap '[ -z "$server" ] || { kill "$server"; wait "$server"; } 2>/dev/null || true; rm -rf "$work"' EXIT
http=127.0.0.1:${BENCH_HTTP_PORT:-18080} admin=127.0.0.1:${BENCH_ADMIN_PORT:-18081}
if [ -z "${AUTHD:-}" ]; then AUTHD=$work/authd; (cd "$root" && go build -o "$AUTHD" ./cmd/authd); fi
if [ -z "${AUTHD_LOAD:-}" ]; then AUTHD_LOAD=$work/authd-load; (cd "$root" && go build -o "$AUTHD_LOAD" ./cmd/authd-load); fi

token=bench-service-token-0123456789abcdef
case $store in
postgres)
  db=${BENCH_DATABASE:-authd_bench}
  [[ $db =~ ^[a-z_][a-z0-9_]*$ ]] || { echo "bench/serve-and-load.sh: BENCH_DATABASE=$db is not a plain database name" >&2; exit 2; }
  psql -d postgres -qc "DROP DATABASE IF EXISTS $db" -qc "CREATE DATABASE $db" >/dev/null
  if [[ $PGHOST == /* ]]; then # a socket directory, as psql and pgbench take it
    export DATABASE_URL="postgres://$PGUSER@/$db?host=$PGHOST&port=$PGPORT&sslmode=disable"
  else
    export DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$db?sslmode=disable"
  fi
  force=--force ;;
sqlite)
  export DATABASE_URL="sqlite://$work/authd.db" # chosen, so migrated above and seeded with --force
  force=--force ;;
*) echo "bench/serve-and-load.sh: unknown store $store" >&2; echo "hint: postgres or sqlite" >&2; exit 2 ;;
esac
export AUTHD_DATA_DIR=$work AUTHD_HTTP_ADDR=$http AUTHD_ADMIN_ADDR=$admin \
  AUTHD_PUBLIC_URL=http://$http AUTHD_RATE_LIMIT=off AUTHD_SERVICE_TOKENS=$token \
  AUTHD_LOG_LEVEL=${AUTHD_LOG_LEVEL:-warn}
"$AUTHD" migrate up >/dev/null
"$AUTHD" serve >"$work/serve.log" 2>&1 &
server=$!
# Ours must be the one answering (a port held by another server would
# otherwise be measured in its place): wait for its own "listening" line.
for _ in $(seq 100); do
  kill -0 "$server" 2>/dev/null || break
  grep -q "listening on http://$http" "$work/serve.log" && break
  sleep 0.1
done
if ! kill -0 "$server" 2>/dev/null || ! grep -q "listening on http://$http" "$work/serve.log"; then
  echo "bench/serve-and-load.sh: authd did not start on $http:" >&2
  tail -5 "$work/serve.log" >&2
  echo "hint: free the ports or set BENCH_HTTP_PORT and BENCH_ADMIN_PORT" >&2
  exit 1
fi
"$AUTHD" seed $force >/dev/null
"$AUTHD_LOAD" -url "http://$http" -metrics-url "http://$admin" -service-token "$token" "$@"
