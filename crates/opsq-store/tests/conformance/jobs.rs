//! Submitting jobs and reading them back: numbers, fields, idempotency, history,
//! listing and scheduling.

use opsq_domain::{JobStatus, NewJob};
use opsq_store::{now_ms, JobFilter, JobOutcome, JobStatusRow, Store, SubmitOutcome};
use serde_json::json;

use crate::support::*;

pub async fn submit_round_trips_every_field(store: Store) {
    accounts(&store, &["ACME"]).await;
    let payload = json!({
        "servers": ["WA1ACMEWEB01", "WA1ACMEWEB02"],
        "count": 2,
        "ratio": 0.5,
        "nested": { "ok": true, "none": null },
        "text": "ünïcode ✓"
    });
    let mut new = new_job("ACME", "server.powerOn");
    new.location = location("NY1");
    new.title = "Power On server WA1ACMEWEB01".to_string();
    new.payload = payload.clone();
    new.max_attempts = 4;
    new.safe_to_repeat = false;
    new.idempotency_key = Some("key-1".to_string());
    new.request_hash = Some("hash-1".to_string());
    new.submitter = "alice".to_string();

    let before = now_ms();
    let created = submit(&store, new).await;
    let after = now_ms();

    assert!(created.number > 0);
    assert_eq!(created.account, alias("ACME"));
    assert_eq!(created.location, location("NY1"));
    assert_eq!(created.kind, kind("server.powerOn"));
    assert_eq!(created.title, "Power On server WA1ACMEWEB01");
    assert_eq!(created.payload, payload);
    assert_eq!(created.status, JobStatus::NotStarted);
    assert_eq!(created.attempt, 0);
    assert_eq!(created.max_attempts, 4);
    assert!(!created.safe_to_repeat);
    assert_eq!(created.idempotency_key.as_deref(), Some("key-1"));
    assert_eq!(created.submitter, "alice");
    assert_eq!(created.result, None);
    assert_eq!(created.error, None);
    assert_eq!(created.started_at, None);
    assert_eq!(created.finished_at, None);
    assert!(!created.cancel_requested);
    assert_eq!(created.progress.percent, 0);
    assert_between("created_at", created.created_at, before, after);
    assert_between("status_at", created.status_at, before, after);
    // Runnable at once.
    assert_between("run_after", created.run_after, before, after);

    // What a read returns is exactly what the submission returned.
    assert_eq!(job(&store, created.number).await, created);
    assert_eq!(
        store.job_status(created.number).await.unwrap(),
        Some(JobStatusRow {
            number: created.number,
            account: alias("ACME"),
            location: location("NY1"),
            status: JobStatus::NotStarted,
        })
    );

    // The other values of the flags round-trip too.
    let mut second = new_job("ACME", "backup.run");
    second.payload = json!(["a", 1, null]);
    second.max_attempts = 1;
    second.safe_to_repeat = true;
    let second = submit(&store, second).await;
    let read = job(&store, second.number).await;
    assert_eq!(read, second);
    assert!(read.safe_to_repeat);
    assert_eq!(read.max_attempts, 1);
    assert_eq!(read.payload, json!(["a", 1, null]));
    assert_eq!(read.idempotency_key, None);
}

pub async fn job_numbers_increase(store: Store) {
    accounts(&store, &["ACME", "OTHER"]).await;
    let mut last = 0;
    for i in 0..10 {
        let account = if i % 2 == 0 { "ACME" } else { "OTHER" };
        let created = submit(&store, new_job(account, "t.work")).await;
        assert!(created.number > last, "job {} after job {last}", created.number);
        last = created.number;
    }
}

pub async fn submitted_job_has_one_history_event(store: Store) {
    accounts(&store, &["ACME"]).await;
    let before = now_ms();
    let created = submit(&store, new_job("ACME", "t.work")).await;
    let after = now_ms();
    let events = store.job_events(created.number).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].status, JobStatus::NotStarted);
    assert_eq!(events[0].attempt, 0);
    assert_between("event at", events[0].at, before, after);
    assert!(!events[0].message.is_empty());

    // Another job's history is its own.
    let other = submit(&store, new_job("ACME", "t.work")).await;
    assert_eq!(store.job_events(other.number).await.unwrap().len(), 1);
    assert_eq!(store.job_events(created.number).await.unwrap(), events);
}

