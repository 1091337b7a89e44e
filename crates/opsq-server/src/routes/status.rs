//! `GET /v2/operations/{alias}/status/{statusId}`: the endpoint every CLC client polls.

use axum::extract::State;
use axum::Json;
use opsq_domain::{AccountAlias, StatusId};
use opsq_store::JobStatusRow;
use serde_json::{json, Value};

use super::ApiPath;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::openapi::params::JobPath;
use crate::openapi::{responses, schemas};
use crate::state::AppState;

#[utoipa::path(
    get,
    path = "/v2/operations/{alias}/status/{statusId}",
    tag = "v2",
    operation_id = "getStatus",
    summary = "Read a job's status (the call every CLC client polls)",
    params(JobPath),
    security(("bearerToken" = [])),
    responses(
        (status = 200, description = "The job's status.", body = schemas::StatusAnswer,
            example = json!({"status": "succeeded"})),
        (status = 400, description = "The URL path is invalid (e.g. bad percent-encoding).", body = schemas::ErrorBody),
        (status = 401, response = responses::Unauthorized),
        (status = 403, description = "`{alias}` is not the caller's account or one below it.", body = schemas::ErrorBody),
        (status = 404, description = "No such job in `{alias}`'s subtree (unknown and malformed ids alike).",
            body = schemas::ErrorBody),
        (status = 503, response = responses::Unavailable),
    ),
)]
pub async fn get_status(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((alias, status_id)): ApiPath<(String, String)>,
) -> ApiResult<Json<Value>> {
    let alias = state.authorize_alias(&caller, &alias).await?;
    let row = find_visible_job(&state, &alias, &status_id).await?;
    Ok(Json(json!({ "status": row.status.as_str() })))
}

/// The job a status id names, if the account in the URL may see it. Unknown,
/// malformed and other accounts' ids all answer the same 404.
pub async fn find_visible_job(
    state: &AppState,
    alias: &AccountAlias,
    raw_id: &str,
) -> ApiResult<JobStatusRow> {
    let shown: String = raw_id.chars().take(40).collect();
    let not_found =
        || ApiError::NotFound(format!("No job with status id {shown:?} exists for account {alias}"));
    let id = StatusId::parse(raw_id).map_err(|_| not_found())?;
    let row = state.store.job_status(id.number).await?.ok_or_else(not_found)?;
    if row.location != id.location || !state.store.is_within(alias, &row.account).await? {
        return Err(not_found());
    }
    Ok(row)
}
