//! Housekeeping: pruning finished jobs after the retention period, ending `unknown`
//! outcomes nobody resolved in time, and dropping expired v1 sessions; and counting
//! the unfinished jobs for metrics. Each works in bounded batches or over partial
//! indexes, so it stays cheap at millions of jobs.

use opsq_domain::{Job, JobStatus};
use rusqlite::params;

use super::rows::{self, JOB_COLUMNS};
use super::{history, SqliteStore};
use crate::{now_ms, StoreError, UnfinishedCounts};

/// Each part names the exact condition of a partial index (`jobs_waiting`,
/// `jobs_leased`, `jobs_unknown`), so SQLite reads only the unfinished jobs' entries,
/// never the finished jobs kept for the retention period (see the test below).
const UNFINISHED_COUNTS: &str = "
    SELECT status, count(*) FROM jobs WHERE status IN ('notStarted', 'resumed') GROUP BY status
    UNION ALL SELECT 'executing', count(*) FROM jobs WHERE status = 'executing'
    UNION ALL SELECT 'unknown', count(*) FROM jobs WHERE status = 'unknown'";

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

    /// Blocks for as long as the count takes (it reads an index entry per waiting
    /// job): the store handle runs it on a blocking thread.
    pub(crate) fn unfinished_counts(&self) -> Result<UnfinishedCounts, StoreError> {
        let rows: Vec<(String, i64)> = self.read(|c| {
            let mut stmt = c.prepare_cached(UNFINISHED_COUNTS)?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })?;
        let mut counts = UnfinishedCounts::default();
        for (status, count) in rows {
            counts.add(&status, count)?;
        }
        Ok(counts)
    }

    pub(crate) async fn prune_sessions(&self) -> Result<usize, StoreError> {
        self.write(|c| Ok(c.execute("DELETE FROM v1_sessions WHERE expires_at <= ?1", [now_ms()])?)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A count that scanned the table would cost a scrape a read of every finished
    /// job kept; each part of the statement must be answered from a partial index.
    #[test]
    fn unfinished_counts_read_only_the_partial_indexes() {
        let dir = tempfile::TempDir::new().expect("temporary directory");
        let store = SqliteStore::open(dir.path()).expect("open");
        let plan: Vec<String> = store
            .read(|c| {
                let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {UNFINISHED_COUNTS}"))?;
                let rows = stmt.query_map([], |r| r.get::<_, String>(3))?;
                rows.collect()
            })
            .expect("explain");
        // "SCAN jobs USING INDEX jobs_waiting", "... USING COVERING INDEX jobs_leased":
        // a plain "SCAN jobs" would be the whole table.
        let indexes: Vec<Option<&str>> = plan
            .iter()
            .filter(|step| step.starts_with("SCAN jobs") || step.starts_with("SEARCH jobs"))
            .map(|step| step.split_once("INDEX ").map(|(_, index)| index))
            .collect();
        assert_eq!(
            indexes,
            [Some("jobs_waiting"), Some("jobs_leased"), Some("jobs_unknown")],
            "the whole plan: {plan:?}"
        );
    }
}
