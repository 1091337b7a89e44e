//! The protocol for workers outside the server (`/v2/workers/...`), for users with
//! the `Worker` role, over jobs of their account subtree: claim with long-poll,
//! heartbeat with progress (whose answer carries cancel requests), complete, fail.
//! Every call after the claim is fenced by the attempt's lease token: once the lease
//! is lost, the answer is 409 and nothing is written.

use std::time::Duration;

use axum::extract::State;
use axum::Json;
use opsq_domain::{AccountAlias, Job, JobKind, Progress};
use opsq_store::{Claim, ClaimRequest, JobOutcome};
use serde::Deserialize;
use serde_json::{json, Value};

use super::claim_wait::{wait_offering, ClaimOffer};
use super::status::find_visible_owner;
use super::ApiPath;
use crate::auth::Caller;
use crate::body::RawBody;
use crate::error::{ApiError, ApiResult};
use crate::render::{iso_date, job_json, object};
use crate::state::AppState;

const MAX_WAIT_SECS: u64 = 30;
const MAX_CLAIM: u32 = 100;
const MAX_PATTERNS: usize = 50;

pub(super) fn require_worker(caller: &Caller) -> ApiResult<()> {
    if caller.roles.can_work() {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "Access denied: user {} lacks the Worker role needed to run jobs",
            caller.username
        )))
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"kinds": ["backup.*", "report.daily"], "limit": 4, "waitSeconds": 25, "workerId": "host-1/pid-42"}))]
pub(super) struct ClaimBody {
    /// 1 to 50 exact kinds or globs (`*`, `?`, `[...]`).
    #[schema(min_items = 1, max_items = 50)]
    kinds: Vec<String>,
    /// How many jobs the worker has room for, 1 to 100 (default 1).
    #[schema(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// Long-poll: wait up to this long for a job (default 0; more than 30 counts as 30).
    pub(super) wait_seconds: Option<u64>,
    /// A name for logs and job history, e.g. the host and process.
    worker_id: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v2/workers/claim",
    tag = "workers",
    operation_id = "claimJobs",
    summary = "Claim jobs of some kinds, waiting for them if asked",
    description = "Each job answered is now `executing` and leased to this worker; its `leaseToken` \
        fences every later call about this attempt. Jobs come from the caller's account subtree.",
    request_body = ClaimBody,
    security(("bearerToken" = [])),
    responses(
        (status = 200, description = "The claimed jobs; an empty list when none came within the wait.",
            body = crate::openapi::schemas::ClaimAnswer),
        (status = 400, description = "An invalid body: kinds, pattern or limit out of range.",
            body = crate::openapi::schemas::ErrorBody),
        (status = 401, response = crate::openapi::responses::Unauthorized),
        (status = 403, response = crate::openapi::responses::NotAWorker),
        (status = 413, response = crate::openapi::responses::PayloadTooLarge),
        (status = 503, response = crate::openapi::responses::Unavailable),
    ),
)]
pub async fn claim(State(state): State<AppState>, caller: Caller, body: RawBody) -> ApiResult<Json<Value>> {
    require_worker(&caller)?;
    let request: ClaimBody = body.json("request")?;
    let wait = Duration::from_secs(request.wait_seconds.unwrap_or(0).min(MAX_WAIT_SECS));
    let claim_request = claim_request(&state, &caller, request).await?;
    let deadline = tokio::time::Instant::now() + wait;
    let mut wakeups = state.wakeup.subscribe();
    let mut offer = ClaimOffer::for_request(&claim_request);
    loop {
        let claims = state.store.claim(claim_request.clone()).await?;
        state.metrics.jobs().attempts_started(claims.len());
        if !claims.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(claimed(&claims));
        }
        let started =
            wait_offering(&state.store, offer.as_mut(), &mut wakeups, state.config.claim_recheck, deadline)
                .await;
        if !started.is_empty() {
            return Ok(claimed(&started));
        }
    }
}

