use opsq_domain::{AccountAlias, Job, JobStatus, Location, Millis, Progress, Roles};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    pub alias: AccountAlias,
    pub location: Location,
    pub parent: Option<AccountAlias>,
    pub created_at: Millis,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub account: AccountAlias,
    /// An argon2id PHC string; the store never sees a clear password.
    pub password_hash: String,
    pub roles: Roles,
}

#[derive(Debug, Clone)]
pub struct User {
    pub username: String,
    pub account: AccountAlias,
    pub password_hash: String,
    pub roles: Roles,
}

#[derive(Debug, Clone)]
pub struct ApiKey {
    pub key: String,
    pub account: AccountAlias,
    pub password_hash: String,
}

/// What a submission did: made a new job, found the job an earlier submission with the
/// same idempotency key made, or found that key used for a different request.
#[derive(Debug, Clone)]
pub enum SubmitOutcome {
    Created(Job),
    Existing(Job),
    KeyConflict(Job),
}

impl SubmitOutcome {
    pub fn job(&self) -> &Job {
        match self {
            SubmitOutcome::Created(j) | SubmitOutcome::Existing(j) | SubmitOutcome::KeyConflict(j) => j,
        }
    }
}

/// The few columns a status read needs, so the hot path reads one narrow row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatusRow {
    pub number: i64,
    pub account: AccountAlias,
    pub location: Location,
    pub status: JobStatus,
}

/// Which jobs a worker wants: kinds as exact names or globs (`server.*`), a batch size,
/// and how long its lease lasts before the job is taken back.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub kinds: Vec<String>,
    pub limit: u32,
    pub owner: String,
    pub lease_ms: i64,
    /// Restrict to jobs of these accounts; `None` means every account (in-process runner).
    pub accounts: Option<Vec<AccountAlias>>,
}

/// Whether a claim's kind pattern has a wildcard of SQLite's `GLOB` (`*`, `?`,
/// `[...]`); without one it names a single kind. Both stores read the waiting jobs of
/// each named kind in claim order, and find the kinds a glob stands for first.
pub(crate) fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// Whether two requests claim the same jobs for the same owner, whatever their limits
/// (a runner's are one shared request), so one claim can serve both.
pub(crate) fn same_request(a: &ClaimRequest, b: &ClaimRequest) -> bool {
    std::ptr::eq(a, b)
        || (a.owner == b.owner && a.kinds == b.kinds && a.lease_ms == b.lease_ms && a.accounts == b.accounts)
}

/// What a success that asked for its slot's next job got from
/// `Store::finish_status_then_claim`, so the caller knows whether claiming on its own
/// could find anything.
#[derive(Debug, Clone)]
pub enum NextJob<C = Claim> {
    /// Claimed in the success's own transaction.
    Claimed(C),
    /// The claim ran and found no job waiting for the request.
    NoneWaiting,
    /// No claim was made: none was asked for, the outcome was not a recorded success,
    /// the claim failed (SQLite), or the batch claimed for another request
    /// (PostgreSQL, see `Store::finish_status_then_claim`).
    NotClaimed,
}

impl<C> NextJob<C> {
    /// The job claimed, if one was.
    pub fn claimed(self) -> Option<C> {
        match self {
            NextJob::Claimed(claim) => Some(claim),
            NextJob::NoneWaiting | NextJob::NotClaimed => None,
        }
    }

    /// The same answer with the claim converted (decoded), or the conversion's error.
    pub fn try_map<D, E>(self, convert: impl FnOnce(C) -> Result<D, E>) -> Result<NextJob<D>, E> {
        Ok(match self {
            NextJob::Claimed(claim) => NextJob::Claimed(convert(claim)?),
            NextJob::NoneWaiting => NextJob::NoneWaiting,
            NextJob::NotClaimed => NextJob::NotClaimed,
        })
    }
}

