//! Jobs: submission, reads, claims under a lease, heartbeats, outcomes and rescue.
//!
//! Every write of an attempt is fenced: it names the lease token it got from its
//! claim, and is refused once that token is no longer the job's (expired, rescued,
//! or ended), so a worker that lost its lease can never record an outcome.

use std::borrow::Cow;
use std::sync::Arc;

use opsq_domain::{Job, JobEvent, JobStatus, NewJob, Progress};
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

use super::rows::{self, alias_at, location_at, status_at, RawJob, JOB_COLUMNS, JOB_COLUMN_COUNT};
use super::{history, SqliteStore};
use crate::dispatch::OfferUse;
use crate::types::*;
use crate::{now_ms, rules, StoreError};

/// Accepts one job. When `offer` has a slot for its kind, the job is inserted already
/// in its first attempt, leased to the offer's owner: the same row and history a
/// claim would leave, without a second statement rewriting the row just written (see
/// [`Dispatch`](crate::Dispatch)). A job whose idempotency key was seen before is
/// never started here. Either way its history entries so far are derived from the
/// row (see [`history`]), so nothing else is written.
fn submit_one(
    conn: &Connection,
    job: NewJob,
    now: i64,
    offer: Option<&OfferUse>,
) -> Result<(SubmitOutcome, Option<Claim>), StoreError> {
    if let Some(key) = &job.idempotency_key {
        let existing = conn
            .prepare_cached(&format!(
                "SELECT {JOB_COLUMNS}, request_hash FROM jobs WHERE account = ?1 AND idempotency_key = ?2"
            ))?
            .query_row(params![job.account.as_str(), key], |r| {
                Ok((rows::job(r)?, r.get::<_, Option<String>>(JOB_COLUMN_COUNT)?))
            })
            .optional()?;
        if let Some((existing, hash)) = existing {
            let outcome = if hash == job.request_hash {
                SubmitOutcome::Existing(existing)
            } else {
                SubmitOutcome::KeyConflict(existing)
            };
            return Ok((outcome, None));
        }
    }
    let payload = serde_json::to_string(&job.payload)
        .map_err(|e| StoreError::Invalid(format!("payload cannot be stored: {e}")))?;
    let offer = offer.filter(|offer| offer.take_slot(&job));
    let columns = params![
        job.account.as_str(),
        job.location.as_str(),
        job.kind.as_str(),
        job.title,
        payload,
        now,
        job.max_attempts.max(1),
        job.safe_to_repeat,
        job.idempotency_key,
        job.request_hash,
        job.submitter,
    ];
    let Some(offer) = offer else {
        let created = conn
            .prepare_cached(&format!(
                "{INSERT_JOB}) VALUES ({NEW_JOB_VALUES}, 'notStarted', 'Waiting for a worker', {})
                 RETURNING {JOB_COLUMNS}",
                history::ACCEPTED
            ))?
            .query_row(columns, rows::job)?;
        return Ok((SubmitOutcome::Created(created), None));
    };
    let mut values: Vec<&dyn rusqlite::ToSql> = columns.to_vec();
    let (owner, lease_ms) = (offer.owner(), offer.lease_ms());
    values.extend([&owner as &dyn rusqlite::ToSql, &lease_ms]);
    let claim = conn
        .prepare_cached(&format!(
            "{INSERT_JOB}, attempt, lease_owner, lease_token, lease_until, started_at, attempt_started_at)
             VALUES ({NEW_JOB_VALUES}, 'executing', 'Started', {}, 1, ?12, lower(hex(randomblob(16))),
                     ?6 + COALESCE((SELECT k.lease_ms FROM kinds k WHERE k.kind = ?3), ?13), ?6, ?6)
             RETURNING {JOB_COLUMNS}, lease_token, lease_until",
            history::ACCEPTED | history::STARTED
        ))?
        .query_row(values.as_slice(), RawClaim::read)?
        .decode()?;
    Ok((SubmitOutcome::Created(claim.job.clone()), Some(claim)))
}

