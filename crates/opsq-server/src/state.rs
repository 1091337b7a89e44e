//! The state every handler shares, passed explicitly through axum's `State`.

use std::sync::Arc;

use opsq_domain::AccountAlias;
use opsq_store::Store;
use tokio::sync::Notify;

use crate::auth::{Caller, LoginThrottle, TokenKeys};
use crate::error::{ApiError, ApiResult};

/// Largest request body accepted, in bytes; larger bodies get 413 without being read.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub tokens: Arc<TokenKeys>,
    pub throttle: Arc<LoginThrottle>,
    /// Woken after every accepted submission so the runner claims at once.
    pub job_submitted: Arc<Notify>,
    /// An argon2id hash of nothing anyone knows, checked when a username does not
    /// exist so that failed logins take the same time either way.
    pub decoy_hash: Arc<String>,
}

impl AppState {
    /// Resolves the `{alias}` of a URL for this caller: 403 unless it is the caller's
    /// account or one below it. Malformed aliases get the same answer, so the reply
    /// tells nothing about which accounts exist.
    pub async fn authorize_alias(&self, caller: &Caller, raw: &str) -> ApiResult<AccountAlias> {
        let denied = || {
            let shown: String = raw.chars().take(32).collect();
            ApiError::Forbidden(format!(
                "Access denied: account {shown:?} is not {} or one of its sub-accounts",
                caller.account
            ))
        };
        let alias = AccountAlias::parse(raw).map_err(|_| denied())?;
        if self.store.is_within(&caller.account, &alias).await? {
            Ok(alias)
        } else {
            Err(denied())
        }
    }
}
