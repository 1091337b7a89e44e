//! Housekeeping: pruning finished jobs, failing `unknown` outcomes nobody resolved,
//! listing the unknown jobs to reconcile, dropping expired v1 sessions, and counting
//! the unfinished jobs for metrics.

use std::time::Duration;

use opsq_domain::{Job, JobEvent, JobStatus};
use opsq_store::{
    now_ms, ClaimRequest, JobFilter, JobOutcome, JobOwner, Resolution, Store, UnfinishedCounts, V1Session,
};
use serde_json::json;

use crate::support::*;

async fn succeeded_job(store: &Store, kind_name: &str) -> Job {
    let j = submit(store, new_job("ACME", kind_name)).await;
    let c = claim_job(store, &j, "w-done", LONG_LEASE_MS).await;
    store.finish(j.number, &c.lease_token, JobOutcome::Succeeded(json!({ "n": j.number }))).await.unwrap()
}

async fn failed_job(store: &Store, kind_name: &str) -> Job {
    let j = submit(store, new_job("ACME", kind_name)).await;
    let c = claim_job(store, &j, "w-done", LONG_LEASE_MS).await;
    store.finish(j.number, &c.lease_token, JobOutcome::Fatal("broken".into())).await.unwrap()
}

async fn snapshots(store: &Store, numbers: &[i64]) -> Vec<(Job, Vec<JobEvent>)> {
    let mut all = Vec::new();
    for &n in numbers {
        all.push((job(store, n).await, store.job_events(n).await.unwrap()));
    }
    all
}

async fn assert_gone(store: &Store, number: i64) {
    assert_eq!(store.job(number).await.unwrap(), None, "job {number} was pruned");
    assert_eq!(store.job_status(number).await.unwrap(), None, "job {number} was pruned");
    assert!(store.job_events(number).await.unwrap().is_empty(), "job {number}'s history was pruned");
}

/// One job in every non-terminal status; returns their numbers.
async fn live_jobs(store: &Store) -> Vec<i64> {
    let waiting = submit(store, new_job("ACME", "live.waiting")).await;
    let running = submit(store, new_job("ACME", "live.running")).await;
    claim_job(store, &running, "w-live", LONG_LEASE_MS).await;
    let resumed = submit(store, with_attempts(new_job("ACME", "live.resumed"), 3, true)).await;
    let c = claim_job(store, &resumed, "w-live", LONG_LEASE_MS).await;
    let retry = JobOutcome::Retryable { error: "later".into(), run_after: Some(now_ms() + 3_600_000) };
    store.finish(resumed.number, &c.lease_token, retry).await.unwrap();
    let unknown = unknown_job(store, with_attempts(new_job("ACME", "live.unknown"), 3, false)).await;
    let numbers = vec![waiting.number, running.number, resumed.number, unknown.number];
    let statuses: Vec<JobStatus> =
        snapshots(store, &numbers).await.into_iter().map(|(j, _)| j.status).collect();
    assert_eq!(
        statuses,
        vec![JobStatus::NotStarted, JobStatus::Executing, JobStatus::Resumed, JobStatus::Unknown]
    );
    numbers
}

pub async fn prune_finished_deletes_ended_jobs_and_their_history(store: Store) {
    accounts(&store, &["ACME"]).await;
    let succeeded = succeeded_job(&store, "t.ok").await;
    let failed = failed_job(&store, "t.bad").await;
    let cancelled = submit(&store, new_job("ACME", "t.cancelled")).await;
    store.cancel(cancelled.number, "not needed").await.unwrap();
    let resolved = unknown_job(&store, with_attempts(new_job("ACME", "t.resolved"), 3, false)).await;
    store.resolve(resolved.number, Resolution::Succeeded(json!(1)), "probe").await.unwrap();
    let ended = [succeeded.number, failed.number, cancelled.number, resolved.number];
    let live = live_jobs(&store).await;
    let mut everything: Vec<i64> = ended.iter().chain(&live).copied().collect();
    everything.sort_unstable();
    let all = snapshots(&store, &everything).await;

    // Everything ended just now: a cutoff a minute ago prunes nothing.
    assert_eq!(store.prune_finished(now_ms() - 60_000, 100).await.unwrap(), 0);
    assert_eq!(snapshots(&store, &everything).await, all);

    assert_eq!(store.prune_finished(now_ms() + 1_000, 100).await.unwrap(), ended.len());
    for n in ended {
        assert_gone(&store, n).await;
    }
    // Jobs that have not ended are never pruned, whatever the cutoff.
    assert_eq!(snapshots(&store, &live).await, snapshots_of(&all, &live));
    let listed = store
        .list_jobs(JobFilter { accounts: vec![alias("ACME")], limit: 100, ..Default::default() })
        .await
        .unwrap();
    let mut listed = numbers(&listed);
    listed.sort_unstable();
    assert_eq!(listed, live);
    assert_eq!(store.prune_finished(now_ms() + 1_000, 100).await.unwrap(), 0, "nothing left to prune");

    // A pruned job's number is never handed out again.
    let highest = *everything.last().unwrap();
    let newest = succeeded_job(&store, "t.newest").await;
    assert!(newest.number > highest);
    assert_eq!(store.prune_finished(now_ms() + 1_000, 100).await.unwrap(), 1);
    assert_gone(&store, newest.number).await;
    let next = submit(&store, new_job("ACME", "t.next")).await;
    assert!(next.number > newest.number, "job {} reuses a pruned number", next.number);
}

