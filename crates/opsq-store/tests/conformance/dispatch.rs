//! Direct dispatch: submissions start jobs on the slots a runner offers, in their own
//! transaction, and hand the claims over once committed.

use std::collections::{BTreeSet, HashSet};

use opsq_domain::{Job, JobStatus};
use opsq_store::{Dispatch, JobOutcome, Store};
use serde_json::json;

use crate::support::*;

pub async fn a_submission_starts_jobs_on_offered_slots(store: Store) {
    accounts(&store, &["ACME"]).await;
    let (offer, mut claims) = Dispatch::new(["t.direct".to_string()], None, "inproc:test", LONG_LEASE_MS);
    let listed = store.list_offer(offer.clone());
    offer.offer(2);
    let batch = ["t.direct", "t.other", "t.direct", "t.direct"].map(|kind| new_job("ACME", kind));
    let outcomes = store.submit(batch.to_vec()).await.expect("submit");
    let jobs: Vec<Job> = outcomes.iter().map(|outcome| outcome.job().clone()).collect();
    let statuses: Vec<JobStatus> = jobs.iter().map(|job| job.status).collect();
    assert_eq!(
        statuses,
        [JobStatus::Executing, JobStatus::NotStarted, JobStatus::Executing, JobStatus::NotStarted],
        "the two offered slots take the first two jobs of the offered kind"
    );
    assert_eq!(offer.withdraw(), 0, "both slots were used");

    for expected in [&jobs[0], &jobs[2]] {
        let claim =
            claims.try_recv().expect("a claim for each started job, delivered by the time submit returns");
        assert_eq!(&claim.job, expected, "the submission answers the started job");
        assert_eq!(job(&store, expected.number).await, claim.job, "and that is what is stored");
        assert_eq!(claim.job.attempt, 1);
        assert_eq!(
            event_statuses(&store, expected.number).await,
            [JobStatus::NotStarted, JobStatus::Executing]
        );
        let started = &store.job_events(expected.number).await.expect("read events")[1];
        assert_eq!(
            (started.attempt, started.message.as_str()),
            (1, "attempt 1 started by inproc:test"),
            "the start entry a claim would write"
        );
        assert!(claim.lease_until > claim.job.started_at.expect("started"), "a lease ahead of its start");
        let done = store.finish(expected.number, &claim.lease_token, JobOutcome::Succeeded(json!(1))).await;
        assert_eq!(done.expect("the claim's lease fences like any other").status, JobStatus::Succeeded);
    }
    assert!(claims.try_recv().is_err(), "no claim for jobs the offer did not cover");

    // What the offer did not cover waits for a claim as usual.
    let claimed = claim(&store, &["t.direct", "t.other"], "w-1", 10).await;
    assert_eq!(numbers_of_claims(&claimed), vec![jobs[1].number, jobs[3].number]);

    // A submission with an idempotency key (a transaction of its own) is dispatched
    // alike, once; its repeat returns the started job without starting anything.
    offer.offer(1);
    let keyed = submit(&store, with_key(new_job("ACME", "t.direct"), "key-1", "hash-1")).await;
    assert_eq!(keyed.status, JobStatus::Executing);
    assert_eq!(claims.try_recv().expect("the keyed job's claim").job, keyed);
    offer.offer(1);
    let repeat =
        store.submit(vec![with_key(new_job("ACME", "t.direct"), "key-1", "hash-1")]).await.expect("repeat");
    assert_eq!(repeat[0].job(), &keyed);
    assert!(claims.try_recv().is_err(), "a repeat starts nothing");
    assert_eq!(offer.withdraw(), 1);

    // A withdrawn offer starts nothing, and says how much of it was left.
    offer.offer(3);
    assert_eq!(offer.withdraw(), 3);
    let later = submit(&store, new_job("ACME", "t.direct")).await;
    assert_eq!(later.status, JobStatus::NotStarted);
    drop(listed);
    offer.offer(1);
    let without = submit(&store, new_job("ACME", "t.direct")).await;
    assert_eq!(without.status, JobStatus::NotStarted, "an offer no longer set on the store is not used");
    assert!(claims.try_recv().is_err());
}

