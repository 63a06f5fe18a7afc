#!/usr/bin/env bash
# The whole test suite, in layers:
#   1. core unit and property tests (plain cargo test, no PostgreSQL);
#   2. #[pg_test]s inside a backend (cargo pgrx test);
#   3. client tests against scratch clusters started by scripts/cluster.sh.
# Every layer runs to its end, whatever failed before; the script ends with
# one line totalling them ("total: N passed, N failed") and exits non-zero
# when anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

scripts/setup.sh

log=$(mktemp)
trap 'rm -f "$log"' EXIT
step() { printf '\n=== %s\n' "$*"; }
# Runs a command, keeping its output for the total; a failure is remembered
# and the next layer still runs.
failed_steps=()
run() {
  local status=0
  "$@" 2>&1 | tee -a "$log" || status=${PIPESTATUS[0]}
  if ((status != 0)); then failed_steps+=("$*"); fi
  return 0
}

step "format"
cargo fmt --all -- --check

step "core: unit and property tests"
run cargo test --locked --no-fail-fast -p sla_core

step "extension: #[pg_test] (cargo pgrx test pg15)"
pgdata="$PWD/target/pgrx-test-data"
if [[ $(id -u) -eq 0 ]]; then
  rm -rf "$pgdata"; mkdir -p "$pgdata"; chown postgres: "$pgdata"
  runuser -u postgres -- test -w "$pgdata" || {
    echo "test.sh: the postgres OS user cannot reach $pgdata; as root, work in a clone that postgres can traverse (not under /root)" >&2
    exit 1
  }
  run cargo pgrx test pg15 --runas postgres --pgdata "$pgdata"
else
  run cargo pgrx test pg15
fi

step "install the extension into PostgreSQL 15"
scripts/install.sh

step "client tests on scratch clusters"
# Clusters left by an earlier run that was killed, or kept by a failing test.
for stale in target/client-tests/*/; do
  if [[ -d $stale ]]; then scripts/cluster.sh stop "$stale"; fi
done
run cargo test --locked --no-fail-fast -p pg_sla_client_tests

awk '/^test result:/ { for (i = 2; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "\ntotal: %d passed, %d failed\n", p, f }' "$log"
if ((${#failed_steps[@]})); then
  printf 'test.sh: failed: %s\n' "${failed_steps[@]}" >&2
  exit 1
fi