fn snapshots_of(all: &[(Job, Vec<JobEvent>)], numbers: &[i64]) -> Vec<(Job, Vec<JobEvent>)> {
    numbers.iter().map(|n| all.iter().find(|(j, _)| j.number == *n).expect("snapshot").clone()).collect()
}

/// A job's owner is its account and location, whether read or known from a worker's
/// claim, and it never changes; a job pruned since is refused by the store itself
/// when the worker's outcome comes.
pub async fn job_owner_names_the_jobs_account_and_a_pruned_job_is_refused_after(store: Store) {
    accounts(&store, &["ACME"]).await;
    let j = submit(&store, new_job("ACME", "t.owner")).await;
    let owner = JobOwner { account: j.account.clone(), location: j.location.clone() };
    assert_eq!(store.job_owner(j.number).await.unwrap(), Some(owner.clone()));
    assert_eq!(store.job_owner(j.number + 1000).await.unwrap(), None, "no such job");

    let for_worker = ClaimRequest {
        accounts: Some(vec![j.account.clone()]),
        ..claim_request(&["t.owner"], "w-owner", 1, LONG_LEASE_MS)
    };
    let c = store.claim(for_worker).await.unwrap().remove(0);
    store.finish(j.number, &c.lease_token, JobOutcome::Succeeded(json!(1))).await.unwrap();
    assert_eq!(store.prune_finished(now_ms() + 1_000, 100).await.unwrap(), 1);
    assert_gone(&store, j.number).await;
    let known = store.job_owner(j.number).await.unwrap();
    assert!(known.is_none() || known == Some(owner), "another owner for job {}: {known:?}", j.number);
    assert_not_found(store.finish(j.number, &c.lease_token, JobOutcome::Succeeded(json!(2))).await);
}

pub async fn prune_finished_keeps_newer_jobs_and_respects_the_limit(store: Store) {
    accounts(&store, &["ACME"]).await;
    let old = succeeded_job(&store, "t.old").await;
    clock_passes(old.finished_at.unwrap()).await;
    let cutoff = now_ms();
    let newer = failed_job(&store, "t.newer").await;
    assert!(newer.finished_at.unwrap() >= cutoff);
    let newer_history = store.job_events(newer.number).await.unwrap();

    assert_eq!(store.prune_finished(cutoff, 100).await.unwrap(), 1);
    assert_gone(&store, old.number).await;
    assert_eq!(job(&store, newer.number).await, newer, "a job that ended after the cutoff is kept");
    assert_eq!(store.job_events(newer.number).await.unwrap(), newer_history);

    // At most `limit` per call.
    let mut ended = vec![newer.number];
    for i in 0..4 {
        ended.push(succeeded_job(&store, &format!("t.batch{i}")).await.number);
    }
    let cutoff = now_ms() + 1_000;
    assert_eq!(store.prune_finished(cutoff, 0).await.unwrap(), 0);
    assert_eq!(store.prune_finished(cutoff, 2).await.unwrap(), 2);
    let mut remaining = Vec::new();
    for &n in &ended {
        if store.job(n).await.unwrap().is_some() {
            remaining.push(n);
        } else {
            assert_gone(&store, n).await;
        }
    }
    assert_eq!(remaining.len(), 3, "two of five pruned");
    assert_eq!(store.prune_finished(cutoff, 2).await.unwrap(), 2);
    assert_eq!(store.prune_finished(cutoff, 2).await.unwrap(), 1);
    assert_eq!(store.prune_finished(cutoff, 2).await.unwrap(), 0);
    for n in ended {
        assert_gone(&store, n).await;
    }
}

