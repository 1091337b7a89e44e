//! Operator control of jobs: cancelling, resolving `unknown` outcomes, and the
//! per-kind settings that govern leases.

use opsq_domain::{Job, JobStatus, Progress};
use opsq_store::{now_ms, CancelOutcome, JobOutcome, KindSettings, Resolution, Store};
use serde_json::json;

use crate::support::*;

fn cancelled(outcome: CancelOutcome) -> Job {
    match outcome {
        CancelOutcome::Cancelled(job) => job,
        other => panic!("expected Cancelled, got {other:?}"),
    }
}

fn requested(outcome: CancelOutcome) -> Job {
    match outcome {
        CancelOutcome::Requested(job) => job,
        other => panic!("expected Requested, got {other:?}"),
    }
}

fn already_finished(outcome: CancelOutcome) -> Job {
    match outcome {
        CancelOutcome::AlreadyFinished(job) => job,
        other => panic!("expected AlreadyFinished, got {other:?}"),
    }
}

fn needs_resolution(outcome: CancelOutcome) -> Job {
    match outcome {
        CancelOutcome::NeedsResolution(job) => job,
        other => panic!("expected NeedsResolution, got {other:?}"),
    }
}

fn assert_cancelled_error(job: &Job) {
    let error = job.error.as_deref().unwrap_or_default();
    assert!(error.starts_with("cancelled:"), "job {} error {:?}", job.number, job.error);
}

/// A job and its history, to check that a call changed neither.
async fn snapshot(store: &Store, number: i64) -> (Job, Vec<opsq_domain::JobEvent>) {
    (job(store, number).await, store.job_events(number).await.unwrap())
}

pub async fn cancel_fails_a_waiting_job_at_once(store: Store) {
    accounts(&store, &["ACME"]).await;
    let fresh = submit(&store, new_job("ACME", "t.fresh")).await;
    // A resumed job waiting for its retry an hour from now.
    let later = submit(&store, with_attempts(new_job("ACME", "t.later"), 3, true)).await;
    let c = claim_job(&store, &later, "w-1", LONG_LEASE_MS).await;
    let retry = JobOutcome::Retryable { error: "busy".into(), run_after: Some(now_ms() + 3_600_000) };
    assert_eq!(store.finish(later.number, &c.lease_token, retry).await.unwrap().status, JobStatus::Resumed);

    for (waiting, reason) in [(&fresh, "changed my mind"), (&later, "no longer needed")] {
        let events_before = store.job_events(waiting.number).await.unwrap().len();
        let before = now_ms();
        let done = cancelled(store.cancel(waiting.number, reason).await.unwrap());
        let after = now_ms();
        assert_eq!(done.number, waiting.number);
        assert_eq!(done.status, JobStatus::Failed);
        assert_eq!(done.error.as_deref(), Some(format!("cancelled: {reason}").as_str()));
        assert_eq!(done.result, None);
        assert_between("finished_at", done.finished_at.expect("finished_at"), before, after);
        assert_between("status_at", done.status_at, before, after);
        assert_eq!(job(&store, waiting.number).await, done, "cancel returns the job as stored");
        let events = store.job_events(waiting.number).await.unwrap();
        assert_eq!(events.len(), events_before + 1, "the cancel is in the history");
        assert_eq!(events.last().unwrap().status, JobStatus::Failed);

        // Cancelling again is harmless: the job has ended, and stays as it is.
        let again = already_finished(store.cancel(waiting.number, "again").await.unwrap());
        assert_eq!(again, done);
        assert_eq!(job(&store, waiting.number).await, done);
        assert_eq!(store.job_events(waiting.number).await.unwrap(), events);
    }
    // Neither runs any more.
    assert!(claim(&store, &["t.*"], "w-2", 10).await.is_empty());
    assert_nothing_waiting(&store, "ACME", "t.*").await;
}

