//! A worker library: run a [`Handler`] for jobs of some kinds against a remote opsq,
//! over the `/v2/workers/...` protocol (claim, heartbeat, complete, fail).
//!
//! The protocol has rules every worker must keep to be safe: renew the lease well
//! before it runs out, stop when a heartbeat says the job was cancelled, never report
//! an outcome once the lease is lost (409), and hand jobs back on shutdown instead of
//! abandoning them. [`Worker`] keeps them so a service only writes the handler:
//!
//! ```no_run
//! use opsq_client::worker::{handler_fn, CancellationToken, WorkError, Worker, WorkerConfig};
//! use opsq_client::Client;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::new("http://127.0.0.1:8080")?.with_token(std::env::var("OPSQ_TOKEN")?);
//! let config = WorkerConfig { kinds: vec!["backup.*".into()], concurrency: 2, ..WorkerConfig::default() };
//! let handler = handler_fn(|job, ctx| async move {
//!     ctx.progress(50, 1, "Copying");
//!     tokio::select! {
//!         _ = ctx.cancelled() => Err(WorkError::retryable("stopped")),
//!         _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {
//!             Ok(serde_json::json!({"copied": job.payload}))
//!         }
//!     }
//! });
//! let shutdown = CancellationToken::new();
//! Worker::new(client, config).run(handler, shutdown).await?;
//! # Ok(())
//! # }
//! ```

mod context;
mod handler;
mod reporter;

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use serde_json::Value;
use tokio::{
    sync::{mpsc, OwnedSemaphorePermit, Semaphore},
    task::{JoinError, JoinSet},
    time::{sleep, sleep_until, timeout, Instant},
};
pub use tokio_util::sync::CancellationToken;

use context::JobShared;
pub use context::{StopReason, WorkContext};
pub use handler::{handler_fn, FnHandler, Handler, WorkError};
use reporter::{NextJob, Pending, Reporter};

use crate::{ClaimRequest, ClaimedJob, Client, ClientError, FailRequest};

/// The most jobs one claim may ask for (the server's limit).
const MAX_CLAIM: usize = 100;
/// The most kind patterns one claim may send (the server's limit).
const MAX_PATTERNS: usize = 50;
/// The longest long-poll the server grants.
const MAX_WAIT_SECS: u64 = 30;
/// How long a handler gets to return after its token fired for a shutdown, before the
/// worker stops waiting and hands the job back anyway. Longer than the 10 s between
/// SIGTERM and SIGKILL (plus 5 s for lingering output) that `opsq worker --exec` gives
/// its commands.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// The shortest gap between two heartbeats sent for progress, so a handler that
/// reports progress in a tight loop does not flood the server.
const MIN_PROGRESS_GAP: Duration = Duration::from_millis(250);
/// The longest pause between retries of a failing call.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How a [`Worker`] claims and runs jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    /// The kinds to run: exact names or globs (`*`, `?`, `[...]`), e.g. `server.*`.
    pub kinds: Vec<String>,
    /// How many jobs run at once; the worker claims only as many as it has room for,
    /// so a busy worker leaves jobs to others.
    pub concurrency: usize,
    /// A name for logs and job history; [`default_worker_id`] gives `host/pid-N`.
    pub worker_id: String,
    /// How long one claim may wait for work (the server allows up to 30 s): longer
    /// means fewer idle requests, shorter a quicker shutdown of an idle worker.
    pub wait_seconds: u64,
    /// At shutdown, how long running jobs may go on before they are cancelled and
    /// handed back as retryable failures.
    pub shutdown_grace: Duration,
}

impl Default for WorkerConfig {
    /// No kinds (set them), 4 jobs at once, `host/pid-N`, 25 s polls, 30 s grace.
    fn default() -> Self {
        Self {
            kinds: Vec::new(),
            concurrency: 4,
            worker_id: default_worker_id(),
            wait_seconds: 25,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// `host/pid-N`: enough to find the process behind a job's history entry.
pub fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_string());
    format!("{host}/pid-{}", std::process::id())
}

/// Why [`Worker::run`] stopped with an error instead of a clean shutdown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// The configuration cannot work (no kinds, too many patterns); nothing was claimed.
    #[error("invalid worker configuration: {0}")]
    Config(String),
    /// The server refused a claim for a reason retrying cannot fix (token expired,
    /// no `Worker` role, invalid kind pattern). Running jobs were drained first.
    #[error("the server refused to hand out jobs: {0}")]
    Claim(#[source] ClientError),
}

/// Claims jobs of some kinds from one opsq server and runs a [`Handler`] on each.
#[derive(Debug, Clone)]
pub struct Worker {
    client: Client,
    config: WorkerConfig,
}

impl Worker {
    /// A worker calling the server through `client`, whose token must belong to a
    /// user with the `Worker` role.
    pub fn new(client: Client, config: WorkerConfig) -> Self {
        Self { client, config }
    }

