//! The worker against a scripted fake server, so each protocol rule (cancel, lost
//! lease, retries, shutdown) is exercised without the real one.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use axum::{
    extract::{Path, State},
    http::StatusCode,
    routing::post,
    Json, Router,
};
use serde_json::json;

use super::*;

/// What the fake heartbeat answers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Beat {
    Ok,
    Cancel,
    Conflict,
}

#[derive(Default)]
struct Script {
    jobs: VecDeque<Value>,
    beat: Option<Beat>,
    /// How many complete/fail calls answer 503 before one is accepted.
    report_failures: u32,
    /// Answer claims with 401.
    refuse_claims: bool,
    /// Serve `/v2/workers/report`; without it the worker falls back to one call per
    /// outcome, as against a server older than the call (every other test).
    reports: bool,
    /// Jobs handed out by reports' claims.
    from_reports: usize,
    /// How many outcomes reports answer `recorded: false` with 503 before recording.
    outcome_failures: u32,
    /// When each report arrived.
    report_times: Vec<Instant>,
    /// Every call: (action, job id, body).
    calls: Vec<(String, String, Value)>,
    /// Jobs only reports' claims hand out (after `jobs`).
    report_jobs: VecDeque<Value>,
    /// Fired by the first report that hands out a job, before it answers: the worker
    /// is shutting down by the time the job arrives.
    shut_down_on_report: Option<CancellationToken>,
    /// Act as a server older than `release`: reports carrying `released` answer 400,
    /// and `release` answers 404.
    no_release: bool,
}

type Fake = Arc<Mutex<Script>>;

fn lock(fake: &Fake) -> std::sync::MutexGuard<'_, Script> {
    fake.lock().unwrap_or_else(PoisonError::into_inner)
}

fn job_json(id: &str, lease_seconds: u64) -> Value {
    json!({
        "id": id, "number": 1, "accountAlias": "OPSQ", "locationAlias": "WA1", "kind": "test.echo",
        "title": "t", "payload": {"n": 1}, "status": "executing", "attempt": 1, "maxAttempts": 3,
        "leaseToken": format!("lease-{id}"), "leaseExpires": "2026-01-01T00:00:00.000Z",
        "leaseSeconds": lease_seconds,
    })
}

async fn claim(State(fake): State<Fake>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    let jobs: Vec<Value> = {
        let mut script = lock(&fake);
        script.calls.push(("claim".into(), String::new(), body.clone()));
        if script.refuse_claims {
            return (StatusCode::UNAUTHORIZED, Json(json!({"message": "token expired"})));
        }
        let limit = body["limit"].as_u64().unwrap_or(1) as usize;
        let take = limit.min(script.jobs.len());
        script.jobs.drain(..take).collect()
    };
    if jobs.is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (StatusCode::OK, Json(json!({ "jobs": jobs })))
}

async fn action(
    State(fake): State<Fake>,
    Path((id, action)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut script = lock(&fake);
    script.calls.push((action.clone(), id.clone(), body));
    if action == "release" && script.no_release {
        return (StatusCode::NOT_FOUND, Json(json!({"message": "no such route"})));
    }
    if action == "heartbeat" {
        return match script.beat.unwrap_or(Beat::Ok) {
            Beat::Conflict => (StatusCode::CONFLICT, Json(json!({"message": "lease lost"}))),
            beat => (
                StatusCode::OK,
                Json(
                    json!({"cancelRequested": beat == Beat::Cancel, "leaseExpires": "x", "leaseSeconds": 1}),
                ),
            ),
        };
    }
    if script.report_failures > 0 {
        script.report_failures -= 1;
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"message": "store unavailable"})));
    }
    let mut job = job_json(&id, 1);
    job["status"] = json!(match action.as_str() {
        "complete" => "succeeded",
        "release" => "resumed",
        _ => "failed",
    });
    (StatusCode::OK, Json(job))
}