pub async fn cancel_asks_the_worker_of_a_running_job(store: Store) {
    accounts(&store, &["ACME"]).await;
    let j = submit(&store, new_job("ACME", "t.run")).await;
    let c = claim_job(&store, &j, "w-1", LONG_LEASE_MS).await;
    assert!(!c.job.cancel_requested);
    let ack = store.heartbeat(j.number, &c.lease_token, None, LONG_LEASE_MS).await.unwrap();
    assert!(!ack.cancel_requested, "no cancel asked yet");

    let asked = requested(store.cancel(j.number, "stop it").await.unwrap());
    assert_eq!(asked.number, j.number);
    assert_eq!(asked.status, JobStatus::Executing, "a running job keeps running until its worker stops");
    assert!(asked.cancel_requested);
    assert_eq!((asked.finished_at, asked.error.as_deref()), (None, None));
    assert_eq!(job(&store, j.number).await, asked);
    assert!(job(&store, j.number).await.cancel_requested);

    // The worker learns of it on its next heartbeat, which still renews the lease.
    let progress = Progress { percent: 20, step_number: 1, description: "Working".into() };
    let ack = store.heartbeat(j.number, &c.lease_token, Some(progress.clone()), LONG_LEASE_MS).await.unwrap();
    assert!(ack.cancel_requested, "the heartbeat tells the worker to stop");
    let ack = store.heartbeat(j.number, &c.lease_token, None, LONG_LEASE_MS).await.unwrap();
    assert!(ack.cancel_requested, "and keeps telling it");
    assert_eq!(job(&store, j.number).await.progress, progress);

    // Asking twice is harmless.
    let current = job(&store, j.number).await;
    let again = match store.cancel(j.number, "stop it, really").await.unwrap() {
        CancelOutcome::AlreadyRequested(job) => job,
        other => panic!("expected AlreadyRequested, got {other:?}"),
    };
    assert_eq!(again, current);
    assert_eq!(job(&store, j.number).await, current);
    assert!(claim(&store, &["t.run"], "w-2", 10).await.is_empty(), "still held by its worker");

    // The worker stops: its failure is the cancellation taking effect.
    let done = store.finish(j.number, &c.lease_token, JobOutcome::Fatal("interrupted".into())).await.unwrap();
    assert_eq!(done.status, JobStatus::Failed);
    assert_cancelled_error(&done);
    assert!(done.finished_at.is_some());
    assert_eq!(job(&store, j.number).await, done);
    assert_eq!(store.job_events(j.number).await.unwrap().last().unwrap().status, JobStatus::Failed);
    assert!(matches!(store.cancel(j.number, "late").await.unwrap(), CancelOutcome::AlreadyFinished(_)));
}

pub async fn retryable_failure_after_cancel_request_ends_the_job(store: Store) {
    accounts(&store, &["ACME"]).await;
    // Attempts are left, so without the cancel this failure would be retried.
    let j = submit(&store, with_attempts(new_job("ACME", "t.retry"), 5, true)).await;
    let c = claim_job(&store, &j, "w-1", LONG_LEASE_MS).await;
    requested(store.cancel(j.number, "operator said so").await.unwrap());

    let retry = JobOutcome::Retryable { error: "stopped early".into(), run_after: Some(now_ms() - 1) };
    let done = store.finish(j.number, &c.lease_token, retry).await.unwrap();
    assert_eq!(done.status, JobStatus::Failed, "a cancelled job is not retried");
    assert_cancelled_error(&done);
    assert!(done.finished_at.is_some());
    assert_eq!(job(&store, j.number).await, done);
    assert!(claim(&store, &["t.retry"], "w-2", 10).await.is_empty());
    assert_nothing_waiting(&store, "ACME", "t.retry").await;
}

pub async fn success_after_cancel_request_stands(store: Store) {
    accounts(&store, &["ACME"]).await;
    let j = submit(&store, new_job("ACME", "t.quick")).await;
    let c = claim_job(&store, &j, "w-1", LONG_LEASE_MS).await;
    requested(store.cancel(j.number, "too slow").await.unwrap());

    // The job finished before its worker saw the request: its real outcome stands.
    let done =
        store.finish(j.number, &c.lease_token, JobOutcome::Succeeded(json!({ "done": true }))).await.unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(done.result, Some(json!({ "done": true })));
    assert_eq!(done.error, None);
    assert_eq!(done.progress.percent, 100);
    assert_eq!(job(&store, j.number).await, done);
    let again = already_finished(store.cancel(j.number, "too slow").await.unwrap());
    assert_eq!(again, done);
}

