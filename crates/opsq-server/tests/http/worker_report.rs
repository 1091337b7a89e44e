//! `POST /v2/workers/report`: many outcomes in one call, each answered on its own, and
//! the jobs for the freed slots in the same answer.

use serde_json::{json, Value};

use crate::harness::{assert_error, TestServer, PASSWORD};

async fn claim(server: &TestServer, token: &str, limit: u32) -> Vec<Value> {
    let (code, body) =
        server.post_json(token, "/v2/workers/claim", &json!({"kinds": ["ext.*"], "limit": limit})).await;
    assert_eq!(code, 200, "{body}");
    body["jobs"].as_array().unwrap().clone()
}

async fn job(server: &TestServer, token: &str, id: &Value) -> Value {
    let (code, job) = server.get(token, &format!("/v2/operations/OPSQ/jobs/{}", id.as_str().unwrap())).await;
    assert_eq!(code, 200, "{job}");
    job
}

fn ids(jobs: &[Value]) -> Vec<&str> {
    jobs.iter().map(|j| j["id"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn a_report_records_each_outcome_and_claims_the_slots_they_freed() {
    let server = TestServer::start().await;
    let token = server.admin_token().await;
    let mut submitted = Vec::new();
    for n in 0..5 {
        submitted.push(server.submit(&token, "OPSQ", &format!("ext.job{n}")).await);
    }
    let first = claim(&server, &token, 2).await;
    assert_eq!(first.len(), 2);
    let (a, b) = (&first[0], &first[1]);

    let (code, answer) = server
        .post_json(
            &token,
            "/v2/workers/report",
            &json!({
                "outcomes": [
                    {"id": a["id"], "leaseToken": a["leaseToken"], "result": {"copied": 3}},
                    {"id": b["id"], "leaseToken": b["leaseToken"], "error": "disk full", "retryable": false},
                ],
                "claim": {"kinds": ["ext.*"], "limit": 2, "workerId": "host-1/pid-7"},
            }),
        )
        .await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(
        answer["outcomes"],
        json!([
            {"id": a["id"], "recorded": true, "status": "succeeded"},
            {"id": b["id"], "recorded": true, "status": "failed"},
        ])
    );
    let next = answer["jobs"].as_array().unwrap().clone();
    assert_eq!(next.len(), 2, "{answer}");
    for claimed in &next {
        assert_eq!(claimed["status"], "executing");
        assert!(claimed["leaseToken"].as_str().is_some_and(|t| !t.is_empty()), "{claimed}");
        assert!(claimed["leaseSeconds"].as_i64().unwrap() >= 29, "{claimed}");
        assert!(!ids(&first).contains(&claimed["id"].as_str().unwrap()));
    }
    let a_now = job(&server, &token, &a["id"]).await;
    assert_eq!((&a_now["status"], &a_now["result"]), (&json!("succeeded"), &json!({"copied": 3})));
    let b_now = job(&server, &token, &b["id"]).await;
    assert_eq!((&b_now["status"], &b_now["error"]), (&json!("failed"), &json!("disk full")));
    let history = job(&server, &token, &next[0]["id"]).await["history"].to_string();
    assert!(history.contains("worker:admin/host-1/pid-7"), "the claim's owner is in the history: {history}");

    // A repeat of a recorded outcome is that outcome's 409; the others still count,
    // and the claim takes what is left (one job), not what it asked for.
    let (c, d) = (&next[0], &next[1]);
    let (code, answer) = server
        .post_json(
            &token,
            "/v2/workers/report",
            &json!({
                "outcomes": [
                    {"id": a["id"], "leaseToken": a["leaseToken"], "result": null},
                    {"id": c["id"], "leaseToken": c["leaseToken"]},
                    {"id": d["id"], "leaseToken": d["leaseToken"], "error": "flaky", "retryAfterSeconds": 3600},
                ],
                "claim": {"kinds": ["ext.*"], "limit": 5},
            }),
        )
        .await;
    assert_eq!(code, 200, "{answer}");
    let outcomes = answer["outcomes"].as_array().unwrap();
    assert_eq!(
        (outcomes[0]["recorded"].as_bool(), outcomes[0]["httpStatus"].as_u64()),
        (Some(false), Some(409))
    );
    assert!(outcomes[0]["message"].as_str().unwrap().contains("lease"), "{answer}");
    assert_eq!(outcomes[1], json!({"id": c["id"], "recorded": true, "status": "succeeded"}));
    assert_eq!(outcomes[2], json!({"id": d["id"], "recorded": true, "status": "resumed"}));
    assert_eq!(job(&server, &token, &c["id"]).await["result"], Value::Null);
    let last = answer["jobs"].as_array().unwrap();
    assert_eq!(last.len(), 1, "one job was left waiting: {answer}");
    let all_seen: Vec<&str> = [ids(&first), ids(&next), ids(last)].concat();
    let mut sorted = all_seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 5, "every job claimed once: {all_seen:?}");
    assert!(submitted.iter().all(|id| all_seen.contains(&id.as_str())));

    // Nothing to report and nothing left (d waits an hour): an empty answer at once.
    let (code, answer) = server
        .post_json(&token, "/v2/workers/report", &json!({"claim": {"kinds": ["ext.*"], "limit": 3}}))
        .await;
    assert_eq!((code, answer), (200, json!({"outcomes": [], "jobs": []})));
}

#[tokio::test]
async fn a_malformed_report_records_nothing_and_says_why() {
    let server = TestServer::start().await;
    let token = server.admin_token().await;
    server.submit(&token, "OPSQ", "ext.job").await;
    let claimed = claim(&server, &token, 1).await;
    let (id, lease) = (&claimed[0]["id"], &claimed[0]["leaseToken"]);
    let good = json!({"id": id, "leaseToken": lease, "result": 1});

    let too_many: Vec<Value> = (0..101).map(|_| good.clone()).collect();
    let bad_reports = [
        (json!({"outcomes": [good, {"id": id, "leaseToken": lease, "result": 1, "error": "x"}]}), "both"),
        (json!({"outcomes": [good, {"id": id, "leaseToken": lease, "retryable": true}]}), "without an error"),
        (
            json!({"outcomes": [good, {"id": id, "leaseToken": lease, "released": true, "result": 1}]}),
            "released",
        ),
        (json!({"outcomes": [good], "claim": {"kinds": ["ext.*"], "waitSeconds": 5}}), "does not wait"),
        (json!({"outcomes": [good], "claim": {"kinds": ["ext.*"], "limit": 0}}), "limit"),
        (json!({"outcomes": [good], "claim": {"kinds": ["bad kind!"]}}), "kind"),
        (json!({"outcomes": too_many}), "at most 100"),
        (json!({"outcomes": [good], "extra": 1}), "extra"),
        (json!({"outcomes": [{"id": id}]}), "leaseToken"),
    ];
    for (body, says) in bad_reports {
        let (code, answer) = server.post_json(&token, "/v2/workers/report", &body).await;
        assert_error(code, &answer, 400);
        assert!(answer["message"].as_str().unwrap().contains(says), "{says}: {answer}");
    }
    assert_eq!(job(&server, &token, id).await["status"], "executing", "nothing was recorded");

    // Only workers report, and only for jobs of their own account subtree.
    server.add_user("submitter", "OPSQ", &["ServerAdmin"]).await;
    let not_a_worker = server.token("submitter", PASSWORD).await;
    let (code, answer) =
        server.post_json(&not_a_worker, "/v2/workers/report", &json!({"outcomes": [good]})).await;
    assert_error(code, &answer, 403);
    server.add_account("PARNT", "WA1", Some("OPSQ")).await;
    server.add_user("parent-worker", "PARNT", &["Worker"]).await;
    let outsider = server.token("parent-worker", PASSWORD).await;
    let (code, answer) =
        server.post_json(&outsider, "/v2/workers/report", &json!({"outcomes": [good]})).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(
        (&answer["outcomes"][0]["recorded"], &answer["outcomes"][0]["httpStatus"]),
        (&json!(false), &json!(404))
    );
    assert_eq!(job(&server, &token, id).await["status"], "executing", "an outsider recorded nothing");

    let (code, answer) = server.post_json(&token, "/v2/workers/report", &json!({"outcomes": [good]})).await;
    assert_eq!((code, &answer["outcomes"][0]["recorded"]), (200, &json!(true)), "{answer}");
    assert_eq!(job(&server, &token, id).await["status"], "succeeded");
}
