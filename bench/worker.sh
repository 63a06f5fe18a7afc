#!/usr/bin/env bash
# Worker benchmark: installs a release build of pg_sla, starts a scratch
# cluster with the worker preloaded (default settings: 1 s nap, batches of
# 1000) and measures
#   1. the lag from a deadline passing to its notification being committed,
#      for 10,000 deadlines falling due within one second (commit times from
#      track_commit_timestamp);
#   2. the worker's CPU use while idle, with no clocks and then with
#      1,000,000 open clocks (from /proc/PID/schedstat).
# Not a test: figures come from one run on whatever machine runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/setup.sh >/dev/null
scripts/install.sh --release >/dev/null 2>&1
dir="$PWD/target/bench-worker-cluster"
scripts/cluster.sh stop "$dir" 2>/dev/null || true
eval "$(scripts/cluster.sh start "$dir" "shared_preload_libraries = 'pg_sla'" \
  "track_commit_timestamp = on" "shared_buffers = '1GB'" "max_wal_size = '4GB'")"
export PGHOST PGPORT PGUSER
trap 'scripts/cluster.sh stop "$dir"' EXIT
q() { psql -X -q -t -A -d postgres -v ON_ERROR_STOP=1 "$@"; }

echo "pg_sla worker benchmark, $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -m)"
q -c "CREATE EXTENSION pg_sla"
q <<'SQL'
INSERT INTO sla.policies (name, position, conditions, first_response, resolution) VALUES
  ('lag', 1, '{"channel": "chat"}', '1 minute', NULL),
  ('idle', 2, '{}', '30 days', '60 days');
CREATE TABLE tickets (
  id bigint PRIMARY KEY, channel text NOT NULL, status text NOT NULL DEFAULT 'open',
  assignee text, created_at timestamptz NOT NULL DEFAULT now(),
  last_customer_message_at timestamptz, last_agent_reply_at timestamptz);
SELECT sla.track('tickets', assignee_column => 'assignee') \g /dev/null
SQL

naptime=$(q -c "SHOW pg_sla.naptime")
worker_pid=$(q -c "SELECT pid FROM sla.worker_status()")
# Nanoseconds the worker has spent on a CPU.
cpu_ns() { awk '{ print $1 }' "/proc/$worker_pid/schedstat"; }
# Prints the worker's CPU use over $1 seconds, in percent of one core.
idle_cpu() {
  local before after
  before=$(cpu_ns); sleep "$1"; after=$(cpu_ns)
  awk -v ns="$((after - before))" -v s="$1" 'BEGIN { printf "%.4f", 100 * ns / 1e9 / s }'
}

echo
echo "1. Lag, 10,000 deadlines falling due within one second (nap $naptime)"
# Created so that their first responses fall due 3 to 4 seconds from now.
q -c "INSERT INTO tickets (id, channel, created_at)
      SELECT i, 'chat', now() - interval '1 minute' + interval '3 seconds' + random() * interval '1 second'
        FROM generate_series(1, 10000) i"
for _ in $(seq 1 200); do
  [[ $(q -c "SELECT count(*) FROM sla.notifications WHERE kind = 'breached'") == 10000 ]] && break
  sleep 0.1
done
q -F ' ' <<'SQL'
WITH lag AS (
  SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin) - due_at) * 1000 AS ms
    FROM sla.notifications WHERE kind = 'breached')
SELECT format('   notifications %s; lag p50 %s ms, p99 %s ms, max %s ms',
              count(*), round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
              round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1),
              round(max(ms)::numeric, 1))
  FROM lag;
WITH lag AS (
  SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin) - due_at) AS s
    FROM sla.notifications WHERE kind = 'breached')
SELECT format('   ratio p99 lag / nap time: %s (a poller waking once per nap averages 0.5)',
              round((percentile_cont(0.99) WITHIN GROUP (ORDER BY s)
                     / extract(epoch FROM current_setting('pg_sla.naptime')::interval))::numeric, 3))
  FROM lag;
SQL

echo
echo "2. Worker CPU while idle"
q -c "DELETE FROM tickets"
sleep 2
empty=$(idle_cpu 30)
echo "   no clocks:          $empty % of a core"
q -c "INSERT INTO tickets (id, channel) SELECT i, 'email' FROM generate_series(1, 500000) i"
q -c "VACUUM ANALYZE sla.clocks"
echo "   open clocks: $(q -c "SELECT count(*) FROM sla.clocks WHERE status = 'running'")"
sleep 2
loaded=$(idle_cpu 30)
echo "   1,000,000 open clocks: $loaded % of a core"
q -F ' ' -c "SELECT format('   last tick %s ms, %s ticks so far', round(last_tick_ms::numeric, 3), ticks) FROM sla.worker_status()"
awk -v a="$loaded" -v b="$empty" 'BEGIN { if (b > 0) printf "   ratio 1M clocks / no clocks: %.2f\n", a / b; else print "   ratio: no CPU measured without clocks" }'