pub async fn cancel_leaves_unknown_and_finished_jobs_alone(store: Store) {
    accounts(&store, &["ACME"]).await;
    let unknown = unknown_job(&store, with_attempts(new_job("ACME", "t.unknown"), 3, false)).await;
    let s = submit(&store, new_job("ACME", "t.ok")).await;
    let cs = claim_job(&store, &s, "w-1", LONG_LEASE_MS).await;
    store.finish(s.number, &cs.lease_token, JobOutcome::Succeeded(json!(7))).await.unwrap();
    let f = submit(&store, new_job("ACME", "t.bad")).await;
    let cf = claim_job(&store, &f, "w-1", LONG_LEASE_MS).await;
    store.finish(f.number, &cf.lease_token, JobOutcome::Fatal("broken".into())).await.unwrap();

    let before = snapshot(&store, unknown.number).await;
    for _ in 0..2 {
        let u = needs_resolution(store.cancel(unknown.number, "give up").await.unwrap());
        assert_eq!(u, before.0);
        assert_eq!(
            snapshot(&store, unknown.number).await,
            before,
            "an unknown job is resolved, not cancelled"
        );
    }
    assert_eq!(before.0.status, JobStatus::Unknown);

    for n in [s.number, f.number] {
        let before = snapshot(&store, n).await;
        let j = already_finished(store.cancel(n, "too late").await.unwrap());
        assert_eq!(j, before.0);
        assert_eq!(snapshot(&store, n).await, before, "a finished job keeps its real outcome");
    }

    assert_not_found(store.cancel(f.number + 1000, "nothing there").await);
}

pub async fn resolve_succeeded_completes_an_unknown_job(store: Store) {
    accounts(&store, &["ACME"]).await;
    // The first attempt failed and was retried, so the job carries an error...
    let new = with_attempts(new_job("ACME", "t.unsafe"), 3, false);
    let j = submit(&store, new).await;
    let c = claim_job(&store, &j, "w-1", LONG_LEASE_MS).await;
    let retry = JobOutcome::Retryable { error: "first try failed".into(), run_after: Some(now_ms() - 1) };
    store.finish(j.number, &c.lease_token, retry).await.unwrap();
    // ...then its second attempt recorded progress and was lost.
    let c = claim_job(&store, &j, "gone:x", LONG_LEASE_MS).await;
    let progress = Progress { percent: 60, step_number: 2, description: "Halfway".into() };
    store.heartbeat(j.number, &c.lease_token, Some(progress), LONG_LEASE_MS).await.unwrap();
    store.rescue(Some("gone:".into())).await.unwrap();
    let unknown = job(&store, j.number).await;
    assert_eq!((unknown.status, unknown.attempt), (JobStatus::Unknown, 2));
    let events_before = store.job_events(j.number).await.unwrap().len();

    let result = json!({ "checked": "the server is on" });
    let before = now_ms();
    let done =
        store.resolve(j.number, Resolution::Succeeded(result.clone()), "probe found it done").await.unwrap();
    let after = now_ms();
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(done.result, Some(result));
    assert_eq!(done.error, None, "a success clears the error of an earlier attempt");
    assert_eq!(done.progress.percent, 100);
    assert_eq!(done.attempt, 2);
    assert_between("finished_at", done.finished_at.expect("finished_at"), before, after);
    assert_between("status_at", done.status_at, before, after);
    assert_eq!(job(&store, j.number).await, done, "resolve returns the job as stored");

    let events = store.job_events(j.number).await.unwrap();
    assert_eq!(events.len(), events_before + 1, "the resolution is in the history");
    let last = events.last().unwrap();
    assert_eq!(last.status, JobStatus::Succeeded);
    assert!(last.message.contains("probe found it done"), "{:?}", last.message);
    assert_between("resolution event", last.at, before, after);

    assert!(claim(&store, &["t.unsafe"], "w-2", 10).await.is_empty());
    assert!(store.unknown_jobs(10).await.unwrap().is_empty());
}

