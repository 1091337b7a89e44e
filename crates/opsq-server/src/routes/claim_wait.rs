//! How a long-polling claim waits: until a submission, a rescue, the next recheck or its
//! deadline, meanwhile offering its slots to submissions (see [`Dispatch`]), so a job
//! submitted to a waiting worker starts in its submission's commit and reaches the
//! worker without a claim of its own. A worker that hangs up mid-wait drops the
//! listing, which takes the offer off at once; claims still on their way then stay
//! leased to it until rescued or expired, as those of a claim answered to a closed
//! connection would.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use opsq_domain::{AccountAlias, JobKind};
use opsq_store::{Claim, ClaimRequest, Dispatch, Store};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Longest wait for submissions that took the offer up to hand their claims over.
const SETTLE_WITHIN: Duration = Duration::from_secs(5);

/// A claim request's offer, made once per request and listed on the store only while
/// the claim waits.
pub(super) struct ClaimOffer {
    dispatch: Arc<Dispatch>,
    delivered: mpsc::UnboundedReceiver<Claim>,
    slots: usize,
}

impl ClaimOffer {
    /// The offer for `request`'s exact kinds in its accounts; `None` when it names
    /// only globs, whose jobs wait for the claim.
    pub(super) fn for_request(request: &ClaimRequest) -> Option<Self> {
        let kinds: Vec<String> =
            request.kinds.iter().filter(|kind| JobKind::parse(kind).is_ok()).cloned().collect();
        if kinds.is_empty() {
            return None;
        }
        let accounts: Option<HashSet<AccountAlias>> =
            request.accounts.as_ref().map(|accounts| accounts.iter().cloned().collect());
        let (dispatch, delivered) = Dispatch::new(kinds, accounts, &request.owner, request.lease_ms);
        Some(Self { dispatch, delivered, slots: request.limit as usize })
    }
}

/// Waits as described above; returns the jobs submissions started on the offer,
/// none if it woke for another reason (the caller then claims again). A claim that a
/// settle gave up on still arrives with the next wait's answer, if there is one.
pub(super) async fn wait_offering(
    store: &Store,
    offer: Option<&mut ClaimOffer>,
    wakeups: &mut watch::Receiver<u64>,
    recheck: Duration,
    deadline: Instant,
) -> Vec<Claim> {
    let Some(offer) = offer else {
        wait_for_wakeup(wakeups, recheck, deadline).await;
        return Vec::new();
    };
    offer.dispatch.offer(offer.slots);
    let listed = store.list_offer(offer.dispatch.clone());
    let mut claims = Vec::new();
    tokio::select! {
        Some(claim) = offer.delivered.recv() => claims.push(claim),
        _ = wait_for_wakeup(wakeups, recheck, deadline) => {}
    }
    if !listed.withdraw(SETTLE_WITHIN).await {
        tracing::warn!(
            owner = offer.dispatch.owner(),
            "a submission using this claim's offer did not finish within {SETTLE_WITHIN:?}; \
             a job it started stays leased to the worker until its lease runs out"
        );
    }
    while let Ok(claim) = offer.delivered.try_recv() {
        claims.push(claim);
    }
    claims
}

async fn wait_for_wakeup(wakeups: &mut watch::Receiver<u64>, recheck: Duration, deadline: Instant) {
    tokio::select! {
        _ = wakeups.changed() => {}
        _ = tokio::time::sleep(recheck) => {}
        _ = tokio::time::sleep_until(deadline) => {}
    }
}
