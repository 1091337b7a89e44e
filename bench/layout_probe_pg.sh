#!/usr/bin/env bash
# Layout probe on PostgreSQL: what one queue layout costs PostgreSQL per drained job,
# without opsq around it. Planning evidence for the W1 drain (RESULTS.md, "Layout
# probe"), the PostgreSQL twin of `cargo run --release -p opsq-store --example
# layout_probe`.
#
#   PG_ADMIN_URL=postgresql://postgres@127.0.0.1:5432/postgres bench/layout_probe_pg.sh LAYOUT [N] [BATCH]
#
# LAYOUT is current | no-history | narrow | narrow-one-index (see the SQLite probe's
# doc comment; narrow-one-index also gives the job rows a fillfactor of 75, so the
# one rewrite of a job's row at its end can be a HOT update). It loads N waiting jobs
# (60000) into a scratch database `opsq_probe`, then drains them in one backend with a
# procedure that, per transaction, claims BATCH jobs (64) and records the successes
# of the previous claim, then commits (fsync on, synchronous_commit on). It prints the
# backend's CPU per job (from /proc, so the server must run on this machine) and the
# WAL written per job. The database is dropped on exit.
set -euo pipefail
LAYOUT=${1:?current, no-history, narrow or narrow-one-index}
N=${2:-60000}
BATCH=${3:-64}
ADMIN=${PG_ADMIN_URL:?PG_ADMIN_URL}
URL="${ADMIN%/*}/opsq_probe"
case $LAYOUT in current | no-history | narrow | narrow-one-index) ;; *) echo "unknown layout $LAYOUT" >&2; exit 2 ;; esac
psql "$ADMIN" -qc "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS opsq_probe WITH (FORCE)" -c "CREATE DATABASE opsq_probe" >/dev/null
trap 'psql "$ADMIN" -qc "DROP DATABASE IF EXISTS opsq_probe WITH (FORCE)" >/dev/null 2>&1 || true' EXIT

history=false narrow=false fill=100
case $LAYOUT in
  current) history=true ;;
  narrow) narrow=true ;;
  narrow-one-index) narrow=true fill=75 ;;
esac

# The jobs tables and their indexes as crates/opsq-store/src/postgres/schema.rs
# creates them (copied: the layouts below change them, and the script runs without
# an opsq build); the claim and the outcome statements follow postgres/jobs.rs and
# postgres/finisher.rs for one exact kind.
psql "$URL" -qv ON_ERROR_STOP=1 >/dev/null <<SQL
CREATE TABLE kinds (kind TEXT PRIMARY KEY, lease_ms BIGINT);
CREATE TABLE jobs (
    number BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, account TEXT NOT NULL, location TEXT NOT NULL,
    kind TEXT NOT NULL, title TEXT NOT NULL, payload TEXT NOT NULL, status TEXT NOT NULL,
    percent INTEGER NOT NULL DEFAULT 0, step_number INTEGER NOT NULL DEFAULT 0, step_desc TEXT NOT NULL DEFAULT '',
    status_at BIGINT NOT NULL, created_at BIGINT NOT NULL, started_at BIGINT, finished_at BIGINT,
    run_after BIGINT NOT NULL, attempt INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL,
    safe_to_repeat BOOLEAN NOT NULL, lease_owner TEXT, lease_token TEXT, lease_until BIGINT,
    result TEXT, error TEXT, idempotency_key TEXT, request_hash TEXT, submitter TEXT NOT NULL,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE, cancel_reason TEXT) WITH (fillfactor = $fill);
