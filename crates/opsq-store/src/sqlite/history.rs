//! Writing a job's history: one entry per transition, in `job_events`.
//!
//! Entries for many jobs at once read each job's attempt back from its row and take
//! the numbers as a flat JSON array: picking fields out of an array per element
//! (`value ->> 1`) parsed each element's JSON again, and one INSERT per entry was about
//! 14% of the writer thread's samples in a drain (bench/RESULTS.md, steps 16 and 19).

use opsq_domain::JobStatus;
use rusqlite::{params, Connection};

use crate::StoreError;

/// Records one entry.
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

/// Records a job's acceptance and the start of its first attempt by `owner`, for a
/// job started in its submission's transaction; the entries a claim would add.
pub(super) fn record_accepted_and_started(
    c: &Connection,
    job: i64,
    at: i64,
    owner: &str,
) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO job_events (job, at, status, attempt, message)
         VALUES (?1, ?2, 'notStarted', 0, 'accepted'), (?1, ?2, 'executing', 1, 'attempt 1 started by ' || ?3)",
    )?
    .execute(params![job, at, owner])?;
    Ok(())
}

/// Records the same entry for each of `numbers`, at each job's current attempt.
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

/// Records the start of each attempt just started by `owner`, in one statement.
pub(super) fn record_starts(c: &Connection, numbers: &[i64], owner: &str, at: i64) -> Result<(), StoreError> {
    if numbers.is_empty() {
        return Ok(());
    }
    c.prepare_cached(
        "INSERT INTO job_events (job, at, status, attempt, message)
         SELECT number, ?1, 'executing', attempt, 'attempt ' || attempt || ' started by ' || ?2
         FROM jobs WHERE number IN (SELECT value FROM json_each(?3))",
    )?
    .execute(params![at, owner, flat_list(numbers)?])?;
    Ok(())
}

fn flat_list(numbers: &[i64]) -> Result<String, StoreError> {
    serde_json::to_string(numbers).map_err(|e| StoreError::Invalid(e.to_string()))
}
