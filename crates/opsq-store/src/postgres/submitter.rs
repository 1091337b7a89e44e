//! Submissions without idempotency keys, many to a transaction: PostgreSQL's group
//! commit, done where the statements are made.
//!
//! A submission is one statement (which also starts the jobs an offer has free slots
//! for: a batch uses the first offer any of its requests took up, and releases the
//! others unused), so one round trip and one commit flush. With many clients
//! submitting one job each (S64: 64 clients, each acknowledged only once its job is
//! durable), those flushes were the node's limit. Requests that queue while earlier
//! batches run are accepted together ([`super::batcher`]): one
//! `INSERT ... SELECT FROM unnest(...)`, one commit, and
//! each caller gets its own jobs back, in its order. A batch that fails fails each of
//! its callers (nothing of it was accepted); submissions with idempotency keys keep a
//! transaction of their own, so one key conflict never touches another caller.

use std::sync::Arc;

use deadpool_postgres::Pool;
use opsq_domain::NewJob;
use tokio::sync::{mpsc, oneshot};

use super::batcher::{shared_error, spawn_batcher};
use super::jobs::submit_in;
use crate::dispatch::OfferUse;
use crate::types::SubmitOutcome;
use crate::StoreError;

/// Most submissions one transaction takes (each is at most 1000 jobs).
const MAX_BATCH: usize = 64;
/// Transactions committing at once.
const BATCHES_IN_FLIGHT: usize = 4;

/// One caller's jobs, waiting for their batch.
pub(crate) struct SubmitRequest {
    pub jobs: Vec<NewJob>,
    pub dispatch: Option<Arc<OfferUse>>,
    pub reply: oneshot::Sender<Result<Vec<SubmitOutcome>, StoreError>>,
}

pub(crate) fn spawn_submitter(pool: Pool) -> mpsc::UnboundedSender<SubmitRequest> {
    spawn_batcher(MAX_BATCH, BATCHES_IN_FLIGHT, move |batch| submit_batch(pool.clone(), batch))
}

/// Accepts a batch of submissions in one transaction and answers each caller with
/// the outcomes of its own jobs.
pub(crate) async fn submit_batch(pool: Pool, batch: Vec<SubmitRequest>) {
    let dispatch = batch.iter().find_map(|request| request.dispatch.clone());
    let mut counts = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    let mut jobs = Vec::new();
    for SubmitRequest { jobs: mine, reply, .. } in batch {
        counts.push(mine.len());
        replies.push(reply);
        jobs.extend(mine);
    }
    match submit_in(&pool, jobs, dispatch).await {
        Ok(outcomes) => {
            let mut outcomes = outcomes.into_iter();
            for (reply, count) in replies.into_iter().zip(counts) {
                let _ = reply.send(Ok(outcomes.by_ref().take(count).collect()));
            }
        }
        Err(err) => {
            for reply in replies {
                let _ = reply.send(Err(shared_error(&err)));
            }
        }
    }
}