pub async fn offers_cover_only_their_accounts_and_are_used_in_order(store: Store) {
    accounts(&store, &["ACME", "OTHER"]).await;
    let acme_only = Some(HashSet::from([alias("ACME")]));
    let (first, mut first_claims) =
        Dispatch::new(["t.direct".to_string()], acme_only, "worker:a", LONG_LEASE_MS);
    let (second, mut second_claims) =
        Dispatch::new(["t.direct".to_string()], None, "worker:b", LONG_LEASE_MS);
    let listed = [store.list_offer(first.clone()), store.list_offer(second.clone())];
    first.offer(2);
    second.offer(1);
    assert_eq!(store.offered_slots("t.direct"), 3);
    assert_eq!(store.offered_slots("t.other"), 0);

    // Both offers cover ACME's job: the one listed first takes it.
    let acme = submit(&store, new_job("ACME", "t.direct")).await;
    assert_eq!(acme.status, JobStatus::Executing);
    assert_eq!(first_claims.try_recv().expect("the first offer's claim").job, acme);
    assert!(second_claims.try_recv().is_err(), "nothing for the offer listed second");

    // OTHER's job passes over the first offer, which has a slot left but does not
    // cover its account.
    let other = submit(&store, new_job("OTHER", "t.direct")).await;
    assert_eq!(other.status, JobStatus::Executing);
    assert_eq!(second_claims.try_recv().expect("the second offer's claim").job, other);
    let started = &store.job_events(other.number).await.expect("read events")[1];
    assert_eq!(started.message, "attempt 1 started by worker:b");
    assert!(first_claims.try_recv().is_err(), "nothing for the offer of ACME only");
    assert_eq!(store.offered_slots("t.direct"), 1);

    let acme_again = submit(&store, new_job("ACME", "t.direct")).await;
    assert_eq!(first_claims.try_recv().expect("the first offer's last slot").job, acme_again);
    let waiting = submit(&store, new_job("OTHER", "t.direct")).await;
    assert_eq!(waiting.status, JobStatus::NotStarted, "no slot left");
    drop(listed);
    assert_eq!(store.offered_slots("t.direct"), 0, "a dropped listing is off the store");
}

/// An offer withdrawn while submissions are under way: once settled, every claim made
/// on it has arrived, so a waiting worker that answers then leaves none behind.
/// This races real submissions, so it catches a broken settle only when a withdrawal
/// lands inside a commit; `dispatch.rs`'s unit tests check the wait itself.
pub async fn a_settled_offer_has_every_claim_made_on_it(store: Store) {
    accounts(&store, &["ACME"]).await;
    let (offer, mut claims) = Dispatch::new(["t.direct".to_string()], None, "worker:a", LONG_LEASE_MS);
    let listed = store.list_offer(offer.clone());
    offer.offer(8);
    let submissions: Vec<_> = (0..24)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { submit(&store, new_job("ACME", "t.direct")).await })
        })
        .collect();
    // Withdraw while some submissions are still in flight, as a claim's deadline would.
    tokio::task::yield_now().await;
    assert!(listed.withdraw(DEADLINE).await, "settles once the submissions are done");
    let mut delivered = BTreeSet::new();
    while let Ok(claim) = claims.try_recv() {
        delivered.insert(claim.job.number);
    }
    let mut started = BTreeSet::new();
    for submission in submissions {
        let job = submission.await.expect("submission task");
        if job.status == JobStatus::Executing {
            started.insert(job.number);
        }
    }
    assert!(started.len() <= 8, "no more than the slots offered: {started:?}");
    assert_eq!(delivered, started, "every job started on the offer was delivered before settle returned");
}
