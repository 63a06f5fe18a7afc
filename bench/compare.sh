#!/usr/bin/env bash
# Compares this checkout's build with another checkout's (an earlier commit),
# the way a change's "no worse than" goals are checked: the engine and the
# calendar benchmarks run alternately, RUNS times for each build, each run
# installing its build first. Logs go to target/bench-compare/; read the
# medians off them.
#   bench/compare.sh OTHER_CHECKOUT [RUNS]
# Both builds are installed into the PostgreSQL of PG_CONFIG (default the
# system one): to keep tests running meanwhile, point PG_CONFIG at a private
# copy of PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
other=$(realpath "${1:?usage: bench/compare.sh OTHER_CHECKOUT [RUNS]}")
runs=${2:-3}
here=$PWD
out="$here/target/bench-compare"
mkdir -p "$out"
for run in $(seq 1 "$runs"); do
  for tree in "$other" "$here"; do
    name=$([[ $tree == "$here" ]] && echo this || echo other)
    for bench in engine calendar; do
      echo "run $run: $bench, $name ($tree)"
      (cd "$tree" && bench/$bench.sh) >"$out/$bench-$name-$run.log" 2>&1
    done
  done
done
echo "logs in $out"
