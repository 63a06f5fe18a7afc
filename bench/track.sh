#!/usr/bin/env bash
# Tracking a large existing table: sla.track(..., backfill => false), then
# CALL sla.backfill(), on 1,000,000 tickets, while a client inserts and
# reads tickets; prints the total time and the longest time one of its
# statements took. Installs a release build and starts a scratch cluster.
# Not a test: figures come from one run on whatever machine runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/setup.sh >/dev/null
scripts/install.sh --release >/dev/null
dir="$PWD/target/bench-track-cluster"
scripts/cluster.sh stop "$dir" 2>/dev/null || true
eval "$(scripts/cluster.sh start "$dir" "shared_buffers = '1GB'" "max_wal_size = '4GB'")"
export PGHOST PGPORT PGUSER
work=$(mktemp -d)
chmod 777 "$work"
trap 'scripts/cluster.sh stop "$dir"; rm -rf "$work"' EXIT
echo "pg_sla tracking benchmark, $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -m)"
psql -X -q -d postgres <<'SQL'
\set ON_ERROR_STOP on
CREATE EXTENSION IF NOT EXISTS pg_sla;
INSERT INTO sla.policies (name, first_response, next_response, resolution, pause_statuses)
VALUES ('default', '4 hours', '8 hours', '5 days', '{waiting}');
CREATE TABLE tickets (
  id bigint PRIMARY KEY, subject text NOT NULL, status text NOT NULL, assignee text,
  created_at timestamptz NOT NULL, last_customer_message_at timestamptz,
  last_agent_reply_at timestamptz);
CREATE INDEX ON tickets (status);
CREATE INDEX ON tickets (created_at);
INSERT INTO tickets
SELECT g, 'Order #' || g, (ARRAY['open', 'waiting', 'solved'])[1 + g % 3], 'agent' || g % 50,
       '2026-11-23'::timestamptz + (g % 604800) * interval '1 second', NULL, NULL
  FROM generate_series(1, 1000000) g;
VACUUM ANALYZE tickets;
SQL
# The application: one INSERT and one SELECT per transaction, all along.
cat > "$work/app.sql" <<'PGB'
\set id random(2000000, 900000000)
INSERT INTO tickets (id, subject, status, created_at) VALUES (:id, 'new', 'open', now()) ON CONFLICT DO NOTHING;
SELECT id, status FROM tickets WHERE id = :id % 1000000 + 1;
PGB
(cd "$work" && exec pgbench -n -c 1 -T 600 -l -f app.sql postgres >/dev/null 2>&1) &
app=$!
sleep 2
started=$(date +%s.%N)
psql -X -q -d postgres -c "\timing on" -c "SELECT sla.track('tickets', backfill => false)" \
  -c "CALL sla.backfill('tickets')" 2>&1 | grep -E "Time:|NOTICE:  pg_sla: the"
ended=$(date +%s.%N)
sleep 2
kill -TERM $app 2>/dev/null || true
wait $app 2>/dev/null || true
echo "total: $(echo "$ended - $started" | bc) s for 1,000,000 existing tickets"
# pgbench's log: client, transaction, latency (µs), script, epoch seconds,
# microseconds: the transactions that ended while pg_sla was at work.
awk -v from="$started" -v to="$ended" '$5 + $6 / 1e6 >= from && $5 + $6 / 1e6 <= to + 1 {
    n++; if ($3 > max) max = $3 }
  END { printf "application transactions meanwhile: %d, the longest (INSERT + SELECT): %.1f ms\n", n, max / 1000 }' \
  "$work"/pgbench_log.*
psql -X -q -d postgres -At -c "SELECT 'clocks: ' || count(*) FROM sla.clocks"
