//! Jobs handed back unstarted by a worker that is shutting down: they run again at
//! once, and the attempt that never ran does not count.

use opsq_domain::JobStatus;
use opsq_store::{now_ms, CancelOutcome, JobOutcome, Store};
use serde_json::json;

use crate::support::*;

pub async fn a_job_handed_back_unstarted_runs_again_without_using_an_attempt(store: Store) {
    accounts(&store, &["ACME"]).await;
    // One attempt allowed, and not safe to repeat: a failure or a rescue would end it.
    let j = submit(&store, with_attempts(new_job("ACME", "t.once"), 1, false)).await;
    let claimed = claim_job(&store, &j, "w-1", LONG_LEASE_MS).await;
    assert_eq!(claimed.job.attempt, 1);

    let before = now_ms();
    let released = store.release(j.number, &claimed.lease_token).await.unwrap();
    assert_eq!((released.status, released.attempt), (JobStatus::Resumed, 0));
    assert_eq!(released.started_at, None, "the job never started");
    assert_eq!((released.finished_at, released.error.as_deref()), (None, None));
    assert_between("run_after", released.run_after, before, now_ms());
    assert_eq!(job(&store, j.number).await, released);

    // The handed-back lease is dead for every call.
    assert_lease_lost(store.release(j.number, &claimed.lease_token).await, j.number);
    assert_lease_lost(store.heartbeat(j.number, &claimed.lease_token, None, LONG_LEASE_MS).await, j.number);
    assert_lease_lost(
        store.finish(j.number, &claimed.lease_token, JobOutcome::Succeeded(json!(1))).await,
        j.number,
    );

    // Due at once, and its one attempt is still there to run.
    let again = claim(&store, &["t.once"], "w-2", 10).await;
    assert_eq!(numbers_of_claims(&again), vec![j.number]);
    assert_eq!(again[0].job.attempt, 1);
    let done =
        store.finish(j.number, &again[0].lease_token, JobOutcome::Succeeded(json!("ok"))).await.unwrap();
    assert_eq!((done.status, done.attempt), (JobStatus::Succeeded, 1));

    let history: Vec<(JobStatus, u32, String)> = store
        .job_events(j.number)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.status, e.attempt, e.message))
        .collect();
    assert_eq!(
        history,
        vec![
            (JobStatus::NotStarted, 0, "accepted".into()),
            (JobStatus::Executing, 1, "attempt 1 started by w-1".into()),
            (JobStatus::Resumed, 1, "attempt 1 handed back unstarted by its worker; not counted".into()),
            (JobStatus::Executing, 1, "attempt 1 started by w-2".into()),
            (JobStatus::Succeeded, 1, "succeeded".into()),
        ]
    );
}

pub async fn a_hand_back_after_a_failed_attempt_keeps_its_error_and_start(store: Store) {
    accounts(&store, &["ACME"]).await;
    let j = submit(&store, with_attempts(new_job("ACME", "t.retry"), 3, true)).await;
    let first = claim_job(&store, &j, "w-1", LONG_LEASE_MS).await;
    let retry = JobOutcome::Retryable { error: "backend busy".into(), run_after: Some(now_ms() - 1) };
    store.finish(j.number, &first.lease_token, retry).await.unwrap();
    let second = claim_job(&store, &j, "w-1", LONG_LEASE_MS).await;
    assert_eq!(second.job.attempt, 2);

    let released = store.release(j.number, &second.lease_token).await.unwrap();
    assert_eq!((released.status, released.attempt), (JobStatus::Resumed, 1));
    assert_eq!(released.error.as_deref(), Some("backend busy"), "the last attempt's error stays");
    assert_eq!(released.started_at, first.job.started_at, "the job did start once");
    assert_eq!(claim_job(&store, &j, "w-2", LONG_LEASE_MS).await.job.attempt, 2);
}

pub async fn a_cancel_requested_before_the_hand_back_takes_effect(store: Store) {
    accounts(&store, &["ACME"]).await;
    let j = submit(&store, with_attempts(new_job("ACME", "t.cancel"), 3, true)).await;
    let claimed = claim_job(&store, &j, "w-1", LONG_LEASE_MS).await;
    assert!(matches!(store.cancel(j.number, "not needed").await.unwrap(), CancelOutcome::Requested(_)));

    let ended = store.release(j.number, &claimed.lease_token).await.unwrap();
    assert_eq!(ended.status, JobStatus::Failed);
    let error = ended.error.clone().unwrap_or_default();
    assert!(error.starts_with("cancelled: not needed"), "{error}");
    assert!(ended.finished_at.is_some());
    assert!(claim(&store, &["t.cancel"], "w-2", 10).await.is_empty());
}

pub async fn a_hand_back_needs_the_live_lease(store: Store) {
    accounts(&store, &["ACME"]).await;
    let j = submit(&store, new_job("ACME", "t.fenced")).await;
    let claimed = claim_job(&store, &j, "w-1", LONG_LEASE_MS).await;
    assert_lease_lost(store.release(j.number, "not-the-token").await, j.number);
    assert_not_found(store.release(j.number + 1000, &claimed.lease_token).await);
    // A waiting job has no lease to hand back.
    let waiting = submit(&store, new_job("ACME", "t.waiting")).await;
    assert_lease_lost(store.release(waiting.number, &claimed.lease_token).await, waiting.number);
    assert_eq!(status_of(&store, j.number).await, JobStatus::Executing);
}
