//! `GET /v2/operations/{alias}/status/{statusId}`: the endpoint every CLC client polls.

use std::future::Future;

use axum::extract::State;
use axum::Json;
use opsq_domain::{AccountAlias, Location, StatusId};
use opsq_store::{JobOwner, JobStatusRow, StoreError};
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
    let read = |number| state.store.job_status(number);
    let (_, row) = find_visible(state, alias, raw_id, read, |row| (&row.account, &row.location)).await?;
    Ok(row)
}

/// [`find_visible_job`] for a worker's heartbeat, outcome or report, which need only
/// the job's number and owner: the owner is usually known without a read
/// ([`opsq_store::Store::job_owner`]), and the write that follows checks the
/// caller's lease token, which only the job's own attempt holds.
pub async fn find_visible_owner(
    state: &AppState,
    alias: &AccountAlias,
    raw_id: &str,
) -> ApiResult<(i64, JobOwner)> {
    let read = |number| state.store.job_owner(number);
    find_visible(state, alias, raw_id, read, |owner| (&owner.account, &owner.location)).await
}

/// Parses the id, reads what `read` knows of its job, and answers it only if the job
/// is in the id's location and in `alias`'s subtree.
async fn find_visible<T, Read>(
    state: &AppState,
    alias: &AccountAlias,
    raw_id: &str,
    read: impl FnOnce(i64) -> Read,
    owner: impl Fn(&T) -> (&AccountAlias, &Location),
) -> ApiResult<(i64, T)>
where
    Read: Future<Output = Result<Option<T>, StoreError>>,
{
    let shown: String = raw_id.chars().take(40).collect();
    let not_found =
        || ApiError::NotFound(format!("No job with status id {shown:?} exists for account {alias}"));
    let id = StatusId::parse(raw_id).map_err(|_| not_found())?;
    let found = read(id.number).await?.ok_or_else(not_found)?;
    let (account, location) = owner(&found);
    if *location != id.location || !state.store.is_within(alias, account).await? {
        return Err(not_found());
    }
    Ok((id.number, found))
}