CREATE UNIQUE INDEX jobs_idempotency ON jobs(account, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_by_account ON jobs(account, number);
CREATE TABLE job_events (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, job BIGINT NOT NULL,
    at BIGINT NOT NULL, status TEXT NOT NULL, attempt INTEGER NOT NULL, message TEXT NOT NULL);
CREATE INDEX job_events_by_job ON job_events(job, id);
CREATE TABLE queue (number BIGINT PRIMARY KEY, kind TEXT NOT NULL, run_after BIGINT NOT NULL,
    status SMALLINT NOT NULL, lease_token TEXT, lease_until BIGINT, attempt INTEGER NOT NULL DEFAULT 0);
SQL

if [[ $narrow == false ]]; then
  psql "$URL" -qv ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE INDEX jobs_waiting ON jobs(run_after, number) WHERE status IN ('notStarted', 'resumed');
CREATE INDEX jobs_leased ON jobs(lease_until) WHERE status = 'executing';
CREATE INDEX jobs_finished ON jobs(finished_at) WHERE status IN ('succeeded', 'failed');
CREATE INDEX jobs_unknown ON jobs(status_at) WHERE status = 'unknown';
SQL
else
  psql "$URL" -qv ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE INDEX queue_waiting ON queue(run_after, number) WHERE status = 0;
SQL
  if [[ $LAYOUT == narrow ]]; then
    psql "$URL" -qv ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE INDEX queue_leased ON queue(lease_until) WHERE status = 1;
CREATE INDEX jobs_finished ON jobs(finished_at) WHERE status IN ('succeeded', 'failed');
SQL
  fi
fi

psql "$URL" -qv ON_ERROR_STOP=1 >/dev/null <<SQL
INSERT INTO jobs (account, location, kind, title, payload, status, status_at, created_at, run_after,
                  max_attempts, safe_to_repeat, submitter, step_desc)
SELECT 'OPSQ', 'WA1', 'bench.noop', 'bench job', '{"i":' || i || ',"tag":"b","t0":1763900000000.123}',
       'notStarted', 1, 1, 1, 3, true, 'admin', 'Waiting for a worker'
FROM generate_series(1, $N) AS i;
INSERT INTO job_events (job, at, status, attempt, message) SELECT number, 1, 'notStarted', 0, 'accepted' FROM jobs;
INSERT INTO queue (number, kind, run_after, status) SELECT number, kind, run_after, 0 FROM jobs WHERE $narrow;
VACUUM ANALYZE;

CREATE PROCEDURE drain(batch INT, history BOOLEAN, narrow BOOLEAN, expected INT) LANGUAGE plpgsql AS \$\$
DECLARE
  numbers BIGINT[]; tokens TEXT[]; prev_numbers BIGINT[] := '{}'; prev_tokens TEXT[] := '{}';
  done_numbers BIGINT[]; at BIGINT := 1000; payloads INT; total INT := 0;
BEGIN
  LOOP
    at := at + 1;
    IF narrow THEN
      WITH picked AS (
        SELECT number FROM queue WHERE status = 0 AND kind = ANY('{bench.noop}') AND run_after <= at
        ORDER BY run_after, number LIMIT batch FOR UPDATE SKIP LOCKED
      ), claimed AS (
        UPDATE queue SET status = 1, attempt = attempt + 1, lease_token = md5(random()::text),
               lease_until = at + 30000
        WHERE number IN (SELECT number FROM picked) RETURNING number, lease_token
      ) SELECT array_agg(number), array_agg(lease_token) INTO numbers, tokens FROM claimed;
      SELECT count(payload) INTO payloads FROM jobs WHERE number = ANY(numbers);
    ELSE
      WITH picked AS (
        SELECT number FROM jobs WHERE status IN ('notStarted', 'resumed') AND kind ~ '^bench\.noop$'
          AND run_after <= at ORDER BY run_after, number LIMIT batch FOR UPDATE SKIP LOCKED
      ), claimed AS (
        UPDATE jobs SET status = 'executing', attempt = attempt + 1, lease_owner = 'inproc:0123456789abcdef',
               lease_token = md5(random()::text),
               lease_until = at + COALESCE((SELECT k.lease_ms FROM kinds k WHERE k.kind = jobs.kind), 30000),
               started_at = COALESCE(started_at, at), status_at = at, step_desc = 'Started'
        WHERE number IN (SELECT number FROM picked)
        RETURNING number, payload, attempt, lease_token
      ), started AS (
        INSERT INTO job_events (job, at, status, attempt, message)
        SELECT number, at, 'executing', attempt, 'attempt ' || attempt || ' started by inproc:0123456789abcdef'
        FROM claimed WHERE history
      ) SELECT array_agg(number), array_agg(lease_token) INTO numbers, tokens FROM claimed;
    END IF;
    IF cardinality(prev_numbers) > 0 THEN
      IF narrow THEN
        WITH ended AS (
          DELETE FROM queue
          WHERE queue.number = ANY(prev_numbers)
            AND queue.lease_token = prev_tokens[array_position(prev_numbers, queue.number)]
            AND queue.status = 1 AND queue.lease_until >= at
          RETURNING queue.number, queue.attempt
        ), recorded AS (
          UPDATE jobs SET status = 'succeeded', result = NULL, run_after = at, step_desc = 'Succeeded',
                 status_at = at, started_at = COALESCE(started_at, at), finished_at = at, percent = 100,
                 attempt = ended.attempt
          FROM ended WHERE jobs.number = ended.number RETURNING jobs.number
        ) SELECT array_agg(number) INTO done_numbers FROM recorded;
      ELSE
        WITH recorded AS (
          UPDATE jobs SET status = 'succeeded', result = NULL, error = NULL, run_after = at,
                 step_desc = 'Succeeded', status_at = at, finished_at = at, percent = 100,
                 lease_owner = NULL, lease_token = NULL, lease_until = NULL
          WHERE jobs.number = ANY(prev_numbers)
            AND jobs.lease_token = prev_tokens[array_position(prev_numbers, jobs.number)]
            AND jobs.status = 'executing' AND jobs.lease_until >= at
          RETURNING jobs.number, jobs.attempt
        ), ended AS (
          INSERT INTO job_events (job, at, status, attempt, message)
          SELECT number, at, 'succeeded', attempt, 'succeeded' FROM recorded WHERE history
        ) SELECT array_agg(number) INTO done_numbers FROM recorded;
      END IF;
      IF cardinality(done_numbers) IS DISTINCT FROM cardinality(prev_numbers) THEN
        RAISE EXCEPTION 'recorded % of % successes', cardinality(done_numbers), cardinality(prev_numbers);
      END IF;
      total := total + cardinality(done_numbers);
    END IF;
    COMMIT;
    EXIT WHEN numbers IS NULL;
    prev_numbers := numbers; prev_tokens := tokens;
  END LOOP;
  IF total <> expected THEN
    RAISE EXCEPTION 'drained % of % jobs', total, expected;
  END IF;
END \$\$;
SQL

# One backend: its CPU ticks (from its own /proc/self/stat; superuser) and the WAL
# position before and after the drain.
psql "$URL" -qAt -v ON_ERROR_STOP=1 <<SQL
SET client_min_messages = warning;
-- Index lookups, as the server's statements get: in the procedure, a claim of 256
-- jobs was planned as a hash join over a scan of every job (15 ms a claim at 20,000
-- jobs, auto_explain), where the server's claims and outcomes of a drain were all
-- nested loops over the indexes (auto_explain on the machine's PostgreSQL, 440 of
-- 440 logged).
SET enable_hashjoin = off;
SET enable_mergejoin = off;
CREATE FUNCTION cpu_ticks() RETURNS BIGINT LANGUAGE sql AS \$\$
  SELECT (f[12])::bigint + (f[13])::bigint
  FROM (SELECT string_to_array(split_part(pg_read_file('/proc/self/stat'), ') ', 2), ' ') AS f) AS s
\$\$;
SELECT cpu_ticks() AS ticks0, pg_current_wal_lsn() AS lsn0, clock_timestamp() AS t0 \gset
CALL drain($BATCH, $history, $narrow, $N);
SELECT format('$LAYOUT n=$N batch=$BATCH: PostgreSQL CPU %s us/job, WAL %s bytes/job, wall %s us/job (%s jobs/s)',
              round((cpu_ticks() - :ticks0) * 1e6 / $(getconf CLK_TCK) / $N, 1),
              round(pg_wal_lsn_diff(pg_current_wal_lsn(), :'lsn0') / $N),
              round(extract(epoch FROM clock_timestamp() - :'t0') * 1e6 / $N, 1),
              round($N / extract(epoch FROM clock_timestamp() - :'t0')));
SQL
