//! The in-process runner: claims jobs of the kinds it has handlers for, runs them
//! under a lease it renews, and records their outcome, fenced by the lease token.

mod attempt;
pub mod canary;
mod handler;
pub mod simulator;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use opsq_store::{ClaimRequest, Dispatch, Store, StoreError};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use handler::{HandlerError, JobContext, JobHandler, ProbeVerdict};

use crate::metrics::JobCounters;
use crate::wakeup::{RunningJobs, Wakeup};

/// Lease owners of in-process runners start with this, so a restarted node can take
/// back at once what its previous run held (one server per data directory).
pub const IN_PROCESS_OWNER_PREFIX: &str = "inproc:";

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    pub concurrency: usize,
    /// The lease of kinds that have none of their own (`opsq admin kind set`).
    pub lease: Duration,
    /// How often to look for work when no wake-up arrives (retries coming due,
    /// jobs submitted by another process).
    pub poll_interval: Duration,
    /// How long in-flight jobs may take to finish at shutdown before being handed back.
    pub shutdown_grace: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            concurrency: 64,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
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

    pub fn get(&self, kind: &str) -> Option<Arc<dyn JobHandler>> {
        self.handlers.get(kind).cloned()
    }

    pub fn merge(&mut self, other: Registry) {
        self.handlers.extend(other.handlers);
    }
}

/// What ended the runner's last wait, which decides whether to claim now.
enum Woke {
    /// New work, the poll timer, the gate: claim.
    Other,
    /// Only finished jobs: claim once a quarter of the slots is free (or none runs),
    /// so one claim and one commit serve many jobs instead of one.
    Finished,
    /// A submission started a job on an offered slot: nothing new to claim.
    Dispatched,
}

/// What a slot's attempt needs to claim the slot's next job with its success (see
/// `Store::finish_status_then_claim`): in a drain that saves a commit per job. Never
/// once the runner is stopping, nor while its gate is closed.
struct NextJobs {
    /// Shared by every attempt: asking costs a reference count, not a copy per job.
    request: Arc<ClaimRequest>,
    shutdown: CancellationToken,
    gate: Option<tokio::sync::watch::Receiver<bool>>,
}

impl NextJobs {
    fn request(&self) -> Option<Arc<ClaimRequest>> {
        let open = self.gate.as_ref().is_none_or(|gate| *gate.borrow());
        (open && !self.shutdown.is_cancelled() && !self.request.kinds.is_empty())
            .then(|| self.request.clone())
    }
}

/// What runs a claimed job here: its kind's handler, and a cancel token registered
/// in `running` so a cancel request reaches it. `None` for a kind without a handler.
fn prepare(
    registry: &Registry,
    running: &RunningJobs,
    jobs_cancel: &CancellationToken,
    claim: &opsq_store::Claim,
) -> Option<(Arc<dyn JobHandler>, CancellationToken)> {
    let handler = registry.get(claim.job.kind.as_str())?;
    let cancel = jobs_cancel.child_token();
    running.insert(claim.job.number, cancel.clone());
    Some((handler, cancel))
}

pub struct Runner {
    store: Store,
    registry: Arc<Registry>,
    owner: String,
    wakeup: Wakeup,
    running: RunningJobs,
    config: RunnerConfig,
    gate: Option<tokio::sync::watch::Receiver<bool>>,
    counters: JobCounters,
}

impl Runner {
    pub fn new(
        store: Store,
        registry: Registry,
        wakeup: Wakeup,
        running: RunningJobs,
        config: RunnerConfig,
        counters: JobCounters,
    ) -> Self {
        let owner = format!("{IN_PROCESS_OWNER_PREFIX}{:016x}", rand::random::<u64>());
        Self { store, registry: Arc::new(registry), owner, wakeup, running, config, gate: None, counters }
    }

    /// Claims only while `gate` holds `true`: an embedder (the benchmarks) can hold
    /// the runner back while it loads work, then let it go. Running jobs are not
    /// interrupted when the gate closes.
    pub fn with_gate(mut self, gate: tokio::sync::watch::Receiver<bool>) -> Self {
        self.gate = Some(gate);
        self
    }

    async fn gate_changed(gate: &mut Option<tokio::sync::watch::Receiver<bool>>) {
        let closed = match gate {
            Some(gate) => gate.changed().await.is_err(),
            None => true,
        };
        if closed {
            std::future::pending::<()>().await;
        }
    }