/// Records every outcome, and claims for the report as `claim` would, without waiting.
async fn report(State(fake): State<Fake>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    let mut script = lock(&fake);
    script.calls.push(("report".into(), String::new(), body.clone()));
    script.report_times.push(Instant::now());
    let outcomes = body["outcomes"].as_array().cloned().unwrap_or_default();
    if script.no_release && outcomes.iter().any(|o| o.get("released").is_some()) {
        return (StatusCode::BAD_REQUEST, Json(json!({"message": "unknown field `released`"})));
    }
    let mut outcomes = Vec::new();
    for o in body["outcomes"].as_array().into_iter().flatten() {
        if script.outcome_failures > 0 {
            script.outcome_failures -= 1;
            outcomes.push(json!({"id": o["id"], "recorded": false, "httpStatus": 503, "message": "busy"}));
            continue;
        }
        let status = match (o.get("error"), o.get("released")) {
            (Some(_), _) => "failed",
            (None, Some(_)) => "resumed",
            (None, None) => "succeeded",
        };
        outcomes.push(json!({"id": o["id"], "recorded": true, "status": status}));
    }
    let limit = body["claim"]["limit"].as_u64().unwrap_or(0) as usize;
    let take = limit.min(script.jobs.len());
    let mut jobs: Vec<Value> = script.jobs.drain(..take).collect();
    let more = (limit - jobs.len()).min(script.report_jobs.len());
    jobs.extend(script.report_jobs.drain(..more));
    if !jobs.is_empty() {
        if let Some(shutdown) = script.shut_down_on_report.take() {
            shutdown.cancel();
        }
    }
    script.from_reports += jobs.len();
    (StatusCode::OK, Json(json!({"outcomes": outcomes, "jobs": jobs})))
}

async fn start(script: Script) -> (Fake, Client) {
    let reports = script.reports;
    let fake: Fake = Arc::new(Mutex::new(script));
    let mut app = Router::new()
        .route("/v2/workers/claim", post(claim))
        .route("/v2/workers/jobs/{id}/{action}", post(action));
    if reports {
        app = app.route("/v2/workers/report", post(report));
    }
    let app = app.with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = Client::new(&addr.to_string()).expect("client").with_token("t");
    (fake, client)
}

fn config(grace: Duration) -> WorkerConfig {
    WorkerConfig {
        kinds: vec!["test.*".into()],
        concurrency: 2,
        worker_id: "test/1".into(),
        wait_seconds: 1,
        shutdown_grace: grace,
    }
}

/// Runs the worker until `done` says the fake saw enough, then shuts it down and
/// returns every call made.
async fn run_until(
    fake: &Fake,
    client: Client,
    config: WorkerConfig,
    handler: impl Handler,
    done: impl Fn(&Script) -> bool,
) -> Vec<(String, String, Value)> {
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(Worker::new(client, config).run(handler, shutdown.clone()));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(&lock(fake)) {
        assert!(Instant::now() < deadline, "the fake never saw the expected calls: {:?}", lock(fake).calls);
        sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    let ended = timeout(Duration::from_secs(30), worker).await.expect("the worker stops").expect("no panic");
    assert_eq!(ended, Ok(()));
    let calls = lock(fake).calls.clone();
    calls
}

fn reported(script: &Script) -> bool {
    script.calls.iter().any(|(action, _, _)| action == "complete" || action == "fail")
}

fn actions<'a>(calls: &'a [(String, String, Value)], name: &str) -> Vec<&'a Value> {
    calls.iter().filter(|(action, _, _)| action == name).map(|(_, _, body)| body).collect()
}

