//! The in-process runner: claims jobs of the kinds it has handlers for, runs them
//! under a lease it renews, and records their outcome, fenced by the lease token.

mod backoff;
mod handler;
pub mod simulator;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opsq_store::{ClaimRequest, JobOutcome, Store, StoreError};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use handler::{HandlerError, JobContext, JobHandler};

/// Lease owners of in-process runners start with this, so a restarted node can take
/// back at once what its previous run held (one server per data directory).
pub const IN_PROCESS_OWNER_PREFIX: &str = "inproc:";

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    pub concurrency: usize,
    pub lease: Duration,
    /// How often to look for work when no wake-up arrives (retries coming due,
    /// jobs submitted by another process).
    pub poll_interval: Duration,
    /// How often expired leases are taken back.
    pub rescue_interval: Duration,
    /// How long in-flight jobs may take to finish at shutdown before being handed back.
    pub shutdown_grace: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            concurrency: 64,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
            rescue_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Handlers by exact kind.
#[derive(Default, Clone)]
pub struct Registry {
    handlers: HashMap<String, Arc<dyn JobHandler>>,
}

impl Registry {
    pub fn register(&mut self, kind: &str, handler: Arc<dyn JobHandler>) {
        self.handlers.insert(kind.to_string(), handler);
    }

    pub fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self.handlers.keys().cloned().collect();
        kinds.sort();
        kinds
    }
}

pub struct Runner {
    store: Store,
    registry: Registry,
    owner: String,
    wake: Arc<Notify>,
    config: RunnerConfig,
}

impl Runner {
    pub fn new(store: Store, registry: Registry, wake: Arc<Notify>, config: RunnerConfig) -> Self {
        let owner = format!("{IN_PROCESS_OWNER_PREFIX}{:016x}", rand::random::<u64>());
        Self { store, registry, owner, wake, config }
    }

    /// Runs until `shutdown` fires, then lets in-flight jobs finish within the grace
    /// period and hands the rest back (`resumed`) so nothing accepted is lost.
    pub async fn run(self, shutdown: CancellationToken) {
        match self.store.rescue(Some(IN_PROCESS_OWNER_PREFIX.to_string())).await {
            Ok(rescued) if !rescued.is_empty() => {
                tracing::info!(count = rescued.len(), "took back jobs interrupted by the previous run")
            }
            Ok(_) => {}
            Err(err) => tracing::error!(error = %err, "could not take back interrupted jobs"),
        }
        let kinds = self.registry.kinds();
        let permits = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let jobs_cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut last_rescue = Instant::now();
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            if last_rescue.elapsed() >= self.config.rescue_interval {
                last_rescue = Instant::now();
                if let Err(err) = self.store.rescue(None).await {
                    tracing::warn!(error = %err, "rescuing expired leases failed");
                }
            }
            let free = permits.available_permits();
            let mut claimed_all = false;
            if free > 0 && !kinds.is_empty() {
                match self.claim(&kinds, free).await {
                    Ok(claims) => {
                        failures = 0;
                        claimed_all = claims.len() == free;
                        for claim in claims {
                            let Ok(permit) = permits.clone().try_acquire_owned() else { break };
                            let Some(handler) = self.registry.handlers.get(claim.job.kind.as_str()).cloned()
                            else {
                                continue;
                            };
                            let store = self.store.clone();
                            let lease = self.config.lease;
                            let cancel = jobs_cancel.child_token();
                            tasks.spawn(async move {
                                run_attempt(store, handler, claim, lease, cancel).await;
                                drop(permit);
                            });
                        }
                    }
                    Err(err) => {
                        failures += 1;
                        tracing::warn!(error = %err, "claiming jobs failed");
                    }
                }
            }
            if claimed_all && permits.available_permits() > 0 {
                continue;
            }
            let pause = if failures > 0 {
                backoff::delay(failures, Duration::from_millis(200), Duration::from_secs(5))
            } else {
                self.config.poll_interval
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.cancelled() => {}
            }
        }
        self.drain(tasks, jobs_cancel).await;
    }

    async fn claim(&self, kinds: &[String], limit: usize) -> Result<Vec<opsq_store::Claim>, StoreError> {
        self.store
            .claim(ClaimRequest {
                kinds: kinds.to_vec(),
                limit: limit as u32,
                owner: self.owner.clone(),
                lease_ms: self.config.lease.as_millis() as i64,
                accounts: None,
            })
            .await
    }

    async fn drain(&self, mut tasks: JoinSet<()>, jobs_cancel: CancellationToken) {
        if tasks.is_empty() {
            return;
        }
        tracing::info!(running = tasks.len(), "waiting for running jobs to finish");
        let grace = tokio::time::sleep(self.config.shutdown_grace);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                next = tasks.join_next() => if next.is_none() { return },
                _ = &mut grace => break,
            }
        }
        tracing::warn!(running = tasks.len(), "grace period over; handing running jobs back");
        jobs_cancel.cancel();
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        match self.store.rescue(Some(self.owner.clone())).await {
            Ok(rescued) => tracing::info!(count = rescued.len(), "handed running jobs back"),
            Err(err) => tracing::error!(error = %err, "could not hand jobs back; their leases will expire"),
        }
    }
}

