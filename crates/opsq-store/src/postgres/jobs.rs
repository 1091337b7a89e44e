//! Jobs: submission, reads, claims under a lease, heartbeats, outcomes and rescue.
//!
//! Every write of an attempt is fenced: it names the lease token it got from its
//! claim, and is refused once that token is no longer the job's (expired, rescued,
//! or ended), so a worker that lost its lease can never record an outcome. Where an
//! operation reads a job before it writes it, the read locks the row (`FOR UPDATE`),
//! and PostgreSQL re-checks a locked row's conditions against its newest version, so
//! of two racing calls (two finishes, a finish and a rescue) the second sees what the
//! first did.

use std::sync::Arc;

use deadpool_postgres::GenericClient;
use opsq_domain::{Job, JobEvent, JobStatus, NewJob, Progress};
use tokio_postgres::types::ToSql;

use super::batcher::ask;
use super::claims::{self, Wanted};
use super::finisher::{record as record_finishes, spawn_finisher, FinishRequest};
use super::glob::globs_to_regexes;
use super::history;
use super::rows::{self, job_columns, JOB_COLUMN_COUNT};
use super::signals;
use super::status_reader::{read as read_statuses, spawn_status_reader, StatusRequest};
use super::submitter::{spawn_submitter, submit_batch, SubmitRequest};
use super::{execute, query, query_one, query_opt, PostgresStore};
use crate::dispatch::OfferUse;
use crate::types::*;
use crate::{now_ms, rules, Signal, StoreError};

const LOAD_JOB: &str = concat!("SELECT ", job_columns!(), " FROM jobs WHERE number = $1");

const FIND_BY_KEY: &str = concat!(
    "SELECT ",
    job_columns!(),
    ", request_hash FROM jobs WHERE account = $1 AND idempotency_key = $2"
);

/// Inserts jobs in one statement; numbers follow the order of the arrays, and a job
/// whose `$10` is true takes an offered slot (see [`Dispatch`](crate::Dispatch)): it
/// is inserted already in its first attempt, leased to `$11` for its kind's lease or
/// `$12`, and its row comes back with its lease token (the others' with none). Their
/// history entries so far are derived from the rows (see [`history`]).
/// `$on_conflict` is empty or the idempotency key's conflict clause.
macro_rules! insert_jobs {
    ($on_conflict:literal) => {
        concat!(
            "WITH input AS (
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                      $7::integer[], $8::boolean[], $9::text[], $10::boolean[],
                                      $13::text[], $14::text[])
                     WITH ORDINALITY AS i(account, location, kind, title, payload, max_attempts,
                                          safe_to_repeat, submitter, start, idempotency_key,
                                          request_hash, ord)
             ), created AS (
                 INSERT INTO jobs (account, location, kind, title, payload, status, step_desc, status_at,
                                   created_at, run_after, max_attempts, safe_to_repeat, submitter,
                                   idempotency_key, request_hash, attempt, lease_owner, lease_token,
                                   lease_until, started_at, attempt_started_at, derived_events)
                 SELECT account, location, kind, title, payload,
                        CASE WHEN start THEN 'executing' ELSE 'notStarted' END,
                        CASE WHEN start THEN 'Started' ELSE 'Waiting for a worker' END,
                        $6, $6, $6, max_attempts, safe_to_repeat, submitter, idempotency_key, request_hash,
                        CASE WHEN start THEN 1 ELSE 0 END,
                        CASE WHEN start THEN $11::text END,
                        CASE WHEN start THEN replace(gen_random_uuid()::text, '-', '') END,
                        CASE WHEN start
                             THEN $6 + COALESCE((SELECT k.lease_ms FROM kinds k WHERE k.kind = input.kind), $12)
                        END,
                        CASE WHEN start THEN $6 END,
                        CASE WHEN start THEN $6 END,
                        CASE WHEN start THEN 3 ELSE 1 END
                 FROM input ORDER BY ord ",
            $on_conflict,
            "
                 RETURNING ",
            job_columns!(),
            ", lease_token, lease_until
             )
             SELECT ",
            job_columns!(),
            ", lease_token, lease_until FROM created ORDER BY number"
        )
    };
}

