//! The v1 methods: Auth/Logon, Auth/Logout, Queue/GetRequestStatus and
//! Queue/ListQueueRequests.

use std::time::Instant;

use opsq_domain::{AccountAlias, JobStatus};
use opsq_store::{JobFilter, V1Session};

use super::call::V1Call;
use super::reply::{Body, QueueItem, Reply, V1Error};
use super::session;
use crate::auth::verify_password;
use crate::state::AppState;

/// Most requests ListQueueRequests returns, newest first.
pub const LIST_CAP: u32 = 1000;

pub async fn logon(state: &AppState, call: &V1Call) -> Result<Reply, V1Error> {
    let (Some(key), Some(password)) = (call.param("APIKey"), call.param("Password")) else {
        return Err(V1Error::format("APIKey and Password are required".into()));
    };
    if key.len() > 256 || password.len() > 1024 {
        return Err(V1Error::bad_credentials());
    }
    if let Some(wait) = state.throttle.retry_after(key, &call.client, Instant::now()) {
        return Err(V1Error::throttled(wait.as_secs().max(1)));
    }
    let stored = state.store.api_key(key).await?;
    let hash =
        stored.as_ref().map(|k| k.password_hash.clone()).unwrap_or_else(|| state.decoy_hash.to_string());
    let password = password.to_string();
    let matches =
        tokio::task::spawn_blocking(move || verify_password(&password, &hash)).await.unwrap_or(false);
    let api_key = match stored {
        Some(api_key) if matches => api_key,
        _ => {
            state.throttle.record_failure(key, &call.client, Instant::now());
            tracing::info!(client = %call.client, "failed v1 logon");
            return Err(V1Error::bad_credentials());
        }
    };
    state.throttle.record_success(key);
    let token = session::new_token();
    let now = opsq_store::now_ms();
    let expires_at = now + session::SESSION_LIFETIME_MS;
    state
        .store
        .create_v1_session(V1Session {
            token_hash: session::hash(&token),
            api_key: api_key.key,
            account: api_key.account.clone(),
            created_at: now,
            expires_at,
        })
        .await?;
    tracing::info!(account = %api_key.account, "v1 logon");
    Ok(Reply::ok("LogonResponse", "Login Successful", Body::None)
        .with_cookie(session::set_cookie(&token, expires_at)))
}

pub async fn logout(state: &AppState, call: &V1Call) -> Result<Reply, V1Error> {
    if let Some(token) = &call.cookie_token {
        state.store.delete_v1_session(&session::hash(token)).await?;
    }
    Ok(Reply::ok("LogoutResponse", "Logout Successful", Body::None).with_cookie(session::clear_cookie()))
}

/// The session's account, or the `AccountAlias` parameter when it names the session's
/// account or one below it (5 if it does not exist, 101 if it is outside).
async fn effective_account(state: &AppState, call: &V1Call) -> Result<AccountAlias, V1Error> {
    let token = call.cookie_token.as_deref().ok_or_else(V1Error::not_logged_on)?;
    let session = state.store.v1_session(&session::hash(token)).await?.ok_or_else(V1Error::not_logged_on)?;
    let Some(raw) = call.param("AccountAlias").filter(|a| !a.trim().is_empty()) else {
        return Ok(session.account);
    };
    let shown: String = raw.chars().take(32).collect();
    let missing = || V1Error::new(5, format!("Account {shown:?} does not exist"));
    let alias = AccountAlias::parse(raw.trim()).map_err(|_| missing())?;
    if state.store.account(&alias).await?.is_none() {
        return Err(missing());
    }
    if !state.store.is_within(&session.account, &alias).await? {
        return Err(V1Error::access_denied());
    }
    Ok(alias)
}

pub async fn get_request_status(state: &AppState, call: &V1Call) -> Result<Reply, V1Error> {
    let account = effective_account(state, call).await?;
    let raw = call.param("RequestID").map(str::trim).unwrap_or_default();
    if raw.is_empty() || raw.len() > 19 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(V1Error::format("RequestID must be a number".into()));
    }
    let invalid = || V1Error::new(900, "Invalid RequestID");
    let number: i64 = raw.parse().map_err(|_| invalid())?;
    let job = state.store.job(number).await?.ok_or_else(invalid)?;
    if !state.store.is_within(&account, &job.account).await? {
        return Err(invalid());
    }
    let successor = format!("/v2/operations/{}/status/{}", job.account.to_lowercase(), job.status_id());
    Ok(Reply::ok(
        "QueueStatusResponse",
        "Request Status successfully retrieved.",
        Body::Details(QueueItem::of(&job)),
    )
    .with_successor(successor))
}

pub async fn list_queue_requests(state: &AppState, call: &V1Call) -> Result<Reply, V1Error> {
    let account = effective_account(state, call).await?;
    let statuses = match call.param("ItemStatusType").map(str::trim) {
        Some("1") => vec![],
        Some("2") => {
            vec![JobStatus::NotStarted, JobStatus::Executing, JobStatus::Resumed, JobStatus::Unknown]
        }
        Some("3") => vec![JobStatus::Succeeded],
        Some("4") => vec![JobStatus::Failed],
        _ => return Err(V1Error::new(901, "The ItemStatus value is invalid.")),
    };
    let jobs = state
        .store
        .list_jobs(JobFilter {
            accounts: state.store.subtree(&account).await?,
            statuses,
            kind: None,
            before: None,
            limit: LIST_CAP,
        })
        .await?;
    let message = format!("{} Queue requests were found for your account", jobs.len());
    let successor = format!("/v2/operations/{}/jobs", account.to_lowercase());
    Ok(Reply::ok("ListQueueItemsResponse", message, Body::List(jobs.iter().map(QueueItem::of).collect()))
        .with_successor(successor))
}