pub async fn resolve_failed_fails_an_unknown_job(store: Store) {
    accounts(&store, &["ACME"]).await;
    let unknown = unknown_job(&store, with_attempts(new_job("ACME", "t.unsafe"), 3, false)).await;
    let events_before = store.job_events(unknown.number).await.unwrap().len();

    let before = now_ms();
    let done = store
        .resolve(unknown.number, Resolution::Failed("the server never powered on".into()), "checked by hand")
        .await
        .unwrap();
    let after = now_ms();
    assert_eq!(done.status, JobStatus::Failed);
    assert_eq!(done.error.as_deref(), Some("the server never powered on"));
    assert_eq!(done.result, None);
    assert_eq!(done.attempt, 1);
    assert_between("finished_at", done.finished_at.expect("finished_at"), before, after);
    assert_eq!(job(&store, unknown.number).await, done);
    let events = store.job_events(unknown.number).await.unwrap();
    assert_eq!(events.len(), events_before + 1);
    let last = events.last().unwrap();
    assert_eq!(last.status, JobStatus::Failed);
    assert!(last.message.contains("checked by hand"), "{:?}", last.message);
    assert!(claim(&store, &["t.unsafe"], "w-2", 10).await.is_empty());
}

pub async fn resolve_retry_runs_an_unknown_job_again(store: Store) {
    accounts(&store, &["ACME"]).await;
    let unknown = unknown_job(&store, with_attempts(new_job("ACME", "t.unsafe"), 3, false)).await;
    assert!(claim(&store, &["t.unsafe"], "w-1", 10).await.is_empty(), "unknown is not claimable");

    let before = now_ms();
    let resumed = store.resolve(unknown.number, Resolution::Retry, "it never happened").await.unwrap();
    let after = now_ms();
    assert_eq!(resumed.status, JobStatus::Resumed);
    assert_eq!((resumed.finished_at, resumed.result.clone()), (None, None));
    assert_eq!(resumed.attempt, 1);
    assert!(resumed.run_after <= after, "runnable at once");
    assert_between("status_at", resumed.status_at, before, after);
    assert_eq!(job(&store, unknown.number).await, resumed);
    let events = store.job_events(unknown.number).await.unwrap();
    let last = events.last().unwrap();
    assert_eq!((last.status, last.attempt), (JobStatus::Resumed, 1));
    assert!(last.message.contains("it never happened"), "{:?}", last.message);
    assert!(store.unknown_jobs(10).await.unwrap().is_empty());

    // Claimable at once, as a new attempt.
    let again = claim(&store, &["t.unsafe"], "w-2", 10).await;
    assert_eq!(numbers_of_claims(&again), vec![unknown.number]);
    assert_eq!((again[0].job.status, again[0].job.attempt), (JobStatus::Executing, 2));
    let done = store
        .finish(unknown.number, &again[0].lease_token, JobOutcome::Succeeded(json!("ok")))
        .await
        .unwrap();
    assert_eq!((done.status, done.attempt), (JobStatus::Succeeded, 2));
}

pub async fn resolve_is_refused_unless_the_job_is_unknown(store: Store) {
    accounts(&store, &["ACME"]).await;
    let waiting = submit(&store, new_job("ACME", "t.waiting")).await;
    let running = submit(&store, new_job("ACME", "t.running")).await;
    claim_job(&store, &running, "w-1", LONG_LEASE_MS).await;
    let resumed = submit(&store, with_attempts(new_job("ACME", "t.resumed"), 3, true)).await;
    let c = claim_job(&store, &resumed, "w-1", LONG_LEASE_MS).await;
    let retry = JobOutcome::Retryable { error: "later".into(), run_after: Some(now_ms() + 3_600_000) };
    store.finish(resumed.number, &c.lease_token, retry).await.unwrap();
    let succeeded = submit(&store, new_job("ACME", "t.succeeded")).await;
    let c = claim_job(&store, &succeeded, "w-1", LONG_LEASE_MS).await;
    store.finish(succeeded.number, &c.lease_token, JobOutcome::Succeeded(json!(1))).await.unwrap();
    let failed = submit(&store, new_job("ACME", "t.failed")).await;
    let c = claim_job(&store, &failed, "w-1", LONG_LEASE_MS).await;
    store.finish(failed.number, &c.lease_token, JobOutcome::Fatal("no".into())).await.unwrap();
    // An unknown job, resolved once: a second resolution is refused too.
    let settled = unknown_job(&store, with_attempts(new_job("ACME", "t.settled"), 3, false)).await;
    store.resolve(settled.number, Resolution::Failed("gone".into()), "first").await.unwrap();

    for (number, status) in [
        (waiting.number, JobStatus::NotStarted),
        (running.number, JobStatus::Executing),
        (resumed.number, JobStatus::Resumed),
        (succeeded.number, JobStatus::Succeeded),
        (failed.number, JobStatus::Failed),
        (settled.number, JobStatus::Failed),
    ] {
        let before = snapshot(&store, number).await;
        assert_eq!(before.0.status, status, "job {number}");
        for resolution in
            [Resolution::Succeeded(json!("forced")), Resolution::Failed("forced".into()), Resolution::Retry]
        {
            assert_invalid(store.resolve(number, resolution, "not allowed").await);
        }
        assert_eq!(snapshot(&store, number).await, before, "a refused resolution changes nothing");
    }
    assert_not_found(store.resolve(settled.number + 1000, Resolution::Retry, "nothing there").await);
}

