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
use crate::openapi::params::{AliasPath, JobPath};
use crate::openapi::{responses, schemas};
use crate::render::{job_href, job_json, object};
use crate::state::{apply_kind_defaults, AppState};

const MAX_TITLE_CHARS: usize = 500;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"kind": "backup.run", "title": "Back up WA1ACMEDB01", "payload": {"disk": 1},
    "maxAttempts": 3, "safeToRepeat": true}))]
struct SubmitBody {
    /// Dotted segments of ASCII letters, digits, `_` and `-`, at most 100 characters;
    /// it picks the handler. `opsq.noop` is built in and succeeds at once.
    #[schema(max_length = 100, example = "backup.run")]
    kind: String,
    /// Human text, at most 500 characters (default: the kind).
    title: Option<String>,
    /// Any JSON, given to the handler (default `null`).
    #[serde(default)]
    payload: Value,
    /// 1 to 100 (default: the kind's setting, else 3).
    #[schema(minimum = 1, maximum = 100)]
    max_attempts: Option<u32>,
    /// Whether running the job twice is harmless (default: the kind's setting, else
    /// `true`): a lost worker then makes it `resumed`, not `unknown`.
    safe_to_repeat: Option<bool>,
}

#[utoipa::path(
    post,
    path = "/v2/operations/{alias}/jobs",
    tag = "jobs",
    operation_id = "submitJob",
    summary = "Submit a job of any kind, durably, optionally idempotent",
    description = "The job is usually `notStarted`; it is already `executing` (attempt 1) when the \
        server's own runner had a free slot for its kind and started it in the submission's \
        transaction. The answer is sent only once the job is durable.",
    params(
        AliasPath,
        ("Idempotency-Key" = Option<String>, Header, nullable = false, description = "1 to 255 visible ASCII characters. \
            The same key with the same body returns the same job (200); with a different body, 409."),
    ),
    request_body = SubmitBody,
    security(("bearerToken" = [])),
    responses(
        (status = 202, description = "Accepted: the new job.", body = schemas::Job,
            headers(("Location" = String, description = "Where the job is read: `/v2/operations/{alias}/jobs/{statusId}`."))),
        (status = 200, description = "The job an earlier submission with the same `Idempotency-Key` and body created.",
            body = schemas::Job,
            headers(("Location" = String, description = "Where the job is read."))),
        (status = 400, description = "Unknown fields, wrong types, invalid values, a bad `Idempotency-Key`, \
            or an invalid URL path.", body = schemas::ErrorBody),
        (status = 401, response = responses::Unauthorized),
        (status = 403, description = "`{alias}` is outside the caller's subtree, or the caller may not submit.",
            body = schemas::ErrorBody),
        (status = 404, description = "The account does not exist.", body = schemas::ErrorBody),
        (status = 409, description = "The `Idempotency-Key` was used for a different request.", body = schemas::ErrorBody),
        (status = 413, response = responses::PayloadTooLarge),
        (status = 415, description = "A content type other than JSON.", body = schemas::ErrorBody),
        (status = 503, response = responses::Unavailable),
    ),
)]
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

/// One batch item is one object: a submission's fields plus `idempotencyKey`, and no
/// other (serde refuses unknown fields of the whole item). utoipa would describe the
/// flattened struct as an `allOf` of two closed objects, which no item satisfies, so
/// the item's schema is the submission's with the key added.
impl utoipa::PartialSchema for BatchItem {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
        let mut schema = <SubmitBody as utoipa::PartialSchema>::schema();
        if let utoipa::openapi::RefOr::T(Schema::Object(object)) = &mut schema {
            let key = ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                .max_length(Some(255))
                .description(Some(
                    "This item's idempotency key, as the `Idempotency-Key` header of a single submission.",
                ));
            object.properties.insert("idempotencyKey".into(), key.into());
            object.description = Some("One job of a batch: a submission and its idempotency key.".into());
            object.example = None;
        }
        schema
    }
}

impl utoipa::ToSchema for BatchItem {}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    /// 1 to 1000 jobs.
    #[schema(min_items = 1, max_items = 1000)]
    jobs: Vec<BatchItem>,
}

/// `POST /v2/operations/{alias}/jobs/batch`: up to 1000 jobs accepted in one
/// transaction (one commit), each answered by id and status.
#[utoipa::path(
    post,
    path = "/v2/operations/{alias}/jobs/batch",
    tag = "jobs",
    operation_id = "submitBatch",
    summary = "Submit up to 1000 jobs in one transaction",
    description = "Each job is answered in order: `created: false` for an idempotent repeat, \
        `{\"error\": ...}` for an item whose key was used for a different request. Any invalid \
        item makes the whole batch 400, naming its index.",
    params(AliasPath),
    request_body = BatchBody,
    security(("bearerToken" = [])),
    responses(
        (status = 202, description = "Accepted, one answer per job.", body = schemas::BatchAnswer),
        (status = 400, description = "Not 1 to 1000 jobs, an invalid item (named by its index), or an \
            invalid URL path.", body = schemas::ErrorBody),
        (status = 401, response = responses::Unauthorized),
        (status = 403, description = "`{alias}` is outside the caller's subtree, or the caller may not submit.",
            body = schemas::ErrorBody),
        (status = 404, description = "The account does not exist.", body = schemas::ErrorBody),
        (status = 413, response = responses::PayloadTooLarge),
        (status = 415, description = "A content type other than JSON.", body = schemas::ErrorBody),
        (status = 503, response = responses::Unavailable),
    ),
)]
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

