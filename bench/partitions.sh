#!/usr/bin/env bash
# Partitioned-table benchmark: installs a release build of pg_sla, starts a
# scratch cluster, runs bench/partitions.sql and prints what it measured.
# Not a test: figures come from one run on whatever machine runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/setup.sh >/dev/null
scripts/install.sh --release >/dev/null
dir="$PWD/target/bench-partitions-cluster"
scripts/cluster.sh stop "$dir" 2>/dev/null || true
eval "$(scripts/cluster.sh start "$dir" "shared_buffers = '1GB'" "max_wal_size = '4GB'")"
export PGHOST PGPORT PGUSER
trap 'scripts/cluster.sh stop "$dir"' EXIT
echo "pg_sla partitioned-table benchmark, $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -m)"
psql -X -q -d postgres -f bench/partitions.sql
