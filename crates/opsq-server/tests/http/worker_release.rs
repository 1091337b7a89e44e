//! `POST /v2/workers/jobs/{id}/release`, and `released` outcomes in reports: a job a
//! worker claimed and never started runs again at once, without using an attempt.

use serde_json::{json, Value};

use crate::harness::{assert_error, TestServer};
use crate::metrics::{self, moved, RELEASED, STARTED, SUCCEEDED};

async fn claim_one(server: &TestServer, token: &str) -> Value {
    let (code, body) =
        server.post_json(token, "/v2/workers/claim", &json!({"kinds": ["ext.*"], "limit": 1})).await;
    assert_eq!(code, 200, "{body}");
    let jobs = body["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{body}");
    jobs[0].clone()
}

async fn release(server: &TestServer, token: &str, claimed: &Value) -> (u16, Value) {
    let path = format!("/v2/workers/jobs/{}/release", claimed["id"].as_str().unwrap());
    server.post_json(token, &path, &json!({"leaseToken": claimed["leaseToken"]})).await
}

#[tokio::test]
async fn a_released_job_runs_again_at_once_without_using_an_attempt() {
    let server = TestServer::start().await;
    let token = server.admin_token().await;
    // One attempt, and not safe to repeat: a failure or a lost worker would end it.
    let (code, submitted) = server
        .post_json(
            &token,
            "/v2/operations/OPSQ/jobs",
            &json!({"kind": "ext.once", "maxAttempts": 1, "safeToRepeat": false}),
        )
        .await;
    assert_eq!(code, 202, "{submitted}");
    let before = metrics::scrape(&server).await;

    let first = claim_one(&server, &token).await;
    assert_eq!((&first["id"], &first["attempt"]), (&submitted["id"], &json!(1)));
    let (code, released) = release(&server, &token, &first).await;
    assert_eq!(code, 200, "{released}");
    assert_eq!((&released["status"], &released["attempt"]), (&json!("resumed"), &json!(0)));
    assert_eq!((&released["startedDate"], &released["error"]), (&Value::Null, &Value::Null));
    let path = format!("/v2/operations/OPSQ/jobs/{}", submitted["id"].as_str().unwrap());
    let (_, job) = server.get(&token, &path).await;
    let last = job["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (&last["status"], &last["message"]),
        (&json!("resumed"), &json!("attempt 1 handed back unstarted by its worker; not counted"))
    );
    // That lease is gone.
    let (code, body) = release(&server, &token, &first).await;
    assert_error(code, &body, 409);

    // Due at once, still with its one attempt; handed back once more, in a report.
    let second = claim_one(&server, &token).await;
    assert_eq!((&second["id"], &second["attempt"]), (&submitted["id"], &json!(1)));
    let (code, answer) = server
        .post_json(
            &token,
            "/v2/workers/report",
            &json!({"outcomes": [{"id": second["id"], "leaseToken": second["leaseToken"], "released": true}]}),
        )
        .await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["outcomes"], json!([{"id": second["id"], "recorded": true, "status": "resumed"}]));

    let third = claim_one(&server, &token).await;
    assert_eq!(third["attempt"], 1);
    let path = format!("/v2/workers/jobs/{}/complete", third["id"].as_str().unwrap());
    let (code, done) = server.post_json(&token, &path, &json!({"leaseToken": third["leaseToken"]})).await;
    assert_eq!(code, 200, "{done}");
    assert_eq!((&done["status"], &done["attempt"]), (&json!("succeeded"), &json!(1)));

    let after = metrics::scrape(&server).await;
    let expected = moved(&before, &[(STARTED, 3.0), (RELEASED, 2.0), (SUCCEEDED, 1.0)]);
    assert_eq!(after.counters(), expected);
}

#[tokio::test]
async fn a_release_is_checked_like_any_outcome() {
    let server = TestServer::start().await;
    let token = server.admin_token().await;
    server.submit(&token, "OPSQ", "ext.job").await;
    let claimed = claim_one(&server, &token).await;
    let path = format!("/v2/workers/jobs/{}/release", claimed["id"].as_str().unwrap());

    let (code, body) = server.post_json(&token, &path, &json!({"leaseToken": "not-it"})).await;
    assert_error(code, &body, 409);
    let (code, body) = server.post_json(&token, &path, &json!({})).await;
    assert_error(code, &body, 400);
    assert!(body["message"].as_str().unwrap().contains("leaseToken"), "{body}");
    let (code, body) =
        server.post_json(&token, "/v2/workers/jobs/wa1-999999/release", &json!({"leaseToken": "x"})).await;
    assert_error(code, &body, 404);
    let report = json!({"outcomes": [
        {"id": claimed["id"], "leaseToken": claimed["leaseToken"], "released": true, "error": "x"}]});
    let (code, body) = server.post_json(&token, "/v2/workers/report", &report).await;
    assert_error(code, &body, 400);
    assert!(body["message"].as_str().unwrap().contains("released"), "{body}");

    // None of that touched the job: its worker still holds it.
    let (code, job) =
        server.get(&token, &format!("/v2/operations/OPSQ/jobs/{}", claimed["id"].as_str().unwrap())).await;
    assert_eq!((code, &job["status"], &job["attempt"]), (200, &json!("executing"), &json!(1)));
}