pub async fn kind_settings_round_trip(store: Store) {
    assert_eq!(store.kind("server.powerOn").await.unwrap(), None);
    let full = KindSettings {
        kind: "server.powerOn".into(),
        lease_ms: Some(45_000),
        max_attempts: Some(7),
        safe_to_repeat: Some(false),
    };
    let other = KindSettings { kind: "backup.run".into(), lease_ms: Some(5_000), ..Default::default() };
    store.set_kind(full.clone()).await.unwrap();
    store.set_kind(other.clone()).await.unwrap();
    assert_eq!(store.kind("server.powerOn").await.unwrap(), Some(full));
    assert_eq!(store.kind("backup.run").await.unwrap(), Some(other.clone()));
    // Exact names only, case-sensitively.
    assert_eq!(store.kind("server.*").await.unwrap(), None);
    assert_eq!(store.kind("SERVER.POWERON").await.unwrap(), None);
    assert_eq!(store.kind("server.power").await.unwrap(), None);

    // Setting again replaces every field, clearing those now unset.
    let changed = KindSettings {
        kind: "server.powerOn".into(),
        lease_ms: None,
        max_attempts: Some(2),
        safe_to_repeat: Some(true),
    };
    store.set_kind(changed.clone()).await.unwrap();
    assert_eq!(store.kind("server.powerOn").await.unwrap(), Some(changed));
    let cleared = KindSettings { kind: "server.powerOn".into(), ..Default::default() };
    store.set_kind(cleared.clone()).await.unwrap();
    assert_eq!(store.kind("server.powerOn").await.unwrap(), Some(cleared));
    assert_eq!(store.kind("backup.run").await.unwrap(), Some(other), "other kinds are untouched");
}

pub async fn kind_lease_overrides_the_claim_lease(store: Store) {
    accounts(&store, &["ACME"]).await;
    let kind_lease = 20_000;
    store
        .set_kind(KindSettings { kind: "t.leased".into(), lease_ms: Some(kind_lease), ..Default::default() })
        .await
        .unwrap();
    // A kind with settings but no lease of its own keeps the requested lease.
    store
        .set_kind(KindSettings { kind: "t.nolease".into(), max_attempts: Some(2), ..Default::default() })
        .await
        .unwrap();
    let leased = submit(&store, new_job("ACME", "t.leased")).await;
    let nolease = submit(&store, new_job("ACME", "t.nolease")).await;
    let plain = submit(&store, new_job("ACME", "t.plain")).await;

    // One claim over all three kinds: each job gets its own kind's lease.
    let before = now_ms();
    let claims = store.claim(claim_request(&["t.*"], "w-1", 10, LONG_LEASE_MS)).await.unwrap();
    let after = now_ms();
    assert_eq!(numbers_of_claims(&claims), vec![leased.number, nolease.number, plain.number]);
    for c in &claims {
        let lease = if c.job.number == leased.number { kind_lease } else { LONG_LEASE_MS };
        assert_between(
            &format!("lease_until of job {}", c.job.number),
            c.lease_until,
            before + lease,
            after + lease,
        );
    }

    // The kind's lease is the one that counts: a job of a kind with a tiny lease is
    // taken back soon, although its worker asked for a long lease.
    store
        .set_kind(KindSettings { kind: "t.short".into(), lease_ms: Some(1), ..Default::default() })
        .await
        .unwrap();
    let short = submit(&store, with_attempts(new_job("ACME", "t.short"), 3, true)).await;
    let before = now_ms();
    let c = claim_job(&store, &short, "w-1", LONG_LEASE_MS).await;
    let after = now_ms();
    assert_between("lease_until", c.lease_until, before + 1, after + 1);
    let rescued = rescue_expired(&store, &[short.number]).await;
    assert_eq!(rescued.iter().map(|r| r.number).collect::<Vec<_>>(), vec![short.number]);
    assert_lease_lost(store.heartbeat(short.number, &c.lease_token, None, LONG_LEASE_MS).await, short.number);
    assert_eq!(
        status_of(&store, leased.number).await,
        JobStatus::Executing,
        "a 20 s kind lease is still live"
    );
}

