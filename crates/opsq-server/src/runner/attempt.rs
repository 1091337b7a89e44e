//! One attempt of one job in this process.

use std::sync::Arc;
use std::time::Duration;

use opsq_store::{Claim, JobOutcome, Store, StoreError};
use tokio_util::sync::CancellationToken;

use super::{HandlerError, JobContext, JobHandler};

/// Runs one attempt: renews the lease in the background, runs the handler, records
/// the outcome. A lost lease cancels the handler and its outcome is never recorded.
pub async fn run(
    store: Store,
    handler: Arc<dyn JobHandler>,
    claim: Claim,
    default_lease: Duration,
    cancel: CancellationToken,
) {
    let number = claim.job.number;
    let attempt = claim.job.attempt;
    let token = claim.lease_token.clone();
    // The kind's lease may differ from the default; renew at a third of the real one.
    let lease = Duration::from_millis((claim.lease_until - opsq_store::now_ms()).max(300) as u64);
    let heartbeat = {
        let (store, token, cancel) = (store.clone(), token.clone(), cancel.clone());
        tokio::spawn(async move {
            let every = lease / 3;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = cancel.cancelled() => return,
                }
                match store.heartbeat(number, &token, None, default_lease.as_millis() as i64).await {
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
    let ctx = JobContext::new(store.clone(), claim.job, token.clone(), default_lease, cancel.clone());
    let run = tokio::spawn(handler.run(ctx));
    let outcome = match run.await {
        Ok(Ok(result)) => JobOutcome::Succeeded(result),
        Ok(Err(HandlerError::Fatal(message))) => JobOutcome::Fatal(message),
        Ok(Err(HandlerError::Retryable(message))) => {
            JobOutcome::Retryable { error: message, run_after: None }
        }
        Ok(Err(HandlerError::LeaseLost)) => {
            heartbeat.abort();
            tracing::warn!(job = number, attempt, "attempt lost its lease; its outcome is discarded");
            return;
        }
        Err(join_error) => {
            JobOutcome::Retryable { error: format!("the handler crashed: {join_error}"), run_after: None }
        }
    };
    heartbeat.abort();
    match store.finish(number, &token, outcome).await {
        Ok(job) => tracing::info!(job = number, attempt, status = %job.status, "attempt ended"),
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
}
