//! `POST /v2/operations/{alias}/servers/{operation}`: the batch power operations. Each
//! server that can be queued becomes one job of kind `server.<operation>`.

use std::collections::HashSet;

use axum::extract::State;
use axum::Json;
use opsq_domain::{NewJob, ServerOperation};
use serde_json::{json, Value};

use super::ApiPath;
use crate::auth::Caller;
use crate::body::{field, RawBody};
use crate::error::{ApiError, ApiResult};
use crate::openapi::params::AliasPath;
use crate::openapi::{responses, schemas};
use crate::render::status_link;
use crate::state::AppState;

/// The message the real API gives for a server it cannot queue.
const CANNOT_QUEUE: &str =
    "The operation cannot be queued because the server cannot be found or it is not in a valid state.";
const MAX_SERVERS: usize = 1000;

#[utoipa::path(
    post,
    path = "/v2/operations/{alias}/servers/{operation}",
    tag = "v2",
    operation_id = "queueServerOperation",
    summary = "Queue a power operation on servers: one job per server",
    description = "Each server that can be queued becomes one job of kind `server.<operation>` in \
        `{alias}`, with payload `{\"server\": ..., \"operation\": ...}`. Server names and the alias \
        are lower-cased as the real API did; a name given twice is queued once. With `--simulate` \
        such jobs run in the server; otherwise they wait for workers.",
    params(
        AliasPath,
        ("operation" = inline(schemas::ServerOperationName), Path, description = "The operation, in any case; others are 404."),
    ),
    request_body(content(
        (schemas::ServerIdsBody = "application/json"),
        (schemas::ServerIdsObject = "application/x-www-form-urlencoded"),
    ), example = json!(["WA1OPSQWEB01", "WA1OPSQWEB02"])),
    security(("bearerToken" = [])),
    responses(
        (status = 200, description = "One element per server, in the order given.",
            body = Vec<schemas::ServerOperationResult>),
        (status = 400, description = "The body is not a list of 1 to 1000 server names, \
            `snapshotExpirationDays` is not 1 to 10, or the URL path is invalid.", body = schemas::ErrorBody),
        (status = 401, response = responses::Unauthorized),
        (status = 403, description = "`{alias}` is outside the caller's subtree, or the caller may view \
            but not change servers (needs ServerOperator, ServerAdmin or AccountAdmin).", body = schemas::ErrorBody),
        (status = 404, description = "Unknown operation, or the account does not exist.", body = schemas::ErrorBody),
        (status = 413, response = responses::PayloadTooLarge),
        (status = 415, description = "A body that is neither JSON nor a form.", body = schemas::ErrorBody),
        (status = 503, response = responses::Unavailable),
    ),
)]
pub async fn queue_operation(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((alias, operation)): ApiPath<(String, String)>,
    body: RawBody,
) -> ApiResult<Json<Value>> {
    let alias = state.authorize_alias(&caller, &alias).await?;
    let operation = ServerOperation::parse(&operation).map_err(|e| ApiError::NotFound(e.to_string()))?;
    if !caller.roles.can_submit() {
        return Err(ApiError::Forbidden(format!(
            "Access denied: user {} may view but not change servers (roles: {})",
            caller.username,
            caller.roles.names().join(", ")
        )));
    }
    let request = body.to_value()?;
    let servers = server_names(&request)?;
    let snapshot_days = match operation {
        ServerOperation::CreateSnapshot => Some(snapshot_expiration_days(&request)?),
        _ => None,
    };
    let account = state
        .account(&alias)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("account {alias} was not found")))?;

    let (max_attempts, safe_to_repeat) = state.kind_defaults(&operation.kind(), None, None).await?;
    let mut seen = HashSet::new();
    let mut plan: Vec<Result<String, (String, &'static str)>> = Vec::with_capacity(servers.len());
    let mut jobs = Vec::new();
    for name in servers {
        let lower = name.to_ascii_lowercase();
        if !is_valid_server_name(&name) {
            plan.push(Err((lower, CANNOT_QUEUE)));
        } else if !seen.insert(lower.clone()) {
            plan.push(Err((lower, "The server appears more than once in this request; it was queued once.")));
        } else {
            let mut payload = json!({ "server": lower, "operation": operation.as_str() });
            if let Some(days) = snapshot_days {
                payload["snapshotExpirationDays"] = json!(days);
            }
            jobs.push(NewJob {
                account: alias.clone(),
                location: account.location.clone(),
                kind: operation.kind(),
                title: operation.title(&name),
                payload,
                max_attempts,
                safe_to_repeat,
                idempotency_key: None,
                request_hash: None,
                submitter: caller.username.clone(),
            });
            plan.push(Ok(lower));
        }
    }
    // The store answers one outcome per job, in order.
    let created = if jobs.is_empty() { Vec::new() } else { state.store.submit(jobs).await? };
    state.submitted(&created);
    let mut created = created.into_iter();
    let mut answer = Vec::with_capacity(plan.len());
    for entry in plan {
        answer.push(match entry {
            Ok(server) => {
                let outcome = created.next().ok_or_else(|| {
                    ApiError::Internal("the store answered fewer jobs than it was given".into())
                })?;
                json!({ "server": server, "isQueued": true, "links": [status_link(&alias, outcome.job())] })
            }
            Err((server, message)) => json!({ "server": server, "isQueued": false, "errorMessage": message }),
        });
    }
    Ok(Json(Value::Array(answer)))
}

/// The server names of a request: a bare JSON array (what every client sends), an
/// object with `serverIds`, or a form with `serverIds` as a scalar or repeated.
fn server_names(request: &Value) -> ApiResult<Vec<String>> {
    let list = match request {
        Value::Array(_) => request,
        Value::Object(_) => {
            field(request, "serverIds").or_else(|| field(request, "serverIds[]")).ok_or_else(|| {
                ApiError::BadRequest(
                    "the body must be a JSON array of server names, or have a serverIds field".into(),
                )
            })?
        }
        _ => return Err(ApiError::BadRequest("the body must be a JSON array of server names".into())),
    };
    let names: Vec<String> = match list {
        Value::String(one) => vec![one.clone()],
        Value::Array(items) => {
            items.iter().map(|item| item.as_str().map(str::to_string)).collect::<Option<_>>().ok_or_else(
                || ApiError::BadRequest("serverIds must contain only server names (strings)".into()),
            )?
        }
        _ => {
            return Err(ApiError::BadRequest(
                "serverIds must be a server name or an array of server names".into(),
            ))
        }
    };
    if names.is_empty() {
        return Err(ApiError::BadRequest("no servers were given: send at least one server name".into()));
    }
    if names.len() > MAX_SERVERS {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_SERVERS} servers may be given in one request"
        )));
    }
    Ok(names)
}

fn snapshot_expiration_days(request: &Value) -> ApiResult<u32> {
    let invalid =
        || ApiError::BadRequest("snapshotExpirationDays must be a whole number from 1 to 10".into());
    let days = match field(request, "snapshotExpirationDays") {
        None => return Ok(10),
        Some(Value::Number(n)) => n.as_u64().ok_or_else(invalid)?,
        Some(Value::String(s)) => s.trim().parse::<u64>().map_err(|_| invalid())?,
        Some(_) => return Err(invalid()),
    };
    if (1..=10).contains(&days) {
        Ok(days as u32)
    } else {
        Err(invalid())
    }
}

/// CLC server names are short runs of letters and digits (`WA1ALIASWEB01`); '-' and
/// '_' are tolerated for other inventories.
fn is_valid_server_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
