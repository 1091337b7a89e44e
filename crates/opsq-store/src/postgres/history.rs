//! A job's history: one entry per transition, in `job_events`, except the three every
//! job makes on the hot path, which are derived from the job row as on SQLite (see
//! `sqlite/history.rs` for the why and the rules).
//!
//! `jobs.derived_events` marks the entries not in the table yet: 1 the acceptance, 2
//! the start of the current attempt, 4 that attempt's success (SQLite's bits, written
//! as literals in the statements that set them: a submission, a claim, a success).
//! Every other transition first writes them out ([`write_out`]), so the derived
//! entries are always a job's latest and a reader appends them after the table's
//! ([`read`]).

use deadpool_postgres::GenericClient;
use opsq_domain::JobEvent;

use super::rows::status_at;
use super::{execute, query};
use crate::rules::SUCCEEDED_MESSAGE;
use crate::StoreError;

/// The entries still derived for the jobs `$1` names, as rows of the table (`job, at,
/// status, attempt, message`) plus `seq`, their order within a job; `$2` is the
/// success's message.
macro_rules! derived_entries {
    () => {
        "SELECT number AS job, 1 AS seq, created_at AS at, 'notStarted'::text AS status, 0 AS attempt,
                'accepted'::text AS message
         FROM jobs WHERE number = ANY($1::bigint[]) AND derived_events & 1 <> 0
         UNION ALL
         SELECT number, 2, attempt_started_at, 'executing', attempt,
                'attempt ' || attempt || ' started by ' || lease_owner
         FROM jobs WHERE number = ANY($1::bigint[]) AND derived_events & 2 <> 0
         UNION ALL
         SELECT number, 3, finished_at, 'succeeded', attempt, $2::text
         FROM jobs WHERE number = ANY($1::bigint[]) AND derived_events & 4 <> 0"
    };
}

/// Writes the derived entries of `numbers` into the table, in order, and marks them
/// written, in one statement (both parts read the rows as they were before it); called
/// before any transition that records an entry of its own or rewrites what the
/// derived ones are read from (the attempt's owner). The rows should be locked.
pub(crate) async fn write_out(c: &impl GenericClient, numbers: &[i64]) -> Result<(), StoreError> {
    execute(
        c,
        concat!(
            "WITH written AS (
                 INSERT INTO job_events (job, at, status, attempt, message)
                 SELECT job, at, status, attempt, message FROM (",
            derived_entries!(),
            ") AS derived ORDER BY job, seq
             )
             UPDATE jobs SET derived_events = 0 WHERE number = ANY($1::bigint[]) AND derived_events <> 0"
        ),
        &[&numbers, &SUCCEEDED_MESSAGE],
    )
    .await?;
    Ok(())
}

/// A job's whole history, oldest first: the table's entries, then the derived ones.
pub(crate) async fn read(c: &impl GenericClient, number: i64) -> Result<Vec<JobEvent>, StoreError> {
    let rows = query(
        c,
        concat!(
            "SELECT at, status, attempt, message FROM (
                 SELECT 0 AS part, id AS seq, at, status, attempt, message FROM job_events
                 WHERE job = ANY($1::bigint[])
                 UNION ALL
                 SELECT 1, seq, at, status, attempt, message FROM (",
            derived_entries!(),
            ") AS derived
             ) AS entries ORDER BY part, seq"
        ),
        &[&[number].as_slice(), &SUCCEEDED_MESSAGE],
    )
    .await?;
    rows.iter()
        .map(|r| {
            Ok(JobEvent {
                at: r.try_get(0)?,
                status: status_at(r, 1)?,
                attempt: r.try_get::<_, i32>(2)?.max(0) as u32,
                message: r.try_get(3)?,
            })
        })
        .collect()
}
