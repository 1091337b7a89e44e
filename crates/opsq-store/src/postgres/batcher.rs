//! Many small calls, one statement: the requests that queue while earlier batches
//! run go out together as the next batch. PostgreSQL's cost per statement (a round
//! trip, a snapshot, executor start-up, a commit for writes) then serves a whole
//! batch, which is how one node records thousands of outcomes and answers thousands
//! of status reads a second over a handful of connections. The same queue, with one
//! batch at a time, coalesces the node's background chores (announcing new jobs,
//! refreshing planner statistics); every such task ends when its store is dropped.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::StoreError;

/// Starts a task that hands queued requests to `run` in batches of at most
/// `max_batch`, with at most `in_flight` batches running at once; it ends when every
/// sender is gone. `run` answers each request itself (each carries its reply
/// channel).
pub(crate) fn spawn_batcher<R, F, Fut>(max_batch: usize, in_flight: usize, run: F) -> mpsc::UnboundedSender<R>
where
    R: Send + 'static,
    F: Fn(Vec<R>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (sender, mut queue) = mpsc::unbounded_channel::<R>();
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(in_flight));
        while let Some(first) = queue.recv().await {
            // Wait for a free slot before collecting: what arrives meanwhile joins
            // this batch instead of making batches of one.
            let Ok(slot) = slots.clone().acquire_owned().await else { return };
            let mut batch = vec![first];
            while batch.len() < max_batch {
                match queue.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            let running = run(batch);
            tokio::spawn(async move {
                running.await;
                drop(slot);
            });
        }
    });
    sender
}

/// Queues a request, made with its reply channel, and waits for the answer. Should
/// the batcher be gone (it went with the runtime that started it, when a store is
/// used from several runtimes), the request runs alone through `run_alone`, in a task
/// of its own: like a batch, it then runs to its end even if this caller is dropped
/// half-way (a submission's commit is always followed by handing its dispatched
/// claims over, never cut between the two).
pub(crate) async fn ask<R, T, Fut>(
    queue: &mpsc::UnboundedSender<R>,
    request: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> R,
    run_alone: impl FnOnce(Vec<R>) -> Fut,
) -> Result<T, StoreError>
where
    Fut: Future<Output = ()> + Send + 'static,
{
    let (reply, answer) = oneshot::channel();
    if let Err(unsent) = queue.send(request(reply)) {
        tokio::spawn(run_alone(vec![unsent.0]));
    }
    answer.await.map_err(|_| StoreError::Closed)?
}

/// The error every caller of a batch that failed as a whole gets.
pub(crate) fn shared_error(err: &StoreError) -> StoreError {
    match err {
        StoreError::Closed => StoreError::Closed,
        StoreError::Unavailable(text) => StoreError::Unavailable(text.clone()),
        other => StoreError::Database(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::FutureExt;

    use super::*;

    /// A request whose batcher is gone runs in a task of its own: the caller giving
    /// up half-way (a client that hung up) does not cut it short.
    #[tokio::test]
    async fn a_request_run_alone_finishes_when_its_caller_is_dropped() {
        let (queue, gone) = mpsc::unbounded_channel::<oneshot::Sender<Result<u32, StoreError>>>();
        drop(gone);
        let (ran, finished) = oneshot::channel::<()>();
        let asking = ask(
            &queue,
            |reply| reply,
            move |batch| async move {
                tokio::task::yield_now().await;
                for reply in batch {
                    let _ = reply.send(Ok(7));
                }
                let _ = ran.send(());
            },
        );
        assert!(
            asking.now_or_never().is_none(),
            "the request must still be running when its caller is dropped"
        );
        tokio::time::timeout(Duration::from_secs(10), finished)
            .await
            .expect("the request ran to its end within 10 s")
            .expect("the request ran to its end, not dropped with its caller");
    }

    #[tokio::test]
    async fn a_request_run_alone_answers_its_caller() {
        let (queue, gone) = mpsc::unbounded_channel::<oneshot::Sender<Result<u32, StoreError>>>();
        drop(gone);
        let answer = ask(
            &queue,
            |reply| reply,
            |batch| async move {
                for reply in batch {
                    let _ = reply.send(Ok(7));
                }
            },
        );
        assert_eq!(answer.await.expect("answered"), 7);
    }
}
