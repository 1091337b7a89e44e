//! Layout probe: what one queue layout costs SQLite's writer per job, without the
//! server around it. Planning evidence for the W1 drain (bench/RESULTS.md, "Layout
//! probe"), not part of the product.
//!
//! It opens a scratch store (the store's own schema, WAL, `synchronous=FULL`), changes
//! its schema to the layout, loads `N` waiting jobs, then drains them as the in-process runner does, on one thread: each
//! transaction claims `BATCH` jobs and records the successes of the previous claim,
//! each in a savepoint, then commits. It prints the thread's CPU time and wall time
//! per job.
//!
//! ```sh
//! cargo run --release -p opsq-store --example layout_probe -- <layout> [N] [BATCH]
//! ```
//!
//! Layouts:
//! - `current`: the store's schema and statements (history rows for start and end);
//! - `no-history`: the same without the start and end history rows;
//! - `narrow`: no start or end history rows, and a narrow `queue` table holds waiting and
//!   running jobs (a claim rewrites a few columns, not the payload; the job row is
//!   rewritten once, at the end);
//! - `narrow-one-index`: `narrow` without the leased and finished indexes.
//!
//! The claim and the recording of successes are the store's statements
//! (`sqlite/jobs.rs`, `sqlite/finisher.rs`, `sqlite/history.rs`) for one exact kind,
//! copied here because the narrow layouts need variants of them.

use std::time::Instant;

use rusqlite::{params, Connection};

/// What the narrow layouts add to the store's schema: waiting and running jobs in a
/// table of their own, with the waiting index the claim walks.
const NARROW: &str = "CREATE TABLE queue (number INTEGER PRIMARY KEY, kind TEXT NOT NULL,
    run_after INTEGER NOT NULL, status INTEGER NOT NULL, lease_token TEXT, lease_until INTEGER,
    attempt INTEGER NOT NULL DEFAULT 0);
CREATE INDEX queue_waiting ON queue(kind, run_after) WHERE status = 0;";

const OWNER: &str = "inproc:0123456789abcdef";

#[derive(Clone, Copy, PartialEq)]
enum Layout {
    Current,
    NoHistory,
    Narrow,
    NarrowOneIndex,
}

impl Layout {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "current" => Self::Current,
            "no-history" => Self::NoHistory,
            "narrow" => Self::Narrow,
            "narrow-one-index" => Self::NarrowOneIndex,
            _ => return None,
        })
    }
    fn history(self) -> bool {
        self == Self::Current
    }
    fn narrow(self) -> bool {
        matches!(self, Self::Narrow | Self::NarrowOneIndex)
    }
    /// How the layout changes the store's own schema (applied by `Store::open_sqlite`,
    /// so `current` is exactly what the store runs on).
    fn changes(self) -> String {
        match self {
            Self::Current | Self::NoHistory => String::new(),
            Self::Narrow => format!(
                "{NARROW}
                 CREATE INDEX queue_leased ON queue(lease_until) WHERE status = 1;
                 DROP INDEX jobs_waiting; DROP INDEX jobs_leased;"
            ),
            Self::NarrowOneIndex => {
                format!("{NARROW} DROP INDEX jobs_waiting; DROP INDEX jobs_leased; DROP INDEX jobs_finished;")
            }
        }
    }
}

/// This thread's CPU time (user and system) in seconds, from `/proc` (10 ms ticks:
/// the probe's runs take seconds).
fn thread_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("/proc/thread-self/stat");
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0);
    ticks / 100.0
}

fn load(c: &Connection, layout: Layout, n: i64) -> rusqlite::Result<()> {
    c.execute_batch("BEGIN")?;
    for i in 0..n {
        c.prepare_cached(
            "INSERT INTO jobs (account, location, kind, title, payload, status, status_at, created_at,
                 run_after, max_attempts, safe_to_repeat, submitter, step_desc)
             VALUES ('OPSQ', 'WA1', 'bench.noop', 'bench job', ?1, 'notStarted', 1, 1, 1, 3, 1, 'admin',
                 'Waiting for a worker')",
        )?
        .execute(params![format!("{{\"i\":{i},\"tag\":\"b\",\"t0\":1763900000000.123}}")])?;
        let number = c.last_insert_rowid();
        c.prepare_cached(
            "INSERT INTO job_events (job, at, status, attempt, message) VALUES (?1, 1, 'notStarted', 0, 'accepted')",
        )?
        .execute([number])?;
        if layout.narrow() {
            c.prepare_cached(
                "INSERT INTO queue (number, kind, run_after, status) VALUES (?1, 'bench.noop', 1, 0)",
            )?
            .execute([number])?;
        }
    }
    c.execute_batch("COMMIT")
}

