//! [`WorkContext`]: what a running handler can do besides its work: report progress
//! and learn that it should stop.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::JobProgress;

/// Why a job's cancellation token fired. The first reason wins: a job cancelled by a
/// user and then caught by a shutdown is still reported as cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// Someone cancelled the job (the heartbeat said `cancelRequested`). A failure
    /// reported now ends the job `failed` as cancelled; a result still counts.
    CancelRequested,
    /// The attempt's lease is gone (the server answered 409, or no heartbeat got
    /// through before it ran out): another worker may run the job, so nothing this
    /// attempt returns is reported.
    LeaseLost,
    /// The worker is shutting down and the grace period is over: a failure is
    /// reported as retryable so the job runs again elsewhere.
    Shutdown,
}

/// The state one job's handler shares with the worker's heartbeat task.
#[derive(Debug)]
pub(crate) struct JobShared {
    status_id: String,
    token: CancellationToken,
    stop: Mutex<Option<StopReason>>,
    progress: watch::Sender<Option<JobProgress>>,
}

impl JobShared {
    pub(crate) fn new(status_id: String) -> Arc<Self> {
        Arc::new(Self {
            status_id,
            token: CancellationToken::new(),
            stop: Mutex::new(None),
            progress: watch::Sender::new(None),
        })
    }

    /// Records why the job must stop (unless a reason is already recorded) and fires
    /// the token. Returns whether this call was the first.
    pub(crate) fn stop(&self, reason: StopReason) -> bool {
        let first = {
            let mut stop = self.stop.lock().unwrap_or_else(PoisonError::into_inner);
            let first = stop.is_none();
            if first {
                *stop = Some(reason);
            }
            first
        };
        self.token.cancel();
        first
    }

    pub(crate) fn stop_reason(&self) -> Option<StopReason> {
        *self.stop.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn subscribe_progress(&self) -> watch::Receiver<Option<JobProgress>> {
        self.progress.subscribe()
    }
}

/// Handed to a [`Handler`](super::Handler) with each job: progress reporting and the
/// job's cancellation token. Cheap to clone, so it can move into sub-tasks.
#[derive(Debug, Clone)]
pub struct WorkContext {
    shared: Arc<JobShared>,
}

impl WorkContext {
    pub(crate) fn new(shared: Arc<JobShared>) -> Self {
        Self { shared }
    }

    /// Reports how far the job got. It never blocks and never fails: the latest value
    /// is sent with the next heartbeat, which the worker sends soon (bursts are
    /// coalesced, so calling this per line of output is fine). `percent` above 100 is
    /// taken as 100.
    pub fn progress(&self, percent: u8, step_number: u32, description: impl Into<String>) {
        let progress =
            JobProgress { percent: percent.min(100), step_number, description: description.into() };
        self.shared.progress.send_replace(Some(progress));
    }

    /// Fires when the job should stop: a cancel was requested, the lease was lost, or
    /// the worker's shutdown grace is over ([`stop_reason`](Self::stop_reason) says
    /// which). Clone it to hand to code that takes a token.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.shared.token
    }

    /// Whether the job should stop now.
    pub fn is_cancelled(&self) -> bool {
        self.shared.token.is_cancelled()
    }

    /// Completes when the job should stop; for `tokio::select!` against the work.
    pub async fn cancelled(&self) {
        self.shared.token.cancelled().await;
    }

    /// Why the job should stop, once it should.
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.shared.stop_reason()
    }

    /// The job's status id, e.g. `wa1-12`, for the handler's own logs.
    pub fn status_id(&self) -> &str {
        &self.shared.status_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_stop_reason_wins_and_fires_the_token() {
        let shared = JobShared::new("wa1-1".into());
        let ctx = WorkContext::new(shared.clone());
        assert!(!ctx.is_cancelled());
        assert_eq!(ctx.stop_reason(), None);
        assert!(shared.stop(StopReason::CancelRequested));
        assert!(!shared.stop(StopReason::Shutdown));
        assert!(ctx.is_cancelled());
        assert_eq!(ctx.stop_reason(), Some(StopReason::CancelRequested));
        assert_eq!(ctx.status_id(), "wa1-1");
    }

    #[test]
    fn progress_keeps_the_latest_value_and_caps_percent() {
        let shared = JobShared::new("wa1-1".into());
        let mut updates = shared.subscribe_progress();
        let ctx = WorkContext::new(shared);
        ctx.progress(10, 1, "one");
        ctx.progress(250, 2, "two");
        assert!(updates.has_changed().unwrap_or(false));
        let latest = updates.borrow_and_update().clone();
        assert_eq!(latest, Some(JobProgress { percent: 100, step_number: 2, description: "two".into() }));
    }
}
