//! Durable execution over real HTTP: cancel, the external-worker protocol and its
//! fencing, lease expiry, retries, reconcile probes, the unknown timeout and pruning.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use opsq_domain::Job;
use opsq_server::runner::{HandlerError, JobContext, JobHandler, ProbeVerdict};
use opsq_server::HousekeepingConfig;
use opsq_store::KindSettings;
use serde_json::{json, Value};

use crate::harness::{assert_error, TestServer, PASSWORD};
use crate::metrics;

/// Polls `GET .../jobs/{id}` until `done` holds, failing after a deadline.
async fn poll_job(
    server: &TestServer,
    token: &str,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, job) = server.get(token, &format!("/v2/operations/OPSQ/jobs/{id}")).await;
        if code == 200 && done(&job) {
            return job;
        }
        assert!(Instant::now() < deadline, "{what} never happened for {id}: {code} {job}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn submit(server: &TestServer, token: &str, body: Value) -> String {
    let (code, job) = server.post_json(token, "/v2/operations/OPSQ/jobs", &body).await;
    assert_eq!(code, 202, "{job}");
    job["id"].as_str().unwrap().to_string()
}

async fn claim(server: &TestServer, token: &str, kinds: &[&str], wait: u64) -> Vec<Value> {
    let (code, body) = server
        .post_json(token, "/v2/workers/claim", &json!({"kinds": kinds, "limit": 10, "waitSeconds": wait}))
        .await;
    assert_eq!(code, 200, "{body}");
    body["jobs"].as_array().unwrap().clone()
}

async fn worker_call(server: &TestServer, token: &str, id: &str, action: &str, body: Value) -> (u16, Value) {
    server.post_json(token, &format!("/v2/workers/jobs/{id}/{action}"), &body).await
}

/// Waits on its cancellation token; fails as cancelled when it fires.
struct WaitsForCancel;

impl JobHandler for WaitsForCancel {
    fn run(&self, ctx: JobContext) -> BoxFuture<'static, Result<Value, HandlerError>> {
        Box::pin(async move {
            ctx.progress(10, 1, "waiting to be cancelled").await?;
            ctx.cancelled().cancelled().await;
            Err(HandlerError::Fatal("stopped".into()))
        })
    }
}

/// Fails retryably until its `succeed_on` attempt.
struct Flaky {
    succeed_on: u32,
}

impl JobHandler for Flaky {
    fn run(&self, ctx: JobContext) -> BoxFuture<'static, Result<Value, HandlerError>> {
        let succeed_on = self.succeed_on;
        Box::pin(async move {
            if ctx.job.attempt >= succeed_on {
                Ok(json!({"attempt": ctx.job.attempt}))
            } else {
                Err(HandlerError::Retryable(format!("transient failure on attempt {}", ctx.job.attempt)))
            }
        })
    }
}

/// Vanishes mid-run (as a crashed process would) and, asked later, says the effect
/// happened.
struct VanishesThenProbes {
    probes: Arc<AtomicU32>,
}

impl JobHandler for VanishesThenProbes {
    fn run(&self, _ctx: JobContext) -> BoxFuture<'static, Result<Value, HandlerError>> {
        Box::pin(async { Err(HandlerError::LeaseLost) })
    }

    fn probe(&self, _job: &Job) -> Option<BoxFuture<'static, ProbeVerdict>> {
        self.probes.fetch_add(1, Ordering::SeqCst);
        Some(Box::pin(async { ProbeVerdict::Happened(json!({"probed": true})) }))
    }
}