/// The columns every new job sets, up to its status, step description and derived
/// history entries, left open: a started job adds its attempt's columns (see
/// [`submit_one`]).
const INSERT_JOB: &str = "INSERT INTO jobs (account, location, kind, title, payload, status_at, created_at,
     run_after, max_attempts, safe_to_repeat, idempotency_key, request_hash, submitter, status, step_desc,
     derived_events";

/// The values of [`INSERT_JOB`]'s common columns, from the parameters `?1` to `?11`.
const NEW_JOB_VALUES: &str = "?1, ?2, ?3, ?4, ?5, ?6, ?6, ?6, ?7, ?8, ?9, ?10, ?11";

/// Starts an attempt (`?1` = owner, `?2` = now, `?3` = the lease of kinds without
/// their own), for claims. The start's history entry is derived from the row (see
/// [`history`]); the previous attempt's was written out when that attempt ended.
fn start_attempt() -> String {
    format!(
        "status = 'executing', attempt = attempt + 1, lease_owner = ?1,
         lease_token = lower(hex(randomblob(16))),
         lease_until = ?2 + COALESCE((SELECT k.lease_ms FROM kinds k WHERE k.kind = jobs.kind), ?3),
         started_at = COALESCE(started_at, ?2), attempt_started_at = ?2, status_at = ?2,
         step_desc = 'Started', derived_events = derived_events | {}",
        history::STARTED
    )
}

/// A claim as the writer thread copies it out; its caller decodes it.
pub(super) struct RawClaim {
    job: RawJob,
    lease_token: String,
    lease_until: i64,
}

impl RawClaim {
    fn read(r: &rusqlite::Row) -> rusqlite::Result<Self> {
        Ok(Self {
            job: RawJob::read(r)?,
            lease_token: r.get(JOB_COLUMN_COUNT)?,
            lease_until: r.get(JOB_COLUMN_COUNT + 1)?,
        })
    }

    pub(super) fn decode(self) -> rusqlite::Result<Claim> {
        Ok(Claim { job: self.job.decode()?, lease_token: self.lease_token, lease_until: self.lease_until })
    }
}

/// The numbers of the next waiting jobs (`?4` = now, `?5` = limit) of `patterns`:
/// for each, its parameter and then one per account, from `?6` on.
///
/// One subquery per pattern, merged: each walks `jobs_waiting (kind, run_after)` in
/// order and stops at the limit, where one `kind IN (...)` filter would scan and sort
/// every waiting job of those kinds on each claim. A glob left as one (see
/// [`claim_kinds`]) reads its range of kinds and sorts it.
fn waiting_by_kind(patterns: &[String], account_count: Option<usize>) -> String {
    // Numbered explicitly: an anonymous `?` written before `?4` would take number 4.
    let mut next = 5;
    let mut mark = || {
        next += 1;
        format!("?{next}")
    };
    let per_kind: Vec<String> = patterns
        .iter()
        .map(|pattern| {
            let op = if is_glob(pattern) { "GLOB" } else { "=" };
            let kind = mark();
            let accounts = match account_count {
                Some(n) => format!(" AND account IN ({})", (0..n).map(|_| mark()).collect::<Vec<_>>().join(", ")),
                None => String::new(),
            };
            format!(
                "SELECT * FROM (SELECT number, run_after FROM jobs
                   WHERE status IN ('notStarted', 'resumed') AND kind {op} {kind}{accounts} AND run_after <= ?4
                   ORDER BY run_after, number LIMIT ?5)"
            )
        })
        .collect();
    // `UNION`, not `UNION ALL`: two globs left as globs may both match a job, which
    // would then take two of the limit's places.
    format!("SELECT number FROM ({}) ORDER BY run_after, number LIMIT ?5", per_kind.join(" UNION "))
}

/// Most kinds a claim walks one by one; past it, its globs stay globs (a claim may name
/// 50 patterns, and SQLite allows 500 parts to one compound statement).
const MAX_WALKED_KINDS: usize = 64;

