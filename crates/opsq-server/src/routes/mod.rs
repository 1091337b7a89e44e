//! The HTTP surface, assembled in one place.

pub(crate) mod api_doc;
mod claim_wait;
mod dashboard;
mod health;
mod jobs;
mod login;
mod metrics;
mod servers;
mod status;
mod worker_report;
mod workers;

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/openapi.json", get(api_doc::openapi_json))
        .route("/dashboard", get(dashboard::page))
        .route("/dashboard/", get(dashboard::page_with_slash))
        .route("/dashboard/app.js", get(dashboard::script))
        .route("/dashboard/app.css", get(dashboard::style))
        .route("/dashboard/icon.svg", get(dashboard::icon))
        .route("/v2/authentication/login", post(login::login))
        .route("/v2/operations/{alias}/status/{status_id}", get(status::get_status))
        .route("/v2/operations/{alias}/servers/{operation}", post(servers::queue_operation))
        .route("/v2/operations/{alias}/jobs", post(jobs::submit_job).get(jobs::list_jobs))
        .route("/v2/operations/{alias}/jobs/batch", post(jobs::submit_batch))
        .route("/v2/operations/{alias}/jobs/{status_id}", get(jobs::get_job))
        .route("/v2/operations/{alias}/jobs/{status_id}/cancel", post(jobs::cancel_job))
        .route("/v2/workers/claim", post(workers::claim))
        .route("/v2/workers/report", post(worker_report::report))
        .route("/v2/workers/jobs/{status_id}/heartbeat", post(workers::heartbeat))
        .route("/v2/workers/jobs/{status_id}/complete", post(workers::complete))
        .route("/v2/workers/jobs/{status_id}/fail", post(workers::fail))
        .route("/v2/workers/jobs/{status_id}/release", post(workers::release))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Unmatched paths: the v1 API (whose routes are case-insensitive and tolerate `//`,
/// which the router cannot express), else a JSON 404.
async fn not_found(State(state): State<AppState>, request: Request) -> Response {
    if crate::v1::is_v1_path(request.uri().path()) {
        return crate::v1::dispatch(state, request).await;
    }
    ApiError::NotFound("The requested resource does not exist.".into()).into_response()
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed("The requested resource does not support this HTTP method.".into())
}

/// Path parameters whose rejections (say, invalid percent-encoding) become JSON 4xx
/// answers like every other error.
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state).await.map(|Path(value)| ApiPath(value)).map_err(
            |rejection: PathRejection| {
                ApiError::BadRequest(format!("the URL path is invalid: {}", rejection.body_text()))
            },
        )
    }
}
