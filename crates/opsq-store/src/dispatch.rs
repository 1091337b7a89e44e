//! Direct dispatch: free slots, offered to submissions.
//!
//! Without it a job waits for two commits before it runs: its submission's, then the
//! claim's that the submission woke a runner or worker for. With an offer in place, a
//! submission of a kind the offer covers inserts the job already in its first attempt
//! (both stores take the slot with [`Dispatch::take_slot`] as they insert) and hands
//! the claim to the offer's owner once that transaction committed: one commit from
//! submit to start, the same lease and fencing as any claim.
//!
//! Offers come from the in-process runner while it waits, and from external workers'
//! long-polling claims (`/v2/workers/claim`) while they wait. A submission uses the
//! first offer that has a slot for one of its jobs; its other jobs wait for a claim.
//!
//! A dispatched job skips jobs that became runnable at the same moment without the
//! runner noticing yet (a retry coming due between two polls): order among jobs that
//! are ready together is not promised anyway.

use std::collections::HashSet;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opsq_domain::{AccountAlias, NewJob};
use tokio::sync::{mpsc, Notify};

use crate::types::Claim;
use crate::Store;

/// Free slots of one runner or one waiting worker, for the jobs of its kinds.
#[derive(Debug)]
pub struct Dispatch {
    kinds: HashSet<String>,
    /// `None`: jobs of every account (the in-process runner).
    accounts: Option<HashSet<AccountAlias>>,
    owner: String,
    lease_ms: i64,
    slots: AtomicUsize,
    /// Submissions holding this offer ([`OfferUse`]): each may still take a slot or
    /// hand over claims.
    in_use: AtomicUsize,
    settled: Notify,
    deliver: mpsc::UnboundedSender<Claim>,
}

impl Dispatch {
    /// An offer (of no slots yet) for the jobs of exactly these `kinds` (globs are
    /// not matched here: jobs of their kinds wait for a claim), of `accounts` only
    /// unless `None`, leased to `owner` for `lease_ms` unless the kind has a lease of
    /// its own; the claims arrive on the receiver, each once its transaction
    /// committed.
    pub fn new(
        kinds: impl IntoIterator<Item = String>,
        accounts: Option<HashSet<AccountAlias>>,
        owner: &str,
        lease_ms: i64,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Claim>) {
        let (deliver, claims) = mpsc::unbounded_channel();
        let kinds = kinds.into_iter().collect();
        let dispatch = Self {
            kinds,
            accounts,
            owner: owner.to_string(),
            lease_ms,
            slots: AtomicUsize::new(0),
            in_use: AtomicUsize::new(0),
            settled: Notify::new(),
            deliver,
        };
        (Arc::new(dispatch), claims)
    }

    /// Offers `slots` free slots, replacing the previous offer.
    pub fn offer(&self, slots: usize) {
        self.slots.store(slots, Ordering::SeqCst);
    }

    /// Takes the offer back; returns how many of its slots no submission used.
    /// Claims of slots already taken may still be on their way: see [`Self::settle`].
    pub fn withdraw(&self) -> usize {
        self.slots.swap(0, Ordering::SeqCst)
    }

    /// Waits until no submission holds the offer any more, so that after
    /// [`Self::withdraw`] every claim made on it is on the receiver. A waiting worker
    /// answers with what arrived; without this wait, a claim committed just after
    /// its answer would stay leased to it until the lease ran out.
    pub async fn settle(&self) {
        loop {
            let settled = self.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            if self.in_use.load(Ordering::SeqCst) == 0 {
                return;
            }
            settled.await;
        }
    }

    /// Whether the offer has a slot left that could take one of `jobs`.
    pub(crate) fn covers_any(&self, jobs: &[NewJob]) -> bool {
        self.slots.load(Ordering::SeqCst) > 0 && jobs.iter().any(|job| self.covers(job))
    }

    fn covers(&self, job: &NewJob) -> bool {
        self.kinds.contains(job.kind.as_str())
            && self.accounts.as_ref().is_none_or(|accounts| accounts.contains(&job.account))
    }

    /// The slots left for jobs of `kind` (of some account).
    pub(crate) fn slots_for(&self, kind: &str) -> usize {
        if self.kinds.contains(kind) {
            self.slots.load(Ordering::SeqCst)
        } else {
            0
        }
    }

    /// Whom the offer's jobs are leased to.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub(crate) fn lease_ms(&self) -> i64 {
        self.lease_ms
    }

    /// Takes one offered slot for `job`, if the offer covers it and a slot is left.
    pub(crate) fn take_slot(&self, job: &NewJob) -> bool {
        self.covers(job)
            && self.slots.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
    }

    /// Hands committed claims to the offer's owner. An owner gone meanwhile (a
    /// runner shut down, a worker that hung up) leaves them leased to it: they come
    /// back like any lost attempt's (rescue, or the lease running out).
    pub(crate) fn deliver(&self, claims: Vec<Claim>) {
        for claim in claims {
            let _ = self.deliver.send(claim);
        }
    }
}