pub async fn idempotency_key_returns_the_first_job(store: Store) {
    accounts(&store, &["ACME", "OTHER"]).await;
    let first = submit(&store, with_key(new_job("ACME", "t.work"), "key-1", "hash-1")).await;

    // Same key, same request: the first job, not a new one.
    let again = store.submit(vec![with_key(new_job("ACME", "t.work"), "key-1", "hash-1")]).await.unwrap();
    match &again[..] {
        [SubmitOutcome::Existing(job)] => assert_eq!(job, &first),
        other => panic!("expected Existing, got {other:?}"),
    }

    // Same key, different request: a conflict that names the first job.
    let mut different = with_key(new_job("ACME", "t.other"), "key-1", "hash-2");
    different.title = "something else".to_string();
    let conflict = store.submit(vec![different]).await.unwrap();
    match &conflict[..] {
        [SubmitOutcome::KeyConflict(job)] => assert_eq!(job.number, first.number),
        other => panic!("expected KeyConflict, got {other:?}"),
    }
    let everything =
        JobFilter { accounts: vec![alias("ACME"), alias("OTHER")], limit: 100, ..JobFilter::default() };
    assert_eq!(numbers(&store.list_jobs(everything.clone()).await.unwrap()), vec![first.number]);
    assert_eq!(store.job_events(first.number).await.unwrap().len(), 1);

    // Keys are per account.
    let elsewhere = submit(&store, with_key(new_job("OTHER", "t.elsewhere"), "key-1", "hash-1")).await;
    assert!(elsewhere.number > first.number);
    assert_eq!(elsewhere.account, alias("OTHER"));

    // A repeat finds the first job as it is now, not as it was.
    claim_job(&store, &first, "w-1", LONG_LEASE_MS).await;
    let later = store.submit(vec![with_key(new_job("ACME", "t.work"), "key-1", "hash-1")]).await.unwrap();
    match &later[..] {
        [SubmitOutcome::Existing(job)] => {
            assert_eq!(job.number, first.number);
            assert_eq!(job.status, JobStatus::Executing);
        }
        other => panic!("expected Existing, got {other:?}"),
    }

    // Jobs without a key are never deduplicated.
    let a = submit(&store, new_job("ACME", "t.work")).await;
    let b = submit(&store, new_job("ACME", "t.work")).await;
    assert_ne!(a.number, b.number);
    assert_eq!(store.list_jobs(everything).await.unwrap().len(), 4);
}

/// Whoever was told a write committed reads its effect at once, on every attempt
/// (the embedded store serves statuses from a cache the write must have cleared).
pub async fn a_status_read_right_after_a_write_sees_it(store: Store) {
    accounts(&store, &["ACME"]).await;
    let job = submit(&store, NewJob { max_attempts: 100, ..new_job("ACME", "t.flip") }).await;
    for round in 0..50 {
        let claim = claim_job(&store, &job, "w", LONG_LEASE_MS).await;
        let read = store.job_status(job.number).await.unwrap().map(|row| row.status);
        assert_eq!(read, Some(JobStatus::Executing), "round {round}");
        let retry = JobOutcome::Retryable { error: "again".into(), run_after: Some(0) };
        store.finish(job.number, &claim.lease_token, retry).await.unwrap();
        let read = store.job_status(job.number).await.unwrap().map(|row| row.status);
        assert_eq!(read, Some(JobStatus::Resumed), "round {round}");
    }
}

