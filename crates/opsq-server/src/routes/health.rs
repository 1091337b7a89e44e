use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::openapi::schemas;
use crate::state::AppState;

/// The process is up and serving HTTP.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
    summary = "Liveness: the process serves HTTP",
    responses((status = 200, description = "The process is up.", body = schemas::Liveness)),
)]
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The store answers; load balancers should route here only when this is 200.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    summary = "Readiness: the store answers",
    description = "Load balancers should send traffic to a node only while this is 200.",
    responses(
        (status = 200, description = "The store answers.", body = schemas::Readiness),
        (status = 503, description = "The store is not reachable.", body = schemas::ErrorBody),
    ),
)]
pub async fn readyz(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    state
        .store
        .ping()
        .await
        .map_err(|e| ApiError::Unavailable(format!("the job store is not reachable: {e}")))?;
    Ok(Json(json!({ "status": "ready", "store": state.store.describe() })))
}
