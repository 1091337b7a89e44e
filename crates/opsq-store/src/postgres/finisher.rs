//! Outcomes of attempts, recorded many to a statement.
//!
//! A finish on its own is a transaction of four round trips (BEGIN, a locking read,
//! the update, COMMIT) and a commit flush, which held a node's drain rate near 2,000
//! jobs/s however many workers it ran. So finishes queue for a batcher
//! ([`super::batcher`]) that records whatever has queued in one statement (when every outcome is a success,
//! which needs nothing read first) or one transaction (a locking read for the retry
//! and cancel rules, then the same statement). Each caller still gets its own
//! answer: a lost lease is that job's error, not the batch's.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use deadpool_postgres::{GenericClient, Pool};
use opsq_domain::{Job, JobStatus};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;

use super::batcher::{shared_error, spawn_batcher};
use super::claims::{claim_ctes, claim_of, Wanted};
use super::history;
use super::rows::{self, job_columns, JOB_COLUMN_COUNT};
use super::{query, signals};
use crate::types::{same_request, Claim, ClaimRequest, JobOutcome, NextJob};
use crate::{now_ms, rules, Signal, StoreError};

/// Most outcomes one statement records.
const MAX_BATCH: usize = 512;
/// Batches recorded at once; while all are busy, outcomes queue for the next ones.
const BATCHES_IN_FLIGHT: usize = 4;

/// The common table expressions that record the outcomes of a batch and their
/// history entries; `$wants_next` tells, for each recorded row, whether its caller
/// asked for a next job (see [`finish_many_then_claim!`]). Rows whose lease the
/// caller no longer holds are left alone (fencing) and come back missing; rows are
/// locked in job order, so two batches (or a batch and a rescue) cannot deadlock.
///
/// A success's entry, like its start's, is derived from the row (see [`history`]),
/// and it keeps the lease's owner, which the start entry names. Any other outcome
/// records its own entry; its caller wrote out the derived ones first
/// ([`finish_many`]).
///
/// `$2` names each job at most once (see [`update`]), so a row finds its request's
/// values by its position in the arrays. No join with the requests: as a join, the
/// planner (which, after an `ANALYZE` taken while no job ran, expects one leased
/// row) walked every leased row against every request, and built a whole-row copy
/// of each request for each comparison: 30-80 ms a batch of about 130 in a drain
/// (auto_explain), which held a node's drain near 5,000 jobs/s. For the same reason
/// the status test is written `(status = 'executing') IS TRUE`, which the partial
/// index `jobs_leased` cannot serve: rows are found by primary key, one lookup per
/// request, so a batch's cost does not grow with the jobs running elsewhere (the
/// walk over `jobs_leased` took 3.7 ms of one 15.8 ms batch; the drain measured no
/// different either way).
///
/// The price is quadratic in the batch: `array_position` and each text array's
/// subscript walk the array from its start. Measured on 512 outcomes (the most a
/// batch takes): 28.5 ms a statement; 27.7 ms with a binary search (`width_bucket`
/// over sorted numbers) for the position, and 20 ms with the subscripts then
/// replaced by constants. So the subscripts, not the position, are the quadratic
/// part, and only at large batches: a drain's held about 11 outcomes.
macro_rules! finish_ctes {
    ($wants_next:literal) => {
        concat!(
            "locked AS (
                 SELECT number AS locked_number, array_position($2::bigint[], number) AS i,
                        ($4::text[])[array_position($2::bigint[], number)] = 'succeeded' AS success
                 FROM jobs
                 WHERE number = ANY($2::bigint[]) AND (status = 'executing') IS TRUE AND lease_until >= $1
                   AND lease_token = ($3::text[])[array_position($2::bigint[], number)]
                 ORDER BY number
                 FOR UPDATE
             ), done AS (
                 UPDATE jobs SET status = ($4::text[])[i], result = ($5::text[])[i], error = ($6::text[])[i],
                        run_after = ($7::bigint[])[i], step_desc = ($8::text[])[i], status_at = $1,
                        finished_at = ($9::bigint[])[i],
                        percent = CASE WHEN success THEN 100 ELSE percent END,
                        lease_owner = CASE WHEN success THEN lease_owner END, lease_token = NULL, lease_until = NULL,
                        derived_events = derived_events | CASE WHEN success THEN 4 ELSE 0 END
                 FROM locked
                 WHERE number = locked_number
                 RETURNING ",
            job_columns!(),
            ", ($3::text[])[i] AS in_token, ($10::text[])[i] AS in_message, success, ",
            $wants_next,
            " AS wants_next
             ), recorded AS (
                 INSERT INTO job_events (job, at, status, attempt, message)
                 SELECT number, $1, status, attempt, in_message FROM done WHERE NOT success
             )"
        )
    };
}

