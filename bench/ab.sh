#!/usr/bin/env bash
# A/B quick loop: two opsq-bench-server binaries, interleaved (A, B, A, B, ...), on a
# quick W1 (bulk submit, then drain) or W2 (paced single submits, submit-to-start).
#
#   bench/ab.sh W1|W2 SERVER_A SERVER_B [PAIRS]
#
# This machine's speed moves a lot from one minute to the next, so a change is
# judged by interleaved pairs, never by one run of each. For W1 it also prints CPU
# per drained job, which moves less with the hour than jobs/s: the whole server's,
# and on SQLite its writer thread's, on PostgreSQL the database backends', with
# MODE=external the worker processes'. Knobs: N (W1 jobs, 60000), CONC (in-process slots, 256; with
# MODE=external, slots per worker process, 24), MODE (inproc, or external: WORKERS
# opsq-client worker processes, 2, as in the suite's (ext) rows), STORE
# (sqlite, or pg with PG_ADMIN_URL: the script creates a fresh database `opsq_ab`
# on that server for every run and drops it on exit).
# Loopback only (port 58190); every wait is bounded; the server is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

WORKLOAD=${1:?W1 or W2}
A=${2:?server binary A}
B=${3:?server binary B}
PAIRS=${4:-3}
N=${N:-60000}
PEER=target/release/opsq-bench-peer
[[ -x "$PEER" ]] || { echo "build first: cargo build --release -p opsq-bench" >&2; exit 2; }

STATE=$(mktemp -d)
MODE=${MODE:-inproc}
case $MODE in
  inproc) WORKERS=1 ;;
  external) WORKERS=${WORKERS:-2} ;;
  *) echo "MODE must be inproc or external" >&2; exit 2 ;;
esac
DEFAULT_CONC=256
[[ "$MODE" == external ]] && DEFAULT_CONC=24
export OPSQ_BENCH_STATE="$STATE/state" OPSQ_BENCH_PORT=58190 OPSQ_BENCH_MODE=$MODE
export OPSQ_BENCH_STORE=${STORE:-sqlite} PB_CONCURRENCY=${CONC:-$DEFAULT_CONC} PB_RESULTS="$STATE/results"
PG_ADMIN_URL=${PG_ADMIN_URL:-}
if [[ "$OPSQ_BENCH_STORE" == pg ]]; then
  [[ -n "$PG_ADMIN_URL" ]] || { echo "STORE=pg needs PG_ADMIN_URL" >&2; exit 2; }
  export PB_PG_URL="${PG_ADMIN_URL%/*}/opsq_ab"
