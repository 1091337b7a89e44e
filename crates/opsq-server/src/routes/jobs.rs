//! opsq's own jobs API: submit any kind with an idempotency key, read a whole job
//! with its history, list jobs newest first with a cursor.

use std::collections::{HashMap, HashSet};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use opsq_domain::{JobKind, JobStatus, NewJob};
use opsq_store::{CancelOutcome, JobFilter, KindSettings, SubmitOutcome};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::status::find_visible_job;
use super::ApiPath;
use crate::auth::Caller;
use crate::body::RawBody;
use crate::error::{ApiError, ApiResult};
use crate::render::{job_href, job_json, object};
use crate::state::{apply_kind_defaults, AppState};

const MAX_TITLE_CHARS: usize = 500;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SubmitBody {
    kind: String,
    title: Option<String>,
    #[serde(default)]
    payload: Value,
    max_attempts: Option<u32>,
    safe_to_repeat: Option<bool>,
}

pub async fn submit_job(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(alias): ApiPath<String>,
    headers: HeaderMap,
    body: RawBody,
) -> ApiResult<Response> {
    let (alias, location) = submission_target(&state, &caller, &alias, &body).await?;
    let request: SubmitBody = body.json("job submission")?;
    let key = idempotency_key(&headers)?;
    let kinds = kind_settings(&state, [request.kind.as_str()]).await?;
    let job = new_job(&caller, &alias, &location, request, key, &kinds)?;
    let outcomes = state.store.submit(vec![job]).await?;
    state.submitted(&outcomes);
    let outcome =
        outcomes.into_iter().next().ok_or_else(|| ApiError::Internal("the store accepted no job".into()))?;
    let (status, job) = match outcome {
        SubmitOutcome::Created(job) => (StatusCode::ACCEPTED, job),
        SubmitOutcome::Existing(job) => (StatusCode::OK, job),
        SubmitOutcome::KeyConflict(job) => return Err(key_conflict(&job)),
    };
    let location = job_href(&alias, &job);
    Ok((status, [(header::LOCATION, location)], Json(job_json(&alias, &job, None))).into_response())
}

/// Most jobs one batch submission takes.
pub const MAX_BATCH: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BatchItem {
    #[serde(flatten)]
    job: SubmitBody,
    idempotency_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    jobs: Vec<BatchItem>,
}

/// `POST /v2/operations/{alias}/jobs/batch`: up to 1000 jobs accepted in one
/// transaction (one commit), each answered by id and status.
pub async fn submit_batch(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(alias): ApiPath<String>,
    body: RawBody,
) -> ApiResult<Response> {
    let (alias, location) = submission_target(&state, &caller, &alias, &body).await?;
    let request: BatchBody = body.json("batch submission")?;
    if request.jobs.is_empty() || request.jobs.len() > MAX_BATCH {
        return Err(ApiError::BadRequest(format!("jobs must hold 1 to {MAX_BATCH} jobs")));
    }
    // Each distinct kind's settings are read once, not once per job.
    let kinds = kind_settings(&state, request.jobs.iter().map(|item| item.job.kind.as_str())).await?;
    let mut jobs = Vec::with_capacity(request.jobs.len());
    for (index, item) in request.jobs.into_iter().enumerate() {
        let in_item = |e: ApiError| ApiError::BadRequest(format!("jobs[{index}]: {e}"));
        let key = item.idempotency_key.map(|k| valid_key(&k)).transpose().map_err(in_item)?;
        jobs.push(new_job(&caller, &alias, &location, item.job, key, &kinds).map_err(in_item)?);
    }
    let outcomes = state.store.submit(jobs).await?;
    state.submitted(&outcomes);
    let answers: Vec<Value> = outcomes
        .iter()
        .map(|outcome| match outcome {
            SubmitOutcome::Created(job) | SubmitOutcome::Existing(job) => {
                json!({"id": job.status_id().to_string(), "number": job.number, "status": job.status.as_str(),
                       "created": matches!(outcome, SubmitOutcome::Created(_))})
            }
            SubmitOutcome::KeyConflict(job) => json!({"error": key_conflict(job).to_string()}),
        })
        .collect();
    Ok((StatusCode::ACCEPTED, Json(object([("jobs", Value::Array(answers))]))).into_response())
}

fn key_conflict(job: &opsq_domain::Job) -> ApiError {
    ApiError::Conflict(format!(
        "Idempotency-Key was already used for a different request (job {})",
        job.status_id()
    ))
}

/// The account a submission goes to, after the access, role and media-type checks
/// every submission shares.
async fn submission_target(
    state: &AppState,
    caller: &Caller,
    raw_alias: &str,
    body: &RawBody,
) -> ApiResult<(opsq_domain::AccountAlias, opsq_domain::Location)> {
    let alias = state.authorize_alias(caller, raw_alias).await?;
    if !caller.roles.can_submit() {
        return Err(ApiError::Forbidden(format!(
            "Access denied: user {} may not submit jobs",
            caller.username
        )));
    }
    if !body.content_type.contains("json") && !body.content_type.is_empty() {
        return Err(ApiError::UnsupportedMediaType("send the job as application/json".into()));
    }
    let account = state
        .account(&alias)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("account {alias} was not found")))?;
    Ok((alias, account.location))
}

