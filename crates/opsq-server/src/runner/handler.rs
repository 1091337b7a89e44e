//! What a job handler sees and returns.

use std::time::Duration;

use futures::future::BoxFuture;
use opsq_domain::{Job, Progress};
use opsq_store::{Store, StoreError};
use tokio_util::sync::CancellationToken;

/// How a handler failed: `Retryable` runs the job again after a backoff (while
/// attempts remain), `Fatal` ends it `failed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerError {
    Retryable(String),
    Fatal(String),
    /// The attempt no longer owns the job; whatever it does next is discarded.
    LeaseLost,
}

/// What a reconcile probe found out about a job whose outcome is `unknown`.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeVerdict {
    /// The effect happened: the job succeeded, with this result.
    Happened(serde_json::Value),
    /// The effect did not happen: run the job again.
    DidNotHappen,
    /// The job failed for good, for this reason.
    Failed(String),
    /// Cannot tell yet: ask again later.
    Undetermined,
}

/// Code that performs one kind of job.
pub trait JobHandler: Send + Sync + 'static {
    fn run(&self, ctx: JobContext) -> BoxFuture<'static, Result<serde_json::Value, HandlerError>>;

    /// For kinds that are not safe to repeat: tells whether a lost attempt's effect
    /// happened, so `unknown` jobs resolve without an operator. `None`: no probe.
    fn probe(&self, _job: &Job) -> Option<BoxFuture<'static, ProbeVerdict>> {
        None
    }
}

/// One attempt's view of its job: the job, a way to report progress (which also
/// renews the lease), and a token that fires on cancel or a lost lease.
pub struct JobContext {
    pub job: Job,
    store: Store,
    lease_token: String,
    lease: Duration,
    cancel: CancellationToken,
}

impl JobContext {
    pub(crate) fn new(
        store: Store,
        job: Job,
        lease_token: String,
        lease: Duration,
        cancel: CancellationToken,
    ) -> Self {
        Self { job, store, lease_token, lease, cancel }
    }

    /// Records progress; fails with `LeaseLost` once this attempt no longer owns the job.
    pub async fn progress(
        &self,
        percent: u8,
        step_number: u32,
        description: &str,
    ) -> Result<(), HandlerError> {
        let progress =
            Progress { percent: percent.min(100), step_number, description: description.to_string() };
        match self
            .store
            .heartbeat(self.job.number, &self.lease_token, Some(progress), self.lease.as_millis() as i64)
            .await
        {
            Ok(ack) => {
                if ack.cancel_requested {
                    self.cancel.cancel();
                }
                Ok(())
            }
            Err(StoreError::LeaseLost(_)) | Err(StoreError::NotFound(_)) => {
                self.cancel.cancel();
                Err(HandlerError::LeaseLost)
            }
            Err(err) => Err(HandlerError::Retryable(format!("could not record progress: {err}"))),
        }
    }

    /// Fires when the job is cancelled or this attempt lost its lease.
    pub fn cancelled(&self) -> &CancellationToken {
        &self.cancel
    }
}
