//! Successes recorded many to a statement.
//!
//! The writer thread is the embedded store's one bottleneck, and a success recorded
//! on its own costs it a savepoint (whose statement journal copies every page the
//! write touches) and a fenced UPDATE. Successes need nothing read first, so the ones
//! that queue while the writer is busy wait in [`SuccessQueue`] and go out as one
//! savepoint and one UPDATE; their history entries are derived from the job rows
//! (see [`history`]). Each
//! caller still gets its own answer: a lost lease is that job's error, not the
//! batch's, and should the batch's statement fail as a whole, every success is tried
//! again on its own.
//!
//! A success may ask for the next job of its runner's slot (see
//! [`SqliteStore::finish_status_then_claim`]): the batch then claims those jobs too,
//! one statement per kind of request, in the same transaction. In a drain the
//! in-process runner otherwise waited for the success's commit, then claimed for the
//! slots it freed in a transaction of its own; with the claim in the success's, a
//! 60,000-job drain synced the WAL about half as often (bench/RESULTS.md, step 30).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use opsq_domain::Job;
use rusqlite::{params, Connection};
use tokio::sync::oneshot;

use super::history;
use super::jobs::{claim_rows, lease_lost_or_missing, record_finished, RawClaim};
use super::rows::{RawJob, JOB_COLUMNS};
use super::{exec, Completion, SqliteStore, WriteOp};
use crate::types::{same_request, ClaimRequest, NextJob};
use crate::{now_ms, rules, StoreError};

/// Records the successes of a batch (`?1` = now, `?2` = a JSON array of
/// `[number, lease token, result]`, `?3` = the description), each fenced by its lease
/// token. Rows whose lease the caller no longer holds are left alone and come back
/// missing. The lease's owner stays on the row: the derived start entry names it.
static FINISH_MANY: LazyLock<String> = LazyLock::new(|| finish_many(JOB_COLUMNS));

/// [`FINISH_MANY`] returning only the numbers recorded, for batches whose callers all
/// want no row back: copying rows out of the writer thread is work it need not do.
static FINISH_MANY_BRIEF: LazyLock<String> = LazyLock::new(|| finish_many("number"));

fn finish_many(returning: &str) -> String {
    format!(
        "UPDATE jobs SET status = 'succeeded', result = input.result, error = NULL, run_after = ?1,
                step_desc = ?3, status_at = ?1, finished_at = ?1, percent = 100,
                lease_token = NULL, lease_until = NULL, derived_events = derived_events | {}
         FROM (SELECT value ->> 0 AS number, value ->> 1 AS token, value ->> 2 AS result
               FROM json_each(?2)) AS input
         WHERE jobs.number = input.number AND jobs.lease_token = input.token
           AND jobs.status = 'executing' AND jobs.lease_until >= ?1
         RETURNING {returning}",
        history::SUCCEEDED
    )
}

/// One success waiting for its batch.
struct PendingSuccess {
    number: i64,
    lease_token: String,
    finished: rules::Finished,
    /// Whether the caller wants the job's row back, or only to know it was recorded.
    full: bool,
    /// The next job wanted for the caller's slot, if any (one job, whatever its limit).
    next: Option<Arc<ClaimRequest>>,
    reply: oneshot::Sender<Result<Recorded, StoreError>>,
}

/// What a success's caller hears: the job as recorded (when it asked for it), and
/// what came of the slot's next job.
type Recorded = (Option<RawJob>, NextJob<RawClaim>);

/// The successes waiting for the writer. Whoever queues into an empty queue sends the
/// writer the op that takes everything queued by the time it runs, so every success
/// is in exactly one batch and no batch is sent empty-handed for long.
#[derive(Default)]
pub(super) struct SuccessQueue(Mutex<Vec<PendingSuccess>>);

impl SuccessQueue {
    fn lock(&self) -> MutexGuard<'_, Vec<PendingSuccess>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn take(&self) -> Vec<PendingSuccess> {
        std::mem::take(&mut *self.lock())
    }

    /// Answers everything queued with `Closed`: the writer is gone.
    fn close(&self) {
        for pending in self.take() {
            let _ = pending.reply.send(Err(StoreError::Closed));
        }
    }
}

/// Answers the queue with `Closed` if the op that was to take it is dropped unrun (the
/// writer thread went away with ops still queued); a queued success is never left
/// waiting forever.
struct UnrunGuard(Option<Arc<SuccessQueue>>);

impl UnrunGuard {
    fn disarm(mut self) -> Arc<SuccessQueue> {
        self.0.take().expect("armed until run")
    }
}

impl Drop for UnrunGuard {
    fn drop(&mut self) {
        if let Some(queue) = self.0.take() {
            queue.close();
        }
    }
}

impl SqliteStore {
    /// Records a success (its new state already worked out by `rules::finish`) and
    /// answers with the job as recorded when `full`, and with the job claimed for
    /// `next`, if one waited.
    pub(super) async fn finish_success(
        &self,
        number: i64,
        lease_token: String,
        finished: rules::Finished,
        full: bool,
        next: Option<Arc<ClaimRequest>>,
    ) -> Result<(Option<Job>, NextJob), StoreError> {
        let (reply, answer) = oneshot::channel();
        let first = {
            let mut queued = self.successes.lock();
            queued.push(PendingSuccess { number, lease_token, finished, full, next, reply });
            queued.len() == 1
        };
        if first {
            let guard = UnrunGuard(Some(self.successes.clone()));
            let op: WriteOp = Box::new(move |conn| record_queued(conn, &guard.disarm()));
            // Should the writer be gone, the op comes back and is dropped here, unrun:
            // its guard answers the queue.
            let _ = self.writer.send(op);
        }
        let (job, claim) = answer.await.map_err(|_| StoreError::Closed)??;
        Ok((job.map(RawJob::decode).transpose()?, claim.try_map(RawClaim::decode)?))
    }
}

