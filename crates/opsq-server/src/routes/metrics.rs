//! `GET /metrics`: the node's metrics for Prometheus, without a token like `/healthz`
//! (operators keep it on their own network). It answers even while the store does
//! not: a scrape that fails says nothing, one with `opsq_store_up 0` says why.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::metrics::{CONTENT_TYPE, STORE_TIMEOUT};
use crate::state::AppState;

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    summary = "Metrics for Prometheus: what this node did since it started, and the queue's depth",
    description = "The Prometheus text format 0.0.4; docs/operations.md lists every metric. The queue's \
        depth (`opsq_jobs`) is counted in the store at each scrape, within 2 s: when the store does not \
        answer in time the answer is still 200, with `opsq_store_up 0` and without `opsq_jobs`.",
    responses((status = 200, description = "The metrics.", content_type = "text/plain; version=0.0.4; charset=utf-8",
        body = String, example = "# HELP opsq_store_up Whether the store answered this scrape's count of jobs \
in time (1) or not (0).\n# TYPE opsq_store_up gauge\nopsq_store_up 1\n")),
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let unfinished = match state.store.unfinished_counts(STORE_TIMEOUT).await {
        Ok(counts) => Some(counts),
        Err(err) => {
            tracing::warn!(error = %err, "metrics: the store did not count the jobs; answering without them");
            None
        }
    };
    match state.metrics.render(unfinished) {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(err) => ApiError::Internal(format!("could not write the metrics: {err}")).into_response(),
    }
}
