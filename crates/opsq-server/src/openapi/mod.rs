//! The OpenAPI document of opsq's HTTP API, generated from the code: the handlers'
//! `#[utoipa::path]` annotations (listed in `routes::api_doc`), the request structs
//! they parse, the answer shapes of [`schemas`], and the v1 methods of
//! `v1::openapi`. `GET /openapi.json` serves it, `opsq openapi` prints it, and
//! `docs/openapi.json` is that output, checked by a test.

pub mod params;
pub mod responses;
pub mod schemas;
#[cfg(test)]
mod tests;

use utoipa::openapi::schema::{Schema, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::RefOr;
use utoipa::OpenApi;

/// The security scheme of v2 bearer tokens, as the annotations name it.
pub const BEARER_SCHEME: &str = "bearerToken";

/// What the document says about itself and its groups; the paths come from
/// `routes::api_doc` and `v1::openapi`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "opsq",
        description = "The operations queue behind a cloud API's long-running requests: the \
            CLC-compatible v2 API (login, Queue status, batch server operations), opsq's jobs API, \
            the protocol for external workers, health checks, and the deprecated v1 Queue API. \
            Every v2 error is `{\"message\": \"...\"}`; bodies are capped at 1 MiB; any other path \
            outside `/REST/` and the operators' web page `/dashboard` answers 404 and a known path \
            with another method 405, both with a message. Generated \
            from the code: `opsq openapi` prints it, `GET /openapi.json` serves it.",
    ),
    tags(
        (name = "v2", description = "The CLC-compatible v2 API: what existing CLC clients call."),
        (name = "jobs", description = "opsq's jobs API: submit any kind, read, list and cancel jobs."),
        (name = "workers", description = "The protocol for external workers (users with the Worker role): \
            claim, heartbeat, complete, fail, fenced by a lease token."),
        (name = "operations", description = "Health checks, metrics and this document; no token needed."),
        (name = "v1", description = "The deprecated v1 Queue API, XML or JSON, with a session cookie. \
            HTTP 200 for every API-level outcome, told by `StatusCode`."),
    ),
    components(responses(
        responses::Unauthorized,
        responses::PayloadTooLarge,
        responses::TooManyRequests,
        responses::Unavailable,
        responses::NotAWorker,
        responses::WorkerJobNotFound,
        responses::LeaseLost,
    )),
)]
struct Overview;

/// The whole document. Built on each call: it is cheap, and keeping no copy means
/// no state to thread through and nothing that can go stale.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut document = Overview::openapi();
    document.merge(crate::routes::api_doc::RoutesDoc::openapi());
    document.merge(crate::v1::openapi::document());
    optional_bodies_are_never_null(&mut document);
    let bearer = HttpBuilder::new()
        .scheme(HttpAuthScheme::Bearer)
        .bearer_format("JWT")
        .description(Some(
            "The `bearerToken` of `POST /v2/authentication/login`, valid 14 days on every node \
             sharing the store.",
        ))
        .build();
    document
        .components
        .get_or_insert_with(Default::default)
        .add_security_scheme(BEARER_SCHEME, SecurityScheme::Http(bearer));
    document
}

/// utoipa writes an optional body (`request_body = Option<T>`) as "`T` or `null`". The
/// handlers read bodies with `body::RawBody`, which takes a missing body as `{}` and
/// refuses `null`, so such a body may be left out but is never `null`: the schema is
/// `T`, in a body that is not required.
fn optional_bodies_are_never_null(document: &mut utoipa::openapi::OpenApi) {
    let is_null = |schema: &RefOr<Schema>| matches!(schema, RefOr::T(Schema::Object(object)) if object.schema_type == SchemaType::Type(Type::Null));
    for item in document.paths.paths.values_mut() {
        let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
        for operation in operations.into_iter().flatten() {
            let Some(RefOr::T(body)) = operation.request_body.as_mut() else { continue };
            for content in body.content.values_mut() {
                let RefOr::T(content) = content else { continue };
                let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema else { continue };
                if let [first, second] = one_of.items.as_slice() {
                    let kept = match (is_null(first), is_null(second)) {
                        (false, true) => first.clone(),
                        (true, false) => second.clone(),
                        _ => continue,
                    };
                    content.schema = Some(kept);
                }
            }
        }
    }
}

/// The document as `docs/openapi.json` holds it: pretty JSON and a final newline.
/// `opsq openapi` prints exactly this, so the file is regenerated with
/// `opsq openapi > docs/openapi.json`.
pub fn pretty_json() -> Result<String, serde_json::Error> {
    let mut text = document().to_pretty_json()?;
    text.push('\n');
    Ok(text)
}
