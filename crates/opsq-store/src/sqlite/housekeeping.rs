//! Housekeeping: pruning finished jobs after the retention period, ending `unknown`
//! outcomes nobody resolved in time, and dropping expired v1 sessions; and counting
//! the unfinished jobs for metrics. Each works in bounded batches or over partial
//! indexes, so it stays cheap at millions of jobs.

use std::sync::atomic::{AtomicI64, Ordering};

use opsq_domain::{Job, JobStatus};
use rusqlite::params;

use super::jobs::waiting_kinds_cte;
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

/// When the longest-waiting due job became due (`?1` = now): the first entry of each
/// kind in `jobs_waiting` is that kind's earliest `run_after`, so this reads two index
/// entries per kind with waiting jobs, however many wait.
const OLDEST_DUE: &str = concat!(
    waiting_kinds_cte!(),
    ", firsts(run_after) AS (
         SELECT (SELECT run_after FROM jobs WHERE status IN ('notStarted', 'resumed') AND kind = w.kind
                 ORDER BY run_after LIMIT 1)
         FROM waiting_kinds w WHERE w.kind IS NOT NULL
     )
     SELECT min(run_after) FROM firsts WHERE run_after <= ?1"
);

/// Most rows one prune call examines, on the writer thread; only where jobs that
/// never end sit at the head of the table does it come near: normally a call stops at
/// the first job created after the cutoff.
const PRUNE_SCAN: i64 = 50_000;

/// Where the next prune call starts: the last job number a call examined when it
/// stopped early (its limit, or the rows it may examine), else 0. Only an optimisation: a job
/// before it that became due since is pruned once a walk starts over, which happens
/// whenever one reaches the newest jobs.
pub(super) type PruneCursor = std::sync::Arc<AtomicI64>;

impl SqliteStore {
    /// Prunes in job number order, from where the previous call stopped ([`PruneCursor`]):
    /// there is no index on `finished_at`, which every success would have to update
    /// (about 5% of the writer's CPU per job in a drain; bench/RESULTS.md, step 33).
    /// Numbers follow creation, and a job ends after it was created, so the walk stops
    /// at the first job created after the cutoff: the rest cannot be due. It examines
    /// at most [`PRUNE_SCAN`] rows a call, so jobs that stay
    /// unfinished at the head (a kind nobody runs) cost a bounded scan and never stop
    /// the pruning behind them.
    pub(crate) async fn prune_finished(&self, finished_before: i64, limit: u32) -> Result<usize, StoreError> {
        if limit == 0 {
            return Ok(0);
        }
        let cursor = self.prune_cursor.clone();
        self.write(move |c| {
            let from = cursor.load(Ordering::Relaxed);
            let mut doomed = Vec::new();
            // Where the next call starts: 0 (over) unless this one stops early.
            let mut next_from = 0;
            {
                let mut stmt = c.prepare_cached(
                    "SELECT number, IFNULL(status IN ('succeeded', 'failed') AND finished_at < ?1, 0),
                            created_at >= ?1
                     FROM jobs WHERE number > ?2 ORDER BY number LIMIT ?3",
                )?;
                let mut rows = stmt.query(params![finished_before, from, PRUNE_SCAN])?;
                let mut examined = 0;
                while let Some(row) = rows.next()? {
                    examined += 1;
                    let (number, due, too_new): (i64, bool, bool) = (row.get(0)?, row.get(1)?, row.get(2)?);
                    if too_new {
                        break;
                    }
                    if due {
                        doomed.push(number);
                    }
                    if doomed.len() == limit as usize || examined == PRUNE_SCAN {
                        next_from = number;
                        break;
                    }
                }
            }
            let mut pruned = 0;
            if !doomed.is_empty() {
                let doomed = history::flat_list(&doomed)?;
                c.prepare_cached("DELETE FROM job_events WHERE job IN (SELECT value FROM json_each(?1))")?
                    .execute([&doomed])?;
                pruned = c
                    .prepare_cached("DELETE FROM jobs WHERE number IN (SELECT value FROM json_each(?1))")?
                    .execute([&doomed])?;
            }
            cursor.store(next_from, Ordering::Relaxed);
            Ok(pruned)
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
        let (rows, oldest_due_at) = self.read(|c| {
            let mut stmt = c.prepare_cached(UNFINISHED_COUNTS)?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            let rows = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            let oldest: Option<i64> = c.prepare_cached(OLDEST_DUE)?.query_row([now_ms()], |r| r.get(0))?;
            Ok((rows, oldest))
        })?;
        let mut counts = UnfinishedCounts { oldest_due_at, ..UnfinishedCounts::default() };
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
    use super::super::insert_test_job;
    use super::*;

    /// Jobs that never end at the head of the table (a kind nobody runs) cost each
    /// call a bounded scan and do not stop the pruning of the ended jobs behind them;
    /// a job created after the cutoff ends the walk.
    #[tokio::test]
    async fn pruning_walks_past_jobs_that_never_end_and_stops_at_new_ones() {
        let dir = tempfile::TempDir::new().expect("temporary directory");
        let store = SqliteStore::open(dir.path()).expect("open");
        let stuck = PRUNE_SCAN + 5;
        store
            .write(move |c| {
                for _ in 0..stuck {
                    insert_test_job(c, "t.nobody", "notStarted", 10, None)?;
                }
                // Ended, but with no end time (not written by this store): kept, and no
                // stall for the walk.
                insert_test_job(c, "t.odd", "succeeded", 20, None)?;
                for _ in 0..3 {
                    insert_test_job(c, "t.done", "succeeded", 20, Some(30))?;
                }
                // Created after the cutoff (and ended since): never due, and the walk's end.
                insert_test_job(c, "t.new", "succeeded", 2_000, Some(2_001))?;
                Ok(())
            })
            .await
            .expect("insert jobs");
        let count = |kind: &'static str| {
            store
                .read(move |c| {
                    c.query_row("SELECT count(*) FROM jobs WHERE kind = ?1", [kind], |r| r.get::<_, i64>(0))
                })
                .expect("count")
        };

        let mut pruned = Vec::new();
        for _ in 0..4 {
            pruned.push(store.prune_finished(1_000, 100).await.expect("prune"));
        }
        // The first call examines the most rows a call may, all stuck; the second reaches the
        // ended ones and stops at the new job; the walk then starts over and finds nothing.
        assert_eq!(pruned, [0, 3, 0, 0]);
        assert_eq!((count("t.nobody"), count("t.odd"), count("t.done"), count("t.new")), (stuck, 1, 0, 1));
        // Once the new job is due, a walk from the start reaches it past the stuck head.
        let later = [
            store.prune_finished(3_000, 100).await.expect("prune"),
            store.prune_finished(3_000, 100).await.expect("prune"),
        ];
        assert_eq!(later, [0, 1]);
        assert_eq!((count("t.nobody"), count("t.new")), (stuck, 0));
    }

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
