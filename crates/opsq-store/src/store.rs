use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use opsq_domain::{AccountAlias, Job, JobEvent, JobStatus, NewJob, Progress};

use crate::dispatch::{Dispatch, ListedOffer, OfferUse};
use crate::owners::{JobOwner, JobOwners};
use crate::postgres::PostgresStore;
use crate::sqlite::SqliteStore;
use crate::types::*;
use crate::{Signal, StoreError};

/// The one handle the rest of opsq uses, whatever database is behind it. Cheap to
/// clone; every clone shares the same connections and writer.
#[derive(Clone)]
pub struct Store {
    backend: Arc<Backend>,
    /// Offers of free slots: the in-process runner's while it waits, and waiting
    /// workers' (see [`Dispatch`]).
    offers: Arc<RwLock<Vec<Arc<Dispatch>>>>,
    /// Whose each recently seen job is, for access checks that need nothing else.
    owners: Arc<JobOwners>,
}

enum Backend {
    Sqlite(SqliteStore),
    Postgres(Box<PostgresStore>),
}

/// Calls the same method on whichever backend is behind the handle.
macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match &*$self.backend {
            Backend::Sqlite($s) => $call,
            Backend::Postgres($s) => $call,
        }
    };
}

/// For reads, which SQLite answers on the caller's thread (microseconds, no await)
/// and PostgreSQL over the network.
macro_rules! dispatch_read {
    ($self:ident, $s:ident => $call:expr) => {
        match &*$self.backend {
            Backend::Sqlite($s) => $call,
            Backend::Postgres($s) => $call.await,
        }
    };
}

impl Store {
    /// Opens (creating if needed) the embedded store in `data_dir` and applies migrations.
    pub fn open_sqlite(data_dir: &Path) -> Result<Self, StoreError> {
        Ok(Self::over(Backend::Sqlite(SqliteStore::open(data_dir)?)))
    }

    /// Connects to a shared PostgreSQL database (`postgres://user:password@host:port/db`)
    /// and applies migrations; any number of nodes may open the same database. A
    /// database that cannot be reached fails within seconds as
    /// [`StoreError::Unavailable`]. Connections do not use TLS yet.
    pub async fn open_postgres(url: &str) -> Result<Self, StoreError> {
        Ok(Self::over(Backend::Postgres(Box::new(PostgresStore::open(url).await?))))
    }

    fn over(backend: Backend) -> Self {
        Self { backend: Arc::new(backend), offers: Arc::default(), owners: Arc::default() }
    }

    /// Lets submissions start jobs on the slots `dispatch` offers (see [`Dispatch`]),
    /// after the offers listed before it, for as long as the returned listing lives.
    pub fn list_offer(&self, dispatch: Arc<Dispatch>) -> ListedOffer {
        ListedOffer::new(self, dispatch)
    }

    pub(crate) fn add_offer(&self, dispatch: &Arc<Dispatch>) {
        self.offers.write().unwrap_or_else(|poisoned| poisoned.into_inner()).push(dispatch.clone());
    }

    /// How many free slots the listed offers hold for jobs of `kind` right now: what a
    /// submission of that kind could start at once. For diagnostics and tests.
    pub fn offered_slots(&self, kind: &str) -> usize {
        let offers = self.offers.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        offers.iter().map(|offer| offer.slots_for(kind)).sum()
    }

