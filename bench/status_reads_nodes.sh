#!/usr/bin/env bash
# Status reads on PostgreSQL with one node and with three, in the same run: seeds
# BENCH_JOBS jobs into a fresh database on BENCH_DATABASE_URL (an admin URL; dropped
# at the end), starts three `opsq serve` nodes on it, then loads (a) node 1 alone with
# 64 connections and (b) all three nodes at once with 64 connections split across
# them (one wrk per node, the same Lua script as status_reads.sh). Loopback only,
# bounded durations. Prints requests/s (summed over nodes) and the worst p99.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${BENCH_DATABASE_URL:?set BENCH_DATABASE_URL to a PostgreSQL admin URL}"
JOBS=${BENCH_JOBS:-100000}
DURATION=${BENCH_DURATION:-20}
WARMUP=${BENCH_WARMUP:-5}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
out="bench/results/status_reads_nodes-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
tmp=$(mktemp -d)
db="opsq_nodes_bench_$$"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$BENCH_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
[[ -n "${BENCH_SKIP_BUILD:-}" ]] || cargo build --release -p opsq -p opsq-bench >&2

psql "$BENCH_DATABASE_URL" -qc "CREATE DATABASE $db" >/dev/null
url="${BENCH_DATABASE_URL%/*}/$db"
target/release/opsq-bench-seed --database-url "$url" --jobs "$JOBS" >"$out/seed.txt"
nodes=()
for n in 1 2 3; do
  target/release/opsq serve --listen 127.0.0.1:0 --database-url "$url" >"$out/node$n.out" 2>"$out/node$n.err" &
  pids+=($!)
  for _ in $(seq 1 300); do grep -q "listening on" "$out/node$n.out" 2>/dev/null && break; sleep 0.1; done
  nodes+=("$(grep -o 'http://[0-9.:]*' "$out/node$n.out" | head -1)")
done
password=$(grep -ho "admin password (shown once): .*" "$out"/node*.out | awk '{print $NF}' | head -1)
export OPSQ_TOKEN
OPSQ_TOKEN=$(curl -sf "${nodes[0]}/v2/authentication/login" -H 'content-type: application/json' \
  -d "{\"username\":\"admin\",\"password\":\"$password\"}" | python3 -c 'import sys,json; print(json.load(sys.stdin)["bearerToken"])')
export BENCH_JOBS=$JOBS

# load LABEL NODE_COUNT: wrk against the first NODE_COUNT nodes at once.
load() {
  local label=$1 count=$2 per=$((CONNECTIONS / $2))
  for phase in warmup measured; do
    local secs=$([[ $phase == warmup ]] && echo "$WARMUP" || echo "$DURATION")
    local wpids=()
    for i in $(seq 0 $((count - 1))); do
      timeout $((secs + 30)) wrk -t1 -c"$per" -d"${secs}s" --timeout 2s --latency -s bench/status_reads.lua \
        "${nodes[$i]}" >"$out/$label-$phase-node$((i + 1)).txt" 2>&1 &
      wpids+=($!)
    done
    for p in "${wpids[@]}"; do wait "$p"; done
  done
  python3 - "$label" "$out"/"$label"-measured-node*.txt <<'PY'
import json, sys
rows = [json.loads(l.split(" ", 1)[1]) for f in sys.argv[2:] for l in open(f) if l.startswith("BENCH_RESULT")]
errors = sum(r[k] for r in rows for k in r if k.startswith("errors_"))
print(f"{sys.argv[1]:<10} {sum(r['rps'] for r in rows):>10.0f} req/s   worst p50 {max(r['p50_us'] for r in rows)/1000:.2f} ms"
      f"   worst p99 {max(r['p99_us'] for r in rows)/1000:.2f} ms   errors {errors}")
PY
}
{
  echo "status reads on PostgreSQL, $JOBS jobs, $CONNECTIONS connections, ${DURATION}s measured"
  load one-node 1
  load three-nodes 3
} | tee "$out/summary.txt"
