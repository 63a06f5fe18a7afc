#!/usr/bin/env bash
# The main job: set up the machine, build and install pg_sla, start a scratch
# PostgreSQL 15 cluster with its background worker and run the demo
# (docs/demo.sql): a help desk's tickets with SLA policies in two time zones,
# a week of history replayed, live tickets breached by the worker, then the
# SLA report, the breached tickets and the notifications.
# The cluster keeps running afterwards so you can look around; the script
# ends by saying how to connect and how to stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

scripts/setup.sh
echo "demo: building and installing pg_sla (release)"
scripts/install.sh --release >/dev/null

dir="$PWD/target/demo-cluster"
scripts/cluster.sh stop "$dir" 2>/dev/null || true
# The worker runs in database postgres (pg_sla.database's default), where
# the demo works.
eval "$(scripts/cluster.sh start "$dir" "shared_preload_libraries = 'pg_sla'")"
export PGHOST PGPORT PGUSER
echo "demo: scratch cluster running in $dir (port $PGPORT), with the pg_sla worker"
psql -X -q -v ON_ERROR_STOP=1 -d postgres -f docs/demo.sql

cat <<MSG

The cluster is still running, and so is its worker: the demo's open tickets
keep warning and breaching as their deadlines pass. Look around with:
  psql -h $PGHOST -p $PGPORT -U postgres postgres
and try, for instance:
  SELECT * FROM sla.report(now() - interval '7 days', now(), '{channel,priority}');
  SELECT * FROM sla.open_clocks WHERE breached_at IS NOT NULL ORDER BY due_at;
  SELECT * FROM sla.ticket_timeline('tickets', '42');
  SELECT id, subject, status, sla_policy, sla_status, sla_due_at FROM tickets ORDER BY id DESC LIMIT 20;
Stop it with:
  scripts/cluster.sh stop $dir
MSG
