//! Many small calls, one statement: the requests that queue while earlier batches
//! run go out together as the next batch. PostgreSQL's cost per statement (a round
//! trip, a snapshot, executor start-up, a commit for writes) then serves a whole
//! batch, which is how one node records thousands of outcomes and answers thousands
//! of status reads a second over a handful of connections.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};

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

/// The error every caller of a batch that failed as a whole gets.
pub(crate) fn shared_error(err: &StoreError) -> StoreError {
    match err {
        StoreError::Closed => StoreError::Closed,
        StoreError::Unavailable(text) => StoreError::Unavailable(text.clone()),
        other => StoreError::Database(other.to_string()),
    }
}