/// An offer listed on a store (see [`Store::list_offer`]) until it is withdrawn or
/// dropped: a runner or a waiting claim that ends in any way, a panic or a hang-up
/// included, takes its offer off, so no submission starts a job for an owner that
/// is gone.
pub struct ListedOffer {
    store: Store,
    dispatch: Arc<Dispatch>,
}

impl ListedOffer {
    pub(crate) fn new(store: &Store, dispatch: Arc<Dispatch>) -> Self {
        store.add_offer(&dispatch);
        Self { store: store.clone(), dispatch }
    }

    fn take_off(&self) {
        self.dispatch.withdraw();
        self.store.remove_offer(&self.dispatch);
    }

    /// Takes the offer off the store and waits, at most `within`, until every claim
    /// made on it was delivered ([`Dispatch::settle`]). Returns whether it settled in
    /// time; if not, a submission still under way (a stalled database) leaves its job
    /// leased to the owner until the lease runs out.
    pub async fn withdraw(self, within: Duration) -> bool {
        let dispatch = self.dispatch.clone();
        drop(self);
        tokio::time::timeout(within, dispatch.settle()).await.is_ok()
    }
}

impl Drop for ListedOffer {
    fn drop(&mut self) {
        self.take_off();
    }
}

/// A submission's hold on an offer, from before it takes slots until after it
/// handed their claims over (or failed): what [`Dispatch::settle`] waits for.
#[derive(Debug)]
pub(crate) struct OfferUse {
    dispatch: Arc<Dispatch>,
}

impl OfferUse {
    /// Holds `dispatch` for a submission of `jobs`, if it has a slot for one of them.
    pub(crate) fn hold(dispatch: &Arc<Dispatch>, jobs: &[NewJob]) -> Option<Self> {
        // A first look spares every submission the counting (and the wake-up of a
        // settling owner) on offers that cannot take it.
        if !dispatch.covers_any(jobs) {
            return None;
        }
        // Counted before the check that counts: a withdrawal that saw no holder cannot
        // miss a slot taken after it.
        dispatch.in_use.fetch_add(1, Ordering::SeqCst);
        let held = Self { dispatch: dispatch.clone() };
        held.covers_any(jobs).then_some(held)
    }
}

impl Deref for OfferUse {
    type Target = Dispatch;

    fn deref(&self) -> &Dispatch {
        &self.dispatch
    }
}

impl Drop for OfferUse {
    fn drop(&mut self) {
        if self.dispatch.in_use.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.dispatch.settled.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;
    use opsq_domain::{AccountAlias, JobKind, Location};

    use super::*;

    fn job(account: &str, kind: &str) -> NewJob {
        NewJob {
            account: AccountAlias::parse(account).unwrap(),
            location: Location::parse("WA1").unwrap(),
            kind: JobKind::parse(kind).unwrap(),
            title: String::new(),
            payload: serde_json::Value::Null,
            max_attempts: 1,
            safe_to_repeat: true,
            idempotency_key: None,
            request_hash: None,
            submitter: "test".into(),
        }
    }

    #[test]
    fn settle_waits_for_a_submission_that_took_a_slot_before_the_withdrawal() {
        let (offer, _claims) = Dispatch::new(["t.direct".to_string()], None, "worker:a", 1000);
        offer.offer(1);
        let submission = [job("ACME", "t.direct")];
        let held = OfferUse::hold(&offer, &submission).expect("the offer covers the job");
        assert!(held.take_slot(&submission[0]));
        assert_eq!(offer.withdraw(), 0);
        let mut settling = Box::pin(offer.settle());
        assert!(settling.as_mut().now_or_never().is_none(), "a holder that took a slot is waited for");
        drop(held);
        assert!(settling.now_or_never().is_some(), "settled once the holder is done");
    }

    #[test]
    fn an_offer_is_held_only_by_submissions_it_covers() {
        let only_acme = Some(HashSet::from([AccountAlias::parse("ACME").unwrap()]));
        let (offer, _claims) = Dispatch::new(["t.direct".to_string()], only_acme, "worker:a", 1000);
        assert!(OfferUse::hold(&offer, &[job("ACME", "t.direct")]).is_none(), "no slots offered yet");
        offer.offer(2);
        assert!(OfferUse::hold(&offer, &[job("OTHER", "t.direct")]).is_none(), "another account");
        assert!(OfferUse::hold(&offer, &[job("ACME", "t.other")]).is_none(), "another kind");
        let held = OfferUse::hold(&offer, &[job("ACME", "t.other"), job("ACME", "t.direct")]);
        assert!(held.is_some(), "one covered job is enough");
        assert_eq!(offer.in_use.load(Ordering::SeqCst), 1, "refused holds leave no count behind");
        drop(held);
        assert!(offer.settle().now_or_never().is_some());
    }
}
