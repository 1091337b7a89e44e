//! `POST /v2/authentication/login`, as recorded from the real API: JSON or form body,
//! field names in any case, 400 with one message for any bad username or password.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::Json;
use serde_json::{json, Value};

use crate::auth::verify_password;
use crate::body::{field, RawBody};
use crate::error::{ApiError, ApiResult};
use crate::openapi::{responses, schemas};
use crate::state::AppState;

#[utoipa::path(
    post,
    path = "/v2/authentication/login",
    tag = "v2",
    operation_id = "login",
    summary = "Log in: trade a username and password for a bearer token",
    description = "The body is JSON or a form; field names match in any case. A wrong username \
        and a wrong password get the same 400, in the same time.",
    request_body(content(
        (schemas::LoginBody = "application/json"),
        (schemas::LoginBody = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Logged in.", body = schemas::LoginAnswer),
        (status = 400, description = "Bad username or password (one message for both), a \
            missing field, or a malformed body.", body = schemas::ErrorBody),
        (status = 413, response = responses::PayloadTooLarge),
        (status = 415, description = "A body that is neither JSON nor a form.", body = schemas::ErrorBody),
        (status = 429, response = responses::TooManyRequests),
        (status = 503, response = responses::Unavailable),
    ),
)]
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    body: RawBody,
) -> ApiResult<Json<Value>> {
    let value = body.to_value()?;
    let text = |name: &str| field(&value, name).and_then(Value::as_str).map(str::to_string);
    let (Some(username), Some(password)) = (text("username"), text("password")) else {
        return Err(ApiError::BadRequest(
            "username and password are required, as JSON {\"username\": ..., \"password\": ...} or a form"
                .into(),
        ));
    };
    if username.len() > 256 || password.len() > 1024 {
        return Err(ApiError::BadCredentials);
    }
    if let Some(wait) = state.throttle.retry_after(&username, &client, Instant::now()) {
        return Err(ApiError::TooManyRequests { retry_after_secs: wait.as_secs().max(1) });
    }

    let user = state.store.user(&username).await?;
    let stored_hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| state.decoy_hash.as_str().to_string());
    let matches =
        tokio::task::spawn_blocking(move || verify_password(&password, &stored_hash)).await.unwrap_or(false);
    let user = match user {
        Some(user) if matches => user,
        _ => {
            state.throttle.record_failure(&username, &client, Instant::now());
            tracing::info!(%client, "failed login");
            return Err(ApiError::BadCredentials);
        }
    };
    state.throttle.record_success(&username);

    let account = state
        .store
        .account(&user.account)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("user's account {} is missing", user.account)))?;
    let roles: Vec<String> = user.roles.names().into_iter().map(String::from).collect();
    let now_secs = opsq_store::now_ms() / 1000;
    let token = state
        .tokens
        .issue(&user.username, account.alias.as_str(), account.location.as_str(), roles.clone(), now_secs)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    tracing::info!(user = %user.username, account = %account.alias, "login");
    Ok(Json(json!({
        "userName": user.username,
        "accountAlias": account.alias.as_str(),
        "locationAlias": account.location.as_str(),
        "roles": roles,
        "bearerToken": token,
    })))
}

/// The client's IP address, when the server was started with connect info (tests
/// that build the router alone have none, and share one throttle bucket).
pub struct ClientAddr(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string())
                .unwrap_or_default(),
        ))
    }
}