#[tokio::test]
async fn a_job_runs_reports_progress_and_completes() {
    let (fake, client) = start(Script { jobs: [job_json("wa1-1", 1)].into(), ..Script::default() }).await;
    let seen = fake.clone();
    let handler = handler_fn(move |job: crate::Job, ctx: WorkContext| {
        let seen = seen.clone();
        async move {
            ctx.progress(40, 2, "Copying");
            // Finish only once the progress went out in a heartbeat (bounded wait).
            let deadline = Instant::now() + Duration::from_secs(10);
            while !lock(&seen)
                .calls
                .iter()
                .any(|(action, _, body)| action == "heartbeat" && body.get("progress").is_some())
            {
                assert!(Instant::now() < deadline, "no heartbeat carried the progress");
                sleep(Duration::from_millis(10)).await;
            }
            Ok(json!({"echo": job.payload}))
        }
    });
    let calls = run_until(&fake, client, config(Duration::from_secs(5)), handler, reported).await;
    let claims = actions(&calls, "claim");
    assert_eq!(claims[0]["kinds"], json!(["test.*"]));
    assert_eq!(claims[0]["limit"], 2);
    assert_eq!(claims[0]["workerId"], "test/1");
    let beats = actions(&calls, "heartbeat");
    assert!(!beats.is_empty(), "{calls:?}");
    assert_eq!(beats[0]["leaseToken"], "lease-wa1-1");
    assert_eq!(beats[0]["progress"], json!({"percent": 40, "stepNumber": 2, "description": "Copying"}));
    let completes = actions(&calls, "complete");
    assert_eq!(completes.len(), 1, "{calls:?}");
    assert_eq!(completes[0]["result"], json!({"echo": {"n": 1}}));
    assert_eq!(completes[0]["leaseToken"], "lease-wa1-1");
}

#[tokio::test]
async fn a_cancel_request_fires_the_token_and_the_failure_is_reported() {
    let script =
        Script { jobs: [job_json("wa1-2", 1)].into(), beat: Some(Beat::Cancel), ..Script::default() };
    let (fake, client) = start(script).await;
    let handler = handler_fn(|_job: crate::Job, ctx: WorkContext| async move {
        ctx.cancelled().await;
        assert_eq!(ctx.stop_reason(), Some(StopReason::CancelRequested));
        Err(WorkError::retryable("stopped on request"))
    });
    let calls = run_until(&fake, client, config(Duration::from_secs(5)), handler, reported).await;
    let fails = actions(&calls, "fail");
    assert_eq!(fails.len(), 1, "{calls:?}");
    assert_eq!(fails[0]["error"], "stopped on request");
    assert_eq!(fails[0]["retryable"], false);
}

#[tokio::test]
async fn a_lost_lease_stops_the_job_and_drops_its_outcome() {
    let script =
        Script { jobs: [job_json("wa1-3", 1)].into(), beat: Some(Beat::Conflict), ..Script::default() };
    let (fake, client) = start(script).await;
    let stopped = Arc::new(Mutex::new(None));
    let seen = stopped.clone();
    let handler = handler_fn(move |_job: crate::Job, ctx: WorkContext| {
        let seen = seen.clone();
        async move {
            ctx.cancelled().await;
            *seen.lock().unwrap_or_else(PoisonError::into_inner) = ctx.stop_reason();
            Ok(json!("finished anyway"))
        }
    });
    let calls = run_until(&fake, client, config(Duration::from_secs(5)), handler, |script| {
        script.calls.iter().any(|(action, _, _)| action == "heartbeat")
    })
    .await;
    assert_eq!(*stopped.lock().unwrap_or_else(PoisonError::into_inner), Some(StopReason::LeaseLost));
    assert!(!reported(&Script { calls, ..Script::default() }), "nothing may be reported after a 409");
}

#[tokio::test]
async fn transient_report_failures_are_retried() {
    let script = Script { jobs: [job_json("wa1-4", 10)].into(), report_failures: 2, ..Script::default() };
    let (fake, client) = start(script).await;
    let handler =
        handler_fn(|_job: crate::Job, _ctx: WorkContext| async move { Err(WorkError::fatal("bad payload")) });
    let calls = run_until(&fake, client, config(Duration::from_secs(5)), handler, |script| {
        script.calls.iter().filter(|(action, _, _)| action == "fail").count() == 3
    })
    .await;
    let fails = actions(&calls, "fail");
    assert_eq!(fails.len(), 3, "two 503s then the accepted one: {calls:?}");
    assert!(fails.iter().all(|body| body["error"] == "bad payload" && body["retryable"] == false));
}

