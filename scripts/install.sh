#!/usr/bin/env bash
# Builds pg_sla and installs it into the system PostgreSQL 15.
#   scripts/install.sh [--release]
# As a normal user, cargo-pgrx copies the files with sudo.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
args=(--pg-config /usr/bin/pg_config)
[[ ${1:-} == --release ]] && args+=(--release)
[[ $(id -u) -eq 0 ]] || args+=(--sudo)
cargo pgrx install "${args[@]}"
