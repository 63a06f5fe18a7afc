#!/usr/bin/env bash
# Scratch PostgreSQL 15 clusters for the demo, the tests and the benchmarks.
#
#   scripts/cluster.sh start DIR [postgresql.conf line ...]
#       initdb (once) and start a cluster in DIR on a free port, with its
#       socket in DIR/socket. Prints PGHOST=... PGPORT=... for eval.
#       As root, the cluster runs as the postgres OS user (PostgreSQL refuses
#       root); otherwise as the current user. The superuser is "postgres".
#   scripts/cluster.sh stop DIR [--keep]   stop it (and remove DIR unless --keep)
#   scripts/cluster.sh restart DIR         restart it on the same port
#   scripts/cluster.sh env DIR             print PGHOST/PGPORT/PGUSER exports
#   scripts/cluster.sh log DIR             print the server log
set -euo pipefail

PG_CONFIG=${PG_CONFIG:-/usr/bin/pg_config}
# A server inherits the caller's environment (RUST_BACKTRACE included: pg_sla
# shows no backtrace whatever it says, and tests/errors.rs checks that).
BINDIR=$("$PG_CONFIG" --bindir)

as_owner() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

cmd=${1:-}
dir=${2:-}
[[ -n $cmd && -n $dir ]] || { sed -n '2,14p' "$0"; exit 2; }
shift 2
dir=$(realpath -m "$dir")

case $cmd in
start)
  mkdir -p "$dir/socket"
  if [[ $(id -u) -eq 0 ]]; then
    chown -R postgres: "$dir"
    # The server runs as postgres, which must be able to reach DIR.
    if ! runuser -u postgres -- test -w "$dir"; then
      echo "cluster.sh: the postgres OS user cannot reach $dir (a parent directory is private, as /root is);" \
        "use a directory postgres can traverse, such as one under /tmp or /work" >&2
      exit 1
    fi
  fi
  if [[ ! -f $dir/data/PG_VERSION ]]; then
    as_owner "$BINDIR/initdb" -D "$dir/data" -U postgres --auth=trust \
      --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    {
      echo "# scratch cluster settings (scripts/cluster.sh)"
      echo "listen_addresses = '127.0.0.1'"
      echo "unix_socket_directories = '$dir/socket'"
      echo "fsync = off"
      echo "synchronous_commit = off"
      echo "full_page_writes = off"
      echo "log_min_messages = warning"
      echo "log_line_prefix = '%m [%p] %q%u@%d '"
      for line in "$@"; do echo "$line"; done
    } | as_owner tee -a "$dir/data/postgresql.conf" >/dev/null
  fi
  for attempt in 1 2 3 4 5; do
    port=$(free_port)
    if as_owner "$BINDIR/pg_ctl" -D "$dir/data" -l "$dir/server.log" -o "-p $port" -w -t 60 start >/dev/null; then
      echo "$port" | as_owner tee "$dir/port" >/dev/null
      echo "PGHOST=$dir/socket PGPORT=$port PGUSER=postgres"
      exit 0
    fi
    echo "cluster.sh: start on port $port failed (attempt $attempt)" >&2
  done
  tail -n 40 "$dir/server.log" >&2 || true
  exit 1
  ;;
stop)
  if [[ -f $dir/data/postmaster.pid ]]; then
    as_owner "$BINDIR/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null || true
  fi
  [[ ${1:-} == --keep ]] || rm -rf "$dir"
  ;;
restart)
  as_owner "$BINDIR/pg_ctl" -D "$dir/data" -l "$dir/server.log" -o "-p $(cat "$dir/port")" \
    -m fast -w -t 60 restart >/dev/null
  ;;
env)
  echo "export PGHOST=$dir/socket PGPORT=$(cat "$dir/port") PGUSER=postgres"
  ;;
log)
  cat "$dir/server.log"
  ;;
*)
  sed -n '2,14p' "$0"; exit 2
  ;;
esac
