//! Status reads, many to a statement: the hot path of clients polling their jobs.
//!
//! One primary-key read per request cost PostgreSQL a statement each (about 28,000
//! reads/s on 2 cores with the server beside it, a quarter of what a trivial HTTP
//! handler answers). Reads that queue while earlier ones run now go out together as
//! one `number = ANY(...)` statement ([`super::batcher`]). Nothing is cached: each
//! read is answered by a statement that started after the read was asked for, so it
//! sees every write committed before it, on any node.

use std::collections::HashMap;

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};

use super::batcher::{shared_error, spawn_batcher};
use super::query;
use super::rows::{alias_at, location_at, status_at};
use crate::types::JobStatusRow;
use crate::StoreError;

/// Most reads one statement answers.
const MAX_BATCH: usize = 256;
/// Statements running at once (the pool holds 16 connections).
const BATCHES_IN_FLIGHT: usize = 2;

/// One status read, waiting for its batch.
pub(crate) struct StatusRequest {
    pub number: i64,
    pub reply: oneshot::Sender<Result<Option<JobStatusRow>, StoreError>>,
}

pub(crate) fn spawn_status_reader(pool: Pool) -> mpsc::UnboundedSender<StatusRequest> {
    spawn_batcher(MAX_BATCH, BATCHES_IN_FLIGHT, move |batch| read(pool.clone(), batch))
}

/// Answers a batch of reads, each with its own job's row (or none).
pub(crate) async fn read(pool: Pool, batch: Vec<StatusRequest>) {
    let numbers: Vec<i64> = batch.iter().map(|request| request.number).collect();
    match read_rows(&pool, &numbers).await {
        Ok(found) => {
            for StatusRequest { number, reply } in batch {
                let _ = reply.send(Ok(found.get(&number).cloned()));
            }
        }
        Err(err) => {
            for request in batch {
                let _ = request.reply.send(Err(shared_error(&err)));
            }
        }
    }
}

async fn read_rows(pool: &Pool, numbers: &[i64]) -> Result<HashMap<i64, JobStatusRow>, StoreError> {
    let client = pool.get().await?;
    let rows = query(
        &client,
        "SELECT number, account, location, status FROM jobs WHERE number = ANY($1)",
        &[&numbers],
    )
    .await?;
    rows.iter()
        .map(|r| {
            let row = JobStatusRow {
                number: r.try_get(0)?,
                account: alias_at(r, 1)?,
                location: location_at(r, 2)?,
                status: status_at(r, 3)?,
            };
            Ok((row.number, row))
        })
        .collect()
}
