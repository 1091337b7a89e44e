//! `GET /metrics` on a running server: each counter moves by exactly what the server
//! did (and nothing for what it refused), the queue's depth follows the jobs, and a
//! scrape still answers while the store does not.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opsq_domain::JobStatus;
use opsq_server::{ServeOptions, ServerConfig};
use opsq_store::{KindSettings, Store};
use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};

use crate::harness::TestServer;
use crate::pg;

const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";
const SUBMITTED: &str = "opsq_jobs_submitted_total";
pub(crate) const STARTED: &str = "opsq_attempts_started_total";
pub(crate) const SUCCEEDED: &str = r#"opsq_attempt_outcomes_total{outcome="succeeded"}"#;
const FAILED: &str = r#"opsq_attempt_outcomes_total{outcome="failed"}"#;
const RETRIED: &str = r#"opsq_attempt_outcomes_total{outcome="retried"}"#;
pub(crate) const RELEASED: &str = r#"opsq_attempt_outcomes_total{outcome="released"}"#;
const RESCUED_RESUMED: &str = r#"opsq_attempts_rescued_total{status="resumed"}"#;
const RESCUED_UNKNOWN: &str = r#"opsq_attempts_rescued_total{status="unknown"}"#;
const RESCUED_FAILED: &str = r#"opsq_attempts_rescued_total{status="failed"}"#;
const CANCELS_ENDED: &str = r#"opsq_cancels_total{effect="ended"}"#;
const CANCELS_REQUESTED: &str = r#"opsq_cancels_total{effect="requested"}"#;
pub(crate) const PROBE_SUCCEEDED: &str = r#"opsq_unknown_resolved_total{by="probe",status="succeeded"}"#;
pub(crate) const TIMED_OUT: &str = r#"opsq_unknown_resolved_total{by="timeout",status="failed"}"#;
const COUNTERS: [&str; 13] = [
    SUBMITTED,
    STARTED,
    SUCCEEDED,
    FAILED,
    RETRIED,
    RELEASED,
    RESCUED_RESUMED,
    RESCUED_UNKNOWN,
    RESCUED_FAILED,
    CANCELS_ENDED,
    CANCELS_REQUESTED,
    PROBE_SUCCEEDED,
    TIMED_OUT,
];

/// One scrape: every sample, by series (`name{labels}`).
pub(crate) struct Scrape(BTreeMap<String, f64>);

impl Scrape {
    pub(crate) fn get(&self, series: &str) -> f64 {
        *self.0.get(series).unwrap_or_else(|| panic!("{series} is not in the scrape: {:?}", self.0))
    }

    fn jobs(&self, status: &str) -> f64 {
        self.get(&format!(r#"opsq_jobs{{status="{status}"}}"#))
    }

    /// How long the longest-waiting due job has waited, in seconds.
    fn oldest_waiting(&self) -> f64 {
        self.get("opsq_oldest_waiting_seconds")
    }

    /// The four unfinished statuses: notStarted, executing, resumed, unknown.
    fn depth(&self) -> [f64; 4] {
        ["notStarted", "executing", "resumed", "unknown"].map(|status| self.jobs(status))
    }

    pub(crate) fn counters(&self) -> BTreeMap<&'static str, f64> {
        COUNTERS.into_iter().map(|series| (series, self.get(series))).collect()
    }
}

/// Scrapes without a token, as Prometheus does, and parses the text.
pub(crate) async fn scrape(server: &TestServer) -> Scrape {
    let response = server.http.get(server.url("/metrics")).send().await.expect("scrape");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()[CONTENT_TYPE].to_str().unwrap().to_string();
    assert_eq!(content_type, TEXT_FORMAT);
    let text = response.text().await.unwrap();
    let mut samples = BTreeMap::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line:?}"));
        let value = value.parse().unwrap_or_else(|_| panic!("not a number: {line:?}"));
        assert!(samples.insert(series.to_string(), value).is_none(), "{series} twice in\n{text}");
    }
    Scrape(samples)
}