#[tokio::test]
async fn cancel_is_immediate_for_waiting_jobs_and_cooperative_for_running_ones() {
    let server = TestServer::start_configured(|options| {
        options.handlers.register("test.waits", Arc::new(WaitsForCancel));
    })
    .await;
    let token = server.admin_token().await;

    let waiting = server.submit(&token, "OPSQ", "nobody.handles").await;
    let (code, job) = server
        .post_json(
            &token,
            &format!("/v2/operations/OPSQ/jobs/{waiting}/cancel"),
            &json!({"reason": "changed my mind"}),
        )
        .await;
    assert_eq!(code, 200, "{job}");
    assert_eq!(job["status"], "failed");
    assert_eq!(job["error"], "cancelled: changed my mind");
    let (code, body) =
        server.post_json(&token, &format!("/v2/operations/OPSQ/jobs/{waiting}/cancel"), &json!({})).await;
    assert_error(code, &body, 409);

    let running = server.submit(&token, "OPSQ", "test.waits").await;
    poll_job(&server, &token, &running, "start", |j| {
        j["status"] == "executing" && j["progress"]["percent"] == 10
    })
    .await;
    let asked = Instant::now();
    let (code, job) =
        server.post_json(&token, &format!("/v2/operations/OPSQ/jobs/{running}/cancel"), &json!({})).await;
    assert_eq!(code, 202, "{job}");
    assert_eq!(job["cancelRequested"], true);
    let ended = poll_job(&server, &token, &running, "cancel", |j| j["status"] == "failed").await;
    assert!(asked.elapsed() < Duration::from_secs(5), "an in-process cancel is delivered at once");
    assert!(ended["error"].as_str().unwrap().starts_with("cancelled: cancelled by admin"), "{ended}");
}

#[tokio::test]
async fn external_workers_claim_heartbeat_and_complete_fenced_by_their_lease() {
    let server = TestServer::start().await;
    let token = server.admin_token().await;
    server.add_user("submitter", "OPSQ", &["ServerAdmin"]).await;
    let not_a_worker = server.token("submitter", PASSWORD).await;
    let (code, body) =
        server.post_json(&not_a_worker, "/v2/workers/claim", &json!({"kinds": ["ext.*"]})).await;
    assert_error(code, &body, 403);

    // Long-poll with nothing to claim: the claim waits out its time, then answers empty.
    let started = Instant::now();
    let (code, empty) =
        server.post_json(&token, "/v2/workers/claim", &json!({"kinds": ["ext.*"], "waitSeconds": 1})).await;
    assert_eq!((code, empty["jobs"].as_array().map(Vec::len)), (200, Some(0)), "{empty}");
    assert!(started.elapsed() >= Duration::from_millis(900), "it waited: {:?}", started.elapsed());

    // A long-poll returns as soon as a job is submitted, long before its 20 s.
    let poller = {
        let (base, token) = (server.base.clone(), token.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let response = reqwest::Client::new()
                .post(format!("{base}/v2/workers/claim"))
                .bearer_auth(token)
                .json(&json!({"kinds": ["ext.*"], "waitSeconds": 20, "workerId": "test"}))
                .send()
                .await
                .unwrap();
            (started.elapsed(), response.json::<Value>().await.unwrap())
        })
    };
    let id = submit(&server, &token, json!({"kind": "ext.copy", "payload": {"n": 1}})).await;
    let (waited, claimed) = poller.await.unwrap();
    assert!(waited < Duration::from_secs(10), "woken by the submission, not the timeout");
    let job = &claimed["jobs"][0];
    assert_eq!(job["id"], id.as_str());
    assert_eq!(job["status"], "executing");
    assert_eq!(job["payload"], json!({"n": 1}));
    let lease = job["leaseToken"].as_str().unwrap().to_string();
    assert!(job["leaseSeconds"].as_i64().unwrap() >= 29);

    let (code, answer) = worker_call(
        &server,
        &token,
        &id,
        "heartbeat",
        json!({"leaseToken": lease, "progress": {"percent": 50, "stepNumber": 2, "description": "Copying"}}),
    )
    .await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["cancelRequested"], false);
    let seen = poll_job(&server, &token, &id, "progress", |j| j["progress"]["percent"] == 50).await;
    assert_eq!(seen["progress"]["description"], "Copying");

    let (code, body) = worker_call(&server, &token, &id, "heartbeat", json!({"leaseToken": "forged"})).await;
    assert_error(code, &body, 409);
    let (code, done) =
        worker_call(&server, &token, &id, "complete", json!({"leaseToken": lease, "result": {"copied": 3}}))
            .await;
    assert_eq!(code, 200, "{done}");
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["result"], json!({"copied": 3}));
    // Only one outcome is ever recorded.
    for (action, body) in
        [("complete", json!({"leaseToken": lease})), ("fail", json!({"leaseToken": lease, "error": "late"}))]
    {
        let (code, body) = worker_call(&server, &token, &id, action, body).await;
        assert_error(code, &body, 409);
    }
    // A cancel after the end keeps the real outcome.
    let (code, body) =
        server.post_json(&token, &format!("/v2/operations/OPSQ/jobs/{id}/cancel"), &json!({})).await;
    assert_error(code, &body, 409);
    let (_, job) = server.get(&token, &format!("/v2/operations/OPSQ/jobs/{id}")).await;
    assert_eq!(job["status"], "succeeded");

    // Nothing to claim: an empty list after the (short) wait.
    assert!(claim(&server, &token, &["ext.*"], 0).await.is_empty());
}

