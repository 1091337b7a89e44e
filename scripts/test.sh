#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, then every test of the
# workspace (unit, store conformance on SQLite and PostgreSQL, HTTP against the real
# server, the real binary killed and restarted, several nodes on one PostgreSQL, and
# the clc-sdk Python package against it).
#
# PostgreSQL: uses the server on 127.0.0.1:5432 when one answers (user postgres,
# trust auth); otherwise starts a throwaway cluster with initdb/pg_ctl and stops it
# at the end. Tests create and drop their own databases.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in cargo python3; do
  command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }
done

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
export PATH="$PG_BIN:$PATH"
cluster_dir=""
stop_cluster() {
  if [[ -n "$cluster_dir" ]]; then
    as_postgres pg_ctl -D "$cluster_dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$cluster_dir"
  fi
}
trap stop_cluster EXIT
# initdb and postgres refuse to run as root.
as_postgres() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [[ -z "${OPSQ_TEST_PG_THROWAWAY:-}" ]] && pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  export OPSQ_TEST_PG_URL=${OPSQ_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
  echo "== PostgreSQL: using the server on 127.0.0.1:5432"
else
  command -v initdb >/dev/null || { echo "no PostgreSQL on 127.0.0.1:5432 and no initdb in $PG_BIN" >&2; exit 1; }
  cluster_dir=$(mktemp -d /tmp/opsq-pg.XXXXXX)
  chmod 755 "$cluster_dir"
  [[ $(id -u) -eq 0 ]] && chown postgres "$cluster_dir"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  as_postgres initdb -D "$cluster_dir/data" -U postgres --auth=trust >/dev/null
  as_postgres pg_ctl -D "$cluster_dir/data" -o "-p $port -k $cluster_dir -c listen_addresses=127.0.0.1" -l "$cluster_dir/log" -w start >/dev/null
  export OPSQ_TEST_PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
  echo "== PostgreSQL: started a throwaway cluster on 127.0.0.1:$port"
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
