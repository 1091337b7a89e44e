//! A worker hands back a job it claimed but never started (it was shutting down):
//! the job runs again at once, and the attempt does not count (see `rules::release`).
//! Rare (shutdowns only), so one transaction of its own, not the finisher's batches.

use opsq_domain::{Job, JobStatus};

use super::history;
use super::jobs::{lease_lost_or_missing, record_event};
use super::rows::{self, job_columns};
use super::{query_one, query_opt, signals, PostgresStore};
use crate::{now_ms, rules, Signal, StoreError};

impl PostgresStore {
    pub(crate) async fn release(&self, number: i64, lease_token: String) -> Result<Job, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let now = now_ms();
        let current = query_opt(
            &tx,
            "SELECT attempt, CASE WHEN cancel_requested THEN cancel_reason END, error
             FROM jobs
             WHERE number = $1 AND lease_token = $2 AND status = 'executing' AND lease_until >= $3
             FOR UPDATE",
            &[&number, &lease_token, &now],
        )
        .await?;
        let Some(current) = current else {
            return Err(lease_lost_or_missing(&tx, number).await);
        };
        let attempt: i32 = current.try_get(0)?;
        let cancel_reason: Option<String> = current.try_get(1)?;
        let released =
            rules::release(i64::from(attempt), cancel_reason.as_deref(), current.try_get(2)?, now)?;
        let finished = &released.finished;
        history::write_out(&tx, &[number]).await?;
        let finished_at = finished.status.is_terminal().then_some(now);
        let uncounted = i32::from(released.uncounted);
        // The right-hand sides all read the row as it was: `attempt = 1` is the attempt
        // being handed back, so the job never started at all.
        let row = query_one(
            &tx,
            concat!(
                "UPDATE jobs SET status = $2, error = $3, run_after = $4, step_desc = $5,
                        status_at = $4, finished_at = $6,
                        attempt = attempt - $7,
                        started_at = CASE WHEN $7 = 1 AND attempt = 1 THEN NULL ELSE started_at END,
                        lease_owner = NULL, lease_token = NULL, lease_until = NULL
                 WHERE number = $1
                 RETURNING ",
                job_columns!()
            ),
            &[
                &number,
                &finished.status.as_str(),
                &finished.error,
                &now,
                &finished.description,
                &finished_at,
                &uncounted,
            ],
        )
        .await?;
        let job = rows::job(&row)?;
        let attempt = u32::try_from(attempt).unwrap_or(u32::MAX);
        record_event(&tx, number, now, finished.status, attempt, &finished.message).await?;
        if job.status == JobStatus::Resumed {
            signals::notify_on_commit(&tx, Signal::JobsReady).await?;
        }
        tx.commit().await?;
        Ok(job)
    }
}
