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

pub(crate) fn job(row: &Row<'_>) -> rusqlite::Result<Job> {
    RawJob::read(row)?.decode()
}

/// A job row copied out as stored, not yet checked or parsed. The writer thread is
/// the embedded store's one bottleneck, and parsing a row's JSON and names there
/// cost it about 18% of its samples in a drain (bench/RESULTS.md, step 16), so claims and
/// outcomes hand it to their callers to decode on their own threads. Submissions
/// still decode there; their share was not measured.
pub(crate) struct RawJob {
    number: i64,
    account: String,
    location: String,
    kind: String,
    title: String,
    payload: String,
    status: String,
    percent: i64,
    step_number: i64,
    step_desc: String,
    status_at: i64,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    run_after: i64,
    attempt: i64,
    max_attempts: i64,
    safe_to_repeat: bool,
    result: Option<String>,
    error: Option<String>,
    idempotency_key: Option<String>,
    submitter: String,
    cancel_requested: bool,
}

impl RawJob {
    /// Copies the [`JOB_COLUMNS`] of `row`.
    pub(crate) fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            number: row.get(0)?,
            account: row.get(1)?,
            location: row.get(2)?,
            kind: row.get(3)?,
            title: row.get(4)?,
            payload: row.get(5)?,
            status: row.get(6)?,
            percent: row.get(7)?,
            step_number: row.get(8)?,
            step_desc: row.get(9)?,
            status_at: row.get(10)?,
            created_at: row.get(11)?,
            started_at: row.get(12)?,
            finished_at: row.get(13)?,
            run_after: row.get(14)?,
            attempt: row.get(15)?,
            max_attempts: row.get(16)?,
            safe_to_repeat: row.get(17)?,
            result: row.get(18)?,
            error: row.get(19)?,
            idempotency_key: row.get(20)?,
            submitter: row.get(21)?,
            cancel_requested: row.get(22)?,
        })
    }

    /// Checks and parses the copy; a stored value that no longer parses is a
    /// conversion failure of its column.
    pub(crate) fn decode(self) -> rusqlite::Result<Job> {
        let json = |index: usize, text: &str| serde_json::from_str(text).map_err(|e| bad(index, e));
        Ok(Job {
            number: self.number,
            account: AccountAlias::parse(&self.account).map_err(|e| bad(1, e))?,
            location: Location::parse(&self.location).map_err(|e| bad(2, e))?,
            kind: JobKind::parse(&self.kind).map_err(|e| bad(3, e))?,
            title: self.title,
            payload: json(5, &self.payload)?,
            status: JobStatus::parse(&self.status).map_err(|e| bad(6, e))?,
            progress: progress_of(self.percent, self.step_number, self.step_desc),
            status_at: self.status_at,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            run_after: self.run_after,
            attempt: self.attempt.max(0) as u32,
            max_attempts: self.max_attempts.max(0) as u32,
            safe_to_repeat: self.safe_to_repeat,
            result: self.result.as_deref().map(|text| json(18, text)).transpose()?,
            error: self.error,
            idempotency_key: self.idempotency_key,
            submitter: self.submitter,
            cancel_requested: self.cancel_requested,
        })
    }

    pub(crate) fn number(&self) -> i64 {
        self.number
    }

    pub(crate) fn attempt(&self) -> u32 {
        self.attempt.max(0) as u32
    }
}
