//! Turning rows into domain values; a stored value that no longer parses is reported
//! as corrupt data rather than a panic.

use opsq_domain::{AccountAlias, Job, JobKind, JobStatus, Location};
use tokio_postgres::Row;

use crate::types::progress_of;
use crate::StoreError;

/// The columns of a whole job, in the order [`job`] reads them. A macro rather than
/// a constant so that `concat!` builds every statement that uses it at compile time.
macro_rules! job_columns {
    () => {
        "number, account, location, kind, title, payload, status, percent, step_number, step_desc, \
         status_at, created_at, started_at, finished_at, run_after, attempt, max_attempts, \
         safe_to_repeat, result, error, idempotency_key, submitter, cancel_requested"
    };
}
pub(crate) use job_columns;

/// Number of columns in [`job_columns!`], for reading extra columns after them.
pub(crate) const JOB_COLUMN_COUNT: usize = 23;

fn corrupt(index: usize, err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("column {index}: {err}"))
}

pub(crate) fn alias_at(row: &Row, index: usize) -> Result<AccountAlias, StoreError> {
    AccountAlias::parse(row.try_get::<_, &str>(index)?).map_err(|e| corrupt(index, e))
}

pub(crate) fn location_at(row: &Row, index: usize) -> Result<Location, StoreError> {
    Location::parse(row.try_get::<_, &str>(index)?).map_err(|e| corrupt(index, e))
}

pub(crate) fn status_at(row: &Row, index: usize) -> Result<JobStatus, StoreError> {
    JobStatus::parse(row.try_get::<_, &str>(index)?).map_err(|e| corrupt(index, e))
}

/// JSON is stored as `TEXT`, not `JSONB`: text keeps every value exactly as
/// serde_json wrote it (key order, number spelling, `\u0000` escapes, which `JSONB`
/// refuses), so a job reads back identical on both stores.
fn json_at(row: &Row, index: usize) -> Result<Option<serde_json::Value>, StoreError> {
    match row.try_get::<_, Option<&str>>(index)? {
        None => Ok(None),
        Some(text) => serde_json::from_str(text).map(Some).map_err(|e| corrupt(index, e)),
    }
}

fn count_at(row: &Row, index: usize) -> Result<u32, StoreError> {
    Ok(row.try_get::<_, i32>(index)?.max(0) as u32)
}

pub(crate) fn job(row: &Row) -> Result<Job, StoreError> {
    Ok(Job {
        number: row.try_get(0)?,
        account: alias_at(row, 1)?,
        location: location_at(row, 2)?,
        kind: JobKind::parse(row.try_get::<_, &str>(3)?).map_err(|e| corrupt(3, e))?,
        title: row.try_get(4)?,
        payload: json_at(row, 5)?.unwrap_or(serde_json::Value::Null),
        status: status_at(row, 6)?,
        progress: progress_of(
            row.try_get::<_, i32>(7)?.into(),
            row.try_get::<_, i32>(8)?.into(),
            row.try_get(9)?,
        ),
        status_at: row.try_get(10)?,
        created_at: row.try_get(11)?,
        started_at: row.try_get(12)?,
        finished_at: row.try_get(13)?,
        run_after: row.try_get(14)?,
        attempt: count_at(row, 15)?,
        max_attempts: count_at(row, 16)?,
        safe_to_repeat: row.try_get(17)?,
        result: json_at(row, 18)?,
        error: row.try_get(19)?,
        idempotency_key: row.try_get(20)?,
        submitter: row.try_get(21)?,
        cancel_requested: row.try_get(22)?,
    })
}