#[tokio::test]
async fn workers_hear_cancel_on_heartbeat_and_failures_retry_or_end() {
    let server = TestServer::start().await;
    let token = server.admin_token().await;
    let cancelled = submit(&server, &token, json!({"kind": "ext.a"})).await;
    let retried = submit(&server, &token, json!({"kind": "ext.b", "maxAttempts": 2})).await;
    let fatal = submit(&server, &token, json!({"kind": "ext.c"})).await;
    let claimed = claim(&server, &token, &["ext.?"], 0).await;
    assert_eq!(claimed.len(), 3);
    let lease_of = |id: &str| {
        claimed.iter().find(|j| j["id"] == id).unwrap()["leaseToken"].as_str().unwrap().to_string()
    };

    let (code, _) = server
        .post_json(
            &token,
            &format!("/v2/operations/OPSQ/jobs/{cancelled}/cancel"),
            &json!({"reason": "stop"}),
        )
        .await;
    assert_eq!(code, 202);
    let (_, answer) =
        worker_call(&server, &token, &cancelled, "heartbeat", json!({"leaseToken": lease_of(&cancelled)}))
            .await;
    assert_eq!(answer["cancelRequested"], true);
    let (_, ended) = worker_call(
        &server,
        &token,
        &cancelled,
        "fail",
        json!({"leaseToken": lease_of(&cancelled), "error": "interrupted"}),
    )
    .await;
    assert_eq!(ended["status"], "failed");
    assert!(ended["error"].as_str().unwrap().starts_with("cancelled: stop"), "{ended}");

    let (_, resumed) = worker_call(
        &server,
        &token,
        &retried,
        "fail",
        json!({"leaseToken": lease_of(&retried), "error": "flaky", "retryAfterSeconds": 0}),
    )
    .await;
    assert_eq!(resumed["status"], "resumed");
    assert_eq!(resumed["error"], "flaky");
    let again = claim(&server, &token, &["ext.b"], 5).await;
    assert_eq!(again[0]["attempt"], 2);
    let (_, last) = worker_call(
        &server,
        &token,
        &retried,
        "fail",
        json!({"leaseToken": again[0]["leaseToken"], "error": "flaky"}),
    )
    .await;
    assert_eq!(last["status"], "failed");
    assert!(last["error"].as_str().unwrap().contains("no attempts left"), "{last}");

    let (_, failed) = worker_call(
        &server,
        &token,
        &fatal,
        "fail",
        json!({"leaseToken": lease_of(&fatal), "error": "disk gone", "retryable": false}),
    )
    .await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"], "disk gone");
}

