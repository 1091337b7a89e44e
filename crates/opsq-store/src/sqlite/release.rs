//! A worker hands back a job it claimed but never started (it was shutting down):
//! the job runs again at once, and the attempt does not count (see `rules::release`).

use opsq_domain::Job;
use rusqlite::{params, OptionalExtension};

use super::jobs::lease_lost_or_missing;
use super::rows::{RawJob, JOB_COLUMNS};
use super::{history, SqliteStore};
use crate::{now_ms, rules, StoreError};

impl SqliteStore {
    pub(crate) async fn release(&self, number: i64, lease_token: String) -> Result<Job, StoreError> {
        let job = self
            .write(move |c| {
                let now = now_ms();
                let current = c
                    .prepare_cached(
                        "SELECT attempt, CASE WHEN cancel_requested THEN COALESCE(cancel_reason, 'no reason given') END
                         FROM jobs
                         WHERE number = ?1 AND lease_token = ?2 AND status = 'executing' AND lease_until >= ?3",
                    )?
                    .query_row(params![number, lease_token, now], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?))
                    })
                    .optional()?;
                let Some((attempt, cancel_reason)) = current else {
                    return Err(lease_lost_or_missing(c, number));
                };
                let released = rules::release(attempt, cancel_reason.as_deref(), now)?;
                let finished = &released.finished;
                history::write_out(c, number)?;
                // The right-hand sides all read the row as it was: `attempt = 1` is the
                // attempt being handed back, so the job never started at all.
                let job = c
                    .prepare_cached(&format!(
                        "UPDATE jobs SET status = ?2, error = COALESCE(?3, error), run_after = ?4, step_desc = ?5,
                                status_at = ?4, finished_at = ?6,
                                attempt = attempt - ?7,
                                started_at = CASE WHEN ?7 = 1 AND attempt = 1 THEN NULL ELSE started_at END,
                                lease_owner = NULL, lease_token = NULL, lease_until = NULL
                         WHERE number = ?1
                         RETURNING {JOB_COLUMNS}"
                    ))?
                    .query_row(
                        params![
                            number,
                            finished.status.as_str(),
                            finished.error,
                            now,
                            finished.description,
                            finished.status.is_terminal().then_some(now),
                            i64::from(released.uncounted),
                        ],
                        RawJob::read,
                    )?;
                let attempt = u32::try_from(attempt).unwrap_or(u32::MAX);
                history::record(c, number, now, finished.status, attempt, &finished.message)?;
                Ok(job)
            })
            .await?;
        Ok(job.decode()?)
    }
}
