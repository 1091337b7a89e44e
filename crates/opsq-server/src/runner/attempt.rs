//! One attempt of one job in this process.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use opsq_store::{Claim, ClaimRequest, JobOutcome, Store, StoreError};
use tokio_util::sync::CancellationToken;

use super::{HandlerError, JobContext, JobHandler};
use crate::metrics::JobCounters;

/// Runs one attempt: runs the handler while renewing its lease, records
/// the outcome. A lost lease cancels the handler and its outcome is never recorded.
/// With `next`, a success also claims the slot's next job, answered here. Both are
/// counted in `counters` once recorded.
pub async fn run(
    store: Store,
    handler: Arc<dyn JobHandler>,
    claim: Claim,
    default_lease: Duration,
    cancel: CancellationToken,
    next: Option<Arc<ClaimRequest>>,
    counters: &JobCounters,
) -> Option<Claim> {
    let number = claim.job.number;
    let attempt = claim.job.attempt;
    let token = claim.lease_token.clone();
    // The kind's lease may differ from the default; renew at a third of the real one.
    let lease = Duration::from_millis((claim.lease_until - opsq_store::now_ms()).max(300) as u64);
    // One task per attempt: the handler and its lease renewals are polled together,
    // so a job costs one spawned task, not three.
    let ctx = JobContext::new(store.clone(), claim.job, token.clone(), default_lease, cancel.clone());
    let mut work = std::panic::AssertUnwindSafe(handler.run(ctx)).catch_unwind();
    let every = lease / 3;
    let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut renewing = true;
    // The store's calls are boxed where they are awaited. Inline, their futures (the
    // SQLite and the PostgreSQL variant side by side) made this task's future 3,960
    // bytes, which each spawn copies. In a drain of no-op jobs `memmove` was then a
    // third of the runtime threads' samples; boxed (1,824 bytes), it no longer shows
    // among their top symbols.
    let ran = loop {
        tokio::select! {
            ran = &mut work => break ran,
            _ = renew.tick(), if renewing => {
                match Box::pin(store.heartbeat(number, &token, None, default_lease.as_millis() as i64)).await {
                    Ok(ack) if ack.cancel_requested => cancel.cancel(),
                    Ok(_) => {}
                    Err(StoreError::LeaseLost(_)) | Err(StoreError::NotFound(_)) => {
                        cancel.cancel();
                        renewing = false;
                    }
                    Err(err) => tracing::warn!(job = number, error = %err, "heartbeat failed"),
                }
            }
        }
    };
    let outcome = match ran {
        Ok(Ok(result)) => JobOutcome::Succeeded(result),
        Ok(Err(HandlerError::Fatal(message))) => JobOutcome::Fatal(message),
        Ok(Err(HandlerError::Retryable(message))) => {
            JobOutcome::Retryable { error: message, run_after: None }
        }
        Ok(Err(HandlerError::LeaseLost)) => {
            tracing::warn!(job = number, attempt, "attempt lost its lease; its outcome is discarded");
            return None;
        }
        Err(_panic) => JobOutcome::Retryable { error: "the handler panicked".into(), run_after: None },
    };
    match Box::pin(store.finish_status_then_claim(number, &token, outcome, next)).await {
        Ok((status, next)) => {
            tracing::info!(job = number, attempt, %status, "attempt ended");
            counters.attempt_ended(status);
            let next = next.claimed();
            counters.attempts_started(usize::from(next.is_some()));
            return next;
        }
        Err(StoreError::LeaseLost(_)) => {
            tracing::warn!(job = number, attempt, "attempt lost its lease; its outcome was refused")
        }
        Err(err) => tracing::error!(
            job = number,
            attempt,
            error = %err,
            "could not record the outcome; the lease will expire and the job run again"
        ),
    }
    None
}
