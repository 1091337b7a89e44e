//! Housekeeping: pruning finished jobs after the retention period, ending `unknown`
//! outcomes nobody resolved in time, and dropping expired v1 sessions; and counting
//! the unfinished jobs for metrics. Each is one statement over a bounded batch or a
//! partial index, so it stays cheap at millions of jobs and never holds many locks
//! for long.

use std::time::Duration;

use opsq_domain::Job;

use super::rows::{self, job_columns};
use super::{execute, query, query_one, PostgresStore};
use crate::{now_ms, StoreError, UnfinishedCounts};

/// Each part names the exact condition of a partial index (`jobs_waiting`,
/// `jobs_leased`, `jobs_unknown`), so the planner can answer it from that index
/// (index-only for the last two) and never reads the finished jobs kept for the
/// retention period.
const UNFINISHED_COUNTS: &str = "
    SELECT status, count(*) FROM jobs WHERE status IN ('notStarted', 'resumed') GROUP BY status
    UNION ALL SELECT 'executing', count(*) FROM jobs WHERE status = 'executing'
    UNION ALL SELECT 'unknown', count(*) FROM jobs WHERE status = 'unknown'";

/// When the longest-waiting due job became due (`$1` = now): the first entry of each
/// kind in `jobs_waiting` is that kind's earliest `run_after`, so this reads two
/// index entries per kind with waiting jobs, however many wait.
const OLDEST_DUE: &str = concat!(
    "WITH RECURSIVE ",
    super::claims::waiting_kinds_cte!(),
    ", firsts AS (
         SELECT (SELECT j.run_after FROM jobs j
                 WHERE j.status IN ('notStarted', 'resumed') AND j.kind = w.kind
                 ORDER BY j.kind, j.run_after LIMIT 1) AS run_after
         FROM waiting_kinds w WHERE w.kind IS NOT NULL
     )
     SELECT min(run_after) FROM firsts WHERE run_after <= $1"
);

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

    /// The database stops the count itself after `within` (`statement_timeout`, which
    /// also bounds a wait for a lock): a caller that gave up on it leaves no query
    /// running, nor a pooled connection busy with one.
    pub(crate) async fn unfinished_counts(&self, within: Duration) -> Result<UnfinishedCounts, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let timeout = format!("{}ms", within.as_millis().max(1));
        execute(&tx, "SELECT set_config('statement_timeout', $1, true)", &[&timeout]).await?;
        let rows = query(&tx, UNFINISHED_COUNTS, &[]).await?;
        let oldest = query_one(&tx, OLDEST_DUE, &[&now_ms()]).await?;
        tx.commit().await?;
        let mut counts =
            UnfinishedCounts { oldest_due_at: oldest.try_get(0)?, ..UnfinishedCounts::default() };
        for row in rows {
            counts.add(row.try_get(0)?, row.try_get(1)?)?;
        }
        Ok(counts)
    }

    pub(crate) async fn prune_sessions(&self) -> Result<usize, StoreError> {
        let client = self.client().await?;
        Ok(execute(&client, "DELETE FROM v1_sessions WHERE expires_at <= $1", &[&now_ms()]).await? as usize)
    }
}