/// Runs one attempt: renews the lease in the background, runs the handler, records
/// the outcome. A lost lease cancels the handler and its outcome is never recorded.
async fn run_attempt(
    store: Store,
    handler: Arc<dyn JobHandler>,
    claim: opsq_store::Claim,
    lease: Duration,
    cancel: CancellationToken,
) {
    let number = claim.job.number;
    let attempt = claim.job.attempt;
    let token = claim.lease_token.clone();
    let heartbeat = {
        let (store, token, cancel) = (store.clone(), token.clone(), cancel.clone());
        tokio::spawn(async move {
            let every = lease / 3;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = cancel.cancelled() => return,
                }
                match store.heartbeat(number, &token, None, lease.as_millis() as i64).await {
                    Ok(ack) if ack.cancel_requested => cancel.cancel(),
                    Ok(_) => {}
                    Err(StoreError::LeaseLost(_)) | Err(StoreError::NotFound(_)) => {
                        cancel.cancel();
                        return;
                    }
                    Err(err) => tracing::warn!(job = number, error = %err, "heartbeat failed"),
                }
            }
        })
    };
    let ctx = JobContext::new(store.clone(), claim.job, token.clone(), lease, cancel.clone());
    let run = tokio::spawn(handler.run(ctx));
    let outcome = match run.await {
        Ok(Ok(result)) => JobOutcome::Succeeded(result),
        Ok(Err(HandlerError::Fatal(message))) => JobOutcome::Fatal(message),
        Ok(Err(HandlerError::Retryable(message))) => JobOutcome::Retryable {
            error: message,
            run_after: opsq_store::now_ms()
                + backoff::delay(attempt, Duration::from_secs(1), Duration::from_secs(300)).as_millis()
                    as i64,
        },
        Ok(Err(HandlerError::LeaseLost)) => {
            heartbeat.abort();
            tracing::warn!(job = number, attempt, "attempt lost its lease; its outcome is discarded");
            return;
        }
        Err(join_error) => JobOutcome::Retryable {
            error: format!("the handler crashed: {join_error}"),
            run_after: opsq_store::now_ms() + 1000,
        },
    };
    heartbeat.abort();
    match store.finish(number, &token, outcome).await {
        Ok(job) => tracing::info!(job = number, attempt, status = %job.status, "attempt ended"),
        Err(StoreError::LeaseLost(_)) => {
            tracing::warn!(job = number, attempt, "attempt lost its lease; its outcome was refused")
        }
        Err(err) => {
            tracing::error!(job = number, attempt, error = %err, "could not record the outcome; the lease will expire and the job run again")
        }
    }
}