/// A batch without idempotency keys (one statement on PostgreSQL) answers in the
/// order it was sent, with rising numbers, and records each job's acceptance.
pub async fn a_batch_without_keys_keeps_its_order(store: Store) {
    accounts(&store, &["ACME"]).await;
    let jobs: Vec<NewJob> = (0..50)
        .map(|i| NewJob {
            title: format!("job {i}"),
            payload: json!({ "i": i }),
            ..new_job("ACME", "t.work")
        })
        .collect();
    let outcomes = store.submit(jobs).await.unwrap();
    assert_eq!(outcomes.len(), 50);
    let mut previous = 0;
    for (i, outcome) in outcomes.iter().enumerate() {
        let SubmitOutcome::Created(job) = outcome else { panic!("expected Created, got {outcome:?}") };
        assert_eq!((job.title.as_str(), &job.payload), (format!("job {i}").as_str(), &json!({ "i": i })));
        assert!(job.number > previous, "numbers rise in submission order");
        previous = job.number;
        let events = store.job_events(job.number).await.unwrap();
        assert_eq!(events.len(), 1, "one acceptance event for job {i}");
    }
}

pub async fn submit_accepts_several_jobs_in_one_call(store: Store) {
    accounts(&store, &["ACME", "OTHER"]).await;
    let earlier = submit(&store, with_key(new_job("ACME", "t.work"), "old", "h-old")).await;

    let outcomes = store
        .submit(vec![
            new_job("ACME", "server.powerOn"),
            with_key(new_job("ACME", "server.reboot"), "k-2", "h-2"),
            new_job("OTHER", "backup.run"),
            // Repeats a key used earlier in this same call.
            with_key(new_job("ACME", "server.reboot"), "k-2", "h-2"),
            // Reuses a key from an earlier call for a different request.
            with_key(new_job("ACME", "t.work"), "old", "h-new"),
        ])
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 5, "one outcome per job, in order");
    let created: Vec<_> = outcomes[..3]
        .iter()
        .map(|o| match o {
            SubmitOutcome::Created(job) => job.clone(),
            other => panic!("expected Created, got {other:?}"),
        })
        .collect();
    assert_eq!(created[0].kind, kind("server.powerOn"));
    assert_eq!(created[1].kind, kind("server.reboot"));
    assert_eq!(created[2].kind, kind("backup.run"));
    assert_eq!(created[2].account, alias("OTHER"));
    assert!(earlier.number < created[0].number);
    assert!(created[0].number < created[1].number && created[1].number < created[2].number);
    match &outcomes[3] {
        SubmitOutcome::Existing(job) => assert_eq!(job.number, created[1].number),
        other => panic!("expected Existing, got {other:?}"),
    }
    match &outcomes[4] {
        SubmitOutcome::KeyConflict(job) => assert_eq!(job.number, earlier.number),
        other => panic!("expected KeyConflict, got {other:?}"),
    }
    for created in &created {
        assert_eq!(&job(&store, created.number).await, created);
        assert_eq!(event_statuses(&store, created.number).await, vec![JobStatus::NotStarted]);
    }
    let all = store
        .list_jobs(JobFilter {
            accounts: vec![alias("ACME"), alias("OTHER")],
            limit: 100,
            ..JobFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 4, "three new jobs and the earlier one");
}

pub async fn unknown_jobs_are_absent(store: Store) {
    accounts(&store, &["ACME"]).await;
    let known = submit(&store, new_job("ACME", "t.work")).await;
    let unknown = known.number + 1000;
    assert_eq!(store.job(unknown).await.unwrap(), None);
    assert_eq!(store.job_status(unknown).await.unwrap(), None);
    assert!(store.job_events(unknown).await.unwrap().is_empty());
    assert_eq!(store.job(0).await.unwrap(), None);
    assert_eq!(store.job(-1).await.unwrap(), None);
    assert!(store.job(known.number).await.unwrap().is_some());
}

