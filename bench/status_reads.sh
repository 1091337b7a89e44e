#!/usr/bin/env bash
# Status-read benchmark: GET /v2/operations/{alias}/status/{id} against `opsq serve`
# holding BENCH_JOBS jobs, compared in the same run with a trivial axum handler on the
# same path shape. Reports requests/s and p50/p99 (median/min/max over the runs) and the
# ratio opsq/trivial. A benchmark, not a test: it exits non-zero only when it could not
# measure (build, start, seed or login failed, or requests failed), never on a slow result.
#
# Loopback only; every step is bounded in time. See bench/README.md.
#
#   bench/status_reads.sh
#
# Knobs (environment): BENCH_JOBS=100000 BENCH_CONNECTIONS=64 BENCH_THREADS=2
# BENCH_WARMUP=10 BENCH_DURATION=20 BENCH_RUNS=3 BENCH_SKIP_BUILD=1 (reuse binaries)
# BENCH_PROFILE=1 (record `perf` on the opsq server during the last measured run).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

JOBS="${BENCH_JOBS:-100000}"
CONNECTIONS="${BENCH_CONNECTIONS:-64}"
THREADS="${BENCH_THREADS:-2}"
WARMUP="${BENCH_WARMUP:-10}"
DURATION="${BENCH_DURATION:-20}"
RUNS="${BENCH_RUNS:-3}"
ALIAS="OPSQ"
LOCATION="WA1"
TARGET_RATIO="0.6"
TARGET_P99_MS="5"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/release"

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
OUT="$ROOT/bench/results/status_reads-$STAMP"
mkdir -p "$OUT"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/opsq-bench.XXXXXX")"
PIDS=()

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

