#!/usr/bin/env bash
# Calendar benchmark: installs a release build of pg_sla, starts a scratch
# cluster, runs bench/calendar.sql and prints the ratios it measured.
# Not a test: ratios come from one run on whatever machine runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/setup.sh >/dev/null
scripts/install.sh --release >/dev/null
dir="$PWD/target/bench-cluster"
scripts/cluster.sh stop "$dir" 2>/dev/null || true
eval "$(scripts/cluster.sh start "$dir" "shared_buffers = '512MB'")"
export PGHOST PGPORT PGUSER
trap 'scripts/cluster.sh stop "$dir"' EXIT
echo "pg_sla calendar benchmark, $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -m)"
psql -X -q -d postgres -f bench/calendar.sql