    /// Later submissions no longer see `dispatch`; one that took it up already may
    /// still use its slots until it is withdrawn.
    pub(crate) fn remove_offer(&self, dispatch: &Arc<Dispatch>) {
        self.offers
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|offer| !Arc::ptr_eq(offer, dispatch));
    }

    /// A short description for logs, e.g. `sqlite:/var/lib/opsq/opsq.db` or
    /// `postgres://opsq@db.internal:5432/opsq` (never a password).
    pub fn describe(&self) -> String {
        dispatch!(self, s => s.describe())
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch_read!(self, s => s.ping())
    }

    /// Returns the stored value of `key`, storing `init()` first if there is none; every
    /// node sharing the store therefore agrees on it (used for the token signing key).
    pub async fn setting_or_init(
        &self,
        key: &str,
        init: impl FnOnce() -> String + Send + 'static,
    ) -> Result<String, StoreError> {
        dispatch!(self, s => s.setting_or_init(key.to_string(), init).await)
    }

    /// Creates the root account and its first user if the store has no account yet.
    /// Returns whether it did, so the caller prints the password only that once.
    pub async fn bootstrap(&self, root: Account, admin: NewUser) -> Result<bool, StoreError> {
        dispatch!(self, s => s.bootstrap(root, admin).await)
    }

    pub async fn create_account(&self, account: Account) -> Result<(), StoreError> {
        dispatch!(self, s => s.create_account(account).await)
    }

    pub async fn account(&self, alias: &AccountAlias) -> Result<Option<Account>, StoreError> {
        dispatch_read!(self, s => s.account(alias))
    }

    /// Whether `alias` is `root` or one of its descendants: the access rule of the API.
    pub async fn is_within(&self, root: &AccountAlias, alias: &AccountAlias) -> Result<bool, StoreError> {
        if root == alias {
            return Ok(true);
        }
        dispatch_read!(self, s => s.is_within(root, alias))
    }

    /// `root` and every account below it.
    pub async fn subtree(&self, root: &AccountAlias) -> Result<Vec<AccountAlias>, StoreError> {
        dispatch_read!(self, s => s.subtree(root))
    }

    pub async fn create_user(&self, user: NewUser) -> Result<(), StoreError> {
        dispatch!(self, s => s.create_user(user).await)
    }

    pub async fn user(&self, username: &str) -> Result<Option<User>, StoreError> {
        dispatch_read!(self, s => s.user(username))
    }

    pub async fn create_api_key(&self, key: ApiKey) -> Result<(), StoreError> {
        dispatch!(self, s => s.create_api_key(key).await)
    }

    pub async fn api_key(&self, key: &str) -> Result<Option<ApiKey>, StoreError> {
        dispatch_read!(self, s => s.api_key(key))
    }

    /// Records a v1 session so that every node sharing the store accepts its cookie.
    pub async fn create_v1_session(&self, session: V1Session) -> Result<(), StoreError> {
        dispatch!(self, s => s.create_v1_session(session).await)
    }

    /// The live (unexpired) session with this token hash, if any.
    pub async fn v1_session(&self, token_hash: &str) -> Result<Option<V1Session>, StoreError> {
        dispatch_read!(self, s => s.v1_session(token_hash, crate::now_ms()))
    }

    pub async fn delete_v1_session(&self, token_hash: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.delete_v1_session(token_hash.to_string()).await)
    }

    /// Accepts jobs durably, all in one transaction; with an idempotency key, a repeat
    /// returns the first job instead of making another.
    ///
    /// Jobs of a kind the in-process runner or a waiting worker offers free slots for
    /// start at once, in the same transaction ([`Dispatch`]); their outcomes show them
    /// started.
    pub async fn submit(&self, jobs: Vec<NewJob>) -> Result<Vec<SubmitOutcome>, StoreError> {
        for job in &jobs {
            storable("title", &job.title)?;
            storable("submitter", &job.submitter)?;
            storable("idempotency key", job.idempotency_key.as_deref().unwrap_or_default())?;
            storable("request hash", job.request_hash.as_deref().unwrap_or_default())?;
        }
        let offer = self
            .offers
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .find_map(|offer| OfferUse::hold(offer, &jobs))
            .map(Arc::new);
        let outcomes = dispatch!(self, s => s.submit(jobs, offer).await)?;
        // Only the jobs an offer started: a worker may report on them at once.
        for job in outcomes.iter().map(|outcome| outcome.job()) {
            if job.status == JobStatus::Executing {
                self.keep_owner(job);
            }
        }
        Ok(outcomes)
    }

    /// Signals from every node sharing this store; `None` for the embedded store,
    /// which only one server uses (its wake-ups stay in process).
    pub fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<Signal>> {
        match &*self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(p) => Some(p.subscribe()),
        }
    }

    /// Whether this node should run housekeeping now: always on the embedded store;
    /// on PostgreSQL, only the node holding the housekeeping lock (one at a time).
    pub fn is_housekeeper(&self) -> bool {
        match &*self.backend {
            Backend::Sqlite(_) => true,
            Backend::Postgres(p) => p.is_housekeeper(),
        }
    }

    /// Whether several nodes may share this store (so a starting node must not take
    /// back leases by owner prefix: they may be another live node's).
    pub fn is_shared(&self) -> bool {
        matches!(&*self.backend, Backend::Postgres(_))
    }

    pub async fn job(&self, number: i64) -> Result<Option<Job>, StoreError> {
        dispatch_read!(self, s => s.job(number))
    }

    /// The hot path of `GET .../status/{id}`: one narrow row by primary key.
    pub async fn job_status(&self, number: i64) -> Result<Option<JobStatusRow>, StoreError> {
        dispatch_read!(self, s => s.job_status(number))
    }

    /// Whose the job is, for the access checks of a worker's calls: usually answered
    /// from memory, since a job's owner never changes and a worker reports on a job
    /// soon after it was claimed (or started by a submission). Status reads keep
    /// nothing: with 64 clients polling, keeping an owner per read took 2.0% of the
    /// server's profile samples, plus its hashing.
    /// A job pruned since may still be answered; the call that follows is refused by
    /// the store as for any job it no longer holds.
    pub async fn job_owner(&self, number: i64) -> Result<Option<JobOwner>, StoreError> {
        if let Some(owner) = self.owners.get(number) {
            return Ok(Some(owner));
        }
        let Some(row) = self.job_status(number).await? else { return Ok(None) };
        let owner = JobOwner { account: row.account, location: row.location };
        self.owners.insert(number, owner.clone());
        Ok(Some(owner))
    }

    /// Kept for jobs handed to callers who will name them by status id and pass an
    /// access check to report on them: workers, whose claims are limited to their
    /// accounts. The in-process runner claims for every account and is never checked,
    /// so its hot path keeps nothing. A claim's row was just read, so what it keeps
    /// replaces any entry for the number.
    fn keep_owner(&self, job: &Job) {
        self.owners.insert(job.number, JobOwner::of(job));
    }

    pub async fn job_events(&self, number: i64) -> Result<Vec<JobEvent>, StoreError> {
        dispatch_read!(self, s => s.job_events(number))
    }

    /// Jobs visible under the filter, newest first.
    pub async fn list_jobs(&self, filter: JobFilter) -> Result<Vec<Job>, StoreError> {
        dispatch_read!(self, s => s.list_jobs(filter))
    }

    /// Moves up to `limit` waiting jobs to `executing` under a new lease each.
    pub async fn claim(&self, request: ClaimRequest) -> Result<Vec<Claim>, StoreError> {
        let checked_later = request.accounts.is_some();
        let claims = dispatch!(self, s => s.claim(request).await)?;
        if checked_later {
            claims.iter().for_each(|claim| self.keep_owner(&claim.job));
        }
        Ok(claims)
    }

    /// Renews a lease and optionally records progress; refused once the lease is lost.
    pub async fn heartbeat(
        &self,
        number: i64,
        lease_token: &str,
        progress: Option<Progress>,
        lease_ms: i64,
    ) -> Result<HeartbeatAck, StoreError> {
        storable("progress description", progress.as_ref().map_or("", |p| p.description.as_str()))?;
        dispatch!(self, s => s.heartbeat(number, lease_token.to_string(), progress, lease_ms).await)
    }

    /// Records how an attempt ended; refused once the lease is lost, so only one
    /// attempt can ever record an outcome.
    pub async fn finish(
        &self,
        number: i64,
        lease_token: &str,
        outcome: JobOutcome,
    ) -> Result<Job, StoreError> {
        outcome_storable(&outcome)?;
        dispatch!(self, s => s.finish(number, lease_token.to_string(), outcome).await)
    }

    /// [`Self::finish`] for callers that need only the job's new status (the
    /// in-process runner): the embedded store then records a success without copying
    /// the job's row out of its writer thread, its one bottleneck.
    pub async fn finish_status(
        &self,
        number: i64,
        lease_token: &str,
        outcome: JobOutcome,
    ) -> Result<JobStatus, StoreError> {
        Ok(self.finish_status_then_claim(number, lease_token, outcome, None).await?.0)
    }

    /// [`Self::finish_status`] that, on a success, also claims the next waiting job
    /// for `next`, if given (one job, whatever its `limit`), and answers it with the
    /// status. `next` is shared: a runner asks the same for every job. The answer says
    /// whether the claim was made ([`NextJob`]), so a caller that wants a job still
    /// claims on its own only where that can find one.
    ///
    /// The claim is made in the success's own transaction (on PostgreSQL, its own
    /// statement): a runner that keeps its slot busy this way needs no transaction of
    /// its own to claim for the slot a success freed. A failure claims nothing. On
    /// PostgreSQL, successes recorded together that asked with different requests
    /// (reports of several workers in one batch) get the claim of the request most
    /// of them share; the others hear [`NextJob::NotClaimed`].
    pub async fn finish_status_then_claim(
        &self,
        number: i64,
        lease_token: &str,
        outcome: JobOutcome,
        next: Option<Arc<ClaimRequest>>,
    ) -> Result<(JobStatus, NextJob), StoreError> {
        outcome_storable(&outcome)?;
        let checked_later = next.as_ref().is_some_and(|next| next.accounts.is_some());
        let (status, next) = match &*self.backend {
            Backend::Sqlite(s) => s.finish_status(number, lease_token.to_string(), outcome, next).await?,
            Backend::Postgres(s) => {
                let (job, claimed) =
                    s.finish_then_claim(number, lease_token.to_string(), outcome, next).await?;
                (job.status, claimed)
            }
        };
        match &next {
            NextJob::Claimed(claim) if checked_later => self.keep_owner(&claim.job),
            _ => {}
        }
        Ok((status, next))
    }

    /// Hands back a job its worker claimed but never started (it was shutting down):
    /// the job is `resumed` and due at once, and the attempt does not count, so a
    /// kind that allows one attempt does not end `failed` because a worker stopped.
    /// A cancel requested meanwhile ends it `failed` as cancelled instead. Refused
    /// once the lease is lost, like an outcome.
    pub async fn release(&self, number: i64, lease_token: &str) -> Result<Job, StoreError> {
        dispatch!(self, s => s.release(number, lease_token.to_string()).await)
    }

    /// Takes back the jobs whose lease expired (or, with `owner_prefix`, every lease
    /// held by a previous run of this node) and makes them `resumed` or `unknown`.
    pub async fn rescue(&self, owner_prefix: Option<String>) -> Result<Vec<Rescued>, StoreError> {
        dispatch!(self, s => s.rescue(owner_prefix).await)
    }

    /// Cancels a job: at once if it waits, by asking its worker if it runs.
    pub async fn cancel(&self, number: i64, reason: &str) -> Result<CancelOutcome, StoreError> {
        storable("reason", reason)?;
        dispatch!(self, s => s.cancel(number, reason.to_string()).await)
    }

    /// Settles an `unknown` outcome; refused for any other status.
    pub async fn resolve(&self, number: i64, resolution: Resolution, note: &str) -> Result<Job, StoreError> {
        storable("note", note)?;
        dispatch!(self, s => s.resolve(number, resolution, note.to_string()).await)
    }

    pub async fn set_kind(&self, settings: KindSettings) -> Result<(), StoreError> {
        dispatch!(self, s => s.set_kind(settings).await)
    }

    pub async fn kind(&self, kind: &str) -> Result<Option<KindSettings>, StoreError> {
        dispatch_read!(self, s => s.kind(kind))
    }

    /// Deletes up to `limit` jobs that ended before `finished_before`, with their history.
    pub async fn prune_finished(&self, finished_before: i64, limit: u32) -> Result<usize, StoreError> {
        dispatch!(self, s => s.prune_finished(finished_before, limit).await)
    }

    /// Ends `failed` the jobs `unknown` since before the given time.
    pub async fn fail_stale_unknown(
        &self,
        unknown_since_before: i64,
        reason: &str,
    ) -> Result<Vec<i64>, StoreError> {
        dispatch!(self, s => s.fail_stale_unknown(unknown_since_before, reason.to_string()).await)
    }

    /// The oldest `unknown` jobs, for reconcile probes.
    pub async fn unknown_jobs(&self, limit: u32) -> Result<Vec<Job>, StoreError> {
        dispatch_read!(self, s => s.unknown_jobs(limit))
    }

    /// How many jobs wait, run or wait for a resolution, by status, for metrics. Read
    /// from the partial indexes of unfinished jobs, so its cost follows the queue's
    /// depth, never the number of finished jobs kept. Fails as
    /// [`StoreError::Unavailable`] when the store has not answered within `within`,
    /// so a scrape of a node whose database is down still answers in time.
    pub async fn unfinished_counts(&self, within: Duration) -> Result<UnfinishedCounts, StoreError> {
        let counting = async {
            match &*self.backend {
                // Unlike a point read, the count reads an entry per waiting job: on a
                // blocking thread, so a deep queue does not stall a runtime thread and
                // the time limit can answer without it.
                Backend::Sqlite(_) => {
                    let backend = self.backend.clone();
                    tokio::task::spawn_blocking(move || match &*backend {
                        Backend::Sqlite(s) => s.unfinished_counts(),
                        Backend::Postgres(_) => unreachable!("the backend was SQLite a moment ago"),
                    })
                    .await
                    .map_err(|err| StoreError::Unavailable(format!("counting jobs stopped: {err}")))?
                }
                Backend::Postgres(s) => s.unfinished_counts(within).await,
            }
        };
        tokio::time::timeout(within, counting).await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(format!("no count of jobs within {} ms", within.as_millis())))
        })
    }

    pub async fn prune_sessions(&self) -> Result<usize, StoreError> {
        dispatch!(self, s => s.prune_sessions().await)
    }
}

/// A failure's error is stored as given; a success's result is stored as JSON text,
/// where a NUL is escaped.
fn outcome_storable(outcome: &JobOutcome) -> Result<(), StoreError> {
    match outcome {
        JobOutcome::Fatal(error) | JobOutcome::Retryable { error, .. } => storable("error", error),
        JobOutcome::Succeeded(_) => Ok(()),
    }
}

/// PostgreSQL cannot store a NUL character in text, and on a batched write (outcomes,
/// submissions) one such value would fail every other caller's in the batch. Both
/// stores refuse it alike, before anything is queued.
fn storable(field: &str, text: &str) -> Result<(), StoreError> {
    if text.contains('\0') {
        return Err(StoreError::Invalid(format!("{field} must not contain a NUL character")));
    }
    Ok(())
}