const FINISH_MANY: &str =
    concat!("WITH ", finish_ctes!("false"), " SELECT ", job_columns!(), ", in_token FROM done");

/// [`FINISH_MANY`] that also claims, for the successes it records whose callers
/// asked (`$11`, by position), as many next jobs as there are such successes: one
/// statement and one commit for a slot's outcome and its next job, where a claim of
/// its own waited for the outcome's commit and then made its own. The claim sees
/// the statement's snapshot, in which the jobs it finishes are still running, so it
/// can never pick one of them. Rows are the recorded jobs (the token that recorded
/// each, no lease end, `false`), then the claimed ones (their lease token and end,
/// `true`).
macro_rules! finish_many_then_claim {
    ($accounts:literal) => {
        concat!(
            "WITH RECURSIVE ",
            finish_ctes!("success AND COALESCE(($11::bool[])[i], false)"),
            ", ",
            claim_ctes!(owner: "$12", now: "$1", lease: "$13", exact: "$14", globs: "$15", accounts: $accounts,
                        limit: "(SELECT count(*) FROM done WHERE wants_next)"),
            " SELECT ",
            job_columns!(),
            ", in_token, NULL::bigint, false FROM done
             UNION ALL SELECT ",
            job_columns!(),
            ", lease_token, lease_until, true FROM claimed"
        )
    };
}

const FINISH_MANY_THEN_CLAIM_ANY_ACCOUNT: &str = finish_many_then_claim!("");
const FINISH_MANY_THEN_CLAIM_IN_ACCOUNTS: &str = finish_many_then_claim!("AND account = ANY($16::text[])");

/// The column of [`FINISH_MANY`]'s answer after the job's: the lease token that
/// recorded it (for a claimed row of [`finish_many_then_claim!`], the new lease's).
const TOKEN_COLUMN: usize = JOB_COLUMN_COUNT;
/// The column of [`finish_many_then_claim!`]'s answer that tells claimed rows.
const CLAIMED_COLUMN: usize = JOB_COLUMN_COUNT + 2;

/// What an outcome's caller hears: the job as recorded, and what came of the next
/// job it asked for.
pub(crate) type Finished = (Job, NextJob);

/// One attempt's outcome, waiting for its batch.
pub(crate) struct FinishRequest {
    pub number: i64,
    pub lease_token: String,
    pub outcome: JobOutcome,
    /// The next job wanted for the caller's slot, if any (one job, whatever its
    /// limit); claimed with a recorded success only.
    pub next: Option<Arc<ClaimRequest>>,
    pub reply: oneshot::Sender<Result<Finished, StoreError>>,
}

/// Starts the batcher; it ends when every sender is gone.
pub(crate) fn spawn_finisher(pool: Pool) -> mpsc::UnboundedSender<FinishRequest> {
    spawn_batcher(MAX_BATCH, BATCHES_IN_FLIGHT, move |batch| record(pool.clone(), batch))
}

/// Records a batch and answers each of its callers.
pub(crate) async fn record(pool: Pool, batch: Vec<FinishRequest>) {
    let mut replies = Vec::with_capacity(batch.len());
    let mut requests = Vec::with_capacity(batch.len());
    for FinishRequest { number, lease_token, outcome, next, reply } in batch {
        replies.push(reply);
        requests.push(Outcome { number, lease_token, outcome, next });
    }
    match finish_many(&pool, requests).await {
        Ok(results) => {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
        }
        Err(err) => {
            for reply in replies {
                let _ = reply.send(Err(shared_error(&err)));
            }
        }
    }
}

