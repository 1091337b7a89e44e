#!/usr/bin/env bash
# The whole benchmark suite, one command: opsq on SQLite and on PostgreSQL next to the
# job queues of ../shared/bench/peers (graphile-worker, pg-boss, BullMQ, procrastinate,
# rq), on the same machine, in the same run, with ratios. See bench/README.md.
#
#   bench/run.sh                 # 30-50 min on 2 cores (3 runs); RUNS=1 for a quick look
#
# Workloads:
#   W1  burn-down: bulk-submit 20k no-op jobs, then drain them (peer harness)
#   W2  500 single submits at 50/s: submit-to-start p50/p99 (peer harness)
#   S   1000 sequential single submits (peer harness)
#   S64 single submits from 64 concurrent clients, each acknowledged once durable
#       (opsq and the durable peers: graphile-worker, pg-boss, procrastinate)
#   W3  status reads, 100k jobs stored, 64 connections, next to a trivial axum handler
#   W4  growth: W1 and W3 with 1k and with 1M jobs stored (SQLite)
#   W5  resident memory of an idle `opsq serve` holding 1M jobs
#
# Knobs: RUNS=3, PEERS_DIR (default ../shared/bench/peers), PB_ROOT=/tmp/peerbench,
# SKIP_PEERS=1 (opsq only in the harness), SKIP_BUILD=1, ONLY="W1W2S S64 W3 W4 W5" (subset).
# Everything listens on 127.0.0.1 only; every server started here is stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PEERS_DIR="$(cd "${PEERS_DIR:-$ROOT/../shared/bench/peers}" && pwd)"
export PB_ROOT="${PB_ROOT:-/tmp/peerbench}"
RUNS="${RUNS:-3}"
ONLY="${ONLY:-W1W2S S64 W3 W4 W5}"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="$ROOT/bench/results/suite-$STAMP"
mkdir -p "$OUT"
PG_ADMIN_URL="postgresql://postgres@127.0.0.1:${PG_PORT:-55432}/postgres"
T0=$(date +%s)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
wants() { [[ " $ONLY " == *" $1 "* ]]; }

# --- build ------------------------------------------------------------------------------
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  log "building opsq and opsq-bench in release"
  cargo build --release --locked -p opsq -p opsq-bench
fi
"$PEERS_DIR/setup.sh"

# --- opsq as peers of the harness ---------------------------------------------------------
# name, backend, port, mode, store, workers, concurrency, seed
opsq_peer() {
  local name=$1 backend=$2 port=$3 mode=$4 store=$5 workers=$6 concurrency=$7 seed=${8:-0}
  local slug="${name//[^a-zA-Z0-9]/_}"
  cat <<EOF
  {"name": "$name", "backend": "$backend", "db": "pb_$slug", "workers": $workers, "concurrency": $concurrency,
   "cmd": ["$BIN/opsq-bench-peer"],
   "env": {"OPSQ_BENCH_STATE": "$PB_ROOT/opsq/$slug", "OPSQ_BENCH_PORT": "$port", "OPSQ_BENCH_MODE": "$mode",
           "OPSQ_BENCH_STORE": "$store", "OPSQ_BENCH_SERVER": "$BIN/opsq-bench-server", "OPSQ_BENCH_SEED": "$seed"},
   "config": "opsq-bench-server ($store, fsync on every commit); $mode handlers: $workers x concurrency {c}; bulk = POST /jobs/batch"}
EOF
}
{
  echo "["
  opsq_peer opsq-sqlite none 58101 inproc sqlite 1 256; echo ","
  opsq_peer "opsq-sqlite(ext)" none 58102 external sqlite 2 24; echo ","
  opsq_peer opsq-pg pg 58103 inproc pg 1 256; echo ","
  opsq_peer "opsq-pg(ext)" pg 58104 external pg 2 24; echo ","
  opsq_peer "opsq-sqlite@1k" none 58105 inproc sqlite 1 256 1000; echo ","
  opsq_peer "opsq-sqlite@1M" none 58106 inproc sqlite 1 256 1000000
  echo "]"
} >"$OUT/opsq-peers.json"
export PB_EXTRA_PEERS="$OUT/opsq-peers.json"
OPSQ_PEERS="opsq-sqlite,opsq-sqlite(ext),opsq-pg,opsq-pg(ext)"
ALL_PEERS="graphile-worker,graphile-worker(batched),pg-boss,bullmq,procrastinate,rq,rq(SimpleWorker)"