/// The writer's side: takes what is queued, records it, and answers each caller once
/// the transaction has ended.
fn record_queued(conn: Option<&Connection>, queue: &SuccessQueue) -> (bool, Completion) {
    let batch = queue.take();
    let Some(conn) = conn else {
        let completion: Completion = Box::new(move |_| {
            for pending in batch {
                let _ = pending
                    .reply
                    .send(Err(StoreError::Unavailable("could not start a write transaction".into())));
            }
        });
        return (false, completion);
    };
    let now = now_ms();
    let answers = record(conn, &batch, now);
    let successors = claim_successors(conn, &batch, &answers, now);
    let completion: Completion = Box::new(move |committed| {
        for ((pending, answer), successor) in batch.into_iter().zip(answers).zip(successors) {
            let answer = match &committed {
                Ok(()) => answer.map(|job| (job, successor)),
                Err(err) => Err(StoreError::Unavailable(err.to_string())),
            };
            let _ = pending.reply.send(answer);
        }
    });
    (true, completion)
}

/// Records the batch: one statement for the first request of each job, then, on
/// their own, any later request for a job already in the batch (it finds the lease
/// given up, as it would have one statement later) or every request if the batch's
/// statement failed as a whole.
fn record(c: &Connection, batch: &[PendingSuccess], now: i64) -> Vec<Result<Option<RawJob>, StoreError>> {
    let mut seen = HashSet::with_capacity(batch.len());
    let firsts: Vec<bool> = batch.iter().map(|pending| seen.insert(pending.number)).collect();
    let mut recorded = in_savepoint(c, || in_one_statement(c, batch, &firsts, now));
    batch
        .iter()
        .zip(firsts)
        .map(|(pending, first)| match &mut recorded {
            Ok(recorded) if first => {
                recorded.remove(&pending.number).ok_or_else(|| lease_lost_or_missing(c, pending.number))
            }
            _ => in_savepoint(c, || {
                record_finished(c, pending.number, &pending.lease_token, &pending.finished, false, now)
            })
            .map(Some),
        })
        .collect()
}

/// Claims the next jobs asked for by the successes recorded, one statement per
/// distinct request (in practice one: a runner's), each in a savepoint of its own: a
/// claim that fails leaves the successes recorded and claims nothing. Answers one
/// entry per success of `batch`, in order: those that asked get a job, or hear that
/// none waited (the claim found fewer than asked for).
fn claim_successors(
    c: &Connection,
    batch: &[PendingSuccess],
    answers: &[Result<Option<RawJob>, StoreError>],
    now: i64,
) -> Vec<NextJob<RawClaim>> {
    let mut claims: Vec<NextJob<RawClaim>> = batch.iter().map(|_| NextJob::NotClaimed).collect();
    // Each distinct request, with the successes that asked for it.
    let mut wanted: Vec<(&Arc<ClaimRequest>, Vec<usize>)> = Vec::new();
    for (index, (pending, answer)) in batch.iter().zip(answers).enumerate() {
        let Some(next) = pending.next.as_ref().filter(|_| answer.is_ok()) else { continue };
        match wanted.iter_mut().find(|(request, _)| same_request(request, next)) {
            Some((_, asking)) => asking.push(index),
            None => wanted.push((next, vec![index])),
        }
    }
    for (request, asking) in wanted {
        let request = ClaimRequest { limit: asking.len() as u32, ..ClaimRequest::clone(request) };
        match in_savepoint(c, || claim_rows(c, &request, now)) {
            Ok(rows) => {
                let mut rows = rows.into_iter();
                for index in asking {
                    claims[index] = rows.next().map_or(NextJob::NoneWaiting, NextJob::Claimed);
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "claiming the next jobs with their slots' successes failed")
            }
        }
    }
    claims
}

/// The batch's single statement.
fn in_one_statement(
    c: &Connection,
    batch: &[PendingSuccess],
    firsts: &[bool],
    now: i64,
) -> Result<HashMap<i64, Option<RawJob>>, StoreError> {
    let Some(first) = batch.first() else { return Ok(HashMap::new()) };
    // Every success has the same description (`rules::finish`), so it is a
    // parameter, not a field of each element.
    let description = first.finished.description.as_str();
    let rows: Vec<(i64, &str, Option<&str>)> = batch
        .iter()
        .zip(firsts)
        .filter(|(_, first)| **first)
        .map(|(p, _)| (p.number, p.lease_token.as_str(), p.finished.result.as_deref()))
        .collect();
    let input = serde_json::to_string(&rows).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let recorded = if batch.iter().any(|p| p.full) {
        let mut stmt = c.prepare_cached(&FINISH_MANY)?;
        let rows = stmt.query_map(params![now, input, description], RawJob::read)?;
        rows.map(|row| row.map(|job| (job.number(), Some(job))))
            .collect::<rusqlite::Result<HashMap<_, _>>>()?
    } else {
        let mut stmt = c.prepare_cached(&FINISH_MANY_BRIEF)?;
        let rows = stmt.query_map(params![now, input, description], |r| r.get::<_, i64>(0))?;
        rows.map(|row| row.map(|number| (number, None))).collect::<rusqlite::Result<HashMap<_, _>>>()?
    };
    Ok(recorded)
}

/// Runs `write` in a savepoint of its own, so that a failure leaves nothing behind
/// for what is tried next in the same transaction.
fn in_savepoint<T>(c: &Connection, write: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    exec(c, "SAVEPOINT success")?;
    let result = write();
    if result.is_err() {
        let _ = exec(c, "ROLLBACK TO success");
    }
    exec(c, "RELEASE success")?;
    result
}
