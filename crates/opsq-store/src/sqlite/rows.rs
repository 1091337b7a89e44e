//! Turning rows into domain values; a stored value that no longer parses is reported
//! as a conversion failure rather than a panic.

use opsq_domain::{AccountAlias, Job, JobKind, JobStatus, Location};
use rusqlite::types::Type;
use rusqlite::Row;

use crate::types::progress_of;

pub(crate) const JOB_COLUMNS: &str = "number, account, location, kind, title, payload, status, \
    percent, step_number, step_desc, status_at, created_at, started_at, finished_at, run_after, \
    attempt, max_attempts, safe_to_repeat, result, error, idempotency_key, submitter, cancel_requested";

/// Number of columns in [`JOB_COLUMNS`], for reading extra columns after them.
pub(crate) const JOB_COLUMN_COUNT: usize = 23;

fn bad(index: usize, err: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(index, Type::Text, Box::new(err))
}

pub(crate) fn alias_at(row: &Row<'_>, index: usize) -> rusqlite::Result<AccountAlias> {
    AccountAlias::parse(&row.get::<_, String>(index)?).map_err(|e| bad(index, e))
}

pub(crate) fn location_at(row: &Row<'_>, index: usize) -> rusqlite::Result<Location> {
    Location::parse(&row.get::<_, String>(index)?).map_err(|e| bad(index, e))
}

pub(crate) fn status_at(row: &Row<'_>, index: usize) -> rusqlite::Result<JobStatus> {
    JobStatus::parse(&row.get::<_, String>(index)?).map_err(|e| bad(index, e))
}

fn json_at(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<serde_json::Value>> {
    match row.get::<_, Option<String>>(index)? {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text).map(Some).map_err(|e| bad(index, e)),
    }
}

pub(crate) fn job(row: &Row<'_>) -> rusqlite::Result<Job> {
    Ok(Job {
        number: row.get(0)?,
        account: alias_at(row, 1)?,
        location: location_at(row, 2)?,
        kind: JobKind::parse(&row.get::<_, String>(3)?).map_err(|e| bad(3, e))?,
        title: row.get(4)?,
        payload: json_at(row, 5)?.unwrap_or(serde_json::Value::Null),
        status: status_at(row, 6)?,
        progress: progress_of(row.get(7)?, row.get(8)?, row.get(9)?),
        status_at: row.get(10)?,
        created_at: row.get(11)?,
        started_at: row.get(12)?,
        finished_at: row.get(13)?,
        run_after: row.get(14)?,
        attempt: row.get::<_, i64>(15)?.max(0) as u32,
        max_attempts: row.get::<_, i64>(16)?.max(0) as u32,
        safe_to_repeat: row.get(17)?,
        result: json_at(row, 18)?,
        error: row.get(19)?,
        idempotency_key: row.get(20)?,
        submitter: row.get(21)?,
        cancel_requested: row.get(22)?,
    })
}