pub async fn fail_stale_unknown_ends_only_old_unknown_jobs(store: Store) {
    accounts(&store, &["ACME"]).await;
    let old = unknown_job(&store, with_attempts(new_job("ACME", "t.old"), 3, false)).await;
    clock_passes(old.status_at).await;
    let cutoff = now_ms();
    let live = live_jobs(&store).await;
    let newer = *live.last().unwrap();
    assert!(job(&store, newer).await.status_at >= cutoff);
    let done = succeeded_job(&store, "t.done").await.number;
    let others: Vec<i64> = live.iter().copied().filter(|n| *n != newer).chain([done]).collect();
    let others_before = snapshots(&store, &others).await;

    // Nothing has been unknown for a minute.
    assert_eq!(store.fail_stale_unknown(now_ms() - 60_000, "stale").await.unwrap(), Vec::<i64>::new());
    assert_eq!(job(&store, old.number).await, old);

    let events_before = store.job_events(old.number).await.unwrap().len();
    let before = now_ms();
    let failed = store.fail_stale_unknown(cutoff, "nobody resolved it in time").await.unwrap();
    let after = now_ms();
    assert_eq!(failed, vec![old.number]);
    let ended = job(&store, old.number).await;
    assert_eq!(ended.status, JobStatus::Failed);
    assert_eq!(ended.error.as_deref(), Some("nobody resolved it in time"));
    assert_eq!(ended.result, None);
    assert_between("finished_at", ended.finished_at.expect("finished_at"), before, after);
    let events = store.job_events(old.number).await.unwrap();
    assert_eq!(events.len(), events_before + 1, "the failure is in the history");
    assert_eq!(events.last().unwrap().status, JobStatus::Failed);
    assert_eq!(status_of(&store, newer).await, JobStatus::Unknown, "a newer unknown job is left alone");

    // With a later cutoff the newer one goes too, and nothing else ever does.
    assert_eq!(store.fail_stale_unknown(now_ms() + 1_000, "late").await.unwrap(), vec![newer]);
    let newer_job = job(&store, newer).await;
    assert_eq!((newer_job.status, newer_job.error.as_deref()), (JobStatus::Failed, Some("late")));
    assert!(newer_job.finished_at.is_some());
    assert_eq!(snapshots(&store, &others).await, others_before);
    assert_eq!(job(&store, old.number).await, ended, "a failed job is not failed again");
    assert_eq!(store.fail_stale_unknown(now_ms() + 1_000, "again").await.unwrap(), Vec::<i64>::new());
    assert!(store.unknown_jobs(10).await.unwrap().is_empty());
}

pub async fn unknown_jobs_lists_the_oldest_first(store: Store) {
    accounts(&store, &["ACME"]).await;
    assert!(store.unknown_jobs(10).await.unwrap().is_empty());
    // Submitted in one order, made unknown in the other: age is time in `unknown`.
    let second = submit(&store, with_attempts(new_job("ACME", "t.second"), 3, false)).await;
    let first = unknown_job(&store, with_attempts(new_job("ACME", "t.first"), 3, false)).await;
    clock_passes(first.status_at).await;
    claim_job(&store, &second, "gone:x", LONG_LEASE_MS).await;
    store.rescue(Some("gone:".into())).await.unwrap();
    let second = job(&store, second.number).await;
    assert_eq!(second.status, JobStatus::Unknown);
    clock_passes(second.status_at).await;
    let third = unknown_job(&store, with_attempts(new_job("ACME", "t.third"), 3, false)).await;
    clock_passes(third.status_at).await;
    // Jobs in every other status, and one more unknown job.
    let fourth = *live_jobs(&store).await.last().unwrap();
    succeeded_job(&store, "t.done").await;
    failed_job(&store, "t.failed").await;

    let listed = store.unknown_jobs(10).await.unwrap();
    assert_eq!(numbers(&listed), vec![first.number, second.number, third.number, fourth]);
    assert!(listed.iter().all(|j| j.status == JobStatus::Unknown));
    assert_eq!(listed[0], job(&store, first.number).await, "the jobs as stored");
    assert_eq!(numbers(&store.unknown_jobs(2).await.unwrap()), vec![first.number, second.number]);

    // A resolved job leaves the list.
    store.resolve(first.number, Resolution::Retry, "retry").await.unwrap();
    assert_eq!(numbers(&store.unknown_jobs(2).await.unwrap()), vec![second.number, third.number]);
}

