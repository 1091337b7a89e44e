//! The error answers many routes share, as reusable responses, so each route's
//! annotation names them in a word and they read alike in the document. Route-specific
//! errors (400, 403, 404, 409) stay on the routes with their own descriptions.

use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{Content, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{ToResponse, ToSchema};

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