/// `WITH RECURSIVE waiting_kinds(kind)`: the kinds that have waiting jobs, in order,
/// each found by one `jobs_waiting` descent (a skip over the index, where `SELECT
/// DISTINCT` would read every waiting job), then a last row of `NULL`. A macro, so
/// the statements that use it are constants.
macro_rules! waiting_kinds_cte {
    () => {
        "WITH RECURSIVE waiting_kinds(kind) AS (
             SELECT (SELECT kind FROM jobs WHERE status IN ('notStarted', 'resumed') ORDER BY kind LIMIT 1)
             UNION ALL
             SELECT (SELECT kind FROM jobs WHERE status IN ('notStarted', 'resumed') AND kind > w.kind
                     ORDER BY kind LIMIT 1)
             FROM waiting_kinds w WHERE w.kind IS NOT NULL
         )"
    };
}
pub(super) use waiting_kinds_cte;

/// What a claim for `patterns` walks: its exact kinds, and in place of its globs the
/// kinds with waiting jobs that match one (unless that makes more than
/// [`MAX_WALKED_KINDS`]). A glob walked as a range of the index had its matches sorted
/// whole on every claim: a backlog of 100,000 jobs of one kind under `server.*` cost
/// each claim of that worker a sort of all of them. A request of exact kinds only (an
/// in-process runner's) is walked as it is.
fn claim_kinds<'a>(c: &Connection, patterns: &'a [String]) -> rusqlite::Result<Cow<'a, [String]>> {
    if !patterns.iter().any(|pattern| is_glob(pattern)) {
        return Ok(Cow::Borrowed(patterns));
    }
    let (globs, exact): (Vec<String>, Vec<String>) = patterns.iter().cloned().partition(|p| is_glob(p));
    let mut kinds: Vec<String> = Vec::with_capacity(patterns.len());
    add_new(&mut kinds, &exact);
    let mut args = Vec::with_capacity(globs.len());
    let sql = format!(
        concat!(waiting_kinds_cte!(), " SELECT kind FROM waiting_kinds WHERE kind IS NOT NULL AND {}"),
        kind_clause(&globs, &mut args)
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let waiting = stmt.query_map(params_from_iter(args), |r| r.get::<_, String>(0))?;
    let waiting = waiting.collect::<rusqlite::Result<Vec<String>>>()?;
    add_new(&mut kinds, &waiting);
    if kinds.len() > MAX_WALKED_KINDS {
        kinds.retain(|kind| !waiting.contains(kind));
        add_new(&mut kinds, &globs);
    }
    Ok(Cow::Owned(kinds))
}

/// Appends each of `more` that `kinds` does not hold yet.
fn add_new<'a>(kinds: &mut Vec<String>, more: impl IntoIterator<Item = &'a String>) {
    for kind in more {
        if !kinds.contains(kind) {
            kinds.push(kind.clone());
        }
    }
}

/// `(kind GLOB ? OR kind GLOB ? ...)`; exact kinds are globs without wildcards.
fn kind_clause(kinds: &[String], args: &mut Vec<Value>) -> String {
    if kinds.is_empty() {
        return "0".into();
    }
    let parts: Vec<&str> = kinds
        .iter()
        .map(|k| {
            args.push(Value::Text(k.clone()));
            "kind GLOB ?"
        })
        .collect();
    format!("({})", parts.join(" OR "))
}

fn in_clause(column: &str, values: impl IntoIterator<Item = String>, args: &mut Vec<Value>) -> String {
    let marks: Vec<&str> = values
        .into_iter()
        .map(|v| {
            args.push(Value::Text(v));
            "?"
        })
        .collect();
    if marks.is_empty() {
        "0".into()
    } else {
        format!("{column} IN ({})", marks.join(", "))
    }
}

/// Why a fenced write matched no row: the job exists (the lease is gone) or not.
pub(super) fn lease_lost_or_missing(conn: &Connection, number: i64) -> StoreError {
    let exists = conn
        .prepare_cached("SELECT EXISTS(SELECT 1 FROM jobs WHERE number = ?1)")
        .and_then(|mut stmt| stmt.query_row([number], |r| r.get::<_, bool>(0)));
    match exists {
        Ok(true) => StoreError::LeaseLost(number),
        Ok(false) => StoreError::NotFound(format!("job {number}")),
        Err(err) => err.into(),
    }
}

/// What the rules need to know of the attempt `lease_token` holds on a running job.
pub(super) struct RunningAttempt {
    pub(super) attempt: i64,
    pub(super) max_attempts: i64,
    /// Set when a cancel was requested.
    pub(super) cancel_reason: Option<String>,
    pub(super) error: Option<String>,
}

