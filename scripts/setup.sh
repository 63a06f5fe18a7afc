#!/usr/bin/env bash
# Brings a fresh Debian 12 machine to a state where pg_sla builds and tests:
# PostgreSQL 15 with its server headers, clang for bindgen, cargo-pgrx 0.18.0
# and its pg15 configuration. Idempotent: skips what is already there.
# Works as root (CI) and as a normal user with sudo.
set -euo pipefail

PGRX_VERSION=0.18.0
PG_CONFIG=/usr/bin/pg_config
APT_PACKAGES=(postgresql-15 postgresql-server-dev-15 libclang-dev clang sudo python3 ca-certificates)

say() { echo "setup: $*"; }
as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

missing=()
for package in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$package")
done
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  say "apt packages present"
fi

# Debian starts a default cluster on port 5432; pg_sla never needs it.
export PATH="$HOME/.cargo/bin:$PATH"
command -v cargo >/dev/null || { echo "setup: cargo not found (install Rust first)" >&2; exit 1; }
if [[ $(cargo pgrx --version 2>/dev/null) != "cargo-pgrx $PGRX_VERSION" ]]; then
  say "installing cargo-pgrx $PGRX_VERSION (about 5 minutes)"
  cargo install cargo-pgrx --version "$PGRX_VERSION" --locked --force
else
  say "cargo-pgrx $PGRX_VERSION present"
fi

PGRX_HOME=${PGRX_HOME:-$HOME/.pgrx}
if ! grep -qs "^pg15 *= *\"$PG_CONFIG\"" "$PGRX_HOME/config.toml"; then
  say "cargo pgrx init --pg15 $PG_CONFIG"
  cargo pgrx init --pg15 "$PG_CONFIG" >/dev/null
else
  say "pgrx configured for pg15"
fi
for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" \
    || rustup component add "$component" >/dev/null 2>&1 || say "could not add $component (lint steps will be skipped)"
done
say "ready"