stop_opsq() {
  for state in "$PB_ROOT"/opsq/*/; do
    [[ -f "$state/server.pid" ]] && OPSQ_BENCH_STATE="$state" "$BIN/opsq-bench-peer" stop || true
  done
}
cleanup() {
  stop_opsq
  "$PEERS_DIR/servers.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- W1, W2, S: the peer harness with opsq added ------------------------------------------
if wants W1W2S; then
  peers="$OPSQ_PEERS"
  [[ "${SKIP_PEERS:-0}" == 1 ]] || peers="$ALL_PEERS,$OPSQ_PEERS"
  log "peer harness: $peers, $RUNS runs"
  PEERS="$peers" RUNS="$RUNS" "$PEERS_DIR/run.sh" 2>&1 | tee "$OUT/peers.log"
  harness_out="$(sed -nE 's/^=== results \((.*)\/results.jsonl.*/\1/p' "$OUT/peers.log" | tail -n1)"
  cp "$harness_out/results.jsonl" "$OUT/harness.jsonl"
  cp "$harness_out/env.txt" "$OUT/harness-env.txt"
fi

"$PEERS_DIR/servers.sh" start-pg

# --- S64 -----------------------------------------------------------------------------------
if wants S64; then
  if [[ "${SKIP_PEERS:-0}" != 1 ]]; then
    log "S64: durable peers"
    bench/s64_peers.sh "$OUT/s64.jsonl" "$RUNS" 5000 64
  fi
  for run in $(seq "$RUNS"); do
    for variant in sqlite pg; do
      state="$PB_ROOT/opsq/s64_$variant"
      export OPSQ_BENCH_STATE="$state" OPSQ_BENCH_PORT=58107 OPSQ_BENCH_MODE=external \
        OPSQ_BENCH_STORE="$variant" OPSQ_BENCH_SERVER="$BIN/opsq-bench-server" OPSQ_BENCH_SEED=0 \
        PB_PG_URL="${PG_ADMIN_URL%/*}/pb_opsq_s64"
      if [[ $variant == pg ]]; then
        psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS pb_opsq_s64 WITH (FORCE)" -c "CREATE DATABASE pb_opsq_s64"
      fi
      "$BIN/opsq-bench-peer" setup
      line="$(timeout 300 "$BIN/opsq-bench-peer" enqueue concurrent 5000 s 64)"
      "$BIN/opsq-bench-peer" stop
      python3 - "$variant" "$run" "$line" >>"$OUT/s64.jsonl" <<'EOF'
import json, sys
variant, run, r = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
s = (r["t1"] - r["t0"]) / 1000
print(json.dumps({"peer": f"opsq-{variant}", "run": run, "phase": "S64", "n": r["n"], "clients": 64,
                  "enqueue_s": s, "enqueue_rate": r["n"] / s}))
EOF
      log "S64 run $run opsq-$variant: $(tail -n1 "$OUT/s64.jsonl")"
    done
  done
fi

# --- W3 and W4 (status reads) ----------------------------------------------------------------
status_reads() { # label jobs [database url]
  local label=$1 jobs=$2 url=${3:-}
  log "W3 status reads: $label ($jobs jobs stored)"
  BENCH_SKIP_BUILD=1 BENCH_JOBS="$jobs" BENCH_RUNS="$RUNS" BENCH_WARMUP=5 BENCH_DURATION=10 \
    BENCH_DATABASE_URL="$url" bench/status_reads.sh >"$OUT/w3-$label.log" 2>&1
  local dir; dir="$(sed -nE 's/^raw results: (.*)$/\1/p' "$OUT/w3-$label.log" | tail -n1)"
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d["label"]=sys.argv[2]; d["phase"]="W3"; print(json.dumps(d))' \
    "$ROOT/$dir/summary.json" "$label" >>"$OUT/w3.jsonl"
  tail -n 4 "$OUT/w3-$label.log" | head -n 2 >&2
}
if wants W3; then
  status_reads sqlite-100k 100000
  status_reads pg-100k 100000 "$PG_ADMIN_URL"
fi
if wants W4; then
  status_reads sqlite-1k 1000
  status_reads sqlite-1M 1000000
  log "W4: W1 with 1k and with 1M finished jobs stored"
  mkdir -p "$OUT/w4"
  "$PB_ROOT/venv/bin/python" "$PEERS_DIR/bench.py" peers --out "$OUT/w4" --runs "$RUNS" --phases W1 \
    --peers "opsq-sqlite@1k,opsq-sqlite@1M" 2>&1 | tee "$OUT/w4.log" >&2
  cp "$OUT/w4/results.jsonl" "$OUT/w4.jsonl"
fi

# --- W5: memory ----------------------------------------------------------------------------
if wants W5; then
  data="$PB_ROOT/opsq/w5"
  rm -rf "$data"
  log "W5: seeding 1M finished jobs"
  "$BIN/opsq-bench-seed" --data-dir "$data" --jobs 1000000 --finished --kind bench.seed >&2
  for run in $(seq "$RUNS"); do
    "$BIN/opsq" serve --listen 127.0.0.1:58108 --data-dir "$data" >"$OUT/w5-serve.log" 2>&1 &
    pid=$!
    for _ in $(seq 300); do curl -fs http://127.0.0.1:58108/readyz >/dev/null && break; sleep 0.1; done
    sleep 10 # idle: housekeeping rounds run, nothing else
    rss_kb=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")
    hwm_kb=$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status")
    kill -TERM "$pid"; wait "$pid" || true
    echo "{\"peer\":\"opsq-sqlite\",\"run\":$run,\"phase\":\"W5\",\"jobs\":1000000,\"rss_mb\":$((rss_kb / 1024)),\"hwm_mb\":$((hwm_kb / 1024))}" \
      >>"$OUT/w5.jsonl"
    log "W5 run $run: $(tail -n1 "$OUT/w5.jsonl")"
  done
  rm -rf "$data"
fi

"$PEERS_DIR/servers.sh" stop >/dev/null 2>&1 || true
log "suite took $(( $(date +%s) - T0 )) s"
python3 bench/report.py "$OUT" | tee "$OUT/table.md"