    /// Runs jobs until `shutdown` fires, then shuts down gracefully: no more claims,
    /// running jobs get [`WorkerConfig::shutdown_grace`] to finish, then their tokens
    /// fire ([`StopReason::Shutdown`]) and whatever they do not finish is reported as a
    /// retryable failure ("worker shutting down") so the job runs again.
    ///
    /// Transient trouble (server down, 503) is retried with backoff and never ends
    /// the worker; a claim refused for good (401, 403, 400) ends it with
    /// [`WorkerError::Claim`] after the same drain.
    pub async fn run<H: Handler>(self, handler: H, shutdown: CancellationToken) -> Result<(), WorkerError> {
        let config = self.config.validated()?;
        let handler = Arc::new(handler);
        let slots = Arc::new(Semaphore::new(config.concurrency));
        let stop_jobs = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut failures: u32 = 0;
        let mut refused: Option<ClientError> = None;
        // Outcomes go to the reporter, which sends them many to a call and hands the
        // jobs its reports claim back here, with the slots they fill.
        let (outcomes, outcomes_rx) = mpsc::unbounded_channel::<Pending>();
        let (next_jobs, mut next_rx) = mpsc::unbounded_channel::<NextJob>();
        let claims_end = shutdown.child_token();
        let reporter = tokio::spawn(
            Reporter {
                client: self.client.clone(),
                claim: ClaimRequest {
                    kinds: config.kinds.clone(),
                    limit: None,
                    wait_seconds: None,
                    worker_id: (!config.worker_id.is_empty()).then(|| config.worker_id.clone()),
                },
                claims_end: claims_end.clone(),
                next_jobs,
            }
            .run(outcomes_rx),
        );
        let start = |tasks: &mut JoinSet<()>, claimed: ClaimedJob, permit: Option<OwnedSemaphorePermit>| {
            let run = JobRun {
                client: self.client.clone(),
                claimed,
                stop_jobs: stop_jobs.clone(),
                outcomes: outcomes.clone(),
                _permit: permit,
            };
            tasks.spawn(run.run(handler.clone()));
        };
        tracing::info!(
            server = self.client.server(),
            kinds = ?config.kinds,
            concurrency = config.concurrency,
            worker_id = %config.worker_id,
            "worker started"
        );
        'claiming: loop {
            while let Some(joined) = tasks.try_join_next() {
                log_join(joined);
            }
            // Wait for room for at least one job, then claim as many as there is room for.
            let first = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some((claimed, permit)) = next_rx.recv() => {
                    start(&mut tasks, claimed, permit);
                    continue;
                }
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let mut permits = vec![first];
            while permits.len() < MAX_CLAIM {
                match slots.clone().try_acquire_owned() {
                    Ok(permit) => permits.push(permit),
                    Err(_) => break,
                }
            }
            let request = ClaimRequest {
                kinds: config.kinds.clone(),
                limit: Some(permits.len() as u32),
                wait_seconds: Some(config.wait_seconds),
                worker_id: (!config.worker_id.is_empty()).then(|| config.worker_id.clone()),
            };
            // A claim cut short by shutdown may have claimed jobs whose answer is then
            // dropped: they are not lost, the server rescues them when the lease ends.
            // While the claim waits, jobs claimed by reports still start.
            let claim = self.client.claim(&request);
            tokio::pin!(claim);
            let answer = loop {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break None,
                    Some((claimed, permit)) = next_rx.recv() => start(&mut tasks, claimed, permit),
                    answer = &mut claim => break Some(answer),
                }
            };
            let Some(answer) = answer else { break };
            match answer {
                Ok(jobs) => {
                    failures = 0;
                    for claimed in jobs {
                        // The server never hands out more than asked; if it did, the
                        // job still runs (over the limit) rather than sitting leased.
                        let permit = permits.pop();
                        tracing::info!(
                            job = %claimed.job.id,
                            kind = %claimed.job.kind,
                            attempt = claimed.job.attempt,
                            "claimed"
                        );
                        start(&mut tasks, claimed, permit);
                    }
                }
                Err(err) if err.is_transient() => {
                    failures = failures.saturating_add(1);
                    let pause = backoff(failures);
                    tracing::warn!(error = %err, retry_in = ?pause, "claim failed; retrying");
                    // Jobs that reports claim meanwhile start at once: they are leased.
                    let until = Instant::now() + pause;
                    loop {
                        tokio::select! {
                            biased;
                            _ = shutdown.cancelled() => break 'claiming,
                            Some((claimed, permit)) = next_rx.recv() => start(&mut tasks, claimed, permit),
                            _ = sleep_until(until) => break,
                        }
                    }
                }
                Err(err) => {
                    tracing::error!(error = %err, "the server refused the claim; stopping the worker");
                    refused = Some(err);
                    break;
                }
            }
        }
        // No more claims, by reports either; jobs a report claimed that never started
        // are handed back unstarted.
        claims_end.cancel();
        next_rx.close();
        while let Ok((claimed, permit)) = next_rx.try_recv() {
            let _ = outcomes.send(Pending::hand_back(claimed, permit));
        }
        drain(&mut tasks, config.shutdown_grace, &stop_jobs).await;
        // Every job has sent its outcome: the reporter ends once they are all reported.
        drop(outcomes);
        if let Err(err) = reporter.await {
            tracing::error!(error = %err, "the outcome reporter ended abnormally");
        }
        tracing::info!("worker stopped");
        match refused {
            Some(err) => Err(WorkerError::Claim(err)),
            None => Ok(()),
        }
    }
}

