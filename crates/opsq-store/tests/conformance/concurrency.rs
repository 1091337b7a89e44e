//! Calls racing each other: group commit must keep every write whole and separate,
//! and the lease rules must hold however calls interleave.

use std::collections::BTreeSet;

use opsq_domain::JobStatus;
use opsq_store::{JobFilter, JobOutcome, Rescued, Store, StoreError, SubmitOutcome};
use serde_json::json;
use tokio::task::JoinSet;

use crate::support::*;

pub async fn concurrent_submits_get_distinct_numbers(store: Store) {
    const TASKS: usize = 20;
    const PER_TASK: usize = 10;
    accounts(&store, &["ACME"]).await;
    let mut tasks = JoinSet::new();
    for t in 0..TASKS {
        let store = store.clone();
        tasks.spawn(async move {
            let mut numbers = Vec::new();
            for i in 0..PER_TASK {
                let mut new = new_job("ACME", "t.bulk");
                new.title = format!("task {t} job {i}");
                new.payload = json!({ "task": t, "job": i });
                numbers.push((submit(&store, new).await.number, t, i));
            }
            numbers
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let numbers = done.expect("submitting task");
        // One task's submissions are accepted in its order.
        assert!(numbers.windows(2).all(|w| w[0].0 < w[1].0), "{numbers:?}");
        all.extend(numbers);
    }
    assert_eq!(all.len(), TASKS * PER_TASK);
    let distinct: BTreeSet<i64> = all.iter().map(|(n, _, _)| *n).collect();
    assert_eq!(distinct.len(), TASKS * PER_TASK, "every job got its own number");

    // Every acknowledged job is stored, with its own content.
    for (n, t, i) in &all {
        let stored = job(&store, *n).await;
        assert_eq!(stored.title, format!("task {t} job {i}"));
        assert_eq!(stored.payload, json!({ "task": t, "job": i }));
        assert_eq!(store.job_events(*n).await.unwrap().len(), 1);
    }
    let listed = store
        .list_jobs(JobFilter { accounts: vec![alias("ACME")], limit: 1000, ..JobFilter::default() })
        .await
        .unwrap();
    assert_eq!(set(numbers(&listed)), distinct);
}

pub async fn concurrent_claims_never_share_a_job(store: Store) {
    accounts(&store, &["ACME"]).await;
    let mut submitted = BTreeSet::new();
    for _ in 0..30 {
        submitted.insert(submit(&store, new_job("ACME", "t.race")).await.number);
    }

    // Two claims at once, each asking for more than half.
    let (a, b) = tokio::join!(
        store.claim(claim_request(&["t.race"], "w-a", 20, LONG_LEASE_MS)),
        store.claim(claim_request(&["t.*"], "w-b", 20, LONG_LEASE_MS)),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let a_set = set(a.iter().map(|c| c.job.number));
    let b_set = set(b.iter().map(|c| c.job.number));
    assert_eq!(a_set.len(), a.len(), "no job twice in one claim");
    assert_eq!(b_set.len(), b.len(), "no job twice in one claim");
    assert!(
        a_set.is_disjoint(&b_set),
        "claimed by both: {:?}",
        a_set.intersection(&b_set).collect::<Vec<_>>()
    );
    assert_eq!(a.len() + b.len(), 30, "20 + 20 asked for 30 waiting jobs");
    assert_eq!(a_set.union(&b_set).copied().collect::<BTreeSet<_>>(), submitted);

    // Many claimers at once, fewer jobs than they ask for.
    let mut second = BTreeSet::new();
    for _ in 0..40 {
        second.insert(submit(&store, new_job("ACME", "t.race2")).await.number);
    }
    let mut tasks = JoinSet::new();
    for w in 0..10 {
        let store = store.clone();
        tasks.spawn(async move {
            store.claim(claim_request(&["t.race2"], &format!("w-{w}"), 6, LONG_LEASE_MS)).await.unwrap()
        });
    }
    let mut claimed = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let claims = done.unwrap();
        assert!(claims.len() <= 6);
        claimed.extend(claims.into_iter().map(|c| (c.job.number, c.lease_token)));
    }
    assert_eq!(claimed.len(), 40, "all 40 jobs claimed, none twice");
    assert_eq!(set(claimed.iter().map(|(n, _)| *n)), second);
    assert_eq!(claimed.iter().map(|(_, t)| t.clone()).collect::<BTreeSet<_>>().len(), 40);
    for (n, _) in &claimed {
        let stored = job(&store, *n).await;
        assert_eq!((stored.status, stored.attempt), (JobStatus::Executing, 1));
    }
}

pub async fn concurrent_finishes_record_one_outcome(store: Store) {
    accounts(&store, &["ACME"]).await;
    for round in 0..10 {
        let j = submit(&store, new_job("ACME", "t.finish")).await;
        let c = claim_job(&store, &j, "w-1", LONG_LEASE_MS).await;
        let (ok, fatal) = tokio::join!(
            store.finish(j.number, &c.lease_token, JobOutcome::Succeeded(json!(round))),
            store.finish(j.number, &c.lease_token, JobOutcome::Fatal("racing".into())),
        );
        let stored = job(&store, j.number).await;
        match (ok, fatal) {
            (Ok(done), Err(StoreError::LeaseLost(n))) => {
                assert_eq!(n, j.number);
                assert_eq!(stored, done);
                assert_eq!(stored.status, JobStatus::Succeeded);
            }
            (Err(StoreError::LeaseLost(n)), Ok(failed)) => {
                assert_eq!(n, j.number);
                assert_eq!(stored, failed);
                assert_eq!(stored.status, JobStatus::Failed);
            }
            other => panic!("exactly one finish must win: {other:?}"),
        }
        let terminal = event_statuses(&store, j.number).await.into_iter().filter(|s| s.is_terminal()).count();
        assert_eq!(terminal, 1, "one outcome in the history");
    }
}

/// Outcomes of many jobs reported at once (a busy node): each caller gets its own
/// job's answer, whatever the others reported, and a stale lease spoils only its own.
pub async fn concurrent_finishes_of_many_jobs_each_get_their_own_answer(store: Store) {
    const JOBS: usize = 64;
    accounts(&store, &["ACME"]).await;
    for _ in 0..JOBS {
        submit(&store, new_job("ACME", "t.many")).await;
    }
    let claims = claim(&store, &["t.many"], "w-1", 100).await;
    assert_eq!(claims.len(), JOBS);
    let mut tasks = JoinSet::new();
    for (i, c) in claims.iter().enumerate() {
        let (store, number) = (store.clone(), c.job.number);
        let (token, outcome) = match i % 4 {
            0 => (c.lease_token.clone(), JobOutcome::Succeeded(json!({ "job": number }))),
            1 => (c.lease_token.clone(), JobOutcome::Fatal(format!("job {number} broke"))),
            2 => (
                c.lease_token.clone(),
                JobOutcome::Retryable { error: format!("job {number} later"), run_after: None },
            ),
            _ => (format!("{}0", c.lease_token), JobOutcome::Succeeded(json!("stale"))),
        };
        tasks.spawn(async move { (i, number, store.finish(number, &token, outcome).await) });
    }
    let mut answered = 0;
    while let Some(done) = tasks.join_next().await {
        let (i, number, answer) = done.expect("finishing task");
        let stored = job(&store, number).await;
        match i % 4 {
            3 => {
                assert_lease_lost(answer, number);
                assert_eq!(stored.status, JobStatus::Executing, "a stale token changes nothing");
            }
            kind => {
                let finished = answer.unwrap_or_else(|e| panic!("job {number}: {e}"));
                assert_eq!(finished, stored, "the answer is the stored job {number}");
                let expected = [JobStatus::Succeeded, JobStatus::Failed, JobStatus::Resumed][kind];
                assert_eq!(stored.status, expected, "job {number}");
                match kind {
                    0 => assert_eq!(stored.result, Some(json!({ "job": number }))),
                    1 => assert_eq!(stored.error.as_deref(), Some(format!("job {number} broke").as_str())),
                    _ => assert_eq!(stored.error.as_deref(), Some(format!("job {number} later").as_str())),
                }
                assert_eq!(event_statuses(&store, number).await.last(), Some(&expected));
            }
        }
        answered += 1;
    }
    assert_eq!(answered, JOBS);
}

/// Status reads racing each other (many clients polling): each gets its own job's
/// row, or none for a job that does not exist.
pub async fn concurrent_status_reads_each_get_their_own_job(store: Store) {
    accounts(&store, &["ACME", "BETA"]).await;
    let mut jobs = Vec::new();
    for i in 0..40 {
        jobs.push(submit(&store, new_job(if i % 2 == 0 { "ACME" } else { "BETA" }, "t.read")).await);
    }
    let started: BTreeSet<i64> =
        claim(&store, &["t.read"], "w-1", 15).await.iter().map(|c| c.job.number).collect();
    let last = jobs.last().expect("jobs").number;
    let mut tasks = JoinSet::new();
    for round in 0..3 {
        for job in &jobs {
            let (store, expected) = (store.clone(), job.clone());
            let status =
                if started.contains(&job.number) { JobStatus::Executing } else { JobStatus::NotStarted };
            tasks.spawn(async move {
                let row = store.job_status(expected.number).await.expect("read").expect("the job exists");
                assert_eq!(
                    (row.number, &row.account, row.status),
                    (expected.number, &expected.account, status)
                );
                round
            });
        }
        let store = store.clone();
        tasks.spawn(async move {
            assert_eq!(store.job_status(last + 1000 + round).await.expect("read"), None);
            round
        });
    }
    let mut answered = 0;
    while let Some(done) = tasks.join_next().await {
        done.expect("reading task");
        answered += 1;
    }
    assert_eq!(answered, 3 * 41);
}

/// Batches submitted at once (which a store may accept together): each caller gets
/// exactly its own jobs back, in its order.
pub async fn concurrent_batches_each_get_their_own_jobs(store: Store) {
    const CALLERS: usize = 16;
    accounts(&store, &["ACME"]).await;
    let mut tasks = JoinSet::new();
    for caller in 0..CALLERS {
        let store = store.clone();
        tasks.spawn(async move {
            let size = 1 + caller % 3;
            let batch = (0..size)
                .map(|i| {
                    let mut new = new_job("ACME", "t.batch");
                    new.payload = json!({ "caller": caller, "i": i });
                    new
                })
                .collect();
            (caller, size, store.submit(batch).await.expect("submit"))
        });
    }
    let mut numbers = BTreeSet::new();
    while let Some(done) = tasks.join_next().await {
        let (caller, size, outcomes) = done.expect("submitting task");
        assert_eq!(outcomes.len(), size, "caller {caller}");
        for (i, outcome) in outcomes.iter().enumerate() {
            let SubmitOutcome::Created(created) = outcome else { panic!("caller {caller}: {outcome:?}") };
            assert_eq!(created.payload, json!({ "caller": caller, "i": i }));
            assert_eq!(job(&store, created.number).await, *created);
            numbers.insert(created.number);
        }
        let own: Vec<i64> = outcomes.iter().map(|o| o.job().number).collect();
        assert!(own.windows(2).all(|w| w[0] < w[1]), "caller {caller}'s jobs keep its order: {own:?}");
    }
    assert_eq!(numbers.len(), (0..CALLERS).map(|c| 1 + c % 3).sum::<usize>());
}

pub async fn finish_racing_rescue_records_one_outcome(store: Store) {
    accounts(&store, &["ACME"]).await;
    for round in 0..10 {
        // A kind per round: when the rescue wins, its job waits `resumed` and must not
        // be claimed by the next round.
        let j = submit(&store, with_attempts(new_job("ACME", &format!("t.race{round}")), 3, true)).await;
        let c = claim_job(&store, &j, "node-r-1", LONG_LEASE_MS).await;
        let (finished, rescued) = tokio::join!(
            store.finish(j.number, &c.lease_token, JobOutcome::Succeeded(json!("won"))),
            store.rescue(Some("node-r-".to_string())),
        );
        let rescued = rescued.unwrap();
        let stored = job(&store, j.number).await;
        match finished {
            Ok(done) => {
                assert!(rescued.is_empty(), "a finished job is not rescued: {rescued:?}");
                assert_eq!(stored, done);
                assert_eq!(stored.status, JobStatus::Succeeded);
            }
            Err(StoreError::LeaseLost(n)) => {
                assert_eq!(n, j.number);
                assert_eq!(rescued, vec![Rescued { number: j.number, status: JobStatus::Resumed }]);
                assert_eq!(stored.status, JobStatus::Resumed);
                assert_eq!(stored.result, None);
            }
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
}

pub async fn concurrent_setting_inits_agree(store: Store) {
    for round in 0..5 {
        let key = format!("key-{round}");
        let (a, b, c) = tokio::join!(
            store.setting_or_init(&key, || "a".to_string()),
            store.setting_or_init(&key, || "b".to_string()),
            store.setting_or_init(&key, || "c".to_string()),
        );
        let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
        assert!(["a", "b", "c"].contains(&a.as_str()));
        assert_eq!((&a, &a), (&b, &c), "every caller sees the one stored value");
        assert_eq!(store.setting_or_init(&key, || "late".to_string()).await.unwrap(), a);
    }
}

pub async fn failing_write_does_not_undo_its_neighbours(store: Store) {
    accounts(&store, &["ACME"]).await;
    // Writes that fail (duplicates, unknown parents) race writes that succeed; each
    // one's result must be its own, whatever transaction they share.
    let mut tasks = JoinSet::new();
    for i in 0..30 {
        let store = store.clone();
        tasks.spawn(async move {
            let outcome = match i % 3 {
                0 => store.create_account(account("ACME", Some("ROOT"))).await.map(|_| None),
                1 => store.create_account(account(&format!("NEW{i}"), Some("NOPE"))).await.map(|_| None),
                _ => {
                    let name = format!("NEW{i}");
                    match store.create_account(account(&name, Some("ROOT"))).await {
                        Ok(()) => Ok(Some(submit(&store, new_job(&name, "t.neighbour")).await.number)),
                        Err(err) => Err(err),
                    }
                }
            };
            (i, outcome)
        });
    }
    let mut jobs = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (i, outcome) = done.unwrap();
        match (i % 3, outcome) {
            (0, Err(StoreError::Duplicate(_))) | (1, Err(StoreError::NotFound(_))) => {}
            (2, Ok(Some(number))) => jobs.push((i, number)),
            (_, other) => panic!("write {i}: unexpected {other:?}"),
        }
    }
    assert_eq!(jobs.len(), 10);
    let mut expected = vec!["ACME".to_string(), "ROOT".to_string()];
    for (i, number) in &jobs {
        let name = format!("NEW{i}");
        assert!(store.account(&alias(&name)).await.unwrap().is_some(), "{name} was kept");
        assert_eq!(job(&store, *number).await.account, alias(&name));
        expected.push(name);
    }
    for i in (1..30).step_by(3) {
        assert!(store.account(&alias(&format!("NEW{i}"))).await.unwrap().is_none());
    }
    expected.sort();
    let mut subtree: Vec<String> =
        store.subtree(&alias("ROOT")).await.unwrap().into_iter().map(|a| a.as_str().to_string()).collect();
    subtree.sort();
    assert_eq!(subtree, expected);
}

pub async fn concurrent_idempotent_submits_make_one_job(store: Store) {
    accounts(&store, &["ACME"]).await;
    let mut tasks = JoinSet::new();
    for _ in 0..10 {
        let store = store.clone();
        tasks.spawn(async move {
            let job = with_key(new_job("ACME", "t.once"), "same-key", "same-hash");
            store.submit(vec![job]).await.unwrap().remove(0)
        });
    }
    let (mut created, mut existing) = (Vec::new(), Vec::new());
    while let Some(done) = tasks.join_next().await {
        match done.unwrap() {
            SubmitOutcome::Created(job) => created.push(job.number),
            SubmitOutcome::Existing(job) => existing.push(job.number),
            other => panic!("same key, same request: {other:?}"),
        }
    }
    assert_eq!(created.len(), 1, "exactly one submission makes the job");
    assert_eq!(existing, vec![created[0]; 9]);
    let listed = store
        .list_jobs(JobFilter { accounts: vec![alias("ACME")], limit: 100, ..JobFilter::default() })
        .await
        .unwrap();
    assert_eq!(numbers(&listed), created);
}

pub async fn concurrent_rescues_take_each_job_once(store: Store) {
    accounts(&store, &["ACME"]).await;
    let mut expired = BTreeSet::new();
    for _ in 0..20 {
        let j = submit(&store, new_job("ACME", "t.lost")).await;
        // Already expired when claimed.
        claim_job(&store, &j, "w-lost", -1_000).await;
        expired.insert(j.number);
    }
    let (a, b, c) =
        tokio::join!(store.rescue(None), store.rescue(None), store.rescue(Some("w-lost".to_string())),);
    let all: Vec<Rescued> = [a.unwrap(), b.unwrap(), c.unwrap()].concat();
    assert_eq!(all.len(), 20, "each job rescued once: {all:?}");
    assert_eq!(set(all.iter().map(|r| r.number)), expired);
    assert!(all.iter().all(|r| r.status == JobStatus::Resumed));
    for n in &expired {
        assert_eq!(
            event_statuses(&store, *n).await,
            vec![JobStatus::NotStarted, JobStatus::Executing, JobStatus::Resumed]
        );
    }
}

pub async fn concurrent_bootstraps_make_one_root(store: Store) {
    let mut tasks = JoinSet::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.spawn(async move {
            let root = format!("ROOT{i}");
            let made = store
                .bootstrap(account(&root, None), new_user(&format!("admin{i}"), &root, &["AccountAdmin"]))
                .await
                .unwrap();
            (i, made)
        });
    }
    let mut made = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (i, did) = done.unwrap();
        if did {
            made.push(i);
        }
    }
    assert_eq!(made.len(), 1, "one bootstrap wins: {made:?}");
    for i in 0..8 {
        let exists = store.account(&alias(&format!("ROOT{i}"))).await.unwrap().is_some();
        let user = store.user(&format!("admin{i}")).await.unwrap().is_some();
        assert_eq!((exists, user), (i == made[0], i == made[0]), "bootstrap {i}");
    }
}