    /// Runs until `shutdown` fires, then lets in-flight jobs finish within the grace
    /// period and hands the rest back (`resumed`) so nothing accepted is lost.
    pub async fn run(mut self, shutdown: CancellationToken) {
        // On the embedded store this is the only server, so every in-process lease
        // is a previous run's. A shared store's other nodes hold live ones: their
        // jobs come back by lease expiry instead.
        if !self.store.is_shared() {
            match self.store.rescue(Some(IN_PROCESS_OWNER_PREFIX.to_string())).await {
                Ok(rescued) if !rescued.is_empty() => {
                    tracing::info!(count = rescued.len(), "took back jobs interrupted by the previous run");
                    self.counters.rescued(&rescued);
                }
                Ok(_) => {}
                Err(err) => tracing::error!(error = %err, "could not take back interrupted jobs"),
            }
        }
        let kinds = self.registry.kinds();
        let mut wakeups = self.wakeup.subscribe();
        let permits = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let jobs_cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut failures = 0u32;
        let mut gate = self.gate.take();
        let next_jobs = Arc::new(NextJobs {
            request: Arc::new(ClaimRequest {
                kinds: kinds.clone(),
                limit: 1,
                owner: self.owner.clone(),
                lease_ms: self.config.lease.as_millis() as i64,
                accounts: None,
            }),
            shutdown: shutdown.clone(),
            gate: gate.clone(),
        });
        let batch = (self.config.concurrency / 4).max(1);
        // Free slots are offered to submissions while the runner waits, so a job
        // submitted to an idle runner starts in its submission's commit.
        let (dispatch, mut dispatched) =
            Dispatch::new(kinds.iter().cloned(), None, &self.owner, self.config.lease.as_millis() as i64);
        let listed = self.store.list_offer(dispatch.clone());
        let mut woke = Woke::Other;
        while !shutdown.is_cancelled() {
            dispatch.withdraw();
            let free = permits.available_permits();
            let gate_open = gate.as_ref().is_none_or(|gate| *gate.borrow());
            let mut claimed_all = false;
            let worth_claiming = free > 0
                && match woke {
                    Woke::Other => true,
                    Woke::Finished => free >= batch || tasks.is_empty(),
                    Woke::Dispatched => false,
                };
            if worth_claiming && !kinds.is_empty() && gate_open {
                match self.claim(&kinds, free).await {
                    Ok(claims) => {
                        failures = 0;
                        self.counters.attempts_started(claims.len());
                        claimed_all = claims.len() == free;
                        for claim in claims {
                            self.start(claim, &permits, &mut tasks, &jobs_cancel, &next_jobs);
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
            if gate_open {
                dispatch.offer(permits.available_permits());
            }
            let pause = if failures > 0 {
                opsq_store::backoff::delay(failures, Duration::from_millis(200), Duration::from_secs(5))
            } else {
                self.config.poll_interval
            };
            tokio::select! {
                Some(claim) = dispatched.recv() => {
                    self.start(claim, &permits, &mut tasks, &jobs_cancel, &next_jobs);
                    woke = Woke::Dispatched;
                }
                _ = wakeups.changed() => woke = Woke::Other,
                _ = Self::gate_changed(&mut gate) => woke = Woke::Other,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {
                    while tasks.try_join_next().is_some() {}
                    woke = Woke::Finished;
                }
                _ = tokio::time::sleep(pause) => woke = Woke::Other,
                _ = shutdown.cancelled() => {}
            }
        }
        // Claims committed just before the offer was withdrawn still run (and get the
        // grace period like the rest). A submission stuck on its database is not
        // waited for long: its claims come back like any lost attempt's.
        listed.withdraw(Duration::from_secs(5)).await;
        while let Ok(claim) = dispatched.try_recv() {
            self.start(claim, &permits, &mut tasks, &jobs_cancel, &next_jobs);
        }
        self.drain(tasks, jobs_cancel).await;
    }

    /// Runs a claimed attempt in a task of its own, on a free slot, and then each
    /// next job its success claimed for the slot (see [`NextJobs`]). Should no slot be
    /// free (a dispatched claim racing a claim of the runner's own), it runs over the
    /// limit rather than sitting leased.
    fn start(
        &self,
        claim: opsq_store::Claim,
        permits: &Arc<Semaphore>,
        tasks: &mut JoinSet<()>,
        jobs_cancel: &CancellationToken,
        next_jobs: &Arc<NextJobs>,
    ) {
        let permit = permits.clone().try_acquire_owned().ok();
        let Some(mut prepared) = prepare(&self.registry, &self.running, jobs_cancel, &claim) else { return };
        let (store, running, registry) = (self.store.clone(), self.running.clone(), self.registry.clone());
        let (next_jobs, jobs_cancel) = (next_jobs.clone(), jobs_cancel.clone());
        let counters = self.counters.clone();
        let lease = self.config.lease;
        tasks.spawn(async move {
            let mut claim = claim;
            loop {
                let number = claim.job.number;
                let (handler, cancel) = prepared;
                let next = attempt::run(
                    store.clone(),
                    handler,
                    claim,
                    lease,
                    cancel,
                    next_jobs.request(),
                    &counters,
                )
                .await;
                running.remove(number);
                let Some(next) = next else { break };
                // Claimed for the runner's kinds, so it has a handler.
                let Some(next_prepared) = prepare(&registry, &running, &jobs_cancel, &next) else {
                    tracing::error!(job = next.job.number, "no handler for a job claimed for this runner");
                    break;
                };
                (claim, prepared) = (next, next_prepared);
            }
            drop(permit);
        });
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
            Ok(rescued) => {
                tracing::info!(count = rescued.len(), "handed running jobs back");
                self.counters.rescued(&rescued);
            }
            Err(err) => tracing::error!(error = %err, "could not hand jobs back; their leases will expire"),
        }
    }
}