/// The stored settings of the given kinds (those that have some), each read once.
async fn kind_settings<'a>(
    state: &AppState,
    kinds: impl IntoIterator<Item = &'a str>,
) -> ApiResult<HashMap<String, KindSettings>> {
    let mut settings = HashMap::new();
    for kind in kinds.into_iter().collect::<HashSet<_>>() {
        if let Some(found) = state.kind_settings(kind).await? {
            settings.insert(kind.to_string(), found);
        }
    }
    Ok(settings)
}

/// Validates one submission and applies its kind's defaults.
fn new_job(
    caller: &Caller,
    alias: &opsq_domain::AccountAlias,
    location: &opsq_domain::Location,
    request: SubmitBody,
    idempotency_key: Option<String>,
    kinds: &HashMap<String, KindSettings>,
) -> ApiResult<NewJob> {
    let kind = JobKind::parse(&request.kind).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let title = request.title.clone().unwrap_or_else(|| kind.to_string());
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(ApiError::BadRequest(format!("title must be at most {MAX_TITLE_CHARS} characters")));
    }
    let (max_attempts, safe_to_repeat) =
        apply_kind_defaults(kinds.get(kind.as_str()), request.max_attempts, request.safe_to_repeat);
    if !(1..=100).contains(&max_attempts) {
        return Err(ApiError::BadRequest("maxAttempts must be from 1 to 100".into()));
    }
    // The request as sent: a replay stays a replay after an operator changes the
    // kind's defaults.
    let request_hash = idempotency_key.as_ref().map(|_| {
        let canonical =
            json!([kind.as_str(), title, request.payload, request.max_attempts, request.safe_to_repeat]);
        format!("{:x}", Sha256::digest(canonical.to_string().as_bytes()))
    });
    Ok(NewJob {
        account: alias.clone(),
        location: location.clone(),
        kind,
        title,
        payload: request.payload,
        max_attempts,
        safe_to_repeat,
        idempotency_key,
        request_hash,
        submitter: caller.username.clone(),
    })
}

fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().map_err(|_| invalid_key())?;
    Ok(Some(valid_key(key)?))
}

fn invalid_key() -> ApiError {
    ApiError::BadRequest("Idempotency-Key must be 1 to 255 visible ASCII characters".into())
}

fn valid_key(key: &str) -> ApiResult<String> {
    let key = key.trim();
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return Err(invalid_key());
    }
    Ok(key.to_string())
}

pub async fn get_job(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((alias, status_id)): ApiPath<(String, String)>,
) -> ApiResult<Json<Value>> {
    let alias = state.authorize_alias(&caller, &alias).await?;
    let row = find_visible_job(&state, &alias, &status_id).await?;
    let job = state
        .store
        .job(row.number)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("job {status_id} was not found")))?;
    let history = state.store.job_events(row.number).await?;
    Ok(Json(job_json(&alias, &job, Some(&history))))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    status: Option<String>,
    kind: Option<String>,
    before: Option<i64>,
    limit: Option<u32>,
}

pub async fn list_jobs(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(alias): ApiPath<String>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let alias = state.authorize_alias(&caller, &alias).await?;
    let Query(query) =
        query.map_err(|e| ApiError::BadRequest(format!("invalid query: {}", e.body_text())))?;
    let statuses = match &query.status {
        None => vec![],
        Some(list) => list
            .split(',')
            .map(|s| JobStatus::parse(s.trim()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ApiError::BadRequest(e.to_string()))?,
    };
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let jobs = state
        .store
        .list_jobs(JobFilter {
            accounts: state.store.subtree(&alias).await?,
            statuses,
            kind: query.kind.clone(),
            before: query.before,
            limit,
        })
        .await?;
    let next = (jobs.len() as u32 == limit).then(|| jobs.last().map(|j| j.number)).flatten();
    Ok(Json(object([
        ("items", jobs.iter().map(|j| job_json(&alias, j, None)).collect()),
        ("nextBefore", next.into()),
    ])))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CancelBody {
    reason: Option<String>,
}

/// Cancels a job: at once if it waits (it ends `failed`), cooperatively if it runs
/// (its worker is told; a job that finishes first keeps its real outcome).
pub async fn cancel_job(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((alias, status_id)): ApiPath<(String, String)>,
    body: RawBody,
) -> ApiResult<Response> {
    let alias = state.authorize_alias(&caller, &alias).await?;
    if !caller.roles.can_submit() {
        return Err(ApiError::Forbidden(format!(
            "Access denied: user {} may not cancel jobs",
            caller.username
        )));
    }
    let request: CancelBody = body.json("cancel request")?;
    let reason: String = request
        .reason
        .unwrap_or_else(|| format!("cancelled by {}", caller.username))
        .chars()
        .take(500)
        .collect();
    let row = find_visible_job(&state, &alias, &status_id).await?;
    let (status, job) = match state.store.cancel(row.number, &reason).await? {
        CancelOutcome::Cancelled(job) => (StatusCode::OK, job),
        CancelOutcome::Requested(job) => {
            state.running.cancel(job.number);
            (StatusCode::ACCEPTED, job)
        }
        CancelOutcome::AlreadyFinished(job) => {
            return Err(ApiError::Conflict(format!(
                "job {} already ended {}; its outcome stands",
                job.status_id(),
                job.status
            )))
        }
        CancelOutcome::NeedsResolution(job) => {
            return Err(ApiError::Conflict(format!(
                "job {}'s outcome is unknown: resolve it with `opsq admin job resolve {} --succeeded|--failed|--retry`",
                job.status_id(),
                job.status_id()
            )))
        }
    };
    Ok((status, Json(job_json(&alias, &job, None))).into_response())
}
