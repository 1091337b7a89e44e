//! The deprecated v1 API (`/REST/{Area}/{Method}[/JSON|/XML]`), served over the same
//! store and jobs as v2, exactly as its real clients call it: parameters from the
//! query string, a JSON, XML or form body; XML unless something says JSON; a cookie
//! session; HTTP 200 with a `StatusCode` for every API-level outcome.

mod call;
mod handlers;
pub(crate) mod openapi;
mod reply;
mod session;
mod xml;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;

pub use call::is_v1_path;

use crate::state::AppState;
use call::V1Call;
use reply::{Reply, V1Error};

/// Answers one v1 request; every outcome, including a malformed request, is a v1 reply.
pub async fn dispatch(state: AppState, request: Request<Body>) -> Response {
    let (route, format) = call::route_and_format(&request);
    let Some((area, method)) = route else {
        return Reply::error("Response", V1Error::unknown_method(request.uri().path()))
            .not_found()
            .render(format);
    };
    let root = reply::root_element(&area, &method);
    let call = match V1Call::read(request).await {
        Ok(call) => call,
        Err(error) => return Reply::error(root, error).render(format),
    };
    let reply = match (area.as_str(), method.as_str()) {
        ("auth", "logon") => handlers::logon(&state, &call).await,
        ("auth", "logout") => handlers::logout(&state, &call).await,
        ("queue", "getrequeststatus") => handlers::get_request_status(&state, &call).await,
        ("queue", "listqueuerequests") => handlers::list_queue_requests(&state, &call).await,
        _ => Err(V1Error::unknown_method(&format!("{area}/{method}"))),
    };
    match reply {
        Ok(reply) => reply.render(format),
        Err(error) if error.is_unknown_method() => Reply::error(root, error).not_found().render(format),
        Err(error) => Reply::error(root, error).render(format),
    }
}
