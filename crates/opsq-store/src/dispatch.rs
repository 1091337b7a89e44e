//! Direct dispatch: a runner's free slots, offered to submissions.
//!
//! Without it a job waits for two commits before it runs: its submission's, then the
//! claim's that the submission woke the runner for. With an offer in place, a
//! submission of a kind the runner handles inserts the job already in its first
//! attempt (both stores take the slot with [`Dispatch::take_slot`] as they insert)
//! and hands the claim to the runner once that transaction committed: one commit
//! from submit to start, the same lease and fencing as any claim.
//!
//! A dispatched job skips jobs that became runnable at the same moment without the
//! runner noticing yet (a retry coming due between two polls): order among jobs that
//! are ready together is not promised anyway.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::types::Claim;

/// Free slots of one runner, for the jobs of its kinds.
#[derive(Debug)]
pub struct Dispatch {
    kinds: HashSet<String>,
    owner: String,
    lease_ms: i64,
    slots: AtomicUsize,
    deliver: mpsc::UnboundedSender<Claim>,
}

impl Dispatch {
    /// An offer (of no slots yet) for the jobs of exactly these `kinds`, leased to
    /// `owner` for `lease_ms` unless the kind has a lease of its own; the claims
    /// arrive on the receiver, each once its transaction committed.
    pub fn new(
        kinds: impl IntoIterator<Item = String>,
        owner: &str,
        lease_ms: i64,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Claim>) {
        let (deliver, claims) = mpsc::unbounded_channel();
        let kinds = kinds.into_iter().collect();
        (
            Arc::new(Self { kinds, owner: owner.to_string(), lease_ms, slots: AtomicUsize::new(0), deliver }),
            claims,
        )
    }

    /// Offers `slots` free slots, replacing the previous offer.
    pub fn offer(&self, slots: usize) {
        self.slots.store(slots, Ordering::SeqCst);
    }

    /// Takes the offer back; returns how many of its slots no submission used.
    pub fn withdraw(&self) -> usize {
        self.slots.swap(0, Ordering::SeqCst)
    }

    /// Whether any offered slot is left (a submission need not consider the offer
    /// otherwise).
    pub(crate) fn has_slots(&self) -> bool {
        self.slots.load(Ordering::SeqCst) > 0
    }

    pub(crate) fn owner(&self) -> &str {
        &self.owner
    }

    pub(crate) fn lease_ms(&self) -> i64 {
        self.lease_ms
    }

    /// Takes one offered slot for a new job of `kind`, if the runner handles it and
    /// a slot is left.
    pub(crate) fn take_slot(&self, kind: &str) -> bool {
        self.kinds.contains(kind)
            && self.slots.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
    }

    /// Hands committed claims to the runner. A runner gone meanwhile leaves them
    /// leased to it: they come back like any lost attempt's (rescue).
    pub(crate) fn deliver(&self, claims: Vec<Claim>) {
        for claim in claims {
            let _ = self.deliver.send(claim);
        }
    }
}
