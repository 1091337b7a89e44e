//! Housekeeping: pruning finished jobs after the retention period, ending `unknown`
//! outcomes nobody resolved in time, and dropping expired v1 sessions. Each is one
//! statement over a bounded batch on a partial index, so it stays cheap at millions
//! of jobs and never holds many locks for long.

use opsq_domain::Job;

use super::rows::{self, job_columns};
use super::{execute, query, PostgresStore};
use crate::{now_ms, StoreError};

impl PostgresStore {
    pub(crate) async fn prune_finished(&self, finished_before: i64, limit: u32) -> Result<usize, StoreError> {
        let client = self.client().await?;
        // A job some other call holds right now is skipped, not waited for: the next
        // run takes it.
        let deleted = execute(
            &client,
            "WITH doomed AS (
                 SELECT number FROM jobs
                 WHERE status IN ('succeeded', 'failed') AND finished_at < $1
                 ORDER BY finished_at LIMIT $2
                 FOR UPDATE SKIP LOCKED
             ), history AS (
                 DELETE FROM job_events WHERE job IN (SELECT number FROM doomed)
             )
             DELETE FROM jobs WHERE number IN (SELECT number FROM doomed)",
            &[&finished_before, &i64::from(limit)],
        )
        .await?;
        Ok(deleted as usize)
    }

    pub(crate) async fn fail_stale_unknown(
        &self,
        unknown_since_before: i64,
        reason: String,
    ) -> Result<Vec<i64>, StoreError> {
        let client = self.client().await?;
        // Waits for a job being resolved right now, then re-checks it: a job resolved
        // meanwhile is no longer unknown and is left alone.
        let rows = query(
            &client,
            "WITH stale AS (
                 SELECT number FROM jobs
                 WHERE status = 'unknown' AND status_at < $1
                 ORDER BY status_at, number LIMIT 1000
                 FOR UPDATE
             ), failed AS (
                 UPDATE jobs SET status = 'failed', error = $2::text, step_desc = 'Request failed',
                        status_at = $3, finished_at = $3
                 WHERE number IN (SELECT number FROM stale)
                 RETURNING number, attempt
             ), history AS (
                 -- An unknown job has no derived entries (see `history`): the outcome or
                 -- rescue that made it unknown wrote them out.
                 INSERT INTO job_events (job, at, status, attempt, message)
                 SELECT number, $3, 'failed', attempt, 'resolved as failed: ' || $2::text FROM failed
             )
             SELECT number FROM failed ORDER BY number",
            &[&unknown_since_before, &reason, &now_ms()],
        )
        .await?;
        Ok(rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?)
    }

    pub(crate) async fn unknown_jobs(&self, limit: u32) -> Result<Vec<Job>, StoreError> {
        let client = self.client().await?;
        let rows = query(
            &client,
            concat!(
                "SELECT ",
                job_columns!(),
                " FROM jobs WHERE status = 'unknown' ORDER BY status_at, number LIMIT $1"
            ),
            &[&i64::from(limit)],
        )
        .await?;
        rows.iter().map(rows::job).collect()
    }

    pub(crate) async fn prune_sessions(&self) -> Result<usize, StoreError> {
        let client = self.client().await?;
        Ok(execute(&client, "DELETE FROM v1_sessions WHERE expires_at <= $1", &[&now_ms()]).await? as usize)
    }
}
