#!/usr/bin/env bash
# Execution benchmarks: no-op throughput (bulk submit, run, drain) with in-process
# handlers and with external workers, submit-to-start/done latency, and the time from
# a worker's death to its job running again; on the embedded store, and on
# PostgreSQL with one and three nodes when BENCH_DATABASE_URL points at a server
# (an admin URL: the script creates and drops its own databases).
# Loopback only; every step is bounded. Figures go to bench/results/execution-<time>/.
set -euo pipefail
cd "$(dirname "$0")/.."

JOBS=${BENCH_JOBS:-20000}
RATE=${BENCH_RATE:-50}
SECONDS_LAT=${BENCH_LATENCY_SECONDS:-10}
RUNS=${BENCH_RUNS:-3}
PG_ADMIN=${BENCH_DATABASE_URL:-}
out="bench/results/execution-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
pids=()
dbs=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for db in "${dbs[@]}"; do psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; done
  rm -rf "${tmp:-/nonexistent}"
}
trap cleanup EXIT
tmp=$(mktemp -d)

if [[ -z "${BENCH_SKIP_BUILD:-}" ]]; then
  cargo build --release -p opsq -p opsq-bench >&2
fi
OPSQ=target/release/opsq
EXEC=target/release/opsq-bench-exec

# start_node NAME STORE_ARGS... : starts a node and sets NODE_URL (not in a
# subshell, so its pid is tracked for cleanup); the first start of a store leaves the
# admin password in $tmp/password.
start_node() {
  local name=$1; shift
  "$OPSQ" serve --listen 127.0.0.1:0 "$@" >"$out/$name.out" 2>"$out/$name.err" &
  pids+=($!)
  for _ in $(seq 1 300); do
    if grep -q "listening on" "$out/$name.out" 2>/dev/null; then break; fi
    sleep 0.1
  done
  grep -o "admin password (shown once): .*" "$out/$name.out" | awk '{print $NF}' >>"$tmp/password" || true
  NODE_URL=$(grep -o "http://[0-9.:]*" "$out/$name.out" | head -1)
}

login() {
  curl -sf "$1/v2/authentication/login" -H 'content-type: application/json' \
    -d "{\"username\":\"admin\",\"password\":\"$(head -1 "$tmp/password")\"}" |
    python3 -c 'import sys, json; print(json.load(sys.stdin)["bearerToken"])'
}

# run_suite LABEL URL TOKEN ADMIN_STORE_ARGS...
run_suite() {
  local label=$1 url=$2 token=$3; shift 3
  "$OPSQ" admin "$@" kind set bench.rescue --lease-secs 2 >/dev/null
  for run in $(seq 1 "$RUNS"); do
    for mode in inproc external; do
      "$EXEC" throughput --mode "$mode" --jobs "$JOBS" --server "$url" --token "$token" |
        sed "s/^BENCH_RESULT {/BENCH_RESULT {\"store\":\"$label\",\"run\":$run,/" | tee -a "$out/results.jsonl"
    done
  done
  for mode in inproc external; do
    "$EXEC" latency --mode "$mode" --rate "$RATE" --seconds "$SECONDS_LAT" --server "$url" --token "$token" |
      sed "s/^BENCH_RESULT {/BENCH_RESULT {\"store\":\"$label\",/" | tee -a "$out/results.jsonl"
  done
  "$EXEC" rescue --server "$url" --token "$token" |
    sed "s/^BENCH_RESULT {/BENCH_RESULT {\"store\":\"$label\",/" | tee -a "$out/results.jsonl"
}

# Embedded store.
rm -f "$tmp/password"
start_node sqlite --data-dir "$tmp/sqlite"
url=$NODE_URL
run_suite sqlite "$url" "$(login "$url")" --data-dir "$tmp/sqlite"
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
unset 'pids[-1]'

if [[ -n "$PG_ADMIN" ]]; then
  for nodes in 1 3; do
    db="opsq_bench_${nodes}_$$"
    dbs+=("$db")
    psql "$PG_ADMIN" -qc "CREATE DATABASE $db" >/dev/null
    db_url="${PG_ADMIN%/*}/$db"
    rm -f "$tmp/password"
    start_node "pg$nodes-1" --database-url "$db_url"
    first=$NODE_URL
    for n in $(seq 2 "$nodes"); do start_node "pg$nodes-$n" --database-url "$db_url"; done
    run_suite "postgres-${nodes}node" "$first" "$(login "$first")" --database-url "$db_url"
    for _ in $(seq 1 "$nodes"); do kill "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'; done
  done
fi

python3 - "$out/results.jsonl" <<'PY' | tee "$out/summary.txt"
import json, statistics, sys
rows = [json.loads(l.split(" ", 1)[1]) for l in open(sys.argv[1]) if l.startswith("BENCH_RESULT")]
def fmt(values):
    return f"{statistics.median(values):.0f} (min {min(values):.0f}, max {max(values):.0f})"
stores = sorted({r["store"] for r in rows}, key=lambda s: (s != "sqlite", s))
print(f"{'store':<18} {'throughput inproc jobs/s':<34} {'throughput external jobs/s':<34}")
for s in stores:
    t = lambda m: [r["jobs_per_s"] for r in rows if r["store"] == s and r["bench"] == "throughput" and r["mode"] == m]
    print(f"{s:<18} {fmt(t('inproc')):<34} {fmt(t('external')):<34}")
print()
print(f"{'store':<18} {'mode':<9} {'start p50/p99 ms':<20} {'done p50/p99 ms':<20}")
for r in rows:
    if r["bench"] == "latency":
        print(f"{r['store']:<18} {r['mode']:<9} {r['start_p50_ms']:.0f} / {r['start_p99_ms']:.0f}{'':<12} {r['done_p50_ms']:.0f} / {r['done_p99_ms']:.0f}")
print()
for r in rows:
    if r["bench"] == "rescue":
        print(f"{r['store']:<18} worker death to rerun: {r['death_to_rerun_s']:.2f} s (lease {r['lease_s']} s, overhead {r['overhead_s']:.2f} s)")
PY
