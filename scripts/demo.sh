#!/usr/bin/env bash
# The main job: set up the machine, build and install pg_sla, start a scratch
# PostgreSQL 15 cluster with it and run a short demo of deadlines it computes.
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
eval "$(scripts/cluster.sh start "$dir")"
export PGHOST PGPORT PGUSER
echo "demo: scratch cluster running in $dir (port $PGPORT)"
psql -X -q -v ON_ERROR_STOP=1 -d postgres -f docs/demo.sql

cat <<MSG

The cluster is still running. Look around with:
  psql -h $PGHOST -p $PGPORT -U postgres postgres
Stop it with:
  scripts/cluster.sh stop $dir
MSG
