//! What a worker runs: the [`Handler`] trait and the [`WorkError`] it fails with.

use std::future::Future;

use serde_json::Value;

use super::WorkContext;
use crate::Job;

/// Why a handler gave up on an attempt. The variant decides whether the job runs
/// again, so a handler says what it knows about the failure instead of the worker
/// guessing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkError {
    /// Another attempt may succeed (a timeout, a busy dependency): the job is
    /// `resumed` and retried with backoff while it has attempts left.
    #[error("{0}")]
    Retryable(String),
    /// Retrying cannot help (bad payload, the thing to act on does not exist): the
    /// job ends `failed` now.
    #[error("{0}")]
    Fatal(String),
}

impl WorkError {
    /// A [`WorkError::Retryable`] from anything printable.
    pub fn retryable(message: impl Into<String>) -> Self {
        WorkError::Retryable(message.into())
    }

    /// A [`WorkError::Fatal`] from anything printable.
    pub fn fatal(message: impl Into<String>) -> Self {
        WorkError::Fatal(message.into())
    }

    /// Whether the job may run again after this failure.
    pub fn is_retryable(&self) -> bool {
        matches!(self, WorkError::Retryable(_))
    }

    /// The failure text, as the job's `error` will show it.
    pub fn message(&self) -> &str {
        match self {
            WorkError::Retryable(message) | WorkError::Fatal(message) => message,
        }
    }
}

/// Runs one claimed job. Implemented by the service embedding a [`Worker`](super::Worker);
/// one handler value serves every job, concurrently, so it takes `&self`.
///
/// The returned JSON becomes the job's `result`. A handler should watch
/// [`WorkContext::cancellation`] and stop soon after it fires (a cancel was requested,
/// the lease was lost, or the worker is shutting down); whatever it returns then is
/// reported or dropped as the [`StopReason`](super::StopReason) requires.
///
/// Implementations may write `async fn handle(...)`; the future must be `Send`
/// because each job runs on its own task.
pub trait Handler: Send + Sync + 'static {
    /// Runs `job` (its `payload` is the input) and returns its result.
    fn handle(&self, job: Job, ctx: WorkContext) -> impl Future<Output = Result<Value, WorkError>> + Send;
}

/// A [`Handler`] made from a closure, for handlers that need no state of their own.
#[derive(Debug, Clone)]
pub struct FnHandler<F>(F);

/// Wraps an `async` closure (`|job, ctx| async move { ... }`) as a [`Handler`].
pub fn handler_fn<F, Fut>(f: F) -> FnHandler<F>
where
    F: Fn(Job, WorkContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, WorkError>> + Send + 'static,
{
    FnHandler(f)
}

impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(Job, WorkContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, WorkError>> + Send + 'static,
{
    fn handle(&self, job: Job, ctx: WorkContext) -> impl Future<Output = Result<Value, WorkError>> + Send {
        (self.0)(job, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_errors_say_whether_to_retry() {
        let retry = WorkError::retryable("busy");
        assert!(retry.is_retryable());
        assert_eq!(retry.message(), "busy");
        assert_eq!(retry.to_string(), "busy");
        let fatal = WorkError::fatal(String::from("no such server"));
        assert!(!fatal.is_retryable());
        assert_eq!(fatal.message(), "no such server");
    }
}