/// Checks a claim's kinds and limit and turns it into the store's request, leased to
/// the caller (and its worker id) over the caller's account subtree. Its wait is the
/// caller's business.
pub(super) async fn claim_request(
    state: &AppState,
    caller: &Caller,
    request: ClaimBody,
) -> ApiResult<ClaimRequest> {
    if request.kinds.is_empty() || request.kinds.len() > MAX_PATTERNS {
        return Err(ApiError::BadRequest(format!("kinds must list 1 to {MAX_PATTERNS} kinds or globs")));
    }
    if let Some(bad) = request.kinds.iter().find(|k| !JobKind::is_valid_pattern(k)) {
        let shown: String = bad.chars().take(40).collect();
        return Err(ApiError::BadRequest(format!("kind pattern {shown:?} is invalid")));
    }
    let limit = request.limit.unwrap_or(1);
    if !(1..=MAX_CLAIM).contains(&limit) {
        return Err(ApiError::BadRequest(format!("limit must be from 1 to {MAX_CLAIM}")));
    }
    let worker_id: String =
        request.worker_id.unwrap_or_default().chars().filter(|c| !c.is_control()).take(100).collect();
    let owner = if worker_id.is_empty() {
        format!("worker:{}", caller.username)
    } else {
        format!("worker:{}/{worker_id}", caller.username)
    };
    let accounts = state.subtree(&caller.account).await?;
    Ok(ClaimRequest {
        kinds: request.kinds,
        limit,
        owner,
        lease_ms: state.config.default_lease_ms,
        accounts: Some(accounts),
    })
}

pub(super) fn claimed_json(claims: &[Claim]) -> Vec<Value> {
    claims
        .iter()
        .map(|claim| {
            let mut job = job_json(&claim.job.account, &claim.job, None);
            job["leaseToken"] = json!(claim.lease_token);
            job["leaseExpires"] = json!(iso_date(claim.lease_until));
            job["leaseSeconds"] = json!(lease_seconds(claim.lease_until));
            job
        })
        .collect()
}

fn claimed(claims: &[Claim]) -> Json<Value> {
    Json(object([("jobs", Value::Array(claimed_json(claims)))]))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProgressBody {
    #[schema(minimum = 0, maximum = 100)]
    percent: u8,
    #[serde(default)]
    step_number: u32,
    #[serde(default)]
    description: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"leaseToken": "6f1c...", "progress": {"percent": 40, "stepNumber": 2, "description": "Copying"}}))]
struct HeartbeatBody {
    lease_token: String,
    progress: Option<ProgressBody>,
}

/// What every call about one claimed job checks first: the caller may run jobs,
/// the body parses, and the job lies in the caller's account subtree. Returns the
/// request, the job number and the job's account.
async fn job_call<T: serde::de::DeserializeOwned>(
    state: &AppState,
    caller: &Caller,
    status_id: &str,
    body: &RawBody,
) -> ApiResult<(T, i64, AccountAlias)> {
    require_worker(caller)?;
    let request = body.json("request")?;
    let (number, owner) = find_visible_owner(state, &caller.account, status_id).await?;
    Ok((request, number, owner.account))
}

/// Whole seconds left on a lease, rounded up.
fn lease_seconds(lease_until: opsq_domain::Millis) -> i64 {
    ((lease_until - opsq_store::now_ms()).max(0) + 999) / 1000
}