cleanup() {
  local status=$?
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
  if [[ -n "${PG_DB:-}" ]]; then
    psql "$BENCH_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build and tools ------------------------------------------------------------------
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  log "building opsq and opsq-bench in release (this takes minutes on 2 cores)"
  cargo build --release -p opsq -p opsq-bench
fi
for b in opsq opsq-bench-seed opsq-bench-trivial-axum; do
  [[ -x "$BIN/$b" ]] || die "$BIN/$b is missing (run without BENCH_SKIP_BUILD)"
done
need_apt=()
command -v wrk >/dev/null || need_apt+=(wrk)
command -v curl >/dev/null || need_apt+=(curl)
if ((${#need_apt[@]})); then
  log "installing ${need_apt[*]} from Debian"
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# --- helpers ---------------------------------------------------------------------------
# Starts a server in the background, records its pid, and sets PORT once its stdout
# says `... listening on http://127.0.0.1:PORT` (within 60 s). Not called in a
# subshell, so the trap sees the pid.
start_server() {
  local name=$1; shift
  "$@" >"$OUT/$name.stdout" 2>"$OUT/$name.stderr" &
  local pid=$!
  PIDS+=("$pid")
  echo "$pid" >"$WORK/$name.pid"
  PORT=""
  for _ in $(seq 600); do
    if ! kill -0 "$pid" 2>/dev/null; then
      cat "$OUT/$name.stderr" >&2
      die "$name exited during start"
    fi
    PORT="$(sed -nE 's#.*listening on http://127\.0\.0\.1:([0-9]+).*#\1#p' "$OUT/$name.stdout" | head -n1)"
    [[ -n "$PORT" ]] && return 0
    sleep 0.1
  done
  die "$name did not start listening within 60 s"
}

# One wrk run; prints the BENCH_RESULT json line, keeps the raw output in $2.
run_wrk() {
  local url=$1 raw=$2 seconds=$3
  OPSQ_TOKEN="$TOKEN" BENCH_ALIAS="$ALIAS" BENCH_LOCATION="${LOCATION,,}" BENCH_JOBS="$JOBS" \
    timeout $((seconds + 30)) wrk -t"$THREADS" -c"$CONNECTIONS" -d"${seconds}s" --timeout 2s --latency \
    -s "$ROOT/bench/status_reads.lua" "$url" >"$raw" 2>&1 || die "wrk failed: $(cat "$raw")"
  grep '^BENCH_RESULT ' "$raw" | tail -n1 | cut -d' ' -f2-
}

# CPU time (user + system, in clock ticks) a process has used so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
CLK_TCK="$(getconf CLK_TCK)"

# Extracts a numeric field from a flat json line.
field() { sed -nE "s/.*\"$2\":([0-9.]+).*/\1/p" <<<"$1"; }

# median / min / max of whitespace-separated numbers.
stats() {
  tr ' ' '\n' <<<"$*" | grep -v '^$' | sort -g | awk '
    { v[NR] = $1 }
    END {
      if (NR % 2) m = v[(NR + 1) / 2]; else m = (v[NR / 2] + v[NR / 2 + 1]) / 2
      printf "%s %s %s\n", m, v[1], v[NR]
    }'
}

# --- machine ---------------------------------------------------------------------------
{
  echo "date: $STAMP"
  if git rev-parse --short HEAD >/dev/null 2>&1; then
    echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD 2>/dev/null || echo ' (plus uncommitted changes)')"
  else
    echo "commit: unknown (not a git checkout)"
  fi
  echo "cpus: $(nproc) x $(sed -nE 's/^model name\s*:\s*//p' /proc/cpuinfo | head -n1)"
  echo "kernel: $(uname -sr)"
  echo "wrk: $(wrk --version 2>&1 | head -n1 || true)"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "jobs=$JOBS connections=$CONNECTIONS threads=$THREADS warmup=${WARMUP}s duration=${DURATION}s runs=$RUNS"
} | tee "$OUT/machine.txt" >&2

# --- seed, start, log in ----------------------------------------------------------------
DATA="$WORK/data"
log "seeding $JOBS jobs into $DATA (before the server starts: it locks its data dir)"
seed_start=$(date +%s.%N)
STORE_ARGS=(--data-dir "$DATA")
if [[ -n "${BENCH_DATABASE_URL:-}" ]]; then
  # PostgreSQL: a fresh database on the given server (an admin URL), dropped on exit.
  PG_DB="opsq_status_bench_$$"
  psql "$BENCH_DATABASE_URL" -qc "CREATE DATABASE $PG_DB" >/dev/null || die "cannot create $PG_DB"
  STORE_ARGS=(--database-url "${BENCH_DATABASE_URL%/*}/$PG_DB")
fi
"$BIN/opsq-bench-seed" "${STORE_ARGS[@]}" --jobs "$JOBS" --batch 1000 \
  --account "$ALIAS" --location "$LOCATION" --kind bench.noop | tee "$OUT/seed.txt" >&2
seed_end=$(date +%s.%N)
SEED_SECS=$(awk -v a="$seed_start" -v b="$seed_end" 'BEGIN { printf "%.2f", b - a }')
log "seeding took ${SEED_SECS} s (wall clock, including opening the store)"

start_server opsq "$BIN/opsq" serve --listen 127.0.0.1:0 "${STORE_ARGS[@]}" \
  --root-alias "$ALIAS" --root-location "$LOCATION"
OPSQ_PORT="$PORT"
PASSWORD="$(sed -nE 's/^opsq: admin password \(shown once\): (.+)$/\1/p' "$OUT/opsq.stdout" | head -n1)"
[[ -n "$PASSWORD" ]] || die "opsq printed no admin password (was the data dir new?)"
OPSQ_URL="http://127.0.0.1:$OPSQ_PORT"
log "opsq listening on $OPSQ_URL"

login="$(curl -sS --max-time 10 -X POST -H 'Content-Type: application/json' \
  --data "{\"username\":\"admin\",\"password\":\"$PASSWORD\"}" "$OPSQ_URL/v2/authentication/login")" \
  || die "login request failed"
TOKEN="$(sed -nE 's/.*"bearerToken":"([^"]+)".*/\1/p' <<<"$login")"
[[ -n "$TOKEN" ]] || die "login returned no bearerToken: $login"

start_server trivial "$BIN/opsq-bench-trivial-axum" --listen 127.0.0.1:0
TRIVIAL_PORT="$PORT"
TRIVIAL_URL="http://127.0.0.1:$TRIVIAL_PORT"
log "trivial axum listening on $TRIVIAL_URL"

# Sanity: the first and last seeded jobs answer 200 notStarted, an id past them 404.
for n in 1 "$JOBS"; do
  body="$(curl -sS --max-time 10 -w ' %{http_code}' -H "Authorization: Bearer $TOKEN" \
    "$OPSQ_URL/v2/operations/$ALIAS/status/${LOCATION,,}-$n")"
  [[ "$body" == '{"status":"notStarted"} 200' ]] || die "status of ${LOCATION,,}-$n: $body"
done
code="$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
  "$OPSQ_URL/v2/operations/$ALIAS/status/${LOCATION,,}-$((JOBS + 1))")"
[[ "$code" == 404 ]] || die "an id past the seeded jobs answered $code, not 404"
body="$(curl -sS --max-time 10 "$TRIVIAL_URL/v2/operations/$ALIAS/status/${LOCATION,,}-1")"
[[ "$body" == '{"status":"succeeded"}' ]] || die "trivial server answered: $body"

# --- load -------------------------------------------------------------------------------
# Runs alternate between the two servers so drift on a shared machine (other builds,
# thermal, page cache) hits both alike; each measured run follows its own warm-up.
declare -A RPS P50 P99 CPU ERRS
PERF_PID=""
for run in $(seq "$RUNS"); do
  for target in opsq trivial; do
    if [[ $target == opsq ]]; then url="$OPSQ_URL"; else url="$TRIVIAL_URL"; fi
    log "run $run/$RUNS $target: ${WARMUP}s warm-up, then ${DURATION}s measured (load $(cut -d' ' -f1 /proc/loadavg))"
    run_wrk "$url" "$OUT/$target-run$run-warmup.txt" "$WARMUP" >/dev/null
    if [[ "${BENCH_PROFILE:-0}" == 1 && $target == opsq && $run == "$RUNS" ]] && command -v perf >/dev/null; then
      timeout $((DURATION + 30)) perf record -F 499 -g -p "$(cat "$WORK/opsq.pid")" -o "$OUT/opsq.perf.data" \
        -- sleep "$DURATION" >"$OUT/perf-record.log" 2>&1 &
      PERF_PID=$!
      PIDS+=("$PERF_PID")
    fi
    server_pid="$(cat "$WORK/$target.pid")"
    ticks_before="$(cpu_ticks "$server_pid")"
    result="$(run_wrk "$url" "$OUT/$target-run$run.txt" "$DURATION")"
    ticks_after="$(cpu_ticks "$server_pid")"
    [[ -n "$result" ]] || die "no BENCH_RESULT in $OUT/$target-run$run.txt"
    # Server CPU per request: less sensitive to how the two cores were shared than rps.
    cpu_us=$(awk -v t=$((ticks_after - ticks_before)) -v hz="$CLK_TCK" -v n="$(field "$result" requests)" \
      'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
    cores=$(awk -v t=$((ticks_after - ticks_before)) -v hz="$CLK_TCK" -v d="$(field "$result" duration_us)" \
      'BEGIN { printf "%.2f", t / hz / (d / 1e6) }')
    echo "{\"target\":\"$target\",\"run\":$run,\"server_cpu_us_per_request\":$cpu_us,\"server_cores\":$cores,$(cut -c2- <<<"$result")" \
      >>"$OUT/results.jsonl"
    CPU[$target]+=" $cpu_us"
    if [[ -n "$PERF_PID" ]]; then wait "$PERF_PID" || true; PERF_PID=""; fi
    RPS[$target]+=" $(field "$result" rps)"
    P50[$target]+=" $(awk -v u="$(field "$result" p50_us)" 'BEGIN { printf "%.3f", u / 1000 }')"
    P99[$target]+=" $(awk -v u="$(field "$result" p99_us)" 'BEGIN { printf "%.3f", u / 1000 }')"
    errs=0
    for k in errors_connect errors_read errors_write errors_status errors_timeout; do
      errs=$((errs + $(field "$result" "$k")))
    done
    ERRS[$target]=$(( ${ERRS[$target]:-0} + errs ))
  done
done

# --- summary ----------------------------------------------------------------------------
read -r o_rps o_rps_min o_rps_max <<<"$(stats "${RPS[opsq]}")"
read -r t_rps t_rps_min t_rps_max <<<"$(stats "${RPS[trivial]}")"
read -r o_p50 o_p50_min o_p50_max <<<"$(stats "${P50[opsq]}")"
read -r t_p50 t_p50_min t_p50_max <<<"$(stats "${P50[trivial]}")"
read -r o_p99 o_p99_min o_p99_max <<<"$(stats "${P99[opsq]}")"
read -r t_p99 t_p99_min t_p99_max <<<"$(stats "${P99[trivial]}")"
read -r o_cpu o_cpu_min o_cpu_max <<<"$(stats "${CPU[opsq]}")"
read -r t_cpu t_cpu_min t_cpu_max <<<"$(stats "${CPU[trivial]}")"
cpu_ratio=$(awk -v a="$o_cpu" -v b="$t_cpu" 'BEGIN { printf "%.2f", a / b }')
ratio=$(awk -v a="$o_rps" -v b="$t_rps" 'BEGIN { printf "%.3f", a / b }')
# Paired ratios: run i of opsq over run i of the trivial handler (measured next to it).
paired="$(paste <(tr ' ' '\n' <<<"${RPS[opsq]}" | grep -v '^$') <(tr ' ' '\n' <<<"${RPS[trivial]}" | grep -v '^$') \
  | awk '{ printf "%.3f ", $1 / $2 }')"
read -r r_med r_min r_max <<<"$(stats "$paired")"
ratio_ok=$(awk -v r="$ratio" -v t="$TARGET_RATIO" 'BEGIN { print (r >= t) ? "meets" : "MISSES" }')
p99_ok=$(awk -v p="$o_p99" -v t="$TARGET_P99_MS" 'BEGIN { print (p < t) ? "meets" : "MISSES" }')

{
  echo
  echo "status reads: GET /v2/operations/$ALIAS/status/${LOCATION,,}-<random 1..$JOBS>, bearer token"
  echo "$CONNECTIONS connections, $THREADS wrk threads, $RUNS runs x ${DURATION}s measured (${WARMUP}s warm-up before each)"
  echo "seeding $JOBS jobs: ${SEED_SECS} s"
  echo
  printf '%-12s %26s   %20s   %20s   %20s  %s\n' "" "requests/s" "p50 ms" "p99 ms" "server CPU us/req" "errors"
  printf '%-12s %8s %8s %8s   %6s %6s %6s   %6s %6s %6s   %6s %6s %6s\n' target median min max median min max median min max median min max
  printf '%-12s %8.0f %8.0f %8.0f   %6.2f %6.2f %6.2f   %6.2f %6.2f %6.2f   %6.1f %6.1f %6.1f  %d\n' \
    opsq "$o_rps" "$o_rps_min" "$o_rps_max" "$o_p50" "$o_p50_min" "$o_p50_max" "$o_p99" "$o_p99_min" "$o_p99_max" \
    "$o_cpu" "$o_cpu_min" "$o_cpu_max" "${ERRS[opsq]}"
  printf '%-12s %8.0f %8.0f %8.0f   %6.2f %6.2f %6.2f   %6.2f %6.2f %6.2f   %6.1f %6.1f %6.1f  %d\n' \
    trivial-axum "$t_rps" "$t_rps_min" "$t_rps_max" "$t_p50" "$t_p50_min" "$t_p50_max" "$t_p99" "$t_p99_min" "$t_p99_max" \
    "$t_cpu" "$t_cpu_min" "$t_cpu_max" "${ERRS[trivial]}"
  echo
  echo "ratio opsq/trivial requests/s: $ratio (medians); per run: ${paired% } (median $r_med, min $r_min, max $r_max)"
  echo "server CPU per request, opsq/trivial: $cpu_ratio (medians)"
  echo "target ratio >= $TARGET_RATIO: $ratio_ok    target opsq p99 < ${TARGET_P99_MS} ms: $p99_ok (median p99 $o_p99 ms, worst run $o_p99_max ms)"
  echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "raw results: ${OUT#"$ROOT"/}"
} | tee "$OUT/summary.txt"

cat >"$OUT/summary.json" <<EOF
{"jobs":$JOBS,"connections":$CONNECTIONS,"threads":$THREADS,"warmup_s":$WARMUP,"duration_s":$DURATION,"runs":$RUNS,
 "seed_s":$SEED_SECS,
 "opsq":{"cpu_us_per_request":{"median":$o_cpu,"min":$o_cpu_min,"max":$o_cpu_max},"rps":{"median":$o_rps,"min":$o_rps_min,"max":$o_rps_max},"p50_ms":{"median":$o_p50,"min":$o_p50_min,"max":$o_p50_max},"p99_ms":{"median":$o_p99,"min":$o_p99_min,"max":$o_p99_max},"errors":${ERRS[opsq]}},
 "trivial":{"cpu_us_per_request":{"median":$t_cpu,"min":$t_cpu_min,"max":$t_cpu_max},"rps":{"median":$t_rps,"min":$t_rps_min,"max":$t_rps_max},"p50_ms":{"median":$t_p50,"min":$t_p50_min,"max":$t_p50_max},"p99_ms":{"median":$t_p99,"min":$t_p99_min,"max":$t_p99_max},"errors":${ERRS[trivial]}},
 "ratio":$ratio,"cpu_per_request_ratio":$cpu_ratio,"ratio_per_run":{"median":$r_med,"min":$r_min,"max":$r_max},"target_ratio":$TARGET_RATIO,"target_p99_ms":$TARGET_P99_MS}
EOF

if (( ${ERRS[opsq]} + ${ERRS[trivial]} > 0 )); then
  die "some requests failed (see errors above and the raw wrk output in ${OUT#"$ROOT"/})"
fi