/// A claimed job and the lease token that fences every later write of this attempt.
#[derive(Debug, Clone)]
pub struct Claim {
    pub job: Job,
    pub lease_token: String,
    /// When the lease ends unless renewed (the kind's lease, or the requested one).
    pub lease_until: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatAck {
    pub cancel_requested: bool,
    pub lease_until: Millis,
}

/// How an attempt ended, as its worker reports it.
#[derive(Debug, Clone)]
pub enum JobOutcome {
    Succeeded(serde_json::Value),
    /// Failed for good: the job ends `failed`.
    Fatal(String),
    /// Failed, may succeed later: the job is `resumed` and runs again unless attempts
    /// are exhausted, at `run_after` if given, else after the standard backoff for
    /// its attempt number ([`crate::backoff::retry_delay`]).
    Retryable {
        error: String,
        run_after: Option<Millis>,
    },
}

/// A job taken back from a lost attempt, and what it became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rescued {
    pub number: i64,
    pub status: JobStatus,
}

/// How many jobs have not ended, by status: the queue's depth, for an operator's
/// metrics. Finished jobs are not counted: there may be millions, and counting them
/// would make a scrape's cost grow with the retention period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnfinishedCounts {
    pub not_started: u64,
    pub executing: u64,
    pub resumed: u64,
    pub unknown: u64,
    /// When the job that has waited longest to start became due (ms): the earliest
    /// `run_after` of the waiting jobs that are due, `None` when none is. How far
    /// behind the workers are, where the counts say only how much waits.
    pub oldest_due_at: Option<i64>,
}

impl UnfinishedCounts {
    /// Adds a backend's `(status, count)` row; a terminal or unreadable status is
    /// refused as corrupt, since the queries select only unfinished ones.
    pub(crate) fn add(&mut self, status: &str, count: i64) -> Result<(), crate::StoreError> {
        let count = u64::try_from(count)
            .map_err(|_| crate::StoreError::Corrupt(format!("a negative count of {status} jobs")))?;
        let slot = match JobStatus::parse(status) {
            Ok(JobStatus::NotStarted) => &mut self.not_started,
            Ok(JobStatus::Executing) => &mut self.executing,
            Ok(JobStatus::Resumed) => &mut self.resumed,
            Ok(JobStatus::Unknown) => &mut self.unknown,
            _ => {
                return Err(crate::StoreError::Corrupt(format!("{status:?} counted as an unfinished status")))
            }
        };
        *slot += count;
        Ok(())
    }
}

/// Filters for listing jobs; `accounts` bounds what the caller may see.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub accounts: Vec<AccountAlias>,
    pub statuses: Vec<JobStatus>,
    pub kind: Option<String>,
    /// Only jobs numbered below this one (cursor pagination, newest first).
    pub before: Option<i64>,
    pub limit: u32,
}

pub(crate) fn progress_of(percent: i64, step_number: i64, description: String) -> Progress {
    Progress { percent: percent.clamp(0, 100) as u8, step_number: step_number.max(0) as u32, description }
}

/// A v1 API session (the `Tier3.API.Cookie`). Only a hash of the cookie's secret is
/// stored, so a copy of the store does not hand out live sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Session {
    pub token_hash: String,
    pub api_key: String,
    pub account: AccountAlias,
    pub created_at: Millis,
    pub expires_at: Millis,
}

/// Per-kind defaults, set by operators (`opsq admin kind set`). A job's own
/// `maxAttempts`/`safeToRepeat` win over these; the lease is always the kind's when
/// set, so every worker of a kind renews on the same clock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KindSettings {
    pub kind: String,
    pub lease_ms: Option<i64>,
    pub max_attempts: Option<u32>,
    pub safe_to_repeat: Option<bool>,
}

/// What a cancel request did.
#[derive(Debug, Clone)]
pub enum CancelOutcome {
    /// The job was waiting: it is now `failed`.
    Cancelled(Job),
    /// The job is running: its worker is asked to stop (cooperative).
    Requested(Job),
    /// The job is running and an earlier cancel already asked its worker to stop:
    /// nothing changed (the first reason stands).
    AlreadyRequested(Job),
    /// The job had already ended; its real outcome stands.
    AlreadyFinished(Job),
    /// The job's outcome is unknown: it must be resolved, not cancelled.
    NeedsResolution(Job),
}

/// An operator's (or a probe's) verdict on a job whose outcome is `unknown`.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    Succeeded(serde_json::Value),
    Failed(String),
    /// The effect did not happen: run it again.
    Retry,
}
