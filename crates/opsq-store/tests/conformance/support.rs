//! Builders and checks shared by the conformance tests. Nothing here knows which
//! backend is behind the [`Store`].

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

use opsq_domain::{AccountAlias, Job, JobKind, JobStatus, Location, NewJob, Roles};
use opsq_store::{Account, ApiKey, Claim, ClaimRequest, NewUser, Rescued, Store, StoreError, SubmitOutcome};
use serde_json::json;

/// How long a bounded polling loop waits for the store to reach a state.
pub const DEADLINE: Duration = Duration::from_secs(5);
/// A lease long enough never to expire during a test.
pub const LONG_LEASE_MS: i64 = 60_000;

pub fn alias(raw: &str) -> AccountAlias {
    AccountAlias::parse(raw).expect("test alias")
}

pub fn location(raw: &str) -> Location {
    Location::parse(raw).expect("test location")
}

pub fn kind(raw: &str) -> JobKind {
    JobKind::parse(raw).expect("test kind")
}

pub fn account(name: &str, parent: Option<&str>) -> Account {
    Account {
        alias: alias(name),
        location: location("WA1"),
        parent: parent.map(alias),
        created_at: 1_700_000_000_000,
    }
}

pub fn new_user(username: &str, account: &str, roles: &[&str]) -> NewUser {
    NewUser {
        username: username.to_string(),
        account: alias(account),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$salt${username}"),
        roles: Roles::parse_list(roles.iter().copied()).expect("test roles"),
    }
}

pub fn api_key(key: &str, account: &str) -> ApiKey {
    ApiKey {
        key: key.to_string(),
        account: alias(account),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$salt${key}"),
    }
}

/// Creates `ROOT` and each of `children` directly below it, so jobs have real accounts.
pub async fn accounts(store: &Store, children: &[&str]) {
    store.create_account(account("ROOT", None)).await.expect("create ROOT");
    for child in children {
        store
            .create_account(account(child, Some("ROOT")))
            .await
            .unwrap_or_else(|e| panic!("create {child}: {e}"));
    }
}

/// A job of `kind` for `account`: safe to repeat, three attempts, no idempotency key.
pub fn new_job(account: &str, kind_name: &str) -> NewJob {
    NewJob {
        account: alias(account),
        location: location("WA1"),
        kind: kind(kind_name),
        title: format!("{kind_name} for {account}"),
        payload: json!({ "kind": kind_name, "account": account }),
        max_attempts: 3,
        safe_to_repeat: true,
        idempotency_key: None,
        request_hash: None,
        submitter: "tester".to_string(),
    }
}

pub fn with_key(mut job: NewJob, key: &str, hash: &str) -> NewJob {
    job.idempotency_key = Some(key.to_string());
    job.request_hash = Some(hash.to_string());
    job
}

pub fn with_attempts(mut job: NewJob, max_attempts: u32, safe_to_repeat: bool) -> NewJob {
    job.max_attempts = max_attempts;
    job.safe_to_repeat = safe_to_repeat;
    job
}

/// Submits one job and returns it, failing the test unless it was newly created.
pub async fn submit(store: &Store, job: NewJob) -> Job {
    let mut outcomes = store.submit(vec![job]).await.expect("submit");
    assert_eq!(outcomes.len(), 1, "one outcome per submitted job");
    match outcomes.remove(0) {
        SubmitOutcome::Created(job) => job,
        other => panic!("expected a new job, got {other:?}"),
    }
}

pub fn claim_request(kinds: &[&str], owner: &str, limit: u32, lease_ms: i64) -> ClaimRequest {
    ClaimRequest {
        kinds: kinds.iter().map(|k| k.to_string()).collect(),
        limit,
        owner: owner.to_string(),
        lease_ms,
        accounts: None,
    }
}

/// Claims up to `limit` jobs of `kinds` under a long lease.
pub async fn claim(store: &Store, kinds: &[&str], owner: &str, limit: u32) -> Vec<Claim> {
    store.claim(claim_request(kinds, owner, limit, LONG_LEASE_MS)).await.expect("claim")
}

/// Claims exactly `job`, which must be the only waiting job of its kind.
pub async fn claim_job(store: &Store, job: &Job, owner: &str, lease_ms: i64) -> Claim {
    let mut claims =
        store.claim(claim_request(&[job.kind.as_str()], owner, 10, lease_ms)).await.expect("claim");
    assert_eq!(numbers_of_claims(&claims), vec![job.number], "claim of job {}", job.number);
    claims.remove(0)
}

pub fn numbers_of_claims(claims: &[Claim]) -> Vec<i64> {
    let mut numbers: Vec<i64> = claims.iter().map(|c| c.job.number).collect();
    numbers.sort_unstable();
    numbers
}

