//! Housekeeping: pruning finished jobs after the retention period, ending `unknown`
//! outcomes nobody resolved in time, and dropping expired v1 sessions. Each works in
//! bounded batches over partial indexes, so it stays cheap at millions of jobs.

use opsq_domain::{Job, JobStatus};
use rusqlite::params;

use super::rows::{self, JOB_COLUMNS};
use super::SqliteStore;
use crate::{now_ms, StoreError};

impl SqliteStore {
    pub(crate) async fn prune_finished(&self, finished_before: i64, limit: u32) -> Result<usize, StoreError> {
        self.write(move |c| {
            let numbers: Vec<i64> = {
                let mut stmt = c.prepare_cached(
                    "SELECT number FROM jobs WHERE status IN ('succeeded', 'failed') AND finished_at < ?1
                     ORDER BY finished_at LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![finished_before, limit], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            for number in &numbers {
                c.prepare_cached("DELETE FROM job_events WHERE job = ?1")?.execute([number])?;
                c.prepare_cached("DELETE FROM jobs WHERE number = ?1")?.execute([number])?;
            }
            Ok(numbers.len())
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
            let stale: Vec<(i64, i64)> = {
                let mut stmt = c.prepare_cached(
                    "SELECT number, attempt FROM jobs WHERE status = 'unknown' AND status_at < ?1 LIMIT 1000",
                )?;
                let rows = stmt.query_map([unknown_since_before], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            for (number, attempt) in &stale {
                c.prepare_cached(
                    "UPDATE jobs SET status = 'failed', error = ?2, step_desc = 'Request failed',
                            status_at = ?3, finished_at = ?3 WHERE number = ?1",
                )?
                .execute(params![number, reason, now])?;
                c.prepare_cached(
                    "INSERT INTO job_events (job, at, status, attempt, message) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    number,
                    now,
                    JobStatus::Failed.as_str(),
                    attempt,
                    format!("resolved as failed: {reason}")
                ])?;
            }
            Ok(stale.into_iter().map(|(number, _)| number).collect())
        })
        .await
    }

    pub(crate) fn unknown_jobs(&self, limit: u32) -> Result<Vec<Job>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE status = 'unknown' ORDER BY status_at LIMIT ?1"
            ))?;
            let rows = stmt.query_map([limit], rows::job)?;
            rows.collect()
        })
    }

    pub(crate) async fn prune_sessions(&self) -> Result<usize, StoreError> {
        self.write(|c| Ok(c.execute("DELETE FROM v1_sessions WHERE expires_at <= ?1", [now_ms()])?)).await
    }
}
