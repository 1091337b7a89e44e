//! The routes' part of the OpenAPI document: every annotated handler, listed next to
//! the router so a route and its description are added together.

use utoipa::OpenApi;

use super::{health, jobs, login, servers, status, workers};

/// The annotated handlers of [`super::router`]; `openapi::document` adds the rest.
/// A test compares these paths with the router's, so a route without an annotation
/// (or an annotation without a route) fails it.
#[derive(OpenApi)]
#[openapi(paths(
    health::healthz,
    health::readyz,
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
))]
pub(crate) struct RoutesDoc;
