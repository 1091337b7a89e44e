//! The routes' part of the OpenAPI document: every annotated handler, listed next to
//! the router so a route and its description are added together, and the route that
//! serves the whole document.

use axum::Json;
use utoipa::OpenApi;

use super::{health, jobs, login, metrics, servers, status, worker_report, workers};

/// The annotated handlers of [`super::router`]; `openapi::document` adds the rest.
/// A test compares these paths with the router's, so a route without an annotation
/// (or an annotation without a route) fails it.
#[derive(OpenApi)]
#[openapi(paths(
    health::healthz,
    health::readyz,
    metrics::metrics,
    openapi_json,
    login::login,
    status::get_status,
    servers::queue_operation,
    jobs::submit_job,
    jobs::list_jobs,
    jobs::submit_batch,
    jobs::get_job,
    jobs::cancel_job,
    workers::claim,
    workers::heartbeat,
    workers::complete,
    workers::fail,
    workers::release,
    worker_report::report,
))]
pub(crate) struct RoutesDoc;

/// Serves the document without a token, like `/healthz`, so tools can fetch it from
/// any running server; it is built per request (rarely asked for, and no state).
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "openApiDocument",
    summary = "This document: the OpenAPI description of the HTTP API",
    responses((status = 200, description = "The OpenAPI 3.1 document, as in `docs/openapi.json`.",
        content_type = "application/json", body = Object)),
)]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi::document())
}