/// A request of the batch, without its reply channel.
struct Outcome {
    number: i64,
    lease_token: String,
    outcome: JobOutcome,
    next: Option<Arc<ClaimRequest>>,
}

/// An outcome turned into the job's new state, or why it cannot be recorded.
type Planned = Result<(i64, String, rules::Finished), StoreError>;

/// What the retry and cancel rules need to know about a running job.
struct Running {
    lease_token: String,
    attempt: i32,
    max_attempts: i32,
    cancel_reason: Option<String>,
}

async fn finish_many(
    pool: &Pool,
    requests: Vec<Outcome>,
) -> Result<Vec<Result<Finished, StoreError>>, StoreError> {
    let now = now_ms();
    let mut client = pool.get().await?;
    let nexts: Vec<Option<Arc<ClaimRequest>>> = requests.iter().map(|request| request.next.clone()).collect();
    // A success ends the job whatever its attempt count or a cancel request, so a
    // batch of successes needs nothing read first: one statement, one round trip,
    // committed on its own. Not when a job is named twice (a stale attempt beside the
    // live one, rare): that takes two statements (see `update`), and the first one's
    // claims must not be committed should the second fail, or they would be leased
    // to no one.
    let mut named = HashSet::with_capacity(requests.len());
    let repeats = !requests.iter().all(|request| named.insert(request.number));
    if !repeats && requests.iter().all(|request| matches!(request.outcome, JobOutcome::Succeeded(_))) {
        let planned = requests
            .into_iter()
            .map(|Outcome { number, lease_token, outcome, .. }| {
                Ok((number, lease_token, rules::finish(outcome, 0, 0, None, now)?))
            })
            .collect();
        return update(&client, planned, &nexts, now).await;
    }
    let tx = client.transaction().await?;
    let numbers: Vec<i64> = requests.iter().map(|request| request.number).collect();
    let rows = query(
        &tx,
        "SELECT number, lease_token, attempt, max_attempts,
                CASE WHEN cancel_requested THEN cancel_reason END
         FROM jobs WHERE number = ANY($1) AND status = 'executing' AND lease_until >= $2
         ORDER BY number FOR UPDATE",
        &[&numbers, &now],
    )
    .await?;
    let mut running = HashMap::with_capacity(rows.len());
    for row in &rows {
        running.insert(
            row.try_get::<_, i64>(0)?,
            Running {
                lease_token: row.try_get(1)?,
                attempt: row.try_get(2)?,
                max_attempts: row.try_get(3)?,
                cancel_reason: row.try_get(4)?,
            },
        );
    }
    let planned = requests
        .into_iter()
        .map(|Outcome { number, lease_token, outcome, .. }| match running.get(&number) {
            Some(job) if job.lease_token == lease_token => {
                let finished = rules::finish(
                    outcome,
                    i64::from(job.attempt),
                    i64::from(job.max_attempts),
                    job.cancel_reason.as_deref(),
                    now,
                )?;
                Ok((number, lease_token, finished))
            }
            _ => Err(StoreError::LeaseLost(number)),
        })
        .collect::<Vec<Planned>>();
    // The derived history entries of the jobs whose outcome records an entry of its
    // own go first (see `history`); the locking read above holds their rows.
    let recording: Vec<i64> = planned
        .iter()
        .flatten()
        .filter(|(_, _, finished)| finished.status != JobStatus::Succeeded)
        .map(|(number, _, _)| *number)
        .collect();
    if !recording.is_empty() {
        history::write_out(&tx, &recording).await?;
    }
    let results = update(&tx, planned, &nexts, now).await?;
    let retry_now =
        results.iter().flatten().any(|(job, _)| job.status == JobStatus::Resumed && job.run_after <= now);
    if retry_now {
        signals::notify_on_commit(&tx, Signal::JobsReady).await?;
    }
    tx.commit().await?;
    Ok(results)
}