/// Reads the running attempt `lease_token` holds on job `number`, fenced as the
/// write that records what became of it; refused once the lease is lost.
pub(super) fn running_attempt(
    c: &Connection,
    number: i64,
    lease_token: &str,
    now: i64,
) -> Result<RunningAttempt, StoreError> {
    c.prepare_cached(
        "SELECT attempt, max_attempts, CASE WHEN cancel_requested THEN cancel_reason END, error FROM jobs
         WHERE number = ?1 AND lease_token = ?2 AND status = 'executing' AND lease_until >= ?3",
    )?
    .query_row(params![number, lease_token, now], |r| {
        Ok(RunningAttempt {
            attempt: r.get(0)?,
            max_attempts: r.get(1)?,
            cancel_reason: r.get(2)?,
            error: r.get(3)?,
        })
    })
    .optional()?
    .ok_or_else(|| lease_lost_or_missing(c, number))
}

/// Records an attempt's outcome, fenced by its lease token, and its history entry
/// after the job's derived ones. `uncounted`: the attempt never ran (a release), so
/// it is taken off the job's count, and a job that never started loses its start.
pub(super) fn record_finished(
    c: &Connection,
    number: i64,
    lease_token: &str,
    finished: &rules::Finished,
    uncounted: bool,
    now: i64,
) -> Result<RawJob, StoreError> {
    history::write_out(c, number)?;
    let status = finished.status;
    let finished_at = status.is_terminal().then_some(now);
    let percent_sql = if status == JobStatus::Succeeded { "100" } else { "percent" };
    // The right-hand sides all read the row as it was: with `?10`, `attempt = 1` is
    // the attempt being handed back, so the job never started at all.
    let job = c
        .prepare_cached(&format!(
            "UPDATE jobs SET status = ?2, result = ?3, error = ?4, run_after = ?5, step_desc = ?6,
                    status_at = ?7, finished_at = ?8, percent = {percent_sql},
                    attempt = attempt - ?10,
                    started_at = CASE WHEN ?10 = 1 AND attempt = 1 THEN NULL ELSE started_at END,
                    lease_owner = NULL, lease_token = NULL, lease_until = NULL
             WHERE number = ?1 AND lease_token = ?9 AND status = 'executing' AND lease_until >= ?7
             RETURNING {JOB_COLUMNS}"
        ))?
        .query_row(
            params![
                number,
                status.as_str(),
                finished.result,
                finished.error,
                finished.run_after,
                finished.description,
                now,
                finished_at,
                lease_token,
                i64::from(uncounted),
            ],
            RawJob::read,
        )
        .optional()?;
    let Some(job) = job else {
        return Err(lease_lost_or_missing(c, number));
    };
    // The entry names the attempt that ended, counted or not.
    let attempt = job.attempt() + u32::from(uncounted);
    history::record(c, number, now, status, attempt, &finished.message)?;
    Ok(job)
}

/// Claims up to `request.limit` waiting jobs at `now`, in the caller's transaction.
pub(super) fn claim_rows(
    c: &Connection,
    request: &ClaimRequest,
    now: i64,
) -> Result<Vec<RawClaim>, StoreError> {
    let kinds = claim_kinds(c, &request.kinds)?;
    if kinds.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = vec![
        Value::Text(request.owner.clone()),
        Value::Integer(now),
        Value::Integer(request.lease_ms),
        Value::Integer(now),
        Value::Integer(request.limit.clamp(1, 1000) as i64),
    ];
    let account_count = request.accounts.as_ref().map(Vec::len);
    let waiting = waiting_by_kind(&kinds, account_count);
    for kind in kinds.iter() {
        args.push(Value::Text(kind.clone()));
        if let Some(accounts) = &request.accounts {
            args.extend(accounts.iter().map(|a| Value::Text(a.as_str().to_string())));
        }
    }
    let sql = format!(
        "UPDATE jobs SET {} WHERE number IN ({waiting}) RETURNING {JOB_COLUMNS}, lease_token, lease_until",
        start_attempt()
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), RawClaim::read)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