/// Jobs without idempotency keys, any number: one statement, so one round trip, and
/// atomic on its own, so no transaction around it.
const INSERT_JOBS: &str = insert_jobs!("");

/// Jobs one at a time, with or without an idempotency key. With the key already
/// taken it inserts nothing and returns no row: ON CONFLICT waits for the
/// transaction that took the key, so the lookup that follows sees its job.
const INSERT_JOB_UNLESS_KEY_TAKEN: &str =
    insert_jobs!("ON CONFLICT (account, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING");

/// Inserts `jobs` with `sql` ([`INSERT_JOBS`] or [`INSERT_JOB_UNLESS_KEY_TAKEN`]), starting
/// those `offer` has a slot for; returns the jobs inserted, in order, each with its
/// claim if it was started. A keyed job that finds its key taken meanwhile leaves its
/// slot taken, unused, until its owner offers slots again.
async fn insert_jobs(
    c: &impl GenericClient,
    sql: &str,
    jobs: &[NewJob],
    now: i64,
    offer: Option<&OfferUse>,
) -> Result<Vec<(Job, Option<Claim>)>, StoreError> {
    let mut columns: [Vec<String>; 6] = Default::default();
    let mut max_attempts = Vec::with_capacity(jobs.len());
    let mut safe_to_repeat = Vec::with_capacity(jobs.len());
    let mut start = Vec::with_capacity(jobs.len());
    let mut keys = Vec::with_capacity(jobs.len());
    let mut hashes = Vec::with_capacity(jobs.len());
    for job in jobs {
        let payload = serde_json::to_string(&job.payload)
            .map_err(|e| StoreError::Invalid(format!("payload cannot be stored: {e}")))?;
        let [accounts, locations, kinds, titles, payloads, submitters] = &mut columns;
        accounts.push(job.account.as_str().to_string());
        locations.push(job.location.as_str().to_string());
        kinds.push(job.kind.as_str().to_string());
        titles.push(job.title.clone());
        payloads.push(payload);
        submitters.push(job.submitter.clone());
        max_attempts.push(count(job.max_attempts.max(1)));
        safe_to_repeat.push(job.safe_to_repeat);
        start.push(offer.is_some_and(|offer| offer.take_slot(job)));
        keys.push(job.idempotency_key.as_deref());
        hashes.push(job.request_hash.as_deref());
    }
    let owner = offer.map_or("", |offer| offer.owner());
    let lease_ms = offer.map_or(0, |offer| offer.lease_ms());
    let [accounts, locations, kinds, titles, payloads, submitters] = &columns;
    let params: [&(dyn ToSql + Sync); 14] = [
        accounts,
        locations,
        kinds,
        titles,
        payloads,
        &now,
        &max_attempts,
        &safe_to_repeat,
        submitters,
        &start,
        &owner,
        &lease_ms,
        &keys,
        &hashes,
    ];
    let rows = query(c, sql, &params).await?;
    rows.iter()
        .map(|row| {
            let job = rows::job(row)?;
            let claim = match row.try_get::<_, Option<String>>(JOB_COLUMN_COUNT)? {
                Some(lease_token) => Some(Claim {
                    job: job.clone(),
                    lease_token,
                    lease_until: row.try_get(JOB_COLUMN_COUNT + 1)?,
                }),
                None => None,
            };
            Ok((job, claim))
        })
        .collect()
}

/// Accepts jobs without idempotency keys; the claims are those of the jobs `offer`
/// started.
async fn submit_unkeyed(
    c: &impl GenericClient,
    jobs: Vec<NewJob>,
    now: i64,
    offer: Option<&OfferUse>,
) -> Result<(Vec<SubmitOutcome>, Vec<Claim>), StoreError> {
    let inserted = insert_jobs(c, INSERT_JOBS, &jobs, now, offer).await?;
    if inserted.len() != jobs.len() {
        return Err(StoreError::Database(format!("{} of {} jobs were inserted", inserted.len(), jobs.len())));
    }
    let (created, claims): (Vec<Job>, Vec<Option<Claim>>) = inserted.into_iter().unzip();
    Ok((created.into_iter().map(SubmitOutcome::Created).collect(), claims.into_iter().flatten().collect()))
}