/// The request for next jobs that the statement claims for: of the successes that
/// asked for one, the request most of them share (in practice every success of a
/// batch from one runner, or from one worker's report, shares one), skipping those
/// that can match nothing (no kinds, no accounts). The successes that asked for
/// another request hear that no claim was made, and claim on their own.
fn most_asked<'a>(planned: &[Planned], nexts: &'a [Option<Arc<ClaimRequest>>]) -> Option<Wanted<'a>> {
    let mut asked: Vec<(&'a ClaimRequest, usize)> = Vec::new();
    for (plan, next) in planned.iter().zip(nexts) {
        let Ok((_, _, finished)) = plan else { continue };
        let Some(next) = next.as_deref().filter(|_| finished.status == JobStatus::Succeeded) else {
            continue;
        };
        match asked.iter_mut().find(|(request, _)| same_request(request, next)) {
            Some((_, count)) => *count += 1,
            None => asked.push((next, 1)),
        }
    }
    asked.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    asked.into_iter().find_map(|(request, _)| Wanted::of(request))
}

/// Runs [`FINISH_MANY`] for the planned outcomes and answers each in order, with the
/// next jobs claimed for the successes that asked (see [`most_asked`]). An attempt
/// (job and lease token) named twice in one batch is recorded once: the later
/// request finds the lease already given up, as it would have one statement later.
/// Requests are told apart by token as well as job, so a stale attempt's outcome
/// (a rescued job's previous worker) can neither take the place of the live
/// attempt's in the batch nor be answered with its row; such a pair (rare) is split
/// over two statements, as the statement names each job once. Only the first
/// statement claims.
async fn update(
    c: &impl GenericClient,
    planned: Vec<Planned>,
    nexts: &[Option<Arc<ClaimRequest>>],
    now: i64,
) -> Result<Vec<Result<Finished, StoreError>>, StoreError> {
    let wanted = most_asked(&planned, nexts);
    let asks = |index: usize| {
        let next = nexts[index].as_deref();
        wanted.as_ref().zip(next).is_some_and(|(wanted, next)| same_request(wanted.request, next))
    };
    let mut seen = HashSet::with_capacity(planned.len());
    let mut pending: Vec<(usize, i64, &str, &rules::Finished)> = planned
        .iter()
        .enumerate()
        .filter_map(|(index, plan)| plan.as_ref().ok().map(|plan| (index, plan)))
        .filter(|(_, (number, token, _))| seen.insert((*number, token.as_str())))
        .map(|(index, (number, token, finished))| (index, *number, token.as_str(), finished))
        .collect();
    let mut recorded = HashMap::with_capacity(pending.len());
    // Which requests the claiming statement counted, and what it claimed for them.
    let mut counted = vec![false; planned.len()];
    let mut claims = Vec::new();
    let mut claim = wanted.as_ref();
    while !pending.is_empty() {
        let mut named = HashSet::with_capacity(pending.len());
        let (round, later): (Vec<_>, Vec<_>) =
            pending.into_iter().partition(|(_, number, _, _)| named.insert(*number));
        // Only the first statement claims.
        let claim = claim.take();
        let round = round
            .into_iter()
            .map(|(index, number, token, finished)| {
                counted[index] = claim.is_some() && asks(index);
                (number, token, finished, counted[index])
            })
            .collect();
        claims.extend(record_round(c, round, claim, now, &mut recorded).await?);
        pending = later;
    }
    // The claimed jobs go to the successes that asked, in the batch's order; when
    // fewer were waiting, the rest hear that none was.
    let mut claims = claims.into_iter();
    let mut answers: Vec<Result<Finished, StoreError>> = planned
        .into_iter()
        .enumerate()
        .map(|(index, plan)| match plan {
            // The first request for an attempt takes its recorded row; a repeat finds none.
            Ok((number, token, _)) => {
                let job = recorded.remove(&(number, token)).ok_or(StoreError::LeaseLost(number))??;
                let next = if job.status == JobStatus::Succeeded && counted[index] {
                    claims.next().map_or(NextJob::NoneWaiting, NextJob::Claimed)
                } else {
                    NextJob::NotClaimed
                };
                Ok((job, next))
            }
            // Fenced out by the locking read (lost, or gone altogether), or refused.
            Err(err) => Err(err),
        })
        .collect();
    tell_lost_from_missing(c, &mut answers).await;
    Ok(answers)
}