/// Job numbers in the order given (list results are ordered; keep that order).
pub fn numbers(jobs: &[Job]) -> Vec<i64> {
    jobs.iter().map(|j| j.number).collect()
}

pub fn set(numbers: impl IntoIterator<Item = i64>) -> BTreeSet<i64> {
    numbers.into_iter().collect()
}

pub async fn job(store: &Store, number: i64) -> Job {
    store.job(number).await.expect("read job").unwrap_or_else(|| panic!("job {number} exists"))
}

pub async fn status_of(store: &Store, number: i64) -> JobStatus {
    job(store, number).await.status
}

pub async fn event_statuses(store: &Store, number: i64) -> Vec<JobStatus> {
    store.job_events(number).await.expect("read events").into_iter().map(|e| e.status).collect()
}

/// Asserts `value` lies in `[low, high]`: timestamps the store took during a call
/// that started at `low` and returned at `high`.
pub fn assert_between(what: &str, value: i64, low: i64, high: i64) {
    assert!((low..=high).contains(&value), "{what} = {value} is outside [{low}, {high}]");
}

pub fn assert_lease_lost<T: Debug>(result: Result<T, StoreError>, number: i64) {
    match result {
        Err(StoreError::LeaseLost(n)) if n == number => {}
        other => panic!("expected LeaseLost({number}), got {other:?}"),
    }
}

pub fn assert_not_found<T: Debug>(result: Result<T, StoreError>) {
    match result {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
}

pub fn assert_duplicate<T: Debug>(result: Result<T, StoreError>) {
    match result {
        Err(StoreError::Duplicate(_)) => {}
        other => panic!("expected Duplicate, got {other:?}"),
    }
}

/// Calls `probe` until it returns `Some`, for at most [`DEADLINE`]; the only way the
/// suite waits for time to pass (lease expiry, `run_after`).
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what} after {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Calls `rescue(None)` until every job in `expected` was taken back (their leases
/// must be about to expire), for at most [`DEADLINE`]; returns everything rescued,
/// sorted by job number.
pub async fn rescue_expired(store: &Store, expected: &[i64]) -> Vec<Rescued> {
    let deadline = Instant::now() + DEADLINE;
    let mut rescued: Vec<Rescued> = Vec::new();
    loop {
        rescued.extend(store.rescue(None).await.expect("rescue"));
        if expected.iter().all(|n| rescued.iter().any(|r| r.number == *n)) {
            rescued.sort_by_key(|r| r.number);
            return rescued;
        }
        assert!(
            Instant::now() < deadline,
            "jobs {expected:?} were not rescued within {DEADLINE:?} (rescued so far: {rescued:?})"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub fn sorted(mut rescued: Vec<Rescued>) -> Vec<Rescued> {
    rescued.sort_by_key(|r| r.number);
    rescued
}

pub fn assert_invalid<T: Debug>(result: Result<T, StoreError>) {
    match result {
        Err(StoreError::Invalid(_)) => {}
        other => panic!("expected Invalid, got {other:?}"),
    }
}

/// Makes `new` an `unknown` job the way a lost worker does: it must not be safe to
/// repeat; it is claimed by a previous run (`gone:x`) that rescue then takes back.
pub async fn unknown_job(store: &Store, new: NewJob) -> Job {
    assert!(!new.safe_to_repeat, "only a job unsafe to repeat becomes unknown");
    let created = submit(store, new).await;
    claim_job(store, &created, "gone:x", LONG_LEASE_MS).await;
    let rescued = store.rescue(Some("gone:".into())).await.expect("rescue");
    assert_eq!(rescued, vec![Rescued { number: created.number, status: JobStatus::Unknown }]);
    job(store, created.number).await
}

/// Waits (polling, bounded by [`DEADLINE`]) until the wall clock reads later than
/// `at`, so that what happens next gets a strictly later timestamp.
pub async fn clock_passes(at: i64) {
    eventually("the clock to move on", || async move { (opsq_store::now_ms() > at).then_some(()) }).await;
}

/// Asserts that no job of the kind glob waits in the account: none `notStarted`,
/// none `resumed` (even for later), so nothing will ever be claimed again.
pub async fn assert_nothing_waiting(store: &Store, account: &str, kind: &str) {
    let waiting = store
        .list_jobs(opsq_store::JobFilter {
            accounts: vec![alias(account)],
            statuses: vec![JobStatus::NotStarted, JobStatus::Resumed],
            kind: Some(kind.to_string()),
            before: None,
            limit: 10,
        })
        .await
        .expect("list waiting jobs");
    assert!(waiting.is_empty(), "jobs of {kind} still wait: {:?}", numbers(&waiting));
}