pub async fn list_jobs_filters_and_pages(store: Store) {
    accounts(&store, &["ACME", "OTHER", "EMPTY"]).await;
    let a1 = submit(&store, new_job("ACME", "server.powerOn")).await.number;
    let o1 = submit(&store, new_job("OTHER", "server.powerOn")).await.number;
    let a2 = submit(&store, new_job("ACME", "server.reboot")).await.number;
    let a3 = submit(&store, new_job("ACME", "backup.run")).await.number;
    let a4 = submit(&store, new_job("ACME", "server.powerOn")).await.number;
    let a2_claim = claim(&store, &["server.reboot"], "w-1", 10).await;
    assert_eq!(numbers_of_claims(&a2_claim), vec![a2]);

    let list =
        |accounts: &[&str], statuses: &[JobStatus], kind: Option<&str>, before: Option<i64>, limit: u32| {
            let store = store.clone();
            let filter = JobFilter {
                accounts: accounts.iter().map(|a| alias(a)).collect(),
                statuses: statuses.to_vec(),
                kind: kind.map(str::to_string),
                before,
                limit,
            };
            async move {
                let jobs = store.list_jobs(filter).await.expect("list jobs");
                for listed in &jobs {
                    // Listed jobs are whole jobs, as a read returns them.
                    assert_eq!(store.job(listed.number).await.unwrap().as_ref(), Some(listed));
                }
                numbers(&jobs)
            }
        };
    use JobStatus::*;

    // Accounts bound what is visible; newest first.
    assert_eq!(list(&["ACME"], &[], None, None, 100).await, vec![a4, a3, a2, a1]);
    assert_eq!(list(&["OTHER"], &[], None, None, 100).await, vec![o1]);
    assert_eq!(list(&["ACME", "OTHER"], &[], None, None, 100).await, vec![a4, a3, a2, o1, a1]);
    assert!(list(&["EMPTY"], &[], None, None, 100).await.is_empty());
    assert!(list(&[], &[], None, None, 100).await.is_empty(), "no accounts, no jobs");

    // Statuses.
    assert_eq!(list(&["ACME"], &[Executing], None, None, 100).await, vec![a2]);
    assert_eq!(list(&["ACME"], &[NotStarted], None, None, 100).await, vec![a4, a3, a1]);
    assert_eq!(list(&["ACME"], &[NotStarted, Executing], None, None, 100).await, vec![a4, a3, a2, a1]);
    assert!(list(&["ACME", "OTHER"], &[Succeeded, Failed], None, None, 100).await.is_empty());

    // Kinds, exact or glob.
    assert_eq!(list(&["ACME"], &[], Some("server.*"), None, 100).await, vec![a4, a2, a1]);
    assert_eq!(list(&["ACME", "OTHER"], &[], Some("server.powerOn"), None, 100).await, vec![a4, o1, a1]);
    assert_eq!(list(&["ACME"], &[], Some("backup.*"), None, 100).await, vec![a3]);
    assert!(list(&["ACME"], &[], Some("server"), None, 100).await.is_empty());
    assert!(list(&["ACME"], &[], Some("server.power"), None, 100).await.is_empty());

    // Cursor and limit: pages of two, newest first, until empty.
    assert_eq!(list(&["ACME"], &[], None, None, 2).await, vec![a4, a3]);
    assert_eq!(list(&["ACME"], &[], None, Some(a3), 2).await, vec![a2, a1]);
    assert!(list(&["ACME"], &[], None, Some(a1), 2).await.is_empty());
    assert_eq!(list(&["ACME", "OTHER"], &[], None, Some(a2), 100).await, vec![o1, a1]);
    assert_eq!(list(&["ACME"], &[], None, None, 1).await, vec![a4]);

    // Everything at once.
    assert_eq!(list(&["ACME", "OTHER"], &[NotStarted], Some("server.*"), Some(a4), 100).await, vec![o1, a1]);
    assert_eq!(list(&["ACME", "OTHER"], &[NotStarted], Some("server.*"), Some(a4), 1).await, vec![o1]);
}

