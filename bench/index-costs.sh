#!/usr/bin/env bash
# What each index (and foreign key) on jwt_tokens costs a refresh on PostgreSQL:
# bench/refresh-writes.sql replays a refresh's statements N times in one
# backend, once with the schema as migrated and once with each index dropped
# in turn, R rounds. Prints server time and WAL bytes per refresh.
#
#   bench/index-costs.sh            # N=4000 R=3, INDEXCOST_DATABASE=authd_indexcost (recreated, then dropped)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres} PGOPTIONS="-c client_min_messages=warning"
db=${INDEXCOST_DATABASE:-authd_indexcost} n=${N:-4000} rounds=${R:-3}
[[ $db =~ ^[a-z_][a-z0-9_]*$ ]] || { echo "bench/index-costs.sh: INDEXCOST_DATABASE=$db is not a plain database name" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"; psql -d postgres -qc "DROP DATABASE IF EXISTS $db" >/dev/null' EXIT
authd=${AUTHD:-$work/authd}
[ -x "$authd" ] || (cd "$root" && go build -o "$authd" ./cmd/authd)
psql -d postgres -qc "DROP DATABASE IF EXISTS $db" -qc "CREATE DATABASE $db" >/dev/null
export DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$db?sslmode=disable" AUTHD_DATA_DIR=$work
"$authd" migrate up >/dev/null
"$authd" seed --force >/dev/null

q() { psql -d "$db" -qAtc "$1" >/dev/null; }
run() {
  local out
  out=$(psql -d "$db" -v n="$n" -f "$root/bench/refresh-writes.sql") || return 1
  awk -v n="$n" '/^Time:/ {t = $2} /bytes/ {b = $1} END {printf "%6.0f µs %6.0f B", t * 1000 / n, b}' <<<"$out"
}
# name | what to drop | how to put it back
variants=(
  "as migrated|SELECT 1|SELECT 1"
  "ix_jwt_tokens_revoked|DROP INDEX ix_jwt_tokens_revoked|CREATE INDEX ix_jwt_tokens_revoked ON jwt_tokens (revoked)"
  "ix_jwt_tokens_expires_at|DROP INDEX ix_jwt_tokens_expires_at|CREATE INDEX ix_jwt_tokens_expires_at ON jwt_tokens (expires_at)"
  "ix_jwt_tokens_user_id|DROP INDEX ix_jwt_tokens_user_id|CREATE INDEX ix_jwt_tokens_user_id ON jwt_tokens (user_id)"
  "ix_jwt_tokens_session_id|DROP INDEX ix_jwt_tokens_session_id|CREATE INDEX ix_jwt_tokens_session_id ON jwt_tokens (session_id)"
  "ix_jwt_tokens_parent_id + FK|DROP INDEX ix_jwt_tokens_parent_id; ALTER TABLE jwt_tokens DROP CONSTRAINT jwt_tokens_parent_id_fkey|CREATE INDEX ix_jwt_tokens_parent_id ON jwt_tokens (parent_id); ALTER TABLE jwt_tokens ADD CONSTRAINT jwt_tokens_parent_id_fkey FOREIGN KEY (parent_id) REFERENCES jwt_tokens (id) ON DELETE SET NULL"
  "revoked: partial WHERE revoked|DROP INDEX ix_jwt_tokens_revoked; CREATE INDEX ix_jwt_tokens_revoked ON jwt_tokens (revoked) WHERE revoked|DROP INDEX ix_jwt_tokens_revoked; CREATE INDEX ix_jwt_tokens_revoked ON jwt_tokens (revoked)"
)
printf "%-32s %s\n" "without" "per refresh: server time, WAL"
for _ in $(seq "$rounds"); do
  for v in "${variants[@]}"; do
    IFS='|' read -r name drop undo <<<"$v"
    q "$drop"
    result=$(run) || { echo "bench/index-costs.sh: the refresh loop failed without $name" >&2; exit 1; }
    printf "%-32s %s\n" "$name" "$result"
    q "$undo"
  done
done