/// One [`FINISH_MANY`] for outcomes of distinct jobs (with `claim`, one
/// [`finish_many_then_claim!`] for the successes marked as asking); what it recorded
/// goes into `recorded`, by job and lease token, and what it claimed is answered.
async fn record_round(
    c: &impl GenericClient,
    round: Vec<(i64, &str, &rules::Finished, bool)>,
    claim: Option<&Wanted<'_>>,
    now: i64,
    recorded: &mut HashMap<(i64, String), Result<Job, StoreError>>,
) -> Result<Vec<Claim>, StoreError> {
    let mut numbers = Vec::with_capacity(round.len());
    let mut tokens = Vec::with_capacity(round.len());
    let mut statuses = Vec::with_capacity(round.len());
    let mut results = Vec::with_capacity(round.len());
    let mut errors = Vec::with_capacity(round.len());
    let mut run_afters = Vec::with_capacity(round.len());
    let mut descriptions = Vec::with_capacity(round.len());
    let mut finished_ats = Vec::with_capacity(round.len());
    let mut messages = Vec::with_capacity(round.len());
    let mut asking = Vec::with_capacity(round.len());
    for (number, token, finished, asks) in round {
        numbers.push(number);
        tokens.push(token);
        statuses.push(finished.status.as_str());
        results.push(finished.result.as_deref());
        errors.push(finished.error.as_deref());
        run_afters.push(finished.run_after);
        descriptions.push(finished.description.as_str());
        finished_ats.push(finished.status.is_terminal().then_some(now));
        messages.push(finished.message.as_str());
        asking.push(asks);
    }
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![
        &now,
        &numbers,
        &tokens,
        &statuses,
        &results,
        &errors,
        &run_afters,
        &descriptions,
        &finished_ats,
        &messages,
    ];
    let claim = claim.filter(|_| asking.contains(&true));
    let statement = match claim {
        None => FINISH_MANY,
        Some(wanted) => {
            params.extend([
                &asking as &(dyn ToSql + Sync),
                &wanted.request.owner,
                &wanted.request.lease_ms,
                &wanted.exact,
                &wanted.regexes,
            ]);
            match &wanted.accounts {
                Some(accounts) => {
                    params.push(accounts);
                    FINISH_MANY_THEN_CLAIM_IN_ACCOUNTS
                }
                None => FINISH_MANY_THEN_CLAIM_ANY_ACCOUNT,
            }
        }
    };
    let rows = query(c, statement, &params).await?;
    // The statement has committed (outside a transaction): a row that does not decode
    // fails its own caller only, never the batch, whose claims would then be leased
    // to no one.
    let mut claims = Vec::new();
    for row in &rows {
        if claim.is_some() && row.try_get::<_, bool>(CLAIMED_COLUMN)? {
            match claim_of(row) {
                Ok(claimed) => claims.push(claimed),
                // Its lease will expire and the job be rescued, as for a lost worker.
                Err(err) => tracing::error!(error = %err, "a job claimed with a success does not decode"),
            }
            continue;
        }
        let number: i64 = row.try_get(0)?;
        let token: String = row.try_get(TOKEN_COLUMN)?;
        recorded.insert((number, token), rows::job(row));
    }
    Ok(claims)
}

/// Turns each `LeaseLost` answer whose job no longer exists into `NotFound`, with one
/// query for the whole batch: a query per refused job held the batch's row locks
/// for a round trip each.
async fn tell_lost_from_missing<T>(c: &impl GenericClient, answers: &mut [Result<T, StoreError>]) {
    let refused: Vec<i64> = answers
        .iter()
        .filter_map(|answer| match answer {
            Err(StoreError::LeaseLost(number)) => Some(*number),
            _ => None,
        })
        .collect();
    if refused.is_empty() {
        return;
    }
    let existing: Result<HashSet<i64>, StoreError> =
        match query(c, "SELECT number FROM jobs WHERE number = ANY($1)", &[&refused]).await {
            Ok(rows) => rows.iter().map(|row| row.try_get::<_, i64>(0).map_err(StoreError::from)).collect(),
            Err(err) => Err(err),
        };
    for answer in answers {
        let Err(StoreError::LeaseLost(number)) = answer else { continue };
        match &existing {
            Ok(existing) if existing.contains(number) => {}
            Ok(_) => *answer = Err(StoreError::NotFound(format!("job {number}"))),
            Err(err) => *answer = Err(shared_error(err)),
        }
    }
}