#[tokio::test]
async fn a_lost_worker_s_job_runs_again_within_a_lease_and_its_writes_are_refused() {
    let server = TestServer::start().await;
    let token = server.admin_token().await;
    server
        .store
        .set_kind(KindSettings { kind: "ext.short".into(), lease_ms: Some(1000), ..KindSettings::default() })
        .await
        .unwrap();
    server
        .store
        .set_kind(KindSettings {
            kind: "ext.unsafe".into(),
            lease_ms: Some(1000),
            safe_to_repeat: Some(false),
            ..KindSettings::default()
        })
        .await
        .unwrap();
    let safe = submit(&server, &token, json!({"kind": "ext.short"})).await;
    let not_safe = submit(&server, &token, json!({"kind": "ext.unsafe"})).await;
    let (_, job) = server.get(&token, &format!("/v2/operations/OPSQ/jobs/{not_safe}")).await;
    assert_eq!(job["safeToRepeat"], false, "the kind's setting applies");
    let claimed = claim(&server, &token, &["ext.short", "ext.unsafe"], 0).await;
    assert_eq!(claimed.len(), 2);
    assert!(claimed[0]["leaseSeconds"].as_i64().unwrap() <= 1, "the kind's lease applies");
    let died = Instant::now();

    // The worker dies: no heartbeat. Within about a lease, the safe job is resumed,
    // the unsafe one is unknown.
    poll_job(&server, &token, &safe, "resume", |j| j["status"] == "resumed").await;
    poll_job(&server, &token, &not_safe, "unknown", |j| j["status"] == "unknown").await;
    assert!(
        died.elapsed() < Duration::from_secs(4),
        "rescued within a lease and a tick: {:?}",
        died.elapsed()
    );
    let (code, status) = server.status_of(&token, "OPSQ", &not_safe).await;
    assert_eq!((code, status["status"].as_str()), (200, Some("unknown")));

    for job in &claimed {
        let id = job["id"].as_str().unwrap();
        let lease = job["leaseToken"].clone();
        let (code, body) = worker_call(&server, &token, id, "heartbeat", json!({"leaseToken": lease})).await;
        assert_error(code, &body, 409);
        let (code, body) = worker_call(&server, &token, id, "complete", json!({"leaseToken": lease})).await;
        assert_error(code, &body, 409);
    }
    // The safe job runs again; the unsafe one is never started without a resolution.
    let again = claim(&server, &token, &["ext.short", "ext.unsafe"], 2).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["id"], safe.as_str());
    assert_eq!(again[0]["attempt"], 2);
    let (code, body) =
        server.post_json(&token, &format!("/v2/operations/OPSQ/jobs/{not_safe}/cancel"), &json!({})).await;
    assert_error(code, &body, 409);
    assert!(body["message"].as_str().unwrap().contains("resolve"));
    server
        .store
        .resolve(not_safe.split('-').nth(1).unwrap().parse().unwrap(), opsq_store::Resolution::Retry, "test")
        .await
        .unwrap();
    let retried = claim(&server, &token, &["ext.unsafe"], 2).await;
    assert_eq!(retried[0]["attempt"], 2, "runs again only after the resolution");
}

#[tokio::test]
async fn in_process_retries_back_off_and_keep_the_error_and_history() {
    let server = TestServer::start_configured(|options| {
        options.handlers.register("test.flaky", Arc::new(Flaky { succeed_on: 2 }));
        options.handlers.register("test.hopeless", Arc::new(Flaky { succeed_on: 99 }));
    })
    .await;
    let token = server.admin_token().await;
    let flaky = submit(&server, &token, json!({"kind": "test.flaky"})).await;
    let hopeless = submit(&server, &token, json!({"kind": "test.hopeless", "maxAttempts": 2})).await;
    let done = poll_job(&server, &token, &flaky, "success", |j| j["status"] == "succeeded").await;
    assert_eq!(done["attempt"], 2);
    assert_eq!(done["result"], json!({"attempt": 2}));
    let (_, done) = server.get(&token, &format!("/v2/operations/OPSQ/jobs/{flaky}")).await;
    let history: Vec<&str> =
        done["history"].as_array().unwrap().iter().map(|e| e["status"].as_str().unwrap()).collect();
    assert_eq!(history, ["notStarted", "executing", "resumed", "executing", "succeeded"]);
    let gave_up = poll_job(&server, &token, &hopeless, "failure", |j| j["status"] == "failed").await;
    assert_eq!(gave_up["attempt"], 2);
    assert!(gave_up["error"].as_str().unwrap().contains("transient failure on attempt 2"), "{gave_up}");
}

