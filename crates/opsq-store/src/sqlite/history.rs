//! A job's history: one entry per transition, in `job_events`, except the three every
//! job makes on the hot path.
//!
//! A job's acceptance, the start of its current attempt and that attempt's success
//! say nothing the job row does not already hold (`created_at`; `attempt`,
//! `attempt_started_at` and `lease_owner`; `finished_at`). Writing them as rows cost
//! the writer thread, the embedded store's one bottleneck, 14-21% of its CPU per job
//! in a drain (bench/RESULTS.md, step 28). So those three
//! are left in the row, and `jobs.derived_events` marks which of them are not in the
//! table yet ([`ACCEPTED`], [`STARTED`], [`SUCCEEDED`]).
//!
//! Every other transition first writes the job's derived entries out ([`write_out`])
//! and then records its own. The entries still derived are therefore always the
//! job's latest, in the order accepted, started, succeeded, and a reader appends them
//! after the table's ([`read`]). A later attempt's start never overwrites an earlier
//! one still derived: an attempt ends other than in success only through a
//! transition that writes the entries out (an outcome, a rescue), before the next
//! claim.

use std::sync::LazyLock;

use opsq_domain::{JobEvent, JobStatus};
use rusqlite::{params, Connection};

use super::rows::status_at;
use crate::rules::SUCCEEDED_MESSAGE;
use crate::StoreError;

/// The job's acceptance is still only in its row.
pub(super) const ACCEPTED: i64 = 1;
/// The start of the job's current attempt is still only in its row.
pub(super) const STARTED: i64 = 2;
/// The current attempt's success is still only in its row.
pub(super) const SUCCEEDED: i64 = 4;

/// The entries still derived for job `?1`, as rows of the table (`job, at, status,
/// attempt, message`) plus `seq`, their order; `?2` is the success's message.
fn derived_entries() -> String {
    format!(
        "SELECT number AS job, 1 AS seq, created_at AS at, 'notStarted' AS status, 0 AS attempt,
                'accepted' AS message
         FROM jobs WHERE number = ?1 AND derived_events & {ACCEPTED}
         UNION ALL
         SELECT number, 2, attempt_started_at, 'executing', attempt,
                'attempt ' || attempt || ' started by ' || lease_owner
         FROM jobs WHERE number = ?1 AND derived_events & {STARTED}
         UNION ALL
         SELECT number, 3, finished_at, 'succeeded', attempt, ?2
         FROM jobs WHERE number = ?1 AND derived_events & {SUCCEEDED}"
    )
}

/// Copies job `?1`'s derived entries into the table, in order (`?2`: see
/// [`derived_entries`]).
static WRITE_OUT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO job_events (job, at, status, attempt, message)
         SELECT job, at, status, attempt, message FROM ({}) ORDER BY seq",
        derived_entries()
    )
});

/// Job `?1`'s whole history, oldest first: the table's entries, then the derived ones
/// (`?2`: see [`derived_entries`]).
static READ: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT at, status, attempt, message FROM (
             SELECT 0 AS part, id AS seq, at, status, attempt, message FROM job_events WHERE job = ?1
             UNION ALL
             SELECT 1, seq, at, status, attempt, message FROM ({}))
         ORDER BY part, seq",
        derived_entries()
    )
});

/// Writes job `number`'s derived entries into the table, in order, and marks them
/// written; called before any transition that records an entry of its own or
/// rewrites what the derived ones are read from (the attempt's owner).
pub(super) fn write_out(c: &Connection, number: i64) -> Result<(), StoreError> {
    c.prepare_cached(&WRITE_OUT)?.execute(params![number, SUCCEEDED_MESSAGE])?;
    c.prepare_cached("UPDATE jobs SET derived_events = 0 WHERE number = ?1 AND derived_events <> 0")?
        .execute([number])?;
    Ok(())
}

/// A job's whole history, oldest first: the table's entries, then the derived ones.
pub(super) fn read(c: &Connection, number: i64) -> rusqlite::Result<Vec<JobEvent>> {
    let mut stmt = c.prepare_cached(&READ)?;
    let events = stmt.query_map(params![number, SUCCEEDED_MESSAGE], |r| {
        Ok(JobEvent {
            at: r.get(0)?,
            status: status_at(r, 1)?,
            attempt: r.get::<_, i64>(2)?.max(0) as u32,
            message: r.get(3)?,
        })
    })?;
    events.collect()
}

/// Records one entry, after the job's derived ones (see [`write_out`]).
pub(super) fn record(
    c: &Connection,
    job: i64,
    at: i64,
    status: JobStatus,
    attempt: u32,
    message: &str,
) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO job_events (job, at, status, attempt, message) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![job, at, status.as_str(), attempt, message])?;
    Ok(())
}

/// Records the same entry for each of `numbers`, at each job's current attempt; for
/// jobs with no derived entries (see [`write_out`]).
///
/// The numbers go in as a flat JSON array: picking fields out of an array per element
/// (`value ->> 1`) parsed each element's JSON again (bench/RESULTS.md, step 19).
pub(super) fn record_each(
    c: &Connection,
    numbers: &[i64],
    at: i64,
    status: JobStatus,
    message: &str,
) -> Result<(), StoreError> {
    if numbers.is_empty() {
        return Ok(());
    }
    c.prepare_cached(
        "INSERT INTO job_events (job, at, status, attempt, message)
         SELECT number, ?1, ?2, attempt, ?3 FROM jobs WHERE number IN (SELECT value FROM json_each(?4))",
    )?
    .execute(params![at, status.as_str(), message, flat_list(numbers)?])?;
    Ok(())
}

/// Job numbers as a JSON array, the one parameter a `json_each(?)` set of jobs takes.
pub(super) fn flat_list(numbers: &[i64]) -> Result<String, StoreError> {
    serde_json::to_string(numbers).map_err(|e| StoreError::Invalid(e.to_string()))
}
