//! Operator actions on jobs: cancel and the resolution of `unknown` outcomes, plus
//! the per-kind settings.

use opsq_domain::{Job, JobStatus};
use rusqlite::{params, Connection, OptionalExtension};

use super::rows::{self, JOB_COLUMNS};
use super::{history, SqliteStore};
use crate::types::{CancelOutcome, KindSettings, Resolution};
use crate::{now_ms, rules, StoreError};

fn load(c: &Connection, number: i64) -> Result<Job, StoreError> {
    c.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE number = ?1"))?
        .query_row([number], rows::job)
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("job {number}")))
}

impl SqliteStore {
    pub(crate) async fn cancel(&self, number: i64, reason: String) -> Result<CancelOutcome, StoreError> {
        self.write(move |c| {
            let now = now_ms();
            let job = load(c, number)?;
            // Only the branches that record an entry write out the derived ones first.
            match job.status {
                JobStatus::NotStarted | JobStatus::Resumed => {
                    let error = format!("cancelled: {reason}");
                    c.execute(
                        "UPDATE jobs SET status = 'failed', error = ?2, cancel_requested = 1, cancel_reason = ?3,
                                step_desc = 'Request cancelled', status_at = ?4, finished_at = ?4
                         WHERE number = ?1",
                        params![number, error, reason, now],
                    )?;
                    history::write_out(c, number)?;
                    history::record(c, number, now, JobStatus::Failed, job.attempt, &error)?;
                    Ok(CancelOutcome::Cancelled(load(c, number)?))
                }
                // Asked before: asking again changes nothing.
                JobStatus::Executing if job.cancel_requested => Ok(CancelOutcome::AlreadyRequested(job)),
                JobStatus::Executing => {
                    c.execute(
                        "UPDATE jobs SET cancel_requested = 1, cancel_reason = ?2 WHERE number = ?1",
                        params![number, reason],
                    )?;
                    history::write_out(c, number)?;
                    history::record(c, number, now, JobStatus::Executing, job.attempt, &format!("cancel requested: {reason}"))?;
                    Ok(CancelOutcome::Requested(load(c, number)?))
                }
                JobStatus::Unknown => Ok(CancelOutcome::NeedsResolution(job)),
                JobStatus::Succeeded | JobStatus::Failed => Ok(CancelOutcome::AlreadyFinished(job)),
            }
        })
        .await
    }

    pub(crate) async fn resolve(
        &self,
        number: i64,
        resolution: Resolution,
        note: String,
    ) -> Result<Job, StoreError> {
        self.write(move |c| {
            let now = now_ms();
            let job = load(c, number)?;
            if job.status != JobStatus::Unknown {
                return Err(StoreError::Invalid(format!(
                    "job {number} is {}, not unknown: only unknown outcomes are resolved",
                    job.status
                )));
            }
            // An `unknown` job has no derived history entries: the rescue that made it
            // unknown wrote them out.
            let (status, result, error, description) = rules::resolve(&resolution, job.error.clone())?;
            let finished_at = status.is_terminal().then_some(now);
            let percent = if status == JobStatus::Succeeded { 100 } else { job.progress.percent as i64 };
            c.execute(
                "UPDATE jobs SET status = ?2, result = COALESCE(?3, result), error = ?4,
                        step_desc = ?5, status_at = ?6, finished_at = ?7, run_after = ?6, percent = ?8
                 WHERE number = ?1",
                params![number, status.as_str(), result, error, description, now, finished_at, percent],
            )?;
            history::record(c, number, now, status, job.attempt, &format!("resolved as {status}: {note}"))?;
            load(c, number)
        })
        .await
    }

    pub(crate) async fn set_kind(&self, settings: KindSettings) -> Result<(), StoreError> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO kinds (kind, lease_ms, max_attempts, safe_to_repeat, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (kind) DO UPDATE SET lease_ms = excluded.lease_ms,
                     max_attempts = excluded.max_attempts, safe_to_repeat = excluded.safe_to_repeat,
                     updated_at = excluded.updated_at",
                params![
                    settings.kind,
                    settings.lease_ms,
                    settings.max_attempts,
                    settings.safe_to_repeat,
                    now_ms()
                ],
            )?;
            Ok(())
        })
        .await
    }

    pub(crate) fn kind(&self, kind: &str) -> Result<Option<KindSettings>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT kind, lease_ms, max_attempts, safe_to_repeat FROM kinds WHERE kind = ?1",
            )?
            .query_row([kind], |r| {
                Ok(KindSettings {
                    kind: r.get(0)?,
                    lease_ms: r.get(1)?,
                    max_attempts: r.get(2)?,
                    safe_to_repeat: r.get(3)?,
                })
            })
            .optional()
        })
    }
}