#[tokio::test]
async fn probes_resolve_unknown_outcomes_and_the_timeout_fails_the_rest() {
    let probes = Arc::new(AtomicU32::new(0));
    let handler = Arc::new(VanishesThenProbes { probes: probes.clone() });
    let server = TestServer::start_configured(move |options| {
        options.handlers.register("test.vanishes", handler);
        options.housekeeping = HousekeepingConfig {
            tick: Duration::from_millis(100),
            chores_every: Duration::from_millis(100),
            unknown_timeout: Duration::from_secs(2),
            ..HousekeepingConfig::default()
        };
    })
    .await;
    let token = server.admin_token().await;
    for kind in ["test.vanishes", "ext.noprobe"] {
        server
            .store
            .set_kind(KindSettings {
                kind: kind.into(),
                lease_ms: Some(500),
                safe_to_repeat: Some(false),
                ..KindSettings::default()
            })
            .await
            .unwrap();
    }
    let probed = submit(&server, &token, json!({"kind": "test.vanishes"})).await;
    let resolved =
        poll_job(&server, &token, &probed, "probe resolution", |j| j["status"] == "succeeded").await;
    assert_eq!(resolved["result"], json!({"probed": true}));
    assert_eq!(resolved["attempt"], 1, "never started twice");
    assert!(probes.load(Ordering::SeqCst) >= 1);
    let (_, resolved) = server.get(&token, &format!("/v2/operations/OPSQ/jobs/{probed}")).await;
    let history: Vec<&str> =
        resolved["history"].as_array().unwrap().iter().map(|e| e["status"].as_str().unwrap()).collect();
    assert_eq!(history, ["notStarted", "executing", "unknown", "succeeded"]);

    let orphan = submit(&server, &token, json!({"kind": "ext.noprobe"})).await;
    assert_eq!(claim(&server, &token, &["ext.noprobe"], 0).await.len(), 1);
    poll_job(&server, &token, &orphan, "unknown", |j| j["status"] == "unknown").await;
    let timed_out = poll_job(&server, &token, &orphan, "timeout", |j| j["status"] == "failed").await;
    assert!(timed_out["error"].as_str().unwrap().contains("unknown"), "{timed_out}");
    // The counters move just after the store's writes, so the scrape may come first.
    metrics::scrape_until(&server, "counted one probe's verdict and one timeout", |counted| {
        let seen = (counted.get(metrics::PROBE_SUCCEEDED), counted.get(metrics::TIMED_OUT));
        assert!(seen.0 <= 1.0 && seen.1 <= 1.0, "one probe's verdict and one timeout: {seen:?}");
        seen == (1.0, 1.0)
    })
    .await;
}

#[tokio::test]
async fn finished_jobs_are_pruned_after_the_retention_period() {
    let server = TestServer::start_configured(|options| {
        options.housekeeping = HousekeepingConfig {
            tick: Duration::from_millis(100),
            chores_every: Duration::from_millis(100),
            retention: Duration::from_millis(500),
            ..HousekeepingConfig::default()
        };
    })
    .await;
    let token = server.admin_token().await;
    let finished = server.submit(&token, "OPSQ", "server.powerOn").await;
    let waiting = server.submit(&token, "OPSQ", "nobody.handles").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, _) = server.status_of(&token, "OPSQ", &finished).await;
        if code == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "the finished job was never pruned");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, body) = server.status_of(&token, "OPSQ", &waiting).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("notStarted")), "unfinished jobs are kept");
}