impl WorkerConfig {
    /// Checks what the server would refuse anyway, and bounds the rest.
    fn validated(&self) -> Result<WorkerConfig, WorkerError> {
        if self.kinds.is_empty() {
            return Err(WorkerError::Config("no kinds to run: give at least one kind or glob".into()));
        }
        if self.kinds.len() > MAX_PATTERNS {
            return Err(WorkerError::Config(format!("at most {MAX_PATTERNS} kinds or globs")));
        }
        if let Some(bad) = self.kinds.iter().find(|k| !opsq_domain::JobKind::is_valid_pattern(k)) {
            return Err(WorkerError::Config(format!(
                "{bad:?} is not a kind or glob: use letters, digits, '.', '_', '-' and the globs * ? [...]"
            )));
        }
        Ok(WorkerConfig {
            concurrency: self.concurrency.max(1),
            // At least 1 s: a claim that never waits would poll the server in a tight loop.
            wait_seconds: self.wait_seconds.clamp(1, MAX_WAIT_SECS),
            ..self.clone()
        })
    }
}

/// Waits for running jobs: up to `grace` on their own, then fires their tokens and
/// waits for them to hand the jobs back (each bounds that by [`STOP_TIMEOUT`] and its
/// lease).
async fn drain(tasks: &mut JoinSet<()>, grace: Duration, stop_jobs: &CancellationToken) {
    if tasks.is_empty() {
        return;
    }
    tracing::info!(
        running = tasks.len(),
        ?grace,
        "shutting down: no more claims; running jobs get the grace period"
    );
    let finished = timeout(grace, async {
        while let Some(joined) = tasks.join_next().await {
            log_join(joined);
        }
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            running = tasks.len(),
            "grace period over: stopping the running jobs and handing them back"
        );
        stop_jobs.cancel();
        while let Some(joined) = tasks.join_next().await {
            log_join(joined);
        }
    }
}

fn log_join(joined: Result<(), JoinError>) {
    if let Err(err) = joined {
        tracing::error!(error = %err, "a job task ended abnormally");
    }
}

/// The pause after `failures` consecutive transient failures: 0.5 s doubling up to 30 s.
fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(10);
    Duration::from_millis(500).saturating_mul(1 << exponent).min(MAX_BACKOFF)
}

/// The time between heartbeats: a third of the lease, so two can fail and the lease
/// still holds.
fn beat_interval(lease_seconds: u64) -> Duration {
    (Duration::from_secs(lease_seconds) / 3).clamp(Duration::from_millis(200), Duration::from_secs(60))
}

/// When the lease runs out unless renewed, as far as this worker knows: counted from
/// when each successful heartbeat was sent, so it is never later than the server's.
#[derive(Debug)]
struct LeaseClock {
    until: Mutex<Instant>,
}

impl LeaseClock {
    fn new(from: Instant, lease_seconds: u64) -> Self {
        Self { until: Mutex::new(from + Duration::from_secs(lease_seconds)) }
    }

    fn renew(&self, from: Instant, lease_seconds: u64) {
        let mut until = self.until.lock().unwrap_or_else(PoisonError::into_inner);
        *until = (*until).max(from + Duration::from_secs(lease_seconds));
    }

