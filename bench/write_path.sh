#!/usr/bin/env bash
# Write-path benchmark: installs a release build of pg_sla, starts a scratch
# cluster, runs bench/write_path.sql and single-row updates through pgbench,
# and prints what it measured (ratios within this one run).
# Not a test: figures come from one run on whatever machine runs it.
#   bench/write_path.sh [PARTS]   PARTS: a comma-separated subset of
#   setup,writes,single,storage,recompute (all by default), in that order;
#   the cluster is new every run, so setup comes first, and single needs
#   the tickets writes leaves.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
parts=${1:-setup,writes,single,storage,recompute}
scripts/setup.sh >/dev/null
scripts/install.sh --release >/dev/null
dir="$PWD/target/bench-write-path-cluster"
scripts/cluster.sh stop "$dir" 2>/dev/null || true
# synchronous_commit off: single-row updates measure CPU, not the disk.
eval "$(scripts/cluster.sh start "$dir" "shared_buffers = '1GB'" "max_wal_size = '8GB'" \
  "synchronous_commit = off")"
export PGHOST PGPORT PGUSER
trap 'scripts/cluster.sh stop "$dir"' EXIT
echo "pg_sla write-path benchmark, $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -m)"
run_sql() { psql -X -q -d postgres -v part="$1" -f bench/write_path.sql; }
has() { [[ ",$parts," == *",$1,"* ]]; }
has setup && run_sql setup
has writes && run_sql writes

if has single; then
  # One UPDATE per ticket, a customer message or an agent reply at random,
  # each its own transaction, prepared; 4 alternating runs of 15 s a table.
  scripts_dir=$(mktemp -d)
  for table in tickets_untracked tickets_tracked; do
    cat >"$scripts_dir/$table.sql" <<SQL
\set id random(1, 20000)
\set reply random(0, 1)
UPDATE $table SET last_customer_message_at = CASE WHEN :reply = 0 THEN now() ELSE last_customer_message_at END,
       last_agent_reply_at = CASE WHEN :reply = 1 THEN now() ELSE last_agent_reply_at END,
       updated_at = now() WHERE id = :id;
SQL
  done
  chmod -R a+rX "$scripts_dir"
  declare -A tps
  for run in 1 2 3 4; do
    order=(tickets_untracked tickets_tracked)
    (( run % 2 == 0 )) && order=(tickets_tracked tickets_untracked)
    for table in "${order[@]}"; do
      t=$(pgbench -n -M prepared -T 15 -f "$scripts_dir/$table.sql" postgres |
        sed -n 's/^tps = \([0-9.]*\).*/\1/p')
      tps[$table]+="$t "
    done
  done
  rm -rf "$scripts_dir"
  echo
  echo "Single-row UPDATEs, one per transaction, pgbench -M prepared, synchronous_commit = off (4 runs of 15 s):"
  python3 - "${tps[tickets_untracked]}" "${tps[tickets_tracked]}" <<'PY'
import statistics, sys
u = [float(x) for x in sys.argv[1].split()]
t = [float(x) for x in sys.argv[2].split()]
mu, mt = statistics.median(u), statistics.median(t)
print(f" untracked tps | tracked tps | tracked / untracked time (goal <= 2)")
print(f" {mu:13.0f} | {mt:11.0f} | {mu / mt:.2f}")
print(f" runs: untracked {' '.join(f'{x:.0f}' for x in u)}; tracked {' '.join(f'{x:.0f}' for x in t)}")
PY
fi

if has storage; then run_sql storage; fi
if has recompute; then run_sql recompute; fi
