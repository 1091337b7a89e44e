//! Operator actions on jobs: cancel and the resolution of `unknown` outcomes, plus
//! the per-kind settings. Each action reads the job with a row lock and decides on
//! what it read, so it cannot act on a status a concurrent call just changed.

use deadpool_postgres::GenericClient;
use opsq_domain::{Job, JobStatus};

use super::history;
use super::jobs::{count, record_event};
use super::rows::{self, job_columns};
use super::signals;
use super::{execute, query_one, query_opt, PostgresStore};
use crate::types::{CancelOutcome, KindSettings, Resolution};
use crate::{now_ms, rules, Signal, StoreError};

async fn lock_job(c: &impl GenericClient, number: i64) -> Result<Job, StoreError> {
    query_opt(c, concat!("SELECT ", job_columns!(), " FROM jobs WHERE number = $1 FOR UPDATE"), &[&number])
        .await?
        .map(|r| rows::job(&r))
        .transpose()?
        .ok_or_else(|| StoreError::NotFound(format!("job {number}")))
}

impl PostgresStore {
    pub(crate) async fn cancel(&self, number: i64, reason: String) -> Result<CancelOutcome, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let now = now_ms();
        let job = lock_job(&tx, number).await?;
        // Only the branches that record an entry write out the derived ones first.
        let outcome = match job.status {
            JobStatus::NotStarted | JobStatus::Resumed => {
                let error = format!("cancelled: {reason}");
                let row = query_one(
                    &tx,
                    concat!(
                        "UPDATE jobs SET status = 'failed', error = $2, cancel_requested = TRUE,
                                cancel_reason = $3, step_desc = 'Request cancelled', status_at = $4,
                                finished_at = $4
                         WHERE number = $1 RETURNING ",
                        job_columns!()
                    ),
                    &[&number, &error, &reason, &now],
                )
                .await?;
                history::write_out(&tx, &[number]).await?;
                record_event(&tx, number, now, JobStatus::Failed, job.attempt, &error).await?;
                CancelOutcome::Cancelled(rows::job(&row)?)
            }
            JobStatus::Executing if !job.cancel_requested => {
                let row = query_one(
                    &tx,
                    concat!(
                        "UPDATE jobs SET cancel_requested = TRUE, cancel_reason = $2 WHERE number = $1 RETURNING ",
                        job_columns!()
                    ),
                    &[&number, &reason],
                )
                .await?;
                let message = format!("cancel requested: {reason}");
                history::write_out(&tx, &[number]).await?;
                record_event(&tx, number, now, JobStatus::Executing, job.attempt, &message).await?;
                CancelOutcome::Requested(rows::job(&row)?)
            }
            // Asked before: asking again changes nothing.
            JobStatus::Executing => CancelOutcome::AlreadyRequested(job),
            JobStatus::Unknown => CancelOutcome::NeedsResolution(job),
            JobStatus::Succeeded | JobStatus::Failed => CancelOutcome::AlreadyFinished(job),
        };
        // Asked again, the signal goes out again: a node that missed the first one
        // stops the job now rather than at its worker's next heartbeat.
        if let CancelOutcome::Requested(job) | CancelOutcome::AlreadyRequested(job) = &outcome {
            signals::notify_on_commit(&tx, Signal::Cancel(job.number)).await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    pub(crate) async fn resolve(
        &self,
        number: i64,
        resolution: Resolution,
        note: String,
    ) -> Result<Job, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let now = now_ms();
        let job = lock_job(&tx, number).await?;
        if job.status != JobStatus::Unknown {
            return Err(StoreError::Invalid(format!(
                "job {number} is {}, not unknown: only unknown outcomes are resolved",
                job.status
            )));
        }
        // An unknown job has no derived history entries: the rescue that made it
        // unknown wrote them out.
        let (status, result, error, description) = rules::resolve(&resolution, job.error.clone())?;
        let finished_at = status.is_terminal().then_some(now);
        let percent = if status == JobStatus::Succeeded { 100 } else { i32::from(job.progress.percent) };
        let row = query_one(
            &tx,
            concat!(
                "UPDATE jobs SET status = $2, result = COALESCE($3, result), error = $4,
                        step_desc = $5, status_at = $6, finished_at = $7, run_after = $6, percent = $8
                 WHERE number = $1 RETURNING ",
                job_columns!()
            ),
            &[&number, &status.as_str(), &result, &error, &description, &now, &finished_at, &percent],
        )
        .await?;
        record_event(&tx, number, now, status, job.attempt, &format!("resolved as {status}: {note}")).await?;
        let job = rows::job(&row)?;
        if job.status == JobStatus::Resumed {
            signals::notify_on_commit(&tx, Signal::JobsReady).await?;
        }
        tx.commit().await?;
        Ok(job)
    }

    pub(crate) async fn set_kind(&self, settings: KindSettings) -> Result<(), StoreError> {
        let client = self.client().await?;
        let max_attempts = settings.max_attempts.map(count);
        execute(
            &client,
            "INSERT INTO kinds (kind, lease_ms, max_attempts, safe_to_repeat, updated_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (kind) DO UPDATE SET lease_ms = excluded.lease_ms,
                 max_attempts = excluded.max_attempts, safe_to_repeat = excluded.safe_to_repeat,
                 updated_at = excluded.updated_at",
            &[&settings.kind, &settings.lease_ms, &max_attempts, &settings.safe_to_repeat, &now_ms()],
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn kind(&self, kind: &str) -> Result<Option<KindSettings>, StoreError> {
        let client = self.client().await?;
        let row = query_opt(
            &client,
            "SELECT kind, lease_ms, max_attempts, safe_to_repeat FROM kinds WHERE kind = $1",
            &[&kind],
        )
        .await?;
        row.map(|r| {
            Ok(KindSettings {
                kind: r.try_get(0)?,
                lease_ms: r.try_get(1)?,
                max_attempts: r.try_get::<_, Option<i32>>(2)?.map(|n| n.max(0) as u32),
                safe_to_repeat: r.try_get(3)?,
            })
        })
        .transpose()
    }
}
