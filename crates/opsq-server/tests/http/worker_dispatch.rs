//! A worker's long-polling claim offers its slots to submissions: a job submitted to
//! a waiting worker starts in its submission's commit, within the worker's account
//! subtree only, and nothing is leased to the worker once its claim has answered.

use std::time::{Duration, Instant};

use opsq_server::ServerConfig;
use serde_json::{json, Value};

use crate::harness::{TestServer, PASSWORD};

/// Waits until the store lists `slots` offered slots for `kind`.
async fn offered(server: &TestServer, kind: &str, slots: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.store.offered_slots(kind) != slots {
        assert!(
            Instant::now() < deadline,
            "{slots} slots for {kind} were never offered (now {})",
            server.store.offered_slots(kind)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn submit_to(server: &TestServer, token: &str, alias: &str, kind: &str) -> Value {
    let (code, job) =
        server.post_json(token, &format!("/v2/operations/{alias}/jobs"), &json!({ "kind": kind })).await;
    assert_eq!(code, 202, "{job}");
    job
}

/// A long-poll for `ext.direct` jobs, `limit` 2, answered with its status and body.
fn long_poll(server: &TestServer, token: &str, wait_seconds: u64) -> tokio::task::JoinHandle<(u16, Value)> {
    let (base, token) = (server.base.clone(), token.to_string());
    tokio::spawn(async move {
        let response = reqwest::Client::new()
            .post(format!("{base}/v2/workers/claim"))
            .bearer_auth(token)
            .json(
                &json!({"kinds": ["ext.direct"], "limit": 2, "waitSeconds": wait_seconds, "workerId": "w1"}),
            )
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json::<Value>().await.unwrap())
    })
}

#[tokio::test]
async fn a_waiting_worker_gets_jobs_started_by_their_submission() {
    // No rechecks during the test: a waiting claim takes its offer back only when
    // woken, so once the test has seen the offer listed it stays listed until a
    // submission wakes the claim.
    let config = ServerConfig { claim_recheck: Duration::from_secs(600), ..ServerConfig::default() };
    let server = TestServer::start_with_config(config).await;
    let admin = server.admin_token().await;
    server.add_account("TEAMA", "WA1", Some("OPSQ")).await;
    server.add_account("TEAMB", "WA1", Some("OPSQ")).await;
    server.add_user("runner", "TEAMA", &["Worker"]).await;
    let worker = server.token("runner", PASSWORD).await;
    assert_eq!(server.store.offered_slots("ext.direct"), 0, "no worker waits yet");

    // Started by the submission itself, and handed to the waiting claim.
    let poller = long_poll(&server, &worker, 20);
    offered(&server, "ext.direct", 2).await;
    let mine = submit_to(&server, &admin, "TEAMA", "ext.direct").await;
    assert_eq!(mine["status"], "executing", "started in the submission's commit: {mine}");
    let (code, claimed) = poller.await.unwrap();
    assert_eq!(code, 200, "{claimed}");
    let jobs = claimed["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{claimed}");
    assert_eq!(jobs[0]["id"], mine["id"]);
    assert_eq!(jobs[0]["status"], "executing");
    let lease = jobs[0]["leaseToken"].as_str().expect("a lease token").to_string();
    assert!(jobs[0]["leaseSeconds"].as_i64().unwrap() >= 29, "{claimed}");

    // The claim has answered: its offer is gone, and later jobs wait for a claim.
    assert_eq!(server.store.offered_slots("ext.direct"), 0);
    let later = submit_to(&server, &admin, "TEAMA", "ext.direct").await;
    assert_eq!(later["status"], "notStarted", "{later}");
    let (code, rest) =
        server.post_json(&worker, "/v2/workers/claim", &json!({"kinds": ["ext.direct"], "limit": 10})).await;
    assert_eq!(code, 200, "{rest}");
    let ids: Vec<&str> = rest["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [later["id"].as_str().unwrap()], "claimed as usual");

    let id = mine["id"].as_str().unwrap();
    let (code, done) = server
        .post_json(
            &worker,
            &format!("/v2/workers/jobs/{id}/complete"),
            &json!({"leaseToken": lease, "result": 7}),
        )
        .await;
    assert_eq!((code, done["status"].as_str()), (200, Some("succeeded")), "{done}");
    let (code, job) = server.get(&admin, &format!("/v2/operations/TEAMA/jobs/{id}")).await;
    assert_eq!(code, 200, "{job}");
    let messages: Vec<&str> =
        job["history"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert_eq!(messages[1], "attempt 1 started by worker:runner/w1", "{job}");

    // Outside the worker's subtree: the listed offer does not take the job, and the
    // claim it wakes cannot take it either.
    let poller = long_poll(&server, &worker, 2);
    offered(&server, "ext.direct", 2).await;
    let elsewhere = submit_to(&server, &admin, "TEAMB", "ext.direct").await;
    assert_eq!(elsewhere["status"], "notStarted", "{elsewhere}");
    let (code, nothing) = poller.await.unwrap();
    assert_eq!((code, nothing["jobs"].as_array().map(Vec::len)), (200, Some(0)), "{nothing}");
}