pub async fn prune_sessions_deletes_only_expired_sessions(store: Store) {
    accounts(&store, &["ACME"]).await;
    let now = now_ms();
    let session = |hash: &str, expires_at: i64| V1Session {
        token_hash: hash.to_string(),
        api_key: "k-1".to_string(),
        account: alias("ACME"),
        created_at: now - 7_200_000,
        expires_at,
    };
    let live = session("h-live", now + 3_600_000);
    let soon = session("h-soon", now + 60_000);
    for s in [&live, &soon, &session("h-old", now - 1), &session("h-older", now - 3_600_000)] {
        store.create_v1_session(s.clone()).await.unwrap();
    }
    assert_eq!(store.prune_sessions().await.unwrap(), 2);
    assert_eq!(store.v1_session("h-live").await.unwrap(), Some(live));
    assert_eq!(store.v1_session("h-soon").await.unwrap(), Some(soon.clone()));
    assert_eq!(store.prune_sessions().await.unwrap(), 0, "nothing left to prune");
    // A pruned session's token hash is free again (the row is really gone).
    store.create_v1_session(session("h-old", now + 60_000)).await.expect("re-create a pruned session");
    assert_duplicate(store.create_v1_session(soon).await);
}

/// Long enough for any count in a test; the bound itself is tested where a backend
/// can be made to hang (`postgres_only`).
const COUNT_WITHIN: Duration = Duration::from_secs(10);

fn counts(not_started: u64, executing: u64, resumed: u64, unknown: u64) -> UnfinishedCounts {
    UnfinishedCounts { not_started, executing, resumed, unknown, oldest_due_at: None }
}

/// The counts by status only (the oldest due time has a test of its own).
async fn depth(store: &Store) -> UnfinishedCounts {
    UnfinishedCounts { oldest_due_at: None, ..store.unfinished_counts(COUNT_WITHIN).await.unwrap() }
}

pub async fn unfinished_counts_count_each_unfinished_status(store: Store) {
    accounts(&store, &["ACME"]).await;
    assert_eq!(depth(&store).await, counts(0, 0, 0, 0));

    let live = live_jobs(&store).await;
    // Finished jobs of every kind are not counted.
    succeeded_job(&store, "t.done").await;
    failed_job(&store, "t.failed").await;
    let cancelled = submit(&store, new_job("ACME", "t.cancelled")).await;
    store.cancel(cancelled.number, "not needed").await.unwrap();
    assert_eq!(depth(&store).await, counts(1, 1, 1, 1));

    // The counts follow the jobs: two more wait, one of them then runs and succeeds,
    // and the unknown one is resolved to run again.
    let more = submit(&store, new_job("ACME", "t.more")).await;
    submit(&store, new_job("ACME", "t.other")).await;
    assert_eq!(depth(&store).await, counts(3, 1, 1, 1));
    let leased = claim_job(&store, &more, "w-more", LONG_LEASE_MS).await;
    assert_eq!(depth(&store).await, counts(2, 2, 1, 1));
    store.finish(more.number, &leased.lease_token, JobOutcome::Succeeded(json!(null))).await.unwrap();
    store.resolve(live[3], Resolution::Retry, "retry").await.unwrap();
    assert_eq!(depth(&store).await, counts(2, 1, 2, 0));
}

/// When the longest-waiting due job became due, for `opsq_oldest_waiting_seconds`:
/// running and finished jobs do not wait, nor does a retry until it is due.
pub async fn unfinished_counts_tell_when_the_oldest_due_job_became_due(store: Store) {
    accounts(&store, &["ACME"]).await;
    let oldest = || async { store.unfinished_counts(COUNT_WITHIN).await.unwrap().oldest_due_at };
    assert_eq!(oldest().await, None, "nothing waits");
    // Kinds in the reverse of their age: the oldest is found across kinds.
    let first = submit(&store, new_job("ACME", "t.b")).await;
    clock_passes(first.run_after).await;
    let second = submit(&store, new_job("ACME", "t.a")).await;
    assert!(second.run_after > first.run_after);
    assert_eq!(oldest().await, Some(first.run_after));

    let leased = claim_job(&store, &first, "w", LONG_LEASE_MS).await;
    assert_eq!(oldest().await, Some(second.run_after), "a running job does not wait");
    let later = now_ms() + 3_600_000;
    let retry = JobOutcome::Retryable { error: "later".to_string(), run_after: Some(later) };
    store.finish(first.number, &leased.lease_token, retry).await.unwrap();
    assert_eq!(status_of(&store, first.number).await, JobStatus::Resumed);
    assert_eq!(oldest().await, Some(second.run_after), "a retry waits only once it is due");

    let leased = claim_job(&store, &second, "w", LONG_LEASE_MS).await;
    store.finish(second.number, &leased.lease_token, JobOutcome::Succeeded(json!(null))).await.unwrap();
    assert_eq!(oldest().await, None, "only a retry due in an hour is left");
    assert_eq!(depth(&store).await, counts(0, 0, 1, 0));
}
