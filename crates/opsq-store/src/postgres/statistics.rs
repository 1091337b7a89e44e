//! Keeps the planner's picture of `jobs` current through bursts of submissions.
//!
//! The claim statement is fast only when it walks the waiting-jobs index in order and
//! stops after the jobs it takes. PostgreSQL picks that plan from its statistics, which
//! autovacuum refreshes about once a minute at best: after a burst into a small
//! table it still believes in a few dozen rows, sorts every waiting job on each claim
//! instead, and a claim of a handful of jobs out of 20,000 took 9 ms instead of
//! 0.1 ms (W1 with external workers drained at 1,600 jobs/s instead of 4,900). So each
//! node counts the jobs it inserted and, once they exceed a fifth of what the
//! statistics know of, runs `ANALYZE jobs` (a sample, not a scan: tens of
//! milliseconds at a million rows) in the background.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::Notify;

use super::{execute, query_one};
use crate::StoreError;

/// Fewer new jobs than this never call for fresh statistics.
const MIN_INSERTED: u64 = 1000;
/// New jobs, as a share of the rows the statistics know of, that call for fresh ones.
const GROWTH: f64 = 0.2;
/// The shortest time between two checks, however many submissions nudge.
const CHECK_GAP: Duration = Duration::from_millis(200);

#[derive(Default)]
pub(crate) struct StatisticsKeeper {
    inserted: AtomicU64,
    nudge: Notify,
}

impl StatisticsKeeper {
    /// Starts the background task that refreshes the statistics when needed.
    pub(crate) fn spawn(pool: Pool) -> Arc<Self> {
        let keeper = Arc::new(Self::default());
        let this = keeper.clone();
        tokio::spawn(async move {
            loop {
                this.nudge.notified().await;
                match this.refresh_if_stale(&pool).await {
                    Ok(()) => {}
                    Err(err) => {
                        tracing::warn!(error = %err, "could not refresh the statistics of the jobs table; claims may plan poorly until autovacuum does");
                        // Without the right to ANALYZE there is no point asking often.
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                }
                tokio::time::sleep(CHECK_GAP).await;
            }
        });
        keeper
    }

    /// Records jobs this node inserted (after their commit).
    pub(crate) fn inserted(&self, count: u64) {
        if count > 0 {
            self.inserted.fetch_add(count, Ordering::Relaxed);
            self.nudge.notify_one();
        }
    }

    async fn refresh_if_stale(&self, pool: &Pool) -> Result<(), StoreError> {
        let inserted = self.inserted.load(Ordering::Relaxed);
        if inserted < MIN_INSERTED {
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
        if (inserted as f64) < known * GROWTH {
            return Ok(());
        }
        self.inserted.fetch_sub(inserted, Ordering::Relaxed);
        execute(&client, "ANALYZE jobs", &[]).await?;
        tracing::debug!(inserted, known, "refreshed the statistics of the jobs table");
        Ok(())
    }
}
