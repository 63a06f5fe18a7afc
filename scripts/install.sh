#!/usr/bin/env bash
# Builds pg_sla and installs it into the system PostgreSQL 15.
#   scripts/install.sh [--release]
# As a normal user, cargo-pgrx copies the files with sudo.
# Set PG_CONFIG to install into another PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
pg_config=${PG_CONFIG:-/usr/bin/pg_config}
args=(--pg-config "$pg_config")
[[ ${1:-} == --release ]] && args+=(--release)
sudo=()
[[ $(id -u) -eq 0 ]] || { args+=(--sudo); sudo=(sudo); }
cargo pgrx install "${args[@]}"
# cargo-pgrx installs this version's script and the upgrade scripts; the
# install scripts of released versions (frozen in sql/) let
# CREATE EXTENSION pg_sla VERSION '0.1.0' work, which the upgrade tests use.
"${sudo[@]}" cp sql/pg_sla--0.1.0.sql sql/pg_sla--0.2.0.sql "$("$pg_config" --sharedir)/extension/"