/// Claims up to `limit` jobs; returns their numbers and lease tokens.
fn claim(c: &Connection, layout: Layout, now: i64, limit: i64) -> rusqlite::Result<Vec<(i64, String)>> {
    if !layout.narrow() {
        let mut claim = c.prepare_cached(
            "UPDATE jobs SET status = 'executing', attempt = attempt + 1, lease_owner = ?3,
                 lease_token = lower(hex(randomblob(16))),
                 lease_until = ?1 + COALESCE((SELECT k.lease_ms FROM kinds k WHERE k.kind = jobs.kind), 30000),
                 started_at = COALESCE(started_at, ?1), status_at = ?1, step_desc = 'Started'
             WHERE number IN (SELECT number FROM (SELECT number, run_after FROM jobs
                 WHERE status IN ('notStarted', 'resumed') AND kind = 'bench.noop' AND run_after <= ?1
                 ORDER BY run_after, number LIMIT ?2) ORDER BY run_after, number LIMIT ?2)
             RETURNING number, account, location, kind, title, payload, status, percent, step_number,
                 step_desc, status_at, created_at, started_at, finished_at, run_after, attempt,
                 max_attempts, safe_to_repeat, result, error, idempotency_key, submitter,
                 cancel_requested, lease_token, lease_until",
        )?;
        let rows = claim.query_map(params![now, limit, OWNER], |r| {
            let _payload: String = r.get(5)?;
            Ok((r.get(0)?, r.get(23)?))
        })?;
        let claimed = rows.collect::<rusqlite::Result<Vec<(i64, String)>>>()?;
        if layout.history() && !claimed.is_empty() {
            let numbers: Vec<i64> = claimed.iter().map(|(number, _)| *number).collect();
            c.prepare_cached(
                "INSERT INTO job_events (job, at, status, attempt, message)
                 SELECT number, ?1, 'executing', attempt, 'attempt ' || attempt || ' started by ' || ?2
                 FROM jobs WHERE number IN (SELECT value FROM json_each(?3))",
            )?
            .execute(params![now, OWNER, json(&numbers)])?;
        }
        return Ok(claimed);
    }
    let mut claim = c.prepare_cached(
        "UPDATE queue SET status = 1, attempt = attempt + 1, lease_token = lower(hex(randomblob(16))),
             lease_until = ?1 + 30000
         WHERE number IN (SELECT number FROM queue WHERE status = 0 AND kind = 'bench.noop'
             AND run_after <= ?1 ORDER BY run_after, number LIMIT ?2)
         RETURNING number, lease_token",
    )?;
    let claimed = claim
        .query_map(params![now, limit], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<(i64, String)>>>()?;
    // The handler needs the job itself: read from its row, which the claim left alone.
    let numbers: Vec<i64> = claimed.iter().map(|(number, _)| *number).collect();
    let mut jobs = c.prepare_cached(
        "SELECT number, account, location, kind, title, payload FROM jobs
         WHERE number IN (SELECT value FROM json_each(?1))",
    )?;
    let read = jobs.query_map(params![json(&numbers)], |r| r.get::<_, String>(5))?.count();
    assert_eq!(read, claimed.len());
    Ok(claimed)
}

/// Records the successes of `claimed`; returns how many were recorded.
fn finish(c: &Connection, layout: Layout, now: i64, claimed: &[(i64, String)]) -> rusqlite::Result<usize> {
    let input: Vec<(i64, &str, Option<&str>)> = claimed.iter().map(|(n, t)| (*n, t.as_str(), None)).collect();
    let input = json(&input);
    let numbers: Vec<i64> = if layout.narrow() {
        let mut done = c.prepare_cached(
            "DELETE FROM queue WHERE number IN (SELECT q.number FROM json_each(?2) j
                 JOIN queue q ON q.number = j.value ->> 0 AND q.lease_token = j.value ->> 1
                 AND q.status = 1 AND q.lease_until >= ?1)
             RETURNING number",
        )?;
        let numbers =
            done.query_map(params![now, input], |r| r.get(0))?.collect::<rusqlite::Result<Vec<i64>>>()?;
        c.prepare_cached(
            "UPDATE jobs SET status = 'succeeded', result = NULL, run_after = ?1, step_desc = 'Succeeded',
                 status_at = ?1, started_at = COALESCE(started_at, ?1), finished_at = ?1, percent = 100,
                 attempt = attempt + 1
             WHERE number IN (SELECT value FROM json_each(?2))",
        )?
        .execute(params![now, json(&numbers)])?;
        numbers
    } else {
        let mut done = c.prepare_cached(
            "UPDATE jobs SET status = 'succeeded', result = input.result, error = NULL, run_after = ?1,
                 step_desc = 'Succeeded', status_at = ?1, finished_at = ?1, percent = 100,
                 lease_owner = NULL, lease_token = NULL, lease_until = NULL
             FROM (SELECT value ->> 0 AS number, value ->> 1 AS token, value ->> 2 AS result
                   FROM json_each(?2)) AS input
             WHERE jobs.number = input.number AND jobs.lease_token = input.token
               AND jobs.status = 'executing' AND jobs.lease_until >= ?1
             RETURNING number",
        )?;
        // Collected into a binding so the rows are read before the statement is dropped.
        let numbers =
            done.query_map(params![now, input], |r| r.get(0))?.collect::<rusqlite::Result<Vec<i64>>>()?;
        numbers
    };
    if layout.history() {
        c.prepare_cached(
            "INSERT INTO job_events (job, at, status, attempt, message)
             SELECT number, ?1, 'succeeded', attempt, 'succeeded' FROM jobs
             WHERE number IN (SELECT value FROM json_each(?2))",
        )?
        .execute(params![now, json(&numbers)])?;
    }
    Ok(numbers.len())
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("numbers and strings serialize")
}