impl SqliteStore {
    pub(crate) async fn submit(
        &self,
        jobs: Vec<NewJob>,
        dispatch: Option<Arc<OfferUse>>,
    ) -> Result<Vec<SubmitOutcome>, StoreError> {
        let deliver_to = dispatch.clone();
        let (outcomes, _) = self
            .write_then(
                move |c| {
                    let now = now_ms();
                    let offer = dispatch.as_deref();
                    let mut outcomes = Vec::with_capacity(jobs.len());
                    let mut claims = Vec::new();
                    for job in jobs {
                        let (outcome, claim) = submit_one(c, job, now, offer)?;
                        outcomes.push(outcome);
                        claims.extend(claim);
                    }
                    Ok((outcomes, claims))
                },
                move |(_, claims)| {
                    if let Some(dispatch) = deliver_to {
                        dispatch.deliver(std::mem::take(claims));
                    }
                },
            )
            .await?;
        Ok(outcomes)
    }

    pub(crate) fn job(&self, number: i64) -> Result<Option<Job>, StoreError> {
        self.read(|c| {
            c.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE number = ?1"))?
                .query_row([number], rows::job)
                .optional()
        })
    }

    pub(crate) fn job_status(&self, number: i64) -> Result<Option<JobStatusRow>, StoreError> {
        if let Some(row) = self.statuses.get(number) {
            return Ok(Some(row));
        }
        let start = self.statuses.begin_read();
        let row = self.read(|c| {
            c.prepare_cached("SELECT number, account, location, status FROM jobs WHERE number = ?1")?
                .query_row([number], |r| {
                    Ok(JobStatusRow {
                        number: r.get(0)?,
                        account: alias_at(r, 1)?,
                        location: location_at(r, 2)?,
                        status: status_at(r, 3)?,
                    })
                })
                .optional()
        })?;
        if let Some(row) = &row {
            self.statuses.store(start, row.clone());
        }
        Ok(row)
    }

    pub(crate) fn job_events(&self, number: i64) -> Result<Vec<JobEvent>, StoreError> {
        self.read(|c| history::read(c, number))
    }

