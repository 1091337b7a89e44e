use opsq_domain::JobStatus;
use serde_json::json;

use crate::harness::{assert_error, TestServer};

#[tokio::test]
async fn submit_answers_202_with_links_and_the_job_reads_back_whole() {
    let server = TestServer::start().await;
    let token = server.admin_token().await;
    let response = server
        .http
        .post(server.url("/v2/operations/opsq/jobs"))
        .bearer_auth(&token)
        .json(&json!({
            "kind": "server.powerOn",
            "title": "Power On server WA1OPSQWEB01",
            "payload": {"server": "wa1opsqweb01", "n": [1, 2]},
            "maxAttempts": 5
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let body: serde_json::Value = response.json().await.unwrap();
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/v2/operations/opsq/jobs/{id}"));
    assert_eq!(
        body["links"][1],
        json!({"rel": "status", "href": format!("/v2/operations/opsq/status/{id}"), "id": id})
    );
    // The server's own runner may have started it in the submission's transaction.
    assert!(["notStarted", "executing"].contains(&body["status"].as_str().unwrap()), "{body}");

    let job = server.wait_for(&token, "OPSQ", &id, JobStatus::Succeeded).await;
    assert_eq!(job["title"], "Power On server WA1OPSQWEB01");
    assert_eq!(job["payload"], json!({"server": "wa1opsqweb01", "n": [1, 2]}));
    assert_eq!(job["maxAttempts"], 5);
    assert_eq!(job["attempt"], 1);
    assert_eq!(job["submitter"], "admin");
    assert_eq!(job["result"]["simulated"], true);
    assert!(job["startedDate"].is_string() && job["finishedDate"].is_string());
    let history: Vec<&str> =
        job["history"].as_array().unwrap().iter().map(|e| e["status"].as_str().unwrap()).collect();
    assert_eq!(history, ["notStarted", "executing", "succeeded"]);
}

#[tokio::test]
async fn progress_is_visible_while_a_job_runs() {
    let server = TestServer::start_with(std::time::Duration::from_millis(400)).await;
    let token = server.admin_token().await;
    let id = server.submit(&token, "OPSQ", "server.reboot").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, job) = server.get(&token, &format!("/v2/operations/OPSQ/jobs/{id}")).await;
        let percent = job["progress"]["percent"].as_u64().unwrap();
        if job["status"] == "executing" && percent > 0 && percent < 100 {
            assert!(job["progress"]["stepNumber"].as_u64().unwrap() >= 2);
            assert!(!job["progress"]["description"].as_str().unwrap().is_empty());
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never saw progress: {job}");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn idempotency_key_returns_the_same_job_or_409_for_a_different_body() {
    let server = TestServer::start().await;
    let token = server.admin_token().await;
    let send = |body: serde_json::Value, key: &'static str| {
        let request = server
            .http
            .post(server.url("/v2/operations/OPSQ/jobs"))
            .bearer_auth(&token)
            .header("Idempotency-Key", key)
            .json(&body);
        async move {
            let response = request.send().await.unwrap();
            crate::harness::split(response).await
        }
    };
    let body = json!({"kind": "backup.run", "payload": {"disk": 1}});
    let (first_code, first) = send(body.clone(), "key-1").await;
    let (again_code, again) = send(body.clone(), "key-1").await;
    assert_eq!((first_code, again_code), (202, 200));
    assert_eq!(first["id"], again["id"]);
    let (code, conflict) = send(json!({"kind": "backup.run", "payload": {"disk": 2}}), "key-1").await;
    assert_error(code, &conflict, 409);
    assert!(conflict["message"].as_str().unwrap().contains(first["id"].as_str().unwrap()));
    let (other_code, other) = send(body, "key-2").await;
    assert_eq!(other_code, 202);
    assert_ne!(other["id"], first["id"]);
}

#[tokio::test]
async fn invalid_submissions_are_400_with_a_reason() {
    let server = TestServer::start().await;
    let token = server.admin_token().await;
    for bad in [
        json!({}),
        json!({"kind": 5}),
        json!({"kind": "a..b"}),
        json!({"kind": "backup.run", "maxAttempts": 0}),
        json!({"kind": "backup.run", "maxAttempts": "3"}),
        json!({"kind": "backup.run", "surprise": true}),
        json!({"kind": "backup.run", "title": "t".repeat(600)}),
        json!([{"kind": "backup.run"}]),
    ] {
        let (code, body) = server.post_json(&token, "/v2/operations/OPSQ/jobs", &bad).await;
        assert_error(code, &body, 400);
    }
}

#[tokio::test]
async fn lists_newest_first_with_a_cursor_and_filters() {
    let server = TestServer::start().await;
    let token = server.admin_token().await;
    let mut ids = vec![];
    for _ in 0..5 {
        ids.push(server.submit(&token, "OPSQ", "list.test").await);
    }
    let (code, page) = server.get(&token, "/v2/operations/OPSQ/jobs?kind=list.*&limit=3").await;
    assert_eq!(code, 200, "{page}");
    let items: Vec<&str> =
        page["items"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(items, [ids[4].as_str(), ids[3].as_str(), ids[2].as_str()]);
    let before = page["nextBefore"].as_i64().unwrap();
    let (_, rest) =
        server.get(&token, &format!("/v2/operations/OPSQ/jobs?kind=list.test&limit=3&before={before}")).await;
    let rest: Vec<&str> =
        rest["items"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(rest, [ids[1].as_str(), ids[0].as_str()]);
    let (_, none) = server.get(&token, "/v2/operations/OPSQ/jobs?kind=list.test&status=succeeded").await;
    assert_eq!(none["items"].as_array().unwrap().len(), 0);
    let (code, body) = server.get(&token, "/v2/operations/OPSQ/jobs?status=bogus").await;
    assert_error(code, &body, 400);
    let (code, body) = server.get(&token, "/v2/operations/OPSQ/jobs?limit=lots").await;
    assert_error(code, &body, 400);
}

#[tokio::test]
async fn batches_are_accepted_in_one_call_and_the_noop_canary_runs_them() {
    let server = TestServer::start().await;
    let token = server.admin_token().await;
    let jobs: Vec<serde_json::Value> =
        (0..250).map(|i| json!({"kind": "opsq.noop", "payload": {"i": i}})).collect();
    let (code, body) =
        server.post_json(&token, "/v2/operations/OPSQ/jobs/batch", &json!({"jobs": jobs})).await;
    assert_eq!(code, 202, "{body}");
    let answers = body["jobs"].as_array().unwrap();
    assert_eq!(answers.len(), 250);
    let numbers: Vec<i64> = answers.iter().map(|a| a["number"].as_i64().unwrap()).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "in order, distinct");
    for answer in [&answers[0], &answers[249]] {
        server.wait_for(&token, "OPSQ", answer["id"].as_str().unwrap(), JobStatus::Succeeded).await;
    }

    let keyed = json!({"jobs": [{"kind": "batch.k", "idempotencyKey": "b-1"}, {"kind": "batch.k", "idempotencyKey": "b-1"}]});
    let (code, body) = server.post_json(&token, "/v2/operations/OPSQ/jobs/batch", &keyed).await;
    assert_eq!(code, 202);
    assert_eq!(body["jobs"][0]["id"], body["jobs"][1]["id"], "the same key in one batch is one job");
    assert_eq!(body["jobs"][1]["created"], false);

    for bad in [
        json!({"jobs": []}),
        json!({"jobs": [{"kind": "ok.k"}, {"kind": "bad..k"}]}),
        json!([{"kind": "a.b"}]),
    ] {
        let (code, body) = server.post_json(&token, "/v2/operations/OPSQ/jobs/batch", &bad).await;
        assert_error(code, &body, 400);
    }
    let too_many: Vec<serde_json::Value> = (0..1001).map(|_| json!({"kind": "a.b"})).collect();
    let (code, body) =
        server.post_json(&token, "/v2/operations/OPSQ/jobs/batch", &json!({"jobs": too_many})).await;
    assert_error(code, &body, 400);
}
