//! Housekeeping: pruning finished jobs after the retention period, ending `unknown`
//! outcomes nobody resolved in time, and dropping expired v1 sessions. Each works in
//! bounded batches over partial indexes, so it stays cheap at millions of jobs.

use opsq_domain::{Job, JobStatus};
use rusqlite::params;

use super::rows::{self, JOB_COLUMNS};
use super::{history, SqliteStore};
use crate::{now_ms, StoreError};

impl SqliteStore {
    pub(crate) async fn prune_finished(&self, finished_before: i64, limit: u32) -> Result<usize, StoreError> {
        // Set-based: a batch is two statements on the writer thread, not two per job.
        self.write(move |c| {
            const BATCH: &str =
                "SELECT number FROM jobs WHERE status IN ('succeeded', 'failed') AND finished_at < ?1
                                 ORDER BY finished_at, number LIMIT ?2";
            c.prepare_cached(&format!("DELETE FROM job_events WHERE job IN ({BATCH})"))?
                .execute(params![finished_before, limit])?;
            Ok(c.prepare_cached(&format!("DELETE FROM jobs WHERE number IN ({BATCH})"))?
                .execute(params![finished_before, limit])?)
        })
        .await
    }

    pub(crate) async fn fail_stale_unknown(
        &self,
        unknown_since_before: i64,
        reason: String,
    ) -> Result<Vec<i64>, StoreError> {
        self.write(move |c| {
            let now = now_ms();
            let failed: Vec<i64> = {
                let mut stmt = c.prepare_cached(
                    "UPDATE jobs SET status = 'failed', error = ?2, step_desc = 'Request failed',
                            status_at = ?3, finished_at = ?3
                     WHERE number IN (SELECT number FROM jobs WHERE status = 'unknown' AND status_at < ?1
                                      ORDER BY status_at, number LIMIT 1000)
                     RETURNING number",
                )?;
                let rows = stmt.query_map(params![unknown_since_before, reason, now], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            // An `unknown` job has no derived history entries: the outcome or rescue
            // that made it unknown wrote them out.
            history::record_each(
                c,
                &failed,
                now,
                JobStatus::Failed,
                &format!("resolved as failed: {reason}"),
            )?;
            let mut failed = failed;
            failed.sort_unstable();
            Ok(failed)
        })
        .await
    }

    pub(crate) fn unknown_jobs(&self, limit: u32) -> Result<Vec<Job>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE status = 'unknown' ORDER BY status_at, number LIMIT ?1"
            ))?;
            let rows = stmt.query_map([limit], rows::job)?;
            rows.collect()
        })
    }

    pub(crate) async fn prune_sessions(&self) -> Result<usize, StoreError> {
        self.write(|c| Ok(c.execute("DELETE FROM v1_sessions WHERE expires_at <= ?1", [now_ms()])?)).await
    }
}