#[tokio::test]
async fn shutdown_waits_for_the_grace_then_hands_running_jobs_back() {
    let script = Script { jobs: [job_json("wa1-5", 10), job_json("wa1-6", 10)].into(), ..Script::default() };
    let (fake, client) = start(script).await;
    let started_jobs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = started_jobs.clone();
    let handler = handler_fn(move |job: crate::Job, ctx: WorkContext| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            if job.id == "wa1-5" {
                // Finishes within the grace period: its result counts.
                sleep(Duration::from_millis(200)).await;
                return Ok(json!("quick"));
            }
            ctx.cancelled().await;
            assert_eq!(ctx.stop_reason(), Some(StopReason::Shutdown));
            Err(WorkError::fatal("interrupted"))
        }
    });
    let started = Instant::now();
    // Shut down once both jobs are running in their handlers.
    let calls = run_until(&fake, client, config(Duration::from_millis(700)), handler, |_| {
        started_jobs.load(std::sync::atomic::Ordering::SeqCst) == 2
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    let completes: Vec<_> = calls.iter().filter(|(action, _, _)| action == "complete").collect();
    assert_eq!(completes.len(), 1, "{calls:?}");
    assert_eq!(completes[0].1, "wa1-5");
    let fails: Vec<_> = calls.iter().filter(|(action, _, _)| action == "fail").collect();
    assert_eq!(fails.len(), 1, "{calls:?}");
    assert_eq!(fails[0].1, "wa1-6");
    assert_eq!(fails[0].2["retryable"], true);
    assert_eq!(fails[0].2["error"], "worker shutting down: interrupted");
}

#[tokio::test]
async fn a_refused_claim_ends_the_worker_with_the_reason() {
    let (_fake, client) = start(Script { refuse_claims: true, ..Script::default() }).await;
    let handler = handler_fn(|_job: crate::Job, _ctx: WorkContext| async move { Ok(Value::Null) });
    let ended = timeout(
        Duration::from_secs(10),
        Worker::new(client, config(Duration::from_secs(1))).run(handler, CancellationToken::new()),
    )
    .await
    .expect("the worker stops on its own");
    let Err(WorkerError::Claim(err)) = ended else { panic!("expected a refused claim, got {ended:?}") };
    assert_eq!(err.status(), Some(401));
}

#[tokio::test]
async fn a_config_without_kinds_is_refused_up_front() {
    let client = Client::new("127.0.0.1:9").expect("client");
    let handler = handler_fn(|_job: crate::Job, _ctx: WorkContext| async move { Ok(Value::Null) });
    let config = WorkerConfig { kinds: vec![], ..WorkerConfig::default() };
    let ended = Worker::new(client, config).run(handler, CancellationToken::new()).await;
    assert!(matches!(ended, Err(WorkerError::Config(_))), "{ended:?}");
}

#[test]
fn reports_follow_the_stop_reason() {
    let fail = |report: Option<Report>| match report {
        Some(Report::Fail(failure)) => Some((failure.error, failure.retryable)),
        _ => None,
    };
    assert!(decide(Ok(json!(1)), Some(StopReason::LeaseLost)).is_none());
    assert!(decide(Err(WorkError::fatal("x")), Some(StopReason::LeaseLost)).is_none());
    assert!(matches!(decide(Ok(json!(1)), Some(StopReason::Shutdown)), Some(Report::Complete(_))));
    assert!(matches!(decide(Ok(json!(1)), None), Some(Report::Complete(_))));
    assert_eq!(fail(decide(Err(WorkError::retryable("busy")), None)), Some(("busy".into(), true)));
    assert_eq!(fail(decide(Err(WorkError::fatal("bad")), None)), Some(("bad".into(), false)));
    assert_eq!(
        fail(decide(Err(WorkError::retryable("x")), Some(StopReason::CancelRequested))),
        Some(("x".into(), false))
    );
    assert_eq!(
        fail(decide(Err(WorkError::fatal("x")), Some(StopReason::Shutdown))),
        Some(("worker shutting down: x".into(), true))
    );
}

#[test]
fn timings_are_bounded() {
    assert_eq!(backoff(1), Duration::from_millis(500));
    assert_eq!(backoff(2), Duration::from_secs(1));
    assert_eq!(backoff(1000), MAX_BACKOFF);
    assert_eq!(beat_interval(30), Duration::from_secs(10));
    assert_eq!(beat_interval(0), Duration::from_millis(200));
    let start = Instant::now();
    let clock = LeaseClock::new(start, 30);
    clock.renew(start, 10);
    assert_eq!(clock.until(), start + Duration::from_secs(30), "a renewal never shortens the lease");
    clock.renew(start + Duration::from_secs(25), 30);
    assert_eq!(clock.until(), start + Duration::from_secs(55));
}

#[test]
fn config_is_bounded_and_the_default_id_names_the_process() {
    let config =
        WorkerConfig { kinds: vec!["a".into()], concurrency: 0, wait_seconds: 99, ..WorkerConfig::default() };
    let checked = config.validated().expect("valid");
    assert_eq!(checked.concurrency, 1);
    assert_eq!(checked.wait_seconds, MAX_WAIT_SECS);
    let never_waits = WorkerConfig { kinds: vec!["a".into()], wait_seconds: 0, ..WorkerConfig::default() };
    assert_eq!(never_waits.validated().expect("valid").wait_seconds, 1, "no tight claim loop");
    let bad_kind = WorkerConfig { kinds: vec!["a b".into()], ..WorkerConfig::default() };
    assert!(matches!(bad_kind.validated(), Err(WorkerError::Config(_))));
    assert!(default_worker_id().ends_with(&format!("/pid-{}", std::process::id())));
    let many = WorkerConfig { kinds: vec!["a".into(); 51], ..WorkerConfig::default() };
    assert!(many.validated().is_err());
}

#[tokio::test]
async fn outcomes_go_out_in_reports_that_claim_the_slots_they_free() {
    let ids: Vec<String> = (1..=6).map(|n| format!("wa1-{n}")).collect();
    let script =
        Script { jobs: ids.iter().map(|id| job_json(id, 30)).collect(), reports: true, ..Script::default() };
    let (fake, client) = start(script).await;
    let handler = handler_fn(|job: crate::Job, _ctx: WorkContext| async move { Ok(json!({"ran": job.id})) });
    let all_reported = |script: &Script| {
        let sent: usize = actions(&script.calls, "report")
            .iter()
            .map(|r| r["outcomes"].as_array().map_or(0, Vec::len))
            .sum();
        sent == 6
    };
    let calls = run_until(&fake, client, config(Duration::from_secs(5)), handler, all_reported).await;
    assert!(actions(&calls, "complete").is_empty() && actions(&calls, "fail").is_empty(), "{calls:?}");
    let mut reported: Vec<String> = Vec::new();
    for report in actions(&calls, "report") {
        let outcomes = report["outcomes"].as_array().unwrap();
        for outcome in outcomes {
            let id = outcome["id"].as_str().unwrap();
            assert_eq!(outcome["leaseToken"], format!("lease-{id}"));
            assert_eq!(outcome["result"], json!({"ran": id}));
            reported.push(id.to_string());
        }
        // A report asks for no more jobs than its outcomes free slots, and never waits.
        if let Some(claim) = report.get("claim") {
            assert!(claim["limit"].as_u64().unwrap() as usize <= outcomes.len(), "{report}");
            assert_eq!((&claim["kinds"], &claim["workerId"]), (&json!(["test.*"]), &json!("test/1")));
            assert!(claim.get("waitSeconds").is_none(), "{report}");
        }
    }
    reported.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(reported, want, "every job reported once");
    assert!(lock(&fake).from_reports > 0, "jobs came with reports, not only with claims: {calls:?}");
}

/// Runs one job, and shuts the worker down just as the report of its outcome claims
/// another: returns every call made.
async fn shut_down_as_a_report_claims(no_release: bool) -> Vec<(String, String, Value)> {
    let shutdown = CancellationToken::new();
    let script = Script {
        jobs: [job_json("wa1-20", 30)].into(),
        report_jobs: [job_json("wa1-21", 30)].into(),
        shut_down_on_report: Some(shutdown.clone()),
        reports: true,
        no_release,
        ..Script::default()
    };
    let (fake, client) = start(script).await;
    let ran = Arc::new(Mutex::new(Vec::new()));
    let runs = ran.clone();
    let handler = handler_fn(move |job: crate::Job, _ctx: WorkContext| {
        runs.lock().unwrap_or_else(PoisonError::into_inner).push(job.id);
        async move { Ok(json!(1)) }
    });
    let config = WorkerConfig { concurrency: 1, ..config(Duration::from_secs(5)) };
    let worker = Worker::new(client, config).run(handler, shutdown);
    let ended = timeout(Duration::from_secs(30), worker).await.expect("the worker stops");
    assert_eq!(ended, Ok(()));
    let ran = ran.lock().unwrap_or_else(PoisonError::into_inner).clone();
    assert_eq!(ran, ["wa1-20"], "a job claimed once shutdown began never starts");
    let calls = lock(&fake).calls.clone();
    assert_eq!(lock(&fake).from_reports, 1, "a report claimed wa1-21: {calls:?}");
    calls
}

#[tokio::test]
async fn a_job_claimed_as_the_worker_shuts_down_is_released_unstarted() {
    let calls = shut_down_as_a_report_claims(false).await;
    let released: Vec<&Value> = actions(&calls, "report")
        .into_iter()
        .flat_map(|report| report["outcomes"].as_array().unwrap())
        .filter(|outcome| outcome["id"] == "wa1-21")
        .collect();
    assert_eq!(released, vec![&json!({"id": "wa1-21", "leaseToken": "lease-wa1-21", "released": true})]);
    assert!(actions(&calls, "fail").is_empty() && actions(&calls, "release").is_empty(), "{calls:?}");
}

#[tokio::test]
async fn a_server_without_release_gets_a_retryable_failure_instead() {
    let calls = shut_down_as_a_report_claims(true).await;
    let tried: Vec<&str> = calls
        .iter()
        .filter(|(action, id, _)| id == "wa1-21" && (action == "release" || action == "fail"))
        .map(|(action, _, _)| action.as_str())
        .collect();
    assert_eq!(tried, ["release", "fail"], "{calls:?}");
    let failure = &actions(&calls, "fail")[0];
    assert_eq!((&failure["retryable"], &failure["retryAfterSeconds"]), (&json!(true), &json!(0)));
    assert_eq!(failure["error"], "worker shutting down: not started");
}

#[tokio::test]
async fn an_outcome_the_server_could_not_record_is_sent_again_after_a_pause() {
    let script = Script {
        jobs: [job_json("wa1-9", 30)].into(),
        reports: true,
        outcome_failures: 2,
        ..Script::default()
    };
    let (fake, client) = start(script).await;
    let handler = handler_fn(|_job: crate::Job, _ctx: WorkContext| async move { Ok(json!(1)) });
    let recorded = |script: &Script| script.outcome_failures == 0 && script.report_times.len() >= 3;
    let calls = run_until(&fake, client, config(Duration::from_secs(5)), handler, recorded).await;
    let reports = actions(&calls, "report");
    assert_eq!(reports.len(), 3, "refused twice, then recorded: {calls:?}");
    assert!(reports.iter().all(|r| r["outcomes"][0]["id"] == "wa1-9"), "{reports:?}");
    assert!(actions(&calls, "complete").is_empty(), "{calls:?}");
    // Backoff, not a tight loop: 0.5 s, then 1 s.
    let times = lock(&fake).report_times.clone();
    assert!(times[1] - times[0] >= Duration::from_millis(450), "{:?}", times[1] - times[0]);
    assert!(times[2] - times[1] >= Duration::from_millis(950), "{:?}", times[2] - times[1]);
}