#[utoipa::path(
    post,
    path = "/v2/workers/jobs/{statusId}/heartbeat",
    tag = "workers",
    operation_id = "heartbeat",
    summary = "Renew a lease, optionally reporting progress; learn of cancel requests",
    description = "Send one every `leaseSeconds / 3`.",
    params(crate::openapi::params::WorkerJobPath),
    request_body = HeartbeatBody,
    security(("bearerToken" = [])),
    responses(
        (status = 200, description = "The lease is renewed.", body = crate::openapi::schemas::HeartbeatAnswer),
        crate::openapi::responses::WorkerJobCallErrors,
    ),
)]
pub async fn heartbeat(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(status_id): ApiPath<String>,
    body: RawBody,
) -> ApiResult<Json<Value>> {
    let (request, number, _): (HeartbeatBody, _, _) = job_call(&state, &caller, &status_id, &body).await?;
    let progress = match request.progress {
        Some(p) if p.percent > 100 => {
            return Err(ApiError::BadRequest("progress.percent must be from 0 to 100".into()))
        }
        Some(p) => Some(Progress {
            percent: p.percent,
            step_number: p.step_number,
            description: p.description.chars().take(500).collect(),
        }),
        None => None,
    };
    let ack =
        state.store.heartbeat(number, &request.lease_token, progress, state.config.default_lease_ms).await?;
    Ok(Json(json!({
        "cancelRequested": ack.cancel_requested,
        "leaseExpires": iso_date(ack.lease_until),
        "leaseSeconds": lease_seconds(ack.lease_until),
    })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CompleteBody {
    lease_token: String,
    /// Any JSON, kept as the job's `result` (default `null`).
    #[serde(default)]
    result: Value,
}

#[utoipa::path(
    post,
    path = "/v2/workers/jobs/{statusId}/complete",
    tag = "workers",
    operation_id = "completeJob",
    summary = "Report that an attempt succeeded",
    params(crate::openapi::params::WorkerJobPath),
    request_body = CompleteBody,
    security(("bearerToken" = [])),
    responses(
        (status = 200, description = "The job, now `succeeded` with its `result`.", body = crate::openapi::schemas::Job),
        crate::openapi::responses::WorkerJobCallErrors,
    ),
)]
pub async fn complete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(status_id): ApiPath<String>,
    body: RawBody,
) -> ApiResult<Json<Value>> {
    let (request, number, account): (CompleteBody, _, _) =
        job_call(&state, &caller, &status_id, &body).await?;
    let job = state.store.finish(number, &request.lease_token, JobOutcome::Succeeded(request.result)).await?;
    state.metrics.jobs().attempt_ended(job.status);
    Ok(recorded(&state, &account, &job))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FailBody {
    lease_token: String,
    /// Why it failed; at most 4000 characters are kept.
    error: String,
    /// Whether another attempt may succeed (default true).
    retryable: Option<bool>,
    /// Overrides the exponential backoff before the next attempt.
    retry_after_seconds: Option<u64>,
}

#[utoipa::path(
    post,
    path = "/v2/workers/jobs/{statusId}/fail",
    tag = "workers",
    operation_id = "failJob",
    summary = "Report that an attempt failed, retryably or not",
    description = "A retryable failure makes the job `resumed` and runs it again after a backoff while it \
        has attempts left; otherwise, or on its last attempt, it ends `failed`. A failure reported after \
        a cancel request ends it `failed` as cancelled.",
    params(crate::openapi::params::WorkerJobPath),
    request_body = FailBody,
    security(("bearerToken" = [])),
    responses(
        (status = 200, description = "The job, now `resumed` or `failed`.", body = crate::openapi::schemas::Job),
        crate::openapi::responses::WorkerJobCallErrors,
    ),
)]
pub async fn fail(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(status_id): ApiPath<String>,
    body: RawBody,
) -> ApiResult<Json<Value>> {
    let (request, number, account): (FailBody, _, _) = job_call(&state, &caller, &status_id, &body).await?;
    let outcome = failure(&request.error, request.retryable, request.retry_after_seconds);
    let job = state.store.finish(number, &request.lease_token, outcome).await?;
    state.metrics.jobs().attempt_ended(job.status);
    Ok(recorded(&state, &account, &job))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReleaseBody {
    lease_token: String,
}

#[utoipa::path(
    post,
    path = "/v2/workers/jobs/{statusId}/release",
    tag = "workers",
    operation_id = "releaseJob",
    summary = "Hand back a claimed job that was never started",
    description = "For a worker that claimed a job and will not run it (it is shutting down): the job \
        becomes `resumed`, due at once for another worker, and the attempt is not counted, so a kind \
        allowing one attempt does not end `failed` because a worker stopped. A cancel requested meanwhile \
        ends it `failed` as cancelled instead. Only for a job whose work has not begun: one that began \
        reports an outcome (`fail` with `retryable`).",
    params(crate::openapi::params::WorkerJobPath),
    request_body = ReleaseBody,
    security(("bearerToken" = [])),
    responses(
        (status = 200, description = "The job, now `resumed` (or `failed`, if a cancel was requested).",
            body = crate::openapi::schemas::Job),
        crate::openapi::responses::WorkerJobCallErrors,
    ),
)]
pub async fn release(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(status_id): ApiPath<String>,
    body: RawBody,
) -> ApiResult<Json<Value>> {
    let (request, number, account): (ReleaseBody, _, _) =
        job_call(&state, &caller, &status_id, &body).await?;
    let job = state.store.release(number, &request.lease_token).await?;
    state.metrics.jobs().released(job.status);
    Ok(recorded(&state, &account, &job))
}

/// The answer to an outcome or a release the store recorded; a job that can run
/// again wakes the claims waiting for work.
fn recorded(state: &AppState, account: &AccountAlias, job: &Job) -> Json<Value> {
    if job.status.is_claimable() {
        state.wakeup.notify();
    }
    Json(job_json(account, job, None))
}

/// A reported failure as the store records it: retryable unless said otherwise, the
/// message cut to 4,000 characters, a requested pause capped at a day.
pub(super) fn failure(error: &str, retryable: Option<bool>, retry_after_seconds: Option<u64>) -> JobOutcome {
    let error: String = error.chars().take(4000).collect();
    if retryable.unwrap_or(true) {
        let run_after =
            retry_after_seconds.map(|secs| opsq_store::now_ms() + secs.min(24 * 3600) as i64 * 1000);
        JobOutcome::Retryable { error, run_after }
    } else {
        JobOutcome::Fatal(error)
    }
}
