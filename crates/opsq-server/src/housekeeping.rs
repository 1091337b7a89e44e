//! Housekeeping: takes back expired leases every second (so a lost worker's job runs
//! again within about one lease), runs reconcile probes for `unknown` jobs, ends the
//! `unknown` jobs nobody resolved in time, prunes finished jobs after the retention
//! period, and drops expired v1 sessions.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use opsq_store::{Resolution, Store};
use tokio_util::sync::CancellationToken;

use crate::metrics::JobCounters;
use crate::runner::{ProbeVerdict, Registry};
use crate::wakeup::Wakeup;

#[derive(Debug, Clone)]
pub struct HousekeepingConfig {
    /// How often expired leases are taken back and probes run.
    pub tick: Duration,
    /// How often the slow chores (pruning, unknown timeout, sessions) run.
    pub chores_every: Duration,
    /// Finished jobs are deleted this long after they ended.
    pub retention: Duration,
    /// An `unknown` job nobody resolved in this time ends `failed`.
    pub unknown_timeout: Duration,
    /// A probe that could not tell is asked again after this long.
    pub reprobe_after: Duration,
}

impl Default for HousekeepingConfig {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(1),
            chores_every: Duration::from_secs(60),
            retention: Duration::from_secs(30 * 24 * 3600),
            unknown_timeout: Duration::from_secs(3600),
            reprobe_after: Duration::from_secs(30),
        }
    }
}

/// Largest prune batch, and most batches per round, so one round stays short.
const PRUNE_BATCH: u32 = 1000;
const PRUNE_BATCHES_PER_ROUND: usize = 50;

pub async fn run(
    store: Store,
    registry: Registry,
    wakeup: Wakeup,
    config: HousekeepingConfig,
    counters: JobCounters,
    shutdown: CancellationToken,
) {
    let mut last_chores: Option<Instant> = None;
    let mut probed: HashMap<i64, Instant> = HashMap::new();
    while !shutdown.is_cancelled() {
        if !store.is_housekeeper() {
            // Another node holds the housekeeping lock; check again next tick.
            tokio::select! {
                _ = tokio::time::sleep(config.tick) => {}
                _ = shutdown.cancelled() => {}
            }
            continue;
        }
        match store.rescue(None).await {
            Ok(rescued) if !rescued.is_empty() => {
                tracing::info!(count = rescued.len(), "took back jobs whose lease expired");
                counters.rescued(&rescued);
                wakeup.notify();
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "rescuing expired leases failed"),
        }
        probe_unknown_jobs(&store, &registry, &wakeup, &config, &counters, &mut probed).await;
        if last_chores.is_none_or(|t| t.elapsed() >= config.chores_every) {
            last_chores = Some(Instant::now());
            chores(&store, &config, &counters).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(config.tick) => {}
            _ = shutdown.cancelled() => {}
        }
    }
}

async fn chores(store: &Store, config: &HousekeepingConfig, counters: &JobCounters) {
    let now = opsq_store::now_ms();
    let cutoff = now - config.retention.as_millis() as i64;
    let mut pruned = 0;
    for _ in 0..PRUNE_BATCHES_PER_ROUND {
        match store.prune_finished(cutoff, PRUNE_BATCH).await {
            Ok(count) => {
                pruned += count;
                if count < PRUNE_BATCH as usize {
                    break;
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "pruning finished jobs failed");
                break;
            }
        }
    }
    if pruned > 0 {
        tracing::info!(count = pruned, "pruned finished jobs past the retention period");
    }
    let timeout = config.unknown_timeout;
    let reason = format!(
        "the outcome stayed unknown for {} s (worker lost while running a kind not safe to repeat) and nobody resolved it",
        timeout.as_secs()
    );
    match store.fail_stale_unknown(now - timeout.as_millis() as i64, &reason).await {
        Ok(failed) if !failed.is_empty() => {
            tracing::warn!(jobs = ?failed, "unknown outcomes timed out; ended failed");
            counters.unknown_timed_out(failed.len());
        }
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "ending stale unknown jobs failed"),
    }
    if let Err(err) = store.prune_sessions().await {
        tracing::warn!(error = %err, "pruning v1 sessions failed");
    }
}

async fn probe_unknown_jobs(
    store: &Store,
    registry: &Registry,
    wakeup: &Wakeup,
    config: &HousekeepingConfig,
    counters: &JobCounters,
    probed: &mut HashMap<i64, Instant>,
) {
    let jobs = match store.unknown_jobs(100).await {
        Ok(jobs) => jobs,
        Err(err) => {
            tracing::warn!(error = %err, "listing unknown jobs failed");
            return;
        }
    };
    probed.retain(|number, _| jobs.iter().any(|j| j.number == *number));
    for job in jobs {
        if probed.get(&job.number).is_some_and(|t| t.elapsed() < config.reprobe_after) {
            continue;
        }
        let Some(probe) = registry.get(job.kind.as_str()).and_then(|h| h.probe(&job)) else { continue };
        probed.insert(job.number, Instant::now());
        let resolution = match probe.await {
            ProbeVerdict::Happened(result) => Resolution::Succeeded(result),
            ProbeVerdict::DidNotHappen => Resolution::Retry,
            ProbeVerdict::Failed(reason) => Resolution::Failed(reason),
            ProbeVerdict::Undetermined => continue,
        };
        match store.resolve(job.number, resolution, "reconcile probe").await {
            Ok(resolved) => {
                tracing::info!(job = job.number, status = %resolved.status, "probe resolved an unknown outcome");
                counters.probe_resolved(resolved.status);
                wakeup.notify();
            }
            Err(err) => tracing::warn!(job = job.number, error = %err, "recording a probe's verdict failed"),
        }
    }
}