    pub(crate) fn list_jobs(&self, filter: JobFilter) -> Result<Vec<Job>, StoreError> {
        let mut args = Vec::new();
        let mut clauses =
            vec![in_clause("account", filter.accounts.iter().map(|a| a.as_str().to_string()), &mut args)];
        if !filter.statuses.is_empty() {
            clauses.push(in_clause(
                "status",
                filter.statuses.iter().map(|s| s.as_str().to_string()),
                &mut args,
            ));
        }
        if let Some(kind) = &filter.kind {
            clauses.push(kind_clause(std::slice::from_ref(kind), &mut args));
        }
        if let Some(before) = filter.before {
            clauses.push("number < ?".into());
            args.push(Value::Integer(before));
        }
        args.push(Value::Integer(filter.limit.clamp(1, 1000) as i64));
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE {} ORDER BY number DESC LIMIT ?",
            clauses.join(" AND ")
        );
        self.read(|c| {
            let mut stmt = c.prepare(&sql)?;
            let jobs = stmt.query_map(params_from_iter(args), rows::job)?;
            jobs.collect()
        })
    }

    pub(crate) async fn claim(&self, request: ClaimRequest) -> Result<Vec<Claim>, StoreError> {
        if request.kinds.is_empty() {
            return Ok(Vec::new());
        }
        let claims = self.write(move |c| claim_rows(c, &request, now_ms())).await?;
        Ok(claims.into_iter().map(RawClaim::decode).collect::<rusqlite::Result<_>>()?)
    }

    pub(crate) async fn heartbeat(
        &self,
        number: i64,
        lease_token: String,
        progress: Option<Progress>,
        lease_ms: i64,
    ) -> Result<HeartbeatAck, StoreError> {
        self.write(move |c| {
            let now = now_ms();
            let row = match &progress {
                Some(p) => c
                    .prepare_cached(
                        "UPDATE jobs SET percent = ?5, step_number = ?6, step_desc = ?7, status_at = ?4,
                                lease_until = ?4 + COALESCE((SELECT k.lease_ms FROM kinds k WHERE k.kind = jobs.kind), ?3)
                         WHERE number = ?1 AND lease_token = ?2 AND status = 'executing' AND lease_until >= ?4
                         RETURNING cancel_requested, lease_until",
                    )?
                    .query_row(
                        params![
                            number,
                            lease_token,
                            lease_ms,
                            now,
                            p.percent,
                            p.step_number,
                            p.description
                        ],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?,
                None => c
                    .prepare_cached(
                        "UPDATE jobs
                         SET lease_until = ?4 + COALESCE((SELECT k.lease_ms FROM kinds k WHERE k.kind = jobs.kind), ?3)
                         WHERE number = ?1 AND lease_token = ?2 AND status = 'executing' AND lease_until >= ?4
                         RETURNING cancel_requested, lease_until",
                    )?
                    .query_row(params![number, lease_token, lease_ms, now], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()?,
            };
            match row {
                Some((cancel_requested, lease_until)) => Ok(HeartbeatAck { cancel_requested, lease_until }),
                None => Err(lease_lost_or_missing(c, number)),
            }
        })
        .await
    }

    pub(crate) async fn finish(
        &self,
        number: i64,
        lease_token: String,
        outcome: JobOutcome,
    ) -> Result<Job, StoreError> {
        self.record_outcome(number, lease_token, outcome, true, None)
            .await?
            .0
            .ok_or_else(|| StoreError::Database("a recorded outcome came back without its row".into()))
    }

    /// [`Self::finish`] for callers that need only the job's new status: a success
    /// is then recorded without copying its row out of the writer thread, and claims
    /// the job for `next` in the success's batch (see `finisher`).
    pub(crate) async fn finish_status(
        &self,
        number: i64,
        lease_token: String,
        outcome: JobOutcome,
        next: Option<Arc<ClaimRequest>>,
    ) -> Result<(JobStatus, NextJob), StoreError> {
        let (job, claim) = self.record_outcome(number, lease_token, outcome, false, next).await?;
        Ok((job.map_or(JobStatus::Succeeded, |job| job.status), claim))
    }

    /// Records an outcome and answers with the job as recorded, or with nothing for a
    /// success when `full` is false, and with the job claimed for `next` by a success.
    async fn record_outcome(
        &self,
        number: i64,
        lease_token: String,
        outcome: JobOutcome,
        full: bool,
        next: Option<Arc<ClaimRequest>>,
    ) -> Result<(Option<Job>, NextJob), StoreError> {
        // A success ends the job whatever its attempt count or a cancel request, so it
        // needs nothing read first and is recorded with the other successes waiting
        // for the writer, in one statement (see `finisher`).
        if let JobOutcome::Succeeded(_) = outcome {
            let finished = rules::finish(outcome, 0, 0, None, now_ms())?;
            return self.finish_success(number, lease_token, finished, full, next).await;
        }
        let job = self
            .write(move |c| {
                let now = now_ms();
                let running = running_attempt(c, number, &lease_token, now)?;
                let finished = rules::finish(
                    outcome,
                    running.attempt,
                    running.max_attempts,
                    running.cancel_reason.as_deref(),
                    now,
                )?;
                record_finished(c, number, &lease_token, &finished, false, now)
            })
            .await?;
        Ok((Some(job.decode()?), NextJob::NotClaimed))
    }

    pub(crate) async fn rescue(&self, owner_prefix: Option<String>) -> Result<Vec<Rescued>, StoreError> {
        self.write(move |c| {
            let now = now_ms();
            let candidates: Vec<(i64, bool, i64, i64, Option<String>)> = {
                let mut stmt = c.prepare_cached(
                    "SELECT number, safe_to_repeat, attempt, max_attempts,
                            CASE WHEN cancel_requested THEN COALESCE(cancel_reason, 'no reason given') END
                     FROM jobs
                     WHERE status = 'executing'
                       AND (lease_until < ?1 OR (?2 IS NOT NULL AND substr(lease_owner, 1, length(?2)) = ?2))",
                )?;
                let rows = stmt.query_map(params![now, owner_prefix], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let mut rescued = Vec::with_capacity(candidates.len());
            for (number, safe_to_repeat, attempt, max_attempts, cancelled) in candidates {
                let (status, description, error) = rules::rescue(safe_to_repeat, attempt, max_attempts, cancelled);
                let finished_at = status.is_terminal().then_some(now);
                history::write_out(c, number)?;
                c.prepare_cached(
                    "UPDATE jobs SET status = ?2, step_desc = ?3, error = COALESCE(?4, error), status_at = ?5,
                            run_after = ?5, finished_at = ?6,
                            lease_owner = NULL, lease_token = NULL, lease_until = NULL
                     WHERE number = ?1",
                )?
                .execute(params![number, status.as_str(), description, error, now, finished_at])?;
                history::record(
                    c,
                    number,
                    now,
                    status,
                    attempt as u32,
                    &format!("attempt {attempt} lost its lease (worker lost or node restarted)"),
                )?;
                rescued.push(Rescued { number, status });
            }
            Ok(rescued)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::insert_test_job;
    use super::*;

    /// A glob stands for the kinds with waiting jobs that match it, and the claim then
    /// reads each kind in claim order (`kind = ?`): a glob read as a range of the index
    /// had all of its waiting jobs sorted on every claim. Past [`MAX_WALKED_KINDS`]
    /// kinds it stays a glob.
    #[tokio::test]
    async fn a_glob_claim_reads_the_kinds_it_stands_for_one_by_one() {
        let dir = tempfile::TempDir::new().expect("temporary directory");
        let store = SqliteStore::open(dir.path()).expect("open");
        store
            .write(|c| {
                for (kind, status) in [
                    ("server.reboot", "notStarted"),
                    ("server.powerOn", "resumed"),
                    ("server.pause", "succeeded"),
                    ("serverx.powerOn", "notStarted"),
                    ("backup.run", "notStarted"),
                ] {
                    insert_test_job(c, kind, status, 10, None)?;
                }
                for i in 0..MAX_WALKED_KINDS {
                    insert_test_job(c, &format!("many.k{i}"), "notStarted", 10, None)?;
                }
                Ok(())
            })
            .await
            .expect("load jobs");
        let kinds_for = |patterns: &[&str]| {
            let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
            store.read(|c| claim_kinds(c, &patterns).map(Cow::into_owned)).expect("claim kinds")
        };

        // Exact kinds first, then the waiting kinds a glob matches, in kind order, each
        // once; a kind with no waiting job is not read.
        assert_eq!(
            kinds_for(&["backup.run", "server.*", "server.reboot", "absent.kind"]),
            ["backup.run", "server.reboot", "absent.kind", "server.powerOn"]
        );
        assert!(kinds_for(&["nothing.*", "server.pause?"]).is_empty());
        // Exact kinds only: walked as given, with nothing read to resolve them.
        let exact = vec!["backup.run".to_string(), "absent.kind".to_string()];
        let as_given = store.read(|c| claim_kinds(c, &exact).map(|kinds| matches!(kinds, Cow::Borrowed(_))));
        assert!(as_given.expect("claim kinds"), "exact kinds are walked as given");
        let server_kinds = kinds_for(&["server.*"]);
        let plan: Vec<String> = store
            .read(|c| {
                let mut stmt =
                    c.prepare(&format!("EXPLAIN QUERY PLAN {}", waiting_by_kind(&server_kinds, None)))?;
                let unbound = vec![Value::Null; stmt.parameter_count()];
                let rows = stmt.query_map(params_from_iter(unbound), |r| r.get::<_, String>(3))?;
                rows.collect()
            })
            .expect("explain");
        let reads: Vec<&String> = plan.iter().filter(|step| step.contains(" jobs ")).collect();
        assert_eq!(reads.len(), server_kinds.len(), "one read per kind; the whole plan: {plan:?}");
        for read in reads {
            assert!(
                read.ends_with("INDEX jobs_waiting (kind=? AND run_after<?)"),
                "the whole plan: {plan:?}"
            );
        }

        // One kind more than a claim reads one by one: the glob stays a glob, and the
        // exact kinds stay.
        let many = kinds_for(&["many.*", "backup.run", "many.k1"]);
        assert_eq!(many, ["backup.run", "many.*"]);
        assert_eq!(kinds_for(&["many.k1?"]).len(), 10);
    }
}
