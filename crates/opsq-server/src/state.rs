//! The state every handler shares, passed explicitly through axum's `State`.

use std::sync::Arc;

use opsq_domain::AccountAlias;
use opsq_store::{Account, KindSettings, Store, SubmitOutcome};

use crate::recent::Recent;

use crate::auth::{Caller, LoginThrottle, TokenKeys};
use crate::error::{ApiError, ApiResult};
use crate::metrics::Metrics;
use crate::wakeup::{RunningJobs, Wakeup};

/// Largest request body accepted, in bytes; larger bodies get 413 without being read.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Attempts a job gets when neither it nor its kind says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// The state every handler shares, behind one `Arc`. axum clones the state for each
/// request, more than once; with ten shared handles as fields, each clone and drop
/// was ten atomic operations on cache lines both cores write (about 6% of the
/// server's samples in a status-read benchmark).
#[derive(Clone)]
pub struct AppState(Arc<SharedState>);

impl std::ops::Deref for AppState {
    type Target = SharedState;

    fn deref(&self) -> &SharedState {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct SharedState {
    pub store: Store,
    pub tokens: TokenKeys,
    pub throttle: LoginThrottle,
    /// Bumped after every accepted submission so the runner and long-polling
    /// workers claim at once.
    pub wakeup: Wakeup,
    /// Jobs running in this process, for immediate cancels.
    pub running: RunningJobs,
    /// Defaults of `opsq serve` that handlers need.
    pub config: ServerConfig,
    /// What `GET /metrics` shows; handlers count what they did in it.
    pub metrics: Metrics,
    /// An argon2id hash of nothing anyone knows, checked when a username does not
    /// exist so that failed logins take the same time either way.
    pub decoy_hash: String,
    /// Kinds' stored defaults, read on every submission.
    pub kinds: Recent<String, Option<KindSettings>>,
    /// Accounts as submissions look them up.
    pub accounts: Recent<AccountAlias, Option<Account>>,
    /// Account subtrees as worker claims look them up. Accounts are only ever
    /// added, never moved or removed, so a copy up to a second old can miss a new
    /// sub-account but never includes one the caller may not see.
    pub subtrees: Recent<AccountAlias, Vec<AccountAlias>>,
}

impl AppState {
    /// Built once per server by [`crate::app_state`].
    pub(crate) fn new(shared: SharedState) -> Self {
        Self(Arc::new(shared))
    }

    /// A kind's attempt limit and repeat-safety, from `opsq admin kind set`, with the
    /// job's own values (when given) taking precedence.
    pub async fn kind_defaults(
        &self,
        kind: &opsq_domain::JobKind,
        max_attempts: Option<u32>,
        safe_to_repeat: Option<bool>,
    ) -> ApiResult<(u32, bool)> {
        let settings = self.kind_settings(kind.as_str()).await?;
        Ok(apply_kind_defaults(settings.as_ref(), max_attempts, safe_to_repeat))
    }

    /// Counts an accepted submission's new jobs, and wakes the runner and
    /// long-polling workers if it left jobs waiting. Jobs a free slot took in the
    /// submission's transaction started their first attempt there and need no claim,
    /// so a submission that was all dispatched wakes nobody.
    pub fn submitted(&self, outcomes: &[SubmitOutcome]) {
        let (mut created, mut started, mut waiting) = (0, 0, false);
        for outcome in outcomes {
            if let SubmitOutcome::Created(job) = outcome {
                created += 1;
                match job.status {
                    opsq_domain::JobStatus::Executing => started += 1,
                    opsq_domain::JobStatus::NotStarted => waiting = true,
                    _ => {}
                }
            }
        }
        self.metrics.jobs().submitted(created, started);
        if waiting {
            self.wakeup.notify();
        }
    }

    /// A kind's stored settings, at most [`crate::recent::RECENT_TTL`] old.
    pub async fn kind_settings(&self, kind: &str) -> ApiResult<Option<KindSettings>> {
        Ok(self.kinds.get_or_load(&kind.to_string(), || self.store.kind(kind)).await?)
    }

    /// An account, at most [`crate::recent::RECENT_TTL`] old.
    pub async fn account(&self, alias: &AccountAlias) -> ApiResult<Option<Account>> {
        Ok(self.accounts.get_or_load(alias, || self.store.account(alias)).await?)
    }

    /// `root` and every account below it, at most [`crate::recent::RECENT_TTL`] old:
    /// one read per second per account instead of one per worker claim.
    pub async fn subtree(&self, root: &AccountAlias) -> ApiResult<Vec<AccountAlias>> {
        Ok(self.subtrees.get_or_load(root, || self.store.subtree(root)).await?)
    }

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

/// A job's attempt limit and repeat-safety: its own values, else its kind's, else
/// the defaults.
pub fn apply_kind_defaults(
    settings: Option<&opsq_store::KindSettings>,
    max_attempts: Option<u32>,
    safe_to_repeat: Option<bool>,
) -> (u32, bool) {
    (
        max_attempts.or(settings.and_then(|s| s.max_attempts)).unwrap_or(DEFAULT_MAX_ATTEMPTS),
        safe_to_repeat.or(settings.and_then(|s| s.safe_to_repeat)).unwrap_or(true),
    )
}

/// Server-wide settings handlers read.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The lease given to claims of kinds without their own.
    pub default_lease_ms: i64,
    /// How often a waiting claim looks again without a wake-up, for jobs another
    /// process (another node, the admin CLI) made claimable.
    pub claim_recheck: std::time::Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self { default_lease_ms: 30_000, claim_recheck: std::time::Duration::from_millis(500) }
    }
}
