//! Direct dispatch: submissions start jobs on the slots a runner offers, in their own
//! transaction, and hand the claims over once committed.

use opsq_domain::{Job, JobStatus};
use opsq_store::{Dispatch, JobOutcome, Store};
use serde_json::json;

use crate::support::*;

pub async fn a_submission_starts_jobs_on_offered_slots(store: Store) {
    accounts(&store, &["ACME"]).await;
    let (offer, mut claims) = Dispatch::new(["t.direct".to_string()], "inproc:test", LONG_LEASE_MS);
    store.set_dispatch(Some(offer.clone()));
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
    store.set_dispatch(None);
    offer.offer(1);
    let without = submit(&store, new_job("ACME", "t.direct")).await;
    assert_eq!(without.status, JobStatus::NotStarted, "an offer no longer set on the store is not used");
    assert!(claims.try_recv().is_err());
}