#[utoipa::path(
    get,
    path = "/v2/operations/{alias}/jobs/{statusId}",
    tag = "jobs",
    operation_id = "getJob",
    summary = "Read a whole job, with its history",
    params(JobPath),
    security(("bearerToken" = [])),
    responses(
        (status = 200, description = "The job, with `history`.", body = schemas::Job),
        (status = 400, description = "The URL path is invalid.", body = schemas::ErrorBody),
        (status = 401, response = responses::Unauthorized),
        (status = 403, description = "`{alias}` is not the caller's account or one below it.", body = schemas::ErrorBody),
        (status = 404, description = "No such job in `{alias}`'s subtree.", body = schemas::ErrorBody),
        (status = 503, response = responses::Unavailable),
    ),
)]
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Statuses to list, comma-separated (`executing,resumed`); all when absent.
    status: Option<String>,
    /// A kind or a glob (`server.*`).
    kind: Option<String>,
    /// A job number: list only older jobs (the previous page's `nextBefore`).
    before: Option<i64>,
    /// Jobs per page, 1 to 1000 (default 100; larger values are taken as 1000).
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/v2/operations/{alias}/jobs",
    tag = "jobs",
    operation_id = "listJobs",
    summary = "List the jobs of an account and its sub-accounts, newest first",
    params(AliasPath, ListQuery),
    security(("bearerToken" = [])),
    responses(
        (status = 200, description = "One page of jobs, without their history.", body = schemas::JobList),
        (status = 400, description = "An unknown status, a malformed query, or an invalid URL path.",
            body = schemas::ErrorBody),
        (status = 401, response = responses::Unauthorized),
        (status = 403, description = "`{alias}` is not the caller's account or one below it.", body = schemas::ErrorBody),
        (status = 503, response = responses::Unavailable),
    ),
)]
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

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CancelBody {
    /// Recorded in the job's error as `cancelled: <reason>`; at most 500 characters
    /// are kept (default `cancelled by <user>`).
    reason: Option<String>,
}

/// Cancels a job: at once if it waits (it ends `failed`), cooperatively if it runs
/// (its worker is told; a job that finishes first keeps its real outcome).
#[utoipa::path(
    post,
    path = "/v2/operations/{alias}/jobs/{statusId}/cancel",
    tag = "jobs",
    operation_id = "cancelJob",
    summary = "Cancel a job: at once if it waits, cooperatively if it runs",
    params(JobPath),
    request_body(content = Option<CancelBody>, description = "Optional: no body counts as `{}`."),
    security(("bearerToken" = [])),
    responses(
        (status = 200, description = "The job was waiting; it is now `failed` with error `cancelled: <reason>`.",
            body = schemas::Job),
        (status = 202, description = "The job is running; its worker is asked to stop (in-process handlers at \
            once, external workers in their next heartbeat's answer). If it succeeds first, it stays `succeeded`. \
            A repeated cancel answers the same and changes nothing: the first reason stands.",
            body = schemas::Job),
        (status = 400, description = "An invalid body or URL path.", body = schemas::ErrorBody),
        (status = 401, response = responses::Unauthorized),
        (status = 403, description = "`{alias}` is outside the caller's subtree, or the caller may not cancel.",
            body = schemas::ErrorBody),
        (status = 404, description = "No such job in `{alias}`'s subtree.", body = schemas::ErrorBody),
        (status = 409, description = "The job already ended (its outcome stands), or its outcome is `unknown` \
            and must be resolved first (`opsq admin job resolve`).", body = schemas::ErrorBody),
        (status = 413, response = responses::PayloadTooLarge),
        (status = 503, response = responses::Unavailable),
    ),
)]
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
    // A fresh read, not the map of owners: the cancel call has no lease token to
    // stand behind the check, and cancels are rare.
    let number = find_visible_job(&state, &alias, &status_id).await?.number;
    let (status, job) = match state.store.cancel(number, &reason).await? {
        CancelOutcome::Cancelled(job) => {
            state.metrics.jobs().cancelled(false);
            (StatusCode::OK, job)
        }
        CancelOutcome::Requested(job) => {
            state.running.cancel(job.number);
            state.metrics.jobs().cancelled(true);
            (StatusCode::ACCEPTED, job)
        }
        // Answered as the first request was; counted once.
        CancelOutcome::AlreadyRequested(job) => {
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
