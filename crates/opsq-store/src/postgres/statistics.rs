//! Keeps the planner's picture of `jobs` current through bursts of submissions.
//!
//! The claim statement is fast only when it walks the waiting-jobs index in order and
//! stops after the jobs it takes. PostgreSQL picks that plan from its statistics, which
//! autovacuum refreshes about once a minute at best: after a burst into a small
//! table it still believes in a few dozen rows, and sorts every waiting job on each
//! claim instead (8.7 ms per claim of a handful out of 20,000, auto_explain). So each
//! node counts the jobs it inserted and, once they exceed a fifth of what the
//! statistics know of, runs `ANALYZE jobs` in the background: a sample, not a scan
//! (226-240 ms at a million jobs, 3 runs), at most once per 20% of growth. With it, W1
//! with external workers drained 4,633-5,532 jobs/s instead of 1,215-1,690
//! (bench/RESULTS.md, step 11).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::mpsc;

use super::batcher::spawn_batcher;
use super::{execute, query_one};
use crate::StoreError;

/// Fewer new jobs than this never call for fresh statistics.
const MIN_INSERTED: u64 = 1000;
/// New jobs, as a share of the rows the statistics know of, that call for fresh ones.
const GROWTH: f64 = 0.2;
/// The shortest time between two checks, however many submissions report.
const CHECK_GAP: Duration = Duration::from_millis(200);

/// Starts the keeper; send it the number of jobs each submission inserted (after
/// its commit). Reports that arrive while it checks wait for the next check.
pub(crate) fn spawn_statistics_keeper(pool: Pool) -> mpsc::UnboundedSender<u64> {
    let inserted = Arc::new(AtomicU64::new(0));
    spawn_batcher(usize::MAX, 1, move |counts: Vec<u64>| {
        let (pool, inserted) = (pool.clone(), inserted.clone());
        async move {
            inserted.fetch_add(counts.iter().sum(), Ordering::Relaxed);
            if let Err(err) = refresh_if_stale(&pool, &inserted).await {
                tracing::warn!(error = %err, "could not refresh the statistics of the jobs table; claims may plan poorly until autovacuum does");
                // Without the right to ANALYZE there is no point asking often.
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            tokio::time::sleep(CHECK_GAP).await;
        }
    })
}

async fn refresh_if_stale(pool: &Pool, inserted: &AtomicU64) -> Result<(), StoreError> {
    let count = inserted.load(Ordering::Relaxed);
    if count < MIN_INSERTED {
        return Ok(());
    }
    let client = pool.get().await?;
    let known: f64 = query_one(
        &client,
        "SELECT GREATEST(reltuples, 0)::float8 FROM pg_class WHERE oid = 'jobs'::regclass",
        &[],
    )
    .await?
    .try_get(0)?;
    if (count as f64) < known * GROWTH {
        return Ok(());
    }
    inserted.fetch_sub(count, Ordering::Relaxed);
    execute(&client, "ANALYZE jobs", &[]).await?;
    tracing::debug!(inserted = count, known, "refreshed the statistics of the jobs table");
    Ok(())
}