fi
workers=()
# start_workers: WORKERS worker processes (one in-process runner, or opsq-client workers).
start_workers() {
  local i
  for ((i = 0; i < WORKERS; i++)); do
    "$PEER" worker >/dev/null 2>&1 &
    workers+=($!)
  done
}
stop_workers() {
  ((${#workers[@]})) || return 0
  kill "${workers[@]}" 2>/dev/null || true
  wait "${workers[@]}" 2>/dev/null || true
  workers=()
}
fresh_database() {
  [[ "$OPSQ_BENCH_STORE" == pg ]] || return 0
  psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS opsq_ab WITH (FORCE)" -c "CREATE DATABASE opsq_ab" >/dev/null
}
cleanup() {
  stop_workers
  "$PEER" stop >/dev/null 2>&1 || true
  if [[ "$OPSQ_BENCH_STORE" == pg ]]; then
    psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS opsq_ab WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  rm -rf "$STATE"
}
trap cleanup EXIT

# CPU ticks (user + system) of the whole server process, or 0.
server_ticks() {
  local pid
  pid=$(cat "$OPSQ_BENCH_STATE/server.pid" 2>/dev/null) || { echo 0; return; }
  cut -d')' -f2 "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}' || echo 0
}

# CPU ticks (user + system) of the external worker processes, or 0 in process: a
# worker's own cost per job, which the server's CPU does not show.
worker_ticks() {
  [[ "$MODE" == external ]] || { echo 0; return; }
  local pid total=0 t
  for pid in "${workers[@]}"; do
    t=$(cut -d')' -f2 "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}') || t=0
    total=$((total + ${t:-0}))
  done
  echo "$total"
}

# CPU ticks (user + system) of the server's SQLite writer thread, or 0.
writer_ticks() {
  local pid t
  pid=$(cat "$OPSQ_BENCH_STATE/server.pid" 2>/dev/null) || { echo 0; return; }
  for t in /proc/"$pid"/task/*; do
    if [[ "$(cat "$t/comm" 2>/dev/null)" == opsq-sqlite-wri ]]; then
      cut -d')' -f2 "$t/stat" | awk '{print $12 + $13}'
      return
    fi
  done
  echo 0
}

# CPU ticks (user + system) so far of each PostgreSQL backend connected to opsq_ab,
# as "pid ticks" lines (nothing on SQLite): the database's side of a drain, which
# the server's own CPU does not show. Backends are the pool's connections, which
# stay open through a drain.
pg_backend_ticks() {
  [[ "$OPSQ_BENCH_STORE" == pg ]] || return 0
  local pid
  for pid in $(psql "$PG_ADMIN_URL" -Atc "SELECT pid FROM pg_stat_activity WHERE datname = 'opsq_ab'"); do
    echo "$pid $(cut -d')' -f2 "/proc/$pid/stat" 2>/dev/null | awk '{print $12 + $13}')"
  done
}

# pg_ticks_between BEFORE AFTER: the backends' ticks spent between two
# pg_backend_ticks listings (a backend that opened in between counts from 0).
pg_ticks_between() {
  awk 'NR == FNR { before[$1] = $2; next } { total += $2 - before[$1] } END { print total + 0 }' \
    <(echo "$1") <(echo "$2")
}

# wait_for_lines COUNT SECONDS: until the results file has COUNT lines, or fail.
wait_for_lines() {
  local deadline=$((SECONDS + $2))
  while (($(wc -l <"$PB_RESULTS") < $1)); do
    ((SECONDS < deadline)) || { echo "timed out waiting for $1 results" >&2; return 1; }
    sleep 0.1
  done
}

run_once() {
  local label=$1 server=$2 ticks0 ticks1 all0 all1 pg0 pg1 wk1
  export OPSQ_BENCH_SERVER=$server
  : >"$PB_RESULTS"
  fresh_database
  "$PEER" setup >/dev/null
  case $WORKLOAD in
    W1)
      "$PEER" enqueue bulk "$N" b >/dev/null
      ticks0=$(writer_ticks) all0=$(server_ticks) pg0=$(pg_backend_ticks)
      start_workers
      wait_for_lines "$N" 300
      ticks1=$(writer_ticks) all1=$(server_ticks) pg1=$(pg_backend_ticks) wk1=$(worker_ticks)
      stop_workers
      python3 - "$PB_RESULTS" "$label" "$((ticks1 - ticks0))" "$(getconf CLK_TCK)" "$((all1 - all0))" \
        "$(pg_ticks_between "$pg0" "$pg1")" "$wk1" <<'PY'
import sys
path, label, ticks, hz, all_ticks, pg_ticks = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
worker_ticks = int(sys.argv[7])
picked = [float(line.split()[3]) for line in open(path) if line.strip()]
drain = len(picked) / ((max(picked) - min(picked)) / 1000)
cpu = f"  writer CPU {ticks / hz * 1e6 / len(picked):.1f} us/job" if ticks else ""
cpu += f"  server CPU {all_ticks / hz * 1e6 / len(picked):.1f} us/job" if all_ticks else ""
cpu += f"  PostgreSQL backends CPU {pg_ticks / hz * 1e6 / len(picked):.1f} us/job" if pg_ticks else ""
cpu += f"  worker processes CPU {worker_ticks / hz * 1e6 / len(picked):.1f} us/job" if worker_ticks else ""
print(f"{label}  W1 jobs={len(picked)} drain={drain:.0f} jobs/s{cpu}")
PY
      ;;
    W2)
      # The server creates the results file when the worker opens its runner: the
      # paced submits start only then, as they would against a running worker.
      rm -f "$PB_RESULTS"
      start_workers
      local deadline=$((SECONDS + 30))
      until [[ -e "$PB_RESULTS" ]]; do
        ((SECONDS < deadline)) || { echo "the runner did not open" >&2; return 1; }
        sleep 0.05
      done
      "$PEER" enqueue paced 500 b 50 >/dev/null
      wait_for_lines 500 30
      stop_workers
      python3 - "$PB_RESULTS" "$label" <<'PY'
import sys
lat = sorted(float(l.split()[3]) - float(l.split()[2]) for l in open(sys.argv[1]) if l.strip())
print(f"{sys.argv[2]}  W2 n={len(lat)} p50={lat[len(lat) // 2]:.3f} ms p99={lat[int(len(lat) * .99)]:.3f} ms")
PY
      ;;
    *) echo "workload must be W1 or W2" >&2; exit 2 ;;
  esac
  "$PEER" stop >/dev/null 2>&1 || true
}

for pair in $(seq 1 "$PAIRS"); do
  run_once "pair $pair A" "$A"
  run_once "pair $pair B" "$B"
done