const HEARTBEAT: &str = "UPDATE jobs
     SET lease_until = $4 + COALESCE((SELECT k.lease_ms FROM kinds k WHERE k.kind = jobs.kind), $3)
     WHERE number = $1 AND lease_token = $2 AND status = 'executing' AND lease_until >= $4
     RETURNING cancel_requested, lease_until";

const HEARTBEAT_WITH_PROGRESS: &str = "UPDATE jobs
     SET percent = $5, step_number = $6, step_desc = $7, status_at = $4,
         lease_until = $4 + COALESCE((SELECT k.lease_ms FROM kinds k WHERE k.kind = jobs.kind), $3)
     WHERE number = $1 AND lease_token = $2 AND status = 'executing' AND lease_until >= $4
     RETURNING cancel_requested, lease_until";

pub(crate) async fn record_event(
    c: &impl GenericClient,
    job: i64,
    at: i64,
    status: JobStatus,
    attempt: u32,
    message: &str,
) -> Result<(), StoreError> {
    execute(
        c,
        "INSERT INTO job_events (job, at, status, attempt, message) VALUES ($1, $2, $3, $4, $5)",
        &[&job, &at, &status.as_str(), &count(attempt), &message],
    )
    .await?;
    Ok(())
}

/// A count as the `INTEGER` columns store it.
pub(crate) fn count(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

pub(crate) async fn load_job(c: &impl GenericClient, number: i64) -> Result<Option<Job>, StoreError> {
    query_opt(c, LOAD_JOB, &[&number]).await?.map(|r| rows::job(&r)).transpose()
}

async fn find_by_key(
    c: &impl GenericClient,
    job: &NewJob,
    key: &str,
) -> Result<Option<SubmitOutcome>, StoreError> {
    let Some(row) = query_opt(c, FIND_BY_KEY, &[&job.account.as_str(), &key]).await? else {
        return Ok(None);
    };
    let existing = rows::job(&row)?;
    let hash: Option<String> = row.try_get(JOB_COLUMN_COUNT)?;
    Ok(Some(if hash == job.request_hash {
        SubmitOutcome::Existing(existing)
    } else {
        SubmitOutcome::KeyConflict(existing)
    }))
}

/// Accepts one job in the caller's transaction, starting it if `offer` has a slot
/// for it; a key seen before answers the job that has it.
async fn submit_one(
    c: &impl GenericClient,
    job: NewJob,
    now: i64,
    offer: Option<&OfferUse>,
) -> Result<(SubmitOutcome, Option<Claim>), StoreError> {
    if let Some(key) = &job.idempotency_key {
        if let Some(outcome) = find_by_key(c, &job, key).await? {
            return Ok((outcome, None));
        }
    }
    // A key taken by a concurrent submission makes the insert a no-op; the job that
    // took it is then found. Should that job be pruned in between, insert again.
    for _ in 0..3 {
        let inserted =
            insert_jobs(c, INSERT_JOB_UNLESS_KEY_TAKEN, std::slice::from_ref(&job), now, offer).await?;
        if let Some((created, claim)) = inserted.into_iter().next() {
            return Ok((SubmitOutcome::Created(created), claim));
        }
        let Some(key) = &job.idempotency_key else {
            return Err(StoreError::Database("a job without an idempotency key was not inserted".into()));
        };
        if let Some(outcome) = find_by_key(c, &job, key).await? {
            return Ok((outcome, None));
        }
    }
    Err(StoreError::Unavailable("the idempotency key kept changing hands; try again".into()))
}

/// Accepts jobs, starting those a `dispatch` offer takes, and hands their claims
/// over after the commit: without idempotency keys in one statement, else in one
/// transaction (a key's lookup comes before its insert).
pub(crate) async fn submit_in(
    pool: &deadpool_postgres::Pool,
    jobs: Vec<NewJob>,
    dispatch: Option<Arc<OfferUse>>,
) -> Result<Vec<SubmitOutcome>, StoreError> {
    let mut client = pool.get().await?;
    let now = now_ms();
    let (outcomes, claims) = if jobs.iter().all(|job| job.idempotency_key.is_none()) {
        submit_unkeyed(&client, jobs, now, dispatch.as_deref()).await?
    } else {
        let tx = client.transaction().await?;
        let mut outcomes = Vec::with_capacity(jobs.len());
        let mut claims = Vec::new();
        for job in jobs {
            let (outcome, claim) = submit_one(&tx, job, now, dispatch.as_deref()).await?;
            outcomes.push(outcome);
            claims.extend(claim);
        }
        tx.commit().await?;
        (outcomes, claims)
    };
    if let Some(dispatch) = &dispatch {
        dispatch.deliver(claims);
    }
    Ok(outcomes)
}

pub(crate) async fn lease_lost_or_missing(c: &impl GenericClient, number: i64) -> StoreError {
    match query_one(c, "SELECT EXISTS(SELECT 1 FROM jobs WHERE number = $1)", &[&number]).await {
        Ok(row) => match row.try_get::<_, bool>(0) {
            Ok(true) => StoreError::LeaseLost(number),
            Ok(false) => StoreError::NotFound(format!("job {number}")),
            Err(err) => err.into(),
        },
        Err(err) => err,
    }
}

/// The start of the rescue's candidate query: running jobs, with what the rescue
/// decides by; the caller adds which leases are lost.
macro_rules! rescue_candidates {
    () => {
        "SELECT number, safe_to_repeat, attempt, max_attempts,
                CASE WHEN cancel_requested THEN COALESCE(cancel_reason, 'no reason given') END
         FROM jobs
         WHERE status = 'executing' AND "
    };
}

impl PostgresStore {
    /// Submissions without idempotency keys go through the submitter
    /// ([`super::submitter`]), which commits many in one transaction. Claims that a
    /// `dispatch` offer made in the transaction are handed over after the commit by
    /// a task of their own (the submitter's, or one spawned here), so that a caller
    /// who stops waiting cannot leave them leased to nobody.
    pub(crate) async fn submit(
        &self,
        jobs: Vec<NewJob>,
        dispatch: Option<Arc<OfferUse>>,
    ) -> Result<Vec<SubmitOutcome>, StoreError> {
        let outcomes = if jobs.iter().any(|job| job.idempotency_key.is_some()) {
            match dispatch {
                Some(dispatch) => {
                    let pool = self.pool.clone();
                    let submitting =
                        tokio::spawn(async move { submit_in(&pool, jobs, Some(dispatch)).await });
                    submitting.await.map_err(|_| StoreError::Closed)??
                }
                None => submit_in(&self.pool, jobs, None).await?,
            }
        } else {
            let submitter = self.submitter.get_or_init(|| spawn_submitter(self.pool.clone()));
            let request = |reply| SubmitRequest { jobs, dispatch, reply };
            ask(submitter, request, |batch| submit_batch(self.pool.clone(), batch)).await?
        };
        let created = outcomes.iter().filter(|o| matches!(o, SubmitOutcome::Created(_))).count();
        self.note_inserted(created);
        let waiting = outcomes
            .iter()
            .any(|o| matches!(o, SubmitOutcome::Created(job) if job.status == JobStatus::NotStarted));
        if waiting {
            self.announce_ready();
        }
        Ok(outcomes)
    }

    pub(crate) async fn job(&self, number: i64) -> Result<Option<Job>, StoreError> {
        let client = self.client().await?;
        load_job(&client, number).await
    }

    /// Queued for the status reader ([`super::status_reader`]), which answers many
    /// reads with one statement.
    pub(crate) async fn job_status(&self, number: i64) -> Result<Option<JobStatusRow>, StoreError> {
        let reader = self.status_reader.get_or_init(|| spawn_status_reader(self.pool.clone()));
        ask(reader, |reply| StatusRequest { number, reply }, |batch| read_statuses(self.pool.clone(), batch))
            .await
    }

    pub(crate) async fn job_events(&self, number: i64) -> Result<Vec<JobEvent>, StoreError> {
        let client = self.client().await?;
        history::read(&client, number).await
    }

    pub(crate) async fn list_jobs(&self, filter: JobFilter) -> Result<Vec<Job>, StoreError> {
        let accounts: Vec<String> = filter.accounts.iter().map(|a| a.as_str().to_string()).collect();
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(accounts)];
        let mut clauses = vec!["account = ANY($1::text[])".to_string()];
        if !filter.statuses.is_empty() {
            let statuses: Vec<&'static str> = filter.statuses.iter().map(|s| s.as_str()).collect();
            params.push(Box::new(statuses));
            clauses.push(format!("status = ANY(${}::text[])", params.len()));
        }
        if let Some(kind) = &filter.kind {
            params.push(Box::new(globs_to_regexes(std::slice::from_ref(kind))));
            clauses.push(format!("kind ~ ANY(${}::text[])", params.len()));
        }
        if let Some(before) = filter.before {
            params.push(Box::new(before));
            clauses.push(format!("number < ${}", params.len()));
        }
        params.push(Box::new(i64::from(filter.limit.clamp(1, 1000))));
        // The few shapes this takes (which filters are present) each get a cached
        // statement.
        let sql = format!(
            "SELECT {} FROM jobs WHERE {} ORDER BY number DESC LIMIT ${}",
            job_columns!(),
            clauses.join(" AND "),
            params.len()
        );
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as _).collect();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Planned for the actual values (connections default to generic plans, see
        // `PostgresStore::open`): how many rows an account, a status set or a kind
        // pattern selects decides between walking the jobs backwards and reading an
        // account's jobs, and a generic plan cannot know it.
        tx.batch_execute("SET LOCAL plan_cache_mode = force_custom_plan").await?;
        let rows = query(&tx, &sql, &refs).await?;
        tx.commit().await?;
        rows.iter().map(rows::job).collect()
    }

    pub(crate) async fn claim(&self, request: ClaimRequest) -> Result<Vec<Claim>, StoreError> {
        // No kinds or no accounts: nothing can match, so spare the round trip.
        let Some(wanted) = Wanted::of(&request) else { return Ok(Vec::new()) };
        let client = self.client().await?;
        claims::claim(&client, &wanted, request.limit, now_ms()).await
    }

    pub(crate) async fn heartbeat(
        &self,
        number: i64,
        lease_token: String,
        progress: Option<Progress>,
        lease_ms: i64,
    ) -> Result<HeartbeatAck, StoreError> {
        let now = now_ms();
        let client = self.client().await?;
        let row = match &progress {
            Some(p) => {
                let percent = i32::from(p.percent);
                let step_number = count(p.step_number);
                query_opt(
                    &client,
                    HEARTBEAT_WITH_PROGRESS,
                    &[&number, &lease_token, &lease_ms, &now, &percent, &step_number, &p.description],
                )
                .await?
            }
            None => query_opt(&client, HEARTBEAT, &[&number, &lease_token, &lease_ms, &now]).await?,
        };
        match row {
            Some(r) => Ok(HeartbeatAck { cancel_requested: r.try_get(0)?, lease_until: r.try_get(1)? }),
            None => Err(lease_lost_or_missing(&client, number).await),
        }
    }

    pub(crate) async fn finish(
        &self,
        number: i64,
        lease_token: String,
        outcome: JobOutcome,
    ) -> Result<Job, StoreError> {
        Ok(self.finish_then_claim(number, lease_token, outcome, None).await?.0)
    }

    /// Queues the outcome for the batcher ([`super::finisher`]) and waits for its
    /// answer: the job as recorded and, for a success that asked with `next`, the
    /// slot's next job, claimed in the outcome's own statement.
    pub(crate) async fn finish_then_claim(
        &self,
        number: i64,
        lease_token: String,
        outcome: JobOutcome,
        next: Option<Arc<ClaimRequest>>,
    ) -> Result<(Job, NextJob), StoreError> {
        let finisher = self.finisher.get_or_init(|| spawn_finisher(self.pool.clone()));
        let request = |reply| FinishRequest { number, lease_token, outcome, next, reply };
        ask(finisher, request, |batch| record_finishes(self.pool.clone(), batch)).await
    }

    pub(crate) async fn rescue(&self, owner_prefix: Option<String>) -> Result<Vec<Rescued>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let now = now_ms();
        // Locked in job order, so concurrent rescues cannot deadlock; a job another
        // rescue or a finish took meanwhile no longer matches once its lock is free,
        // and is left out.
        // Two statements, not one with `$2 IS NULL OR ...`: a generic plan cannot drop
        // the owner test, and would read every running job at each housekeeping tick
        // instead of the expired ones.
        let candidates = match &owner_prefix {
            None => {
                query(
                    &tx,
                    concat!(rescue_candidates!(), "lease_until < $1", " ORDER BY number FOR UPDATE"),
                    &[&now],
                )
                .await?
            }
            Some(prefix) => {
                let sql = concat!(
                    rescue_candidates!(),
                    "(lease_until < $1 OR starts_with(lease_owner, $2::text))",
                    " ORDER BY number FOR UPDATE"
                );
                query(&tx, sql, &[&now, prefix]).await?
            }
        };
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let mut numbers = Vec::with_capacity(candidates.len());
        let mut statuses = Vec::with_capacity(candidates.len());
        let mut descriptions = Vec::with_capacity(candidates.len());
        let mut errors: Vec<Option<String>> = Vec::with_capacity(candidates.len());
        let mut finished: Vec<Option<i64>> = Vec::with_capacity(candidates.len());
        let mut attempts = Vec::with_capacity(candidates.len());
        let mut messages = Vec::with_capacity(candidates.len());
        let mut rescued = Vec::with_capacity(candidates.len());
        for row in &candidates {
            let number: i64 = row.try_get(0)?;
            let safe_to_repeat: bool = row.try_get(1)?;
            let attempt: i32 = row.try_get(2)?;
            let max_attempts: i32 = row.try_get(3)?;
            let cancelled: Option<String> = row.try_get(4)?;
            let (status, description, error) =
                rules::rescue(safe_to_repeat, i64::from(attempt), i64::from(max_attempts), cancelled);
            numbers.push(number);
            statuses.push(status.as_str());
            descriptions.push(description);
            errors.push(error);
            finished.push(status.is_terminal().then_some(now));
            attempts.push(attempt);
            messages.push(format!("attempt {attempt} lost its lease (worker lost or node restarted)"));
            rescued.push(Rescued { number, status });
        }
        // Three statements for all the jobs, however many: their derived history
        // entries written out, their new state, their rescue's entry.
        history::write_out(&tx, &numbers).await?;
        execute(
            &tx,
            "UPDATE jobs SET status = r.status, step_desc = r.description, error = COALESCE(r.error, jobs.error),
                    status_at = $1, run_after = $1, finished_at = r.finished_at,
                    lease_owner = NULL, lease_token = NULL, lease_until = NULL
             FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[])
                  AS r(number, status, description, error, finished_at)
             WHERE jobs.number = r.number",
            &[&now, &numbers, &statuses, &descriptions, &errors, &finished],
        )
        .await?;
        execute(
            &tx,
            "INSERT INTO job_events (job, at, status, attempt, message)
             SELECT r.job, $1::bigint, r.status, r.attempt, r.message
             FROM unnest($2::bigint[], $3::text[], $4::integer[], $5::text[]) AS r(job, status, attempt, message)",
            &[&now, &numbers, &statuses, &attempts, &messages],
        )
        .await?;
        if rescued.iter().any(|r| r.status == JobStatus::Resumed) {
            signals::notify_on_commit(&tx, Signal::JobsReady).await?;
        }
        tx.commit().await?;
        Ok(rescued)
    }
}