fn exec(c: &Connection, sql: &str) -> rusqlite::Result<()> {
    c.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: layout_probe current|no-history|narrow|narrow-one-index [N] [BATCH]";
    let layout = args.get(1).and_then(|name| Layout::parse(name)).ok_or(usage)?;
    let n: i64 = args.get(2).map_or(Ok(60_000), |v| v.parse())?;
    let batch: i64 = args.get(3).map_or(Ok(64), |v| v.parse())?;
    let dir = tempfile::Builder::new().prefix("opsq-layout-probe").tempdir_in(".")?;
    // The store creates the database with its own migrations and its WAL set up,
    // then steps aside: the probe writes through a connection of its own, set up as
    // the store's writer is.
    drop(opsq_store::Store::open_sqlite(dir.path())?);
    let c = Connection::open(dir.path().join("opsq.db"))?;
    c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA temp_store=MEMORY;")?;
    c.execute_batch(&layout.changes())?;
    load(&c, layout, n)?;

    let (cpu, wall) = (thread_cpu(), Instant::now());
    let (mut previous, mut recorded, mut now) = (Vec::new(), 0usize, 1_000i64);
    loop {
        now += 1;
        exec(&c, "BEGIN IMMEDIATE")?;
        exec(&c, "SAVEPOINT op")?;
        let claimed = claim(&c, layout, now, batch)?;
        exec(&c, "RELEASE op")?;
        if !previous.is_empty() {
            exec(&c, "SAVEPOINT op")?;
            let done = finish(&c, layout, now, &previous)?;
            assert_eq!(done, previous.len(), "every success recorded");
            recorded += done;
            exec(&c, "RELEASE op")?;
        }
        exec(&c, "COMMIT")?;
        if claimed.is_empty() {
            break;
        }
        previous = claimed;
    }
    assert_eq!(recorded as i64, n, "every job drained");
    let (cpu, wall) = (thread_cpu() - cpu, wall.elapsed().as_secs_f64());
    println!(
        "{} n={n} batch={batch}: writer CPU {:.1} us/job, wall {:.1} us/job ({:.0} jobs/s)",
        args[1],
        cpu * 1e6 / n as f64,
        wall * 1e6 / n as f64,
        n as f64 / wall
    );
    Ok(())
}