/// Kind patterns follow SQLite's `GLOB` on every backend: `*`, `?` and `[...]` sets
/// (`^` negates, `]` first is literal, `a-z` ranges, an unclosed `[` matches nothing), case-sensitively, with everything else literal,
/// regex and `LIKE` syntax included.
pub async fn kind_globs_follow_sqlite_glob_rules(store: Store) {
    accounts(&store, &["ACME"]).await;
    let kinds = ["a.b", "a.c", "a.bc", "a-b", "a_b", "ab.c", "A.b", "x-y.z9"];
    for k in kinds {
        submit(&store, new_job("ACME", k)).await;
    }
    let matching = |pattern: &'static str| {
        let store = store.clone();
        async move {
            let filter = JobFilter {
                accounts: vec![alias("ACME")],
                kind: Some(pattern.to_string()),
                limit: 100,
                ..JobFilter::default()
            };
            let mut found: Vec<String> = store
                .list_jobs(filter)
                .await
                .expect("list jobs")
                .into_iter()
                .map(|j| j.kind.as_str().to_string())
                .collect();
            found.sort();
            found
        }
    };
    let cases: &[(&str, &[&str])] = &[
        ("*", &["A.b", "a-b", "a.b", "a.bc", "a.c", "a_b", "ab.c", "x-y.z9"]),
        ("a*", &["a-b", "a.b", "a.bc", "a.c", "a_b", "ab.c"]),
        ("*.c", &["a.c", "ab.c"]),
        ("a.b*", &["a.b", "a.bc"]),
        ("a.?", &["a.b", "a.c"]),
        ("a?b", &["a-b", "a.b", "a_b"]),
        ("a[._]b", &["a.b", "a_b"]),
        ("a[^._]b", &["a-b"]),
        ("a[]-]b", &["a-b"]),
        ("a[+--]b", &["a-b"]),
        ("[a-a].*", &["a.b", "a.bc", "a.c"]),
        ("[A-Z].b", &["A.b"]),
        ("a.[b-c]", &["a.b", "a.c"]),
        // A reversed range holds nothing, but its first character still counts.
        ("a.[c-b]", &["a.c"]),
        ("a.[^c-b]", &["a.b"]),
        ("[:a].b", &["a.b"]),
        ("[[:alpha:]].b", &[]),
        ("x-y.z[0-9]", &["x-y.z9"]),
        ("a.[b", &[]),
        ("a.(b|c)", &[]),
        ("a.b$", &[]),
        ("^a.b", &[]),
        ("a\\.b", &[]),
        ("a.b{1}", &[]),
        ("a.b+", &[]),
        ("a%", &[]),
        ("a_b", &["a_b"]),
        ("A.B", &[]),
    ];
    for (pattern, expected) in cases {
        assert_eq!(matching(pattern).await, *expected, "kind pattern {pattern:?}");
    }
}

/// Waiting jobs (`notStarted`, or `resumed` for later) and when each may run.
async fn waiting(store: &Store, kind: &str) -> Vec<(i64, i64)> {
    let filter = JobFilter {
        accounts: vec![alias("ACME")],
        statuses: vec![JobStatus::NotStarted, JobStatus::Resumed],
        kind: Some(kind.to_string()),
        before: None,
        limit: 100,
    };
    let mut jobs: Vec<(i64, i64)> =
        store.list_jobs(filter).await.unwrap().iter().map(|j| (j.number, j.run_after)).collect();
    jobs.sort_unstable();
    jobs
}

pub async fn waiting_jobs_show_when_they_run(store: Store) {
    accounts(&store, &["ACME"]).await;
    assert_eq!(waiting(&store, "server.*").await, vec![]);

    let first = submit(&store, new_job("ACME", "server.powerOn")).await;
    assert_eq!(waiting(&store, "server.*").await, vec![(first.number, first.run_after)]);
    assert_eq!(waiting(&store, "server.powerOn").await, vec![(first.number, first.run_after)]);
    assert_eq!(waiting(&store, "backup.*").await, vec![]);

    // A running job is not waiting.
    let claimed = claim_job(&store, &first, "w-1", LONG_LEASE_MS).await;
    assert_eq!(waiting(&store, "server.*").await, vec![]);

    // A retry scheduled for later is, with its time.
    let later = now_ms() + 3_600_000;
    let retry = JobOutcome::Retryable { error: "busy".to_string(), run_after: Some(later) };
    store.finish(first.number, &claimed.lease_token, retry).await.unwrap();
    assert_eq!(waiting(&store, "server.*").await, vec![(first.number, later)]);

    // Several, each with its own time.
    let second = submit(&store, new_job("ACME", "server.reboot")).await;
    assert!(second.run_after < later);
    assert_eq!(
        waiting(&store, "server.*").await,
        vec![(first.number, later), (second.number, second.run_after)]
    );
    assert_eq!(waiting(&store, "server.powerOn").await, vec![(first.number, later)]);
}