pub async fn kind_lease_overrides_the_heartbeat_lease(store: Store) {
    accounts(&store, &["ACME"]).await;
    let j = submit(&store, new_job("ACME", "t.beat")).await;
    let plain = submit(&store, new_job("ACME", "t.plain")).await;
    // Claimed before the kind had settings: the requested lease.
    let c = claim_job(&store, &j, "w-1", LONG_LEASE_MS).await;
    let cp = claim_job(&store, &plain, "w-1", LONG_LEASE_MS).await;
    let kind_lease = 7_000;
    store
        .set_kind(KindSettings { kind: "t.beat".into(), lease_ms: Some(kind_lease), ..Default::default() })
        .await
        .unwrap();

    for asked in [120_000, 1_000] {
        let before = now_ms();
        let ack = store.heartbeat(j.number, &c.lease_token, None, asked).await.unwrap();
        let after = now_ms();
        assert_between("lease_until", ack.lease_until, before + kind_lease, after + kind_lease);
        let progress = Progress { percent: 10, step_number: 1, description: "Working".into() };
        let before = now_ms();
        let ack = store.heartbeat(j.number, &c.lease_token, Some(progress), asked).await.unwrap();
        let after = now_ms();
        assert_between("lease_until with progress", ack.lease_until, before + kind_lease, after + kind_lease);

        // Another kind keeps the lease its worker asks for.
        let before = now_ms();
        let ack = store.heartbeat(plain.number, &cp.lease_token, None, asked).await.unwrap();
        let after = now_ms();
        assert_between("lease_until of another kind", ack.lease_until, before + asked, after + asked);
    }

    // Once the kind's lease is unset, the requested lease applies again.
    store.set_kind(KindSettings { kind: "t.beat".into(), ..Default::default() }).await.unwrap();
    let before = now_ms();
    let ack = store.heartbeat(j.number, &c.lease_token, None, 90_000).await.unwrap();
    let after = now_ms();
    assert_between("lease_until", ack.lease_until, before + 90_000, after + 90_000);
}

pub async fn a_cancelled_job_whose_worker_is_lost_ends_cancelled(store: Store) {
    accounts(&store, &["ACME"]).await;
    let safe = submit(&store, with_attempts(new_job("ACME", "t.safe"), 3, true)).await;
    let not_safe = submit(&store, with_attempts(new_job("ACME", "t.unsafe"), 3, false)).await;
    claim_job(&store, &safe, "gone:1", LONG_LEASE_MS).await;
    claim_job(&store, &not_safe, "gone:1", LONG_LEASE_MS).await;
    requested(store.cancel(safe.number, "stop it").await.unwrap());
    requested(store.cancel(not_safe.number, "stop it").await.unwrap());
    store.rescue(Some("gone:".into())).await.unwrap();

    // Safe to repeat: the cancel takes effect instead of another attempt.
    let ended = job(&store, safe.number).await;
    assert_eq!(ended.status, JobStatus::Failed);
    assert_cancelled_error(&ended);
    assert!(claim(&store, &["t.safe"], "w", 1).await.is_empty());
    // Not safe: whether its effect happened is still unknown.
    assert_eq!(status_of(&store, not_safe.number).await, JobStatus::Unknown);
}