    fn until(&self) -> Instant {
        *self.until.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What to tell the server at the end of an attempt.
#[derive(Debug)]
enum Report {
    Complete(Value),
    Fail(FailRequest),
    /// Claimed and never started: handed back without using an attempt.
    Release,
}

impl Report {
    /// Logs the report once the server recorded it; `status` is what the job became.
    fn log_recorded(&self, id: &str, status: &str) {
        match self {
            Report::Complete(_) => tracing::info!(job = %id, status, "completed"),
            Report::Fail(failure) => tracing::info!(
                job = %id,
                status,
                retryable = failure.retryable,
                error = %failure.error,
                "failed"
            ),
            Report::Release => tracing::info!(job = %id, status, "handed back unstarted"),
        }
    }
}

/// Decides the report from the handler's answer and why (if at all) it was stopped;
/// `None` when nothing may be reported because the lease is lost.
fn decide(result: Result<Value, WorkError>, reason: Option<StopReason>) -> Option<Report> {
    Some(match (result, reason) {
        (_, Some(StopReason::LeaseLost)) => return None,
        // A result still counts after a cancel request or a shutdown: the work is done.
        (Ok(value), _) => Report::Complete(value),
        // The server ends a failure after a cancel request `failed` as cancelled.
        (Err(err), Some(StopReason::CancelRequested)) => Report::Fail(FailRequest {
            error: err.message().to_string(),
            retryable: false,
            retry_after_seconds: None,
        }),
        (Err(err), Some(StopReason::Shutdown)) => Report::Fail(FailRequest {
            error: format!("worker shutting down: {}", err.message()),
            retryable: true,
            retry_after_seconds: None,
        }),
        (Err(err), _) => Report::Fail(FailRequest {
            error: err.message().to_string(),
            retryable: err.is_retryable(),
            retry_after_seconds: None,
        }),
    })
}

/// One claimed job, from handler start to the report.
struct JobRun {
    client: Client,
    claimed: ClaimedJob,
    stop_jobs: CancellationToken,
    /// Where the outcome goes to be reported.
    outcomes: mpsc::UnboundedSender<Pending>,
    /// Held until the job is reported, so the worker claims a replacement only then.
    _permit: Option<OwnedSemaphorePermit>,
}

impl JobRun {
    async fn run<H: Handler>(self, handler: Arc<H>) {
        let JobRun { client, claimed, stop_jobs, outcomes, _permit: permit } = self;
        let ClaimedJob { job, lease_token, lease_seconds, .. } = claimed;
        let id = job.id.clone();
        let lease = Arc::new(LeaseClock::new(Instant::now(), lease_seconds));
        let shared = JobShared::new(id.clone());
        let beats_done = CancellationToken::new();
        let beats = tokio::spawn(
            Heartbeats {
                client: client.clone(),
                id: id.clone(),
                lease_token: lease_token.clone(),
                shared: shared.clone(),
                lease: lease.clone(),
                lease_seconds,
                done: beats_done.clone(),
            }
            .run(),
        );

        let ctx = WorkContext::new(shared.clone());
        let mut work = tokio::spawn(async move { handler.handle(job, ctx).await });
        let joined = tokio::select! {
            joined = &mut work => Some(joined),
            _ = stop_jobs.cancelled() => None,
        };
        let joined = match joined {
            Some(joined) => joined,
            None => {
                shared.stop(StopReason::Shutdown);
                match timeout(STOP_TIMEOUT, &mut work).await {
                    Ok(joined) => joined,
                    Err(_) => {
                        work.abort();
                        Ok(Err(WorkError::retryable(format!(
                            "the handler did not stop within {}s",
                            STOP_TIMEOUT.as_secs()
                        ))))
                    }
                }
            }
        };
        let result = joined.unwrap_or_else(|err| {
            Err(if err.is_panic() {
                WorkError::fatal(format!("the handler panicked: {}", panic_text(err)))
            } else {
                WorkError::retryable("the handler was aborted")
            })
        });
        beats_done.cancel();
        let _ = beats.await;

        match decide(result, shared.stop_reason()) {
            None => tracing::warn!(job = %id, "the lease was lost: this attempt's outcome is dropped"),
            Some(report) => {
                // The slot stays taken until the outcome is recorded.
                let pending = Pending { id, lease_token, report, lease, permit };
                if let Err(mpsc::error::SendError(pending)) = outcomes.send(pending) {
                    send_report(&client, &pending.id, &pending.lease_token, pending.report, &pending.lease)
                        .await;
                }
            }
        }
    }
}

/// How a job claimed and never started is handed back to a server without
/// `release`: a retryable failure due at once.
fn unstarted() -> FailRequest {
    FailRequest {
        error: "worker shutting down: not started".into(),
        retryable: true,
        retry_after_seconds: Some(0),
    }
}

fn panic_text(err: JoinError) -> String {
    let payload = err.into_panic();
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(no message)".to_string()
    }
}

/// Sends the outcome, retrying transient failures until the lease would have run
/// out; after that the server rescues the job, so retrying longer could only report
/// an attempt that no longer counts.
async fn send_report(client: &Client, id: &str, lease_token: &str, report: Report, lease: &LeaseClock) {
    let mut failures: u32 = 0;
    loop {
        let answer = match &report {
            Report::Complete(result) => client.complete(id, lease_token, result).await,
            Report::Fail(failure) => client.fail(id, lease_token, failure).await,
            Report::Release => match client.release(id, lease_token).await {
                // A server older than the call: the retryable failure it knows (which
                // uses up an attempt).
                Err(err) if err.status() == Some(404) => client.fail(id, lease_token, &unstarted()).await,
                answer => answer,
            },
        };
        match answer {
            Ok(job) => {
                report.log_recorded(id, job.status.as_str());
                return;
            }
            Err(err) if err.is_conflict() => {
                tracing::warn!(job = %id, error = %err, "the lease was lost before the outcome was recorded; dropping it");
                return;
            }
            Err(err) if err.is_transient() => {
                failures = failures.saturating_add(1);
                let pause = backoff(failures);
                if Instant::now() + pause >= lease.until() {
                    tracing::error!(
                        job = %id,
                        error = %err,
                        "could not report the outcome before the lease ran out; the server will rescue the job"
                    );
                    return;
                }
                tracing::warn!(job = %id, error = %err, retry_in = ?pause, "reporting the outcome failed; retrying");
                sleep(pause).await;
            }
            Err(err) => {
                tracing::error!(job = %id, error = %err, "the server refused the outcome");
                return;
            }
        }
    }
}

/// Renews one attempt's lease every third of it, sends progress soon after it
/// changes, and turns the answers into stop reasons.
struct Heartbeats {
    client: Client,
    id: String,
    lease_token: String,
    shared: Arc<JobShared>,
    lease: Arc<LeaseClock>,
    lease_seconds: u64,
    done: CancellationToken,
}

impl Heartbeats {
    async fn run(self) {
        let mut progress = self.shared.subscribe_progress();
        let mut interval = beat_interval(self.lease_seconds);
        let mut next = Instant::now() + interval;
        let mut last_sent = Instant::now();
        let mut failures: u32 = 0;
        loop {
            tokio::select! {
                _ = self.done.cancelled() => return,
                _ = sleep_until(next) => {}
                changed = progress.changed() => {
                    if changed.is_ok() {
                        tokio::select! {
                            _ = self.done.cancelled() => return,
                            _ = sleep_until(last_sent + MIN_PROGRESS_GAP) => {}
                        }
                    } else {
                        // Cannot happen while `shared` is held; beat on the timer alone.
                        sleep_until(next).await;
                    }
                }
            }
            if Instant::now() >= self.lease.until() {
                if self.shared.stop(StopReason::LeaseLost) {
                    tracing::warn!(job = %self.id, "no heartbeat got through before the lease ran out; stopping the job");
                }
                return;
            }
            // Always the latest progress, so one lost to a failed heartbeat is re-sent.
            let latest = progress.borrow_and_update().clone();
            let sent_at = Instant::now();
            let answer = tokio::select! {
                _ = self.done.cancelled() => return,
                answer = self.client.heartbeat(&self.id, &self.lease_token, latest.as_ref()) => answer,
            };
            last_sent = Instant::now();
            match answer {
                Ok(ack) => {
                    failures = 0;
                    self.lease.renew(sent_at, ack.lease_seconds);
                    interval = beat_interval(ack.lease_seconds);
                    next = Instant::now() + interval;
                    if ack.cancel_requested && self.shared.stop(StopReason::CancelRequested) {
                        tracing::info!(job = %self.id, "cancel requested: stopping the job");
                    }
                }
                Err(err) if err.is_conflict() => {
                    if self.shared.stop(StopReason::LeaseLost) {
                        tracing::warn!(job = %self.id, error = %err, "the lease was lost: stopping the job");
                    }
                    return;
                }
                Err(err) => {
                    // Transient or not, retry until the lease runs out: a 404 or 401
                    // now may be a server restarting, and giving up early would only
                    // let the job be rescued sooner.
                    failures = failures.saturating_add(1);
                    let pause = backoff(failures).min(interval);
                    tracing::warn!(job = %self.id, error = %err, retry_in = ?pause, "heartbeat failed; retrying");
                    next = Instant::now() + pause;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