/// Scrapes until `done` holds, failing after a deadline: what housekeeping does shows
/// a moment after the store changed.
pub(crate) async fn scrape_until(server: &TestServer, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = scrape(server).await;
        if done(&now) {
            return now;
        }
        assert!(Instant::now() < deadline, "never {what}: {:?}", now.0);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `counters` as they were in `before`, moved by `moved`.
pub(crate) fn moved(before: &Scrape, moved: &[(&'static str, f64)]) -> BTreeMap<&'static str, f64> {
    let mut expected = before.counters();
    for (series, by) in moved {
        *expected.get_mut(series).expect("a counter") += by;
    }
    expected
}

async fn submit(server: &TestServer, token: &str, body: Value, key: Option<&str>) -> (u16, Value) {
    let mut request = server.http.post(server.url("/v2/operations/OPSQ/jobs")).bearer_auth(token).json(&body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    crate::harness::split(request.send().await.unwrap()).await
}

async fn worker_call(server: &TestServer, token: &str, id: &str, call: &str, body: Value) -> u16 {
    server.post_json(token, &format!("/v2/workers/jobs/{id}/{call}"), &body).await.0
}

#[tokio::test]
async fn counters_and_depth_follow_jobs_through_the_worker_protocol() {
    let server = TestServer::start().await;
    let token = server.admin_token().await;
    let fresh = scrape(&server).await;
    assert_eq!(fresh.get("opsq_store_up"), 1.0);
    assert!(fresh.counters().values().all(|value| *value == 0.0), "{:?}", fresh.counters());
    assert_eq!(fresh.depth(), [0.0; 4]);
    assert_eq!(fresh.oldest_waiting(), 0.0, "nothing waits");

    // Four jobs accepted: three plain, one keyed and sent twice (the repeat makes none).
    for _ in 0..3 {
        assert_eq!(submit(&server, &token, json!({"kind": "metrics.work"}), None).await.0, 202);
    }
    let keyed = json!({"kind": "metrics.work", "title": "keyed"});
    assert_eq!(submit(&server, &token, keyed.clone(), Some("key-1")).await.0, 202);
    assert_eq!(submit(&server, &token, keyed, Some("key-1")).await.0, 200);
    let accepted = scrape(&server).await;
    assert_eq!(accepted.counters(), moved(&fresh, &[(SUBMITTED, 4.0)]));
    assert_eq!(accepted.depth(), [4.0, 0.0, 0.0, 0.0]);
    // The first job's wait grows from its submission on.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut waited = accepted.oldest_waiting();
    while waited <= 0.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
        waited = scrape(&server).await.oldest_waiting();
    }
    assert!(waited > 0.0 && waited < 60.0, "the oldest job waited {waited} s");

    // A worker claims three.
    let (code, answer) =
        server.post_json(&token, "/v2/workers/claim", &json!({"kinds": ["metrics.work"], "limit": 3})).await;
    assert_eq!(code, 200, "{answer}");
    let claimed: Vec<(String, Value)> = answer["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| (job["id"].as_str().unwrap().to_string(), job["leaseToken"].clone()))
        .collect();
    assert_eq!(claimed.len(), 3);
    let running = scrape(&server).await;
    assert_eq!(running.counters(), moved(&accepted, &[(STARTED, 3.0)]));
    assert_eq!(running.depth(), [1.0, 3.0, 0.0, 0.0]);

    // One succeeds, one fails for good, one fails retryably (to run in an hour).
    let [(done, done_lease), (broken, broken_lease), (flaky, flaky_lease)] = &claimed[..] else {
        unreachable!()
    };
    assert_eq!(worker_call(&server, &token, done, "complete", json!({"leaseToken": done_lease})).await, 200);
    let fatal = json!({"leaseToken": broken_lease, "error": "disk gone", "retryable": false});
    assert_eq!(worker_call(&server, &token, broken, "fail", fatal).await, 200);
    let later = json!({"leaseToken": flaky_lease, "error": "busy", "retryAfterSeconds": 3600});
    assert_eq!(worker_call(&server, &token, flaky, "fail", later).await, 200);
    // Outcomes the store refuses (the attempt already ended) are not counted.
    assert_eq!(worker_call(&server, &token, done, "complete", json!({"leaseToken": done_lease})).await, 409);
    assert_eq!(
        worker_call(&server, &token, flaky, "fail", json!({"leaseToken": "forged", "error": "x"})).await,
        409
    );
    let ended = scrape(&server).await;
    assert_eq!(ended.counters(), moved(&running, &[(SUCCEEDED, 1.0), (FAILED, 1.0), (RETRIED, 1.0)]));
    assert_eq!(ended.depth(), [1.0, 0.0, 1.0, 0.0]);

    // A report claims the last waiting job, and the next report records its success.
    let claim = json!({"claim": {"kinds": ["metrics.work"], "limit": 2}});
    let (code, answer) = server.post_json(&token, "/v2/workers/report", &claim).await;
    assert_eq!((code, answer["jobs"].as_array().map(Vec::len)), (200, Some(1)), "{answer}");
    let last = &answer["jobs"][0];
    let reported = scrape(&server).await;
    assert_eq!(reported.counters(), moved(&ended, &[(STARTED, 1.0)]));
    assert_eq!(reported.depth(), [0.0, 1.0, 1.0, 0.0]);
    let outcome = json!({"outcomes": [{"id": last["id"], "leaseToken": last["leaseToken"]}]});
    let (code, answer) = server.post_json(&token, "/v2/workers/report", &outcome).await;
    assert_eq!((code, &answer["outcomes"][0]["recorded"]), (200, &json!(true)), "{answer}");
    let finished = scrape(&server).await;
    assert_eq!(finished.counters(), moved(&reported, &[(SUCCEEDED, 1.0)]));
    assert_eq!(finished.depth(), [0.0, 0.0, 1.0, 0.0]);
    assert_eq!(finished.oldest_waiting(), 0.0, "only a retry due in an hour waits");
}

#[tokio::test]
async fn attempts_started_on_a_free_slot_count_once() {
    // No rechecks: a waiting claim keeps its offer listed until a submission wakes it.
    let config = ServerConfig { claim_recheck: Duration::from_secs(600), ..ServerConfig::default() };
    let server = TestServer::start_with_config(config).await;
    let token = server.admin_token().await;
    let before = scrape(&server).await;

    // The in-process runner (the simulator handles server.*) runs one job to success,
    // whether its free slot took the job at submission or it claimed it.
    let id = server.submit(&token, "OPSQ", "server.reboot").await;
    server.wait_for(&token, "OPSQ", &id, JobStatus::Succeeded).await;
    let ran = scrape(&server).await;
    assert_eq!(ran.counters(), moved(&before, &[(SUBMITTED, 1.0), (STARTED, 1.0), (SUCCEEDED, 1.0)]));

    // A long-polling worker's free slot takes a job at its submission.
    let (base, worker) = (server.base.clone(), token.clone());
    let waiting = tokio::spawn(async move {
        let response = reqwest::Client::new()
            .post(format!("{base}/v2/workers/claim"))
            .bearer_auth(worker)
            .json(&json!({"kinds": ["metrics.direct"], "waitSeconds": 20}))
            .send()
            .await
            .unwrap();
        response.json::<Value>().await.unwrap()
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.store.offered_slots("metrics.direct") != 1 {
        assert!(Instant::now() < deadline, "the waiting claim never offered its slot");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (code, job) = submit(&server, &token, json!({"kind": "metrics.direct"}), None).await;
    assert_eq!((code, job["status"].as_str()), (202, Some("executing")), "{job}");
    let answer = waiting.await.unwrap();
    assert_eq!(answer["jobs"][0]["id"], job["id"], "{answer}");
    let dispatched = scrape(&server).await;
    assert_eq!(dispatched.counters(), moved(&ran, &[(SUBMITTED, 1.0), (STARTED, 1.0)]));
    assert_eq!(dispatched.depth(), [0.0, 1.0, 0.0, 0.0]);
}

#[tokio::test]
async fn cancels_count_by_effect_and_a_refused_one_not_at_all() {
    let server = TestServer::start().await;
    let token = server.admin_token().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (code, job) = submit(&server, &token, json!({"kind": "metrics.cancel"}), None).await;
        assert_eq!(code, 202, "{job}");
        ids.push(job["id"].as_str().unwrap().to_string());
    }
    let (code, answer) = server
        .post_json(&token, "/v2/workers/claim", &json!({"kinds": ["metrics.cancel"], "limit": 2}))
        .await;
    assert_eq!((code, answer["jobs"].as_array().map(Vec::len)), (200, Some(2)), "{answer}");
    let claimed: Vec<&str> =
        answer["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap()).collect();
    let (finished, running) = (claimed[0], claimed[1]);
    let lease = &answer["jobs"][0]["leaseToken"];
    let waiting = ids.iter().find(|id| !claimed.contains(&id.as_str())).unwrap();
    assert_eq!(worker_call(&server, &token, finished, "complete", json!({"leaseToken": lease})).await, 200);
    let before = scrape(&server).await;

    let cancel = |id: &str| format!("/v2/operations/OPSQ/jobs/{id}/cancel");
    assert_eq!(server.post_json(&token, &cancel(waiting), &json!({})).await.0, 200, "ended at once");
    assert_eq!(server.post_json(&token, &cancel(running), &json!({})).await.0, 202, "asked to stop");
    assert_eq!(server.post_json(&token, &cancel(running), &json!({})).await.0, 202, "asked again");
    assert_eq!(server.post_json(&token, &cancel(finished), &json!({})).await.0, 409, "its outcome stands");
    assert_eq!(server.post_json(&token, &cancel("wa1-999999"), &json!({})).await.0, 404);
    let after = scrape(&server).await;
    assert_eq!(after.counters(), moved(&before, &[(CANCELS_ENDED, 1.0), (CANCELS_REQUESTED, 1.0)]));
}

#[tokio::test]
async fn attempts_of_lost_workers_count_by_what_their_job_became() {
    let server = TestServer::start_configured(|options: &mut ServeOptions| {
        options.housekeeping.tick = Duration::from_millis(50);
    })
    .await;
    let token = server.admin_token().await;
    for (kind, safe) in [("metrics.safe", true), ("metrics.unsafe", false)] {
        let settings = KindSettings {
            kind: kind.into(),
            lease_ms: Some(300),
            safe_to_repeat: Some(safe),
            ..Default::default()
        };
        server.store.set_kind(settings).await.unwrap();
    }
    let last_try = json!({"kind": "metrics.safe", "maxAttempts": 1});
    for body in [json!({"kind": "metrics.safe"}), json!({"kind": "metrics.unsafe"}), last_try] {
        assert_eq!(submit(&server, &token, body, None).await.0, 202);
    }
    let before = scrape(&server).await;
    let claim = json!({"kinds": ["metrics.safe", "metrics.unsafe"], "limit": 3});
    let (code, answer) = server.post_json(&token, "/v2/workers/claim", &claim).await;
    assert_eq!((code, answer["jobs"].as_array().map(Vec::len)), (200, Some(3)), "{answer}");

    // The worker dies; housekeeping takes the three back once their leases run out.
    let expected = moved(
        &before,
        &[(STARTED, 3.0), (RESCUED_RESUMED, 1.0), (RESCUED_UNKNOWN, 1.0), (RESCUED_FAILED, 1.0)],
    );
    let rescued = scrape_until(&server, "rescued", |now| now.counters() == expected).await;
    assert_eq!(rescued.depth(), [0.0, 0.0, 1.0, 1.0]);
}

/// With the store down (a lock it cannot pass, then no database at all), a scrape
/// still answers at once, with `opsq_store_up 0`, the counters, and no stale depth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_answers_while_the_store_does_not() {
    let Some(scratch) = pg::Scratch::create_or_skip("opsq_http_test").await.map(Arc::new) else { return };
    let store = Store::open_postgres(&scratch.url()).await.expect("open the PostgreSQL store");
    let server =
        TestServer::start_over(store, Box::new(scratch.clone()), ServerConfig::default(), |_| {}).await;
    let token = server.admin_token().await;
    assert_eq!(submit(&server, &token, json!({"kind": "metrics.pg"}), None).await.0, 202);
    let up = scrape(&server).await;
    assert_eq!((up.get("opsq_store_up"), up.get(SUBMITTED)), (1.0, 1.0));
    assert_eq!(up.depth(), [1.0, 0.0, 0.0, 0.0]);

    let mut db = scratch.connect().await;
    let lock = db.transaction().await.expect("begin");
    lock.batch_execute("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE").await.expect("lock the jobs");
    let started = Instant::now();
    let blocked = scrape(&server).await;
    assert!(started.elapsed() < Duration::from_secs(5), "the scrape took {:?}", started.elapsed());
    assert_eq!((blocked.get("opsq_store_up"), blocked.get(SUBMITTED)), (0.0, 1.0));
    assert!(!blocked.0.keys().any(|series| series.starts_with("opsq_jobs{")), "{:?}", blocked.0);
    assert!(!blocked.0.contains_key("opsq_oldest_waiting_seconds"), "{:?}", blocked.0);
    lock.rollback().await.expect("release the lock");
    drop(db);
    assert_eq!(scrape(&server).await.get("opsq_store_up"), 1.0, "the store is back");

    scratch.drop_now().await;
    let started = Instant::now();
    let gone = scrape(&server).await;
    assert!(started.elapsed() < Duration::from_secs(5), "the scrape took {:?}", started.elapsed());
    assert_eq!((gone.get("opsq_store_up"), gone.get(SUBMITTED)), (0.0, 1.0));
    assert!(!gone.0.keys().any(|series| series.starts_with("opsq_jobs{")), "{:?}", gone.0);
}

#[tokio::test]
async fn the_document_describes_what_the_route_answers() {
    let server = TestServer::start().await;
    let document: Value =
        server.http.get(server.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let content = &document["paths"]["/metrics"]["get"]["responses"]["200"]["content"];
    let types: Vec<&String> = content.as_object().expect("a 200 with content").keys().collect();
    assert_eq!(types, [TEXT_FORMAT], "what GET /metrics answers in (the scrape checks the header)");
    assert!(document["paths"]["/metrics"]["get"]["security"].is_null(), "no token, like /healthz");
    scrape(&server).await;
}
