//! `GET /v2/operations/{alias}/status/{statusId}`: the endpoint every CLC client polls.

use axum::extract::State;
use axum::Json;
use opsq_domain::{AccountAlias, StatusId};
use opsq_store::JobStatusRow;
use serde_json::{json, Value};

use super::ApiPath;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

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
