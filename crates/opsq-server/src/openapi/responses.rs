//! The error answers many routes share, as reusable responses, so each route's
//! annotation names them in a word and they read alike in the document. Route-specific
//! errors (400, and 403, 404 and 409 outside the worker protocol) stay on the routes with
//! their own descriptions.

use std::collections::BTreeMap;
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};

use utoipa::openapi::{Content, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, ToResponse, ToSchema};

use super::schemas::ErrorBody;

fn error_response(description: &str) -> ResponseBuilder {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", Content::new(Some(Ref::from_schema_name(ErrorBody::name()))))
}

fn integer_header(description: &str) -> Header {
    HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
        .description(Some(description))
        .build()
}

/// 401: the bearer token is missing, malformed, tampered with, expired or signed by
/// another key (`auth::Caller`).
pub struct Unauthorized;

impl<'r> ToResponse<'r> for Unauthorized {
    fn response() -> (&'r str, RefOr<Response>) {
        let response = error_response(
            "No valid bearer token: missing, malformed, tampered with, expired, or not \
             signed by this store's key. Log in at `/v2/authentication/login`.",
        )
        .header(
            "WWW-Authenticate",
            HeaderBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .description(Some("`Bearer`"))
                .build(),
        );
        ("Unauthorized", response.build().into())
    }
}

/// 413: the body is over `MAX_BODY_BYTES` (`body::RawBody`).
pub struct PayloadTooLarge;

impl<'r> ToResponse<'r> for PayloadTooLarge {
    fn response() -> (&'r str, RefOr<Response>) {
        let description = format!(
            "The request body is larger than {} bytes; it was not read.",
            crate::state::MAX_BODY_BYTES
        );
        ("PayloadTooLarge", error_response(&description).build().into())
    }
}

/// 429: too many failed logins (`auth::LoginThrottle`).
pub struct TooManyRequests;

impl<'r> ToResponse<'r> for TooManyRequests {
    fn response() -> (&'r str, RefOr<Response>) {
        let response = error_response(
            "Too many failed logins for this username or from this address; wait \
             `Retry-After` seconds.",
        )
        .header("Retry-After", integer_header("Seconds to wait before the next attempt."));
        ("TooManyRequests", response.build().into())
    }
}

/// 503: the store cannot be reached (`ApiError::Unavailable`).
pub struct Unavailable;

impl<'r> ToResponse<'r> for Unavailable {
    fn response() -> (&'r str, RefOr<Response>) {
        let response = error_response(
            "The job store is unavailable (a restart, or the database is unreachable); \
             retry shortly.",
        );
        ("Unavailable", response.build().into())
    }
}

/// 403 on the worker protocol: the caller lacks the `Worker` role (`require_worker`).
pub struct NotAWorker;

impl<'r> ToResponse<'r> for NotAWorker {
    fn response() -> (&'r str, RefOr<Response>) {
        ("NotAWorker", error_response("The caller lacks the Worker role.").build().into())
    }
}

/// 404 on a call about one claimed job: no such job in the caller's account subtree.
pub struct WorkerJobNotFound;

impl<'r> ToResponse<'r> for WorkerJobNotFound {
    fn response() -> (&'r str, RefOr<Response>) {
        ("WorkerJobNotFound", error_response("No such job in the caller's account subtree.").build().into())
    }
}

/// 409 on a call about one claimed job: the attempt's lease is lost (fencing).
pub struct LeaseLost;

impl<'r> ToResponse<'r> for LeaseLost {
    fn response() -> (&'r str, RefOr<Response>) {
        let response = error_response(
            "The lease is lost (it ran out and the job was rescued, or the job ended): stop, and \
             report nothing more for this attempt.",
        );
        ("LeaseLost", response.build().into())
    }
}

/// Every error a call about one claimed job (heartbeat, complete, fail, release) can
/// answer, named once for the four routes: 400 for its body or path, then the shared
/// answers above.
pub struct WorkerJobCallErrors;

impl IntoResponses for WorkerJobCallErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let shared = [
            ("401", Unauthorized::response().0),
            ("403", NotAWorker::response().0),
            ("404", WorkerJobNotFound::response().0),
            ("409", LeaseLost::response().0),
            ("413", PayloadTooLarge::response().0),
            ("503", Unavailable::response().0),
        ];
        let mut responses: BTreeMap<String, RefOr<Response>> = shared
            .into_iter()
            .map(|(status, name)| (status.to_string(), RefOr::Ref(Ref::from_response_name(name))))
            .collect();
        responses.insert("400".into(), error_response("An invalid body or URL path.").build().into());
        responses
    }
}
