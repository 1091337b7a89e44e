use opsq_domain::JobStatus;
use serde_json::{json, Value};

use crate::harness::{assert_error, split, TestServer, PASSWORD};

const OPERATIONS: [&str; 10] = [
    "powerOn",
    "powerOff",
    "pause",
    "shutDown",
    "reboot",
    "reset",
    "startMaintenance",
    "stopMaintenance",
    "archive",
    "createSnapshot",
];

fn status_id(element: &Value) -> String {
    let link = &element["links"][0];
    assert_eq!(link["rel"], "status");
    let id = link["id"].as_str().unwrap().to_string();
    assert_eq!(link["href"], format!("/v2/operations/opsq/status/{id}"));
    id
}

#[tokio::test]
async fn every_operation_queues_one_job_per_server_and_the_simulator_runs_it() {
    let server = TestServer::start().await;
    let token = server.admin_token().await;
    for operation in OPERATIONS {
        let (code, body) = server
            .post_json(
                &token,
                &format!("/v2/operations/OPSQ/servers/{operation}"),
                &json!(["WA1OPSQWEB01", "WA1OPSQWEB02"]),
            )
            .await;
        assert_eq!(code, 200, "{operation}: {body}");
        let elements = body.as_array().unwrap();
        assert_eq!(elements.len(), 2);
        assert_eq!(elements[0]["server"], "wa1opsqweb01");
        assert_eq!(elements[1]["server"], "wa1opsqweb02");
        for element in elements {
            assert_eq!(element["isQueued"], true);
            assert!(element.get("errorMessage").is_none());
            let id = status_id(element);
            let job = server.wait_for(&token, "OPSQ", &id, JobStatus::Succeeded).await;
            assert_eq!(job["kind"], format!("server.{operation}"));
            assert_eq!(job["progress"]["percent"], 100);
            assert!(job["title"].as_str().unwrap().contains("WA1OPSQWEB0"));
        }
    }
}

#[tokio::test]
async fn accepts_every_body_form_real_clients_send() {
    let server = TestServer::start().await;
    let token = server.admin_token().await;
    let url = |op: &str| server.url(&format!("/v2/operations/opsq/servers/{op}"));

    // Python SDK: a JSON string with "Application/json".
    let response = server
        .http
        .post(url("POWERON"))
        .bearer_auth(&token)
        .header("Content-Type", "Application/json")
        .body(r#"["WA1OPSQA01"]"#)
        .send()
        .await
        .unwrap();
    let (code, body) = split(response).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body[0]["isQueued"], true);

    // The documented object form.
    let (code, body) = server
        .post_json(
            &token,
            "/v2/operations/OPSQ/servers/reboot",
            &json!({"serverIds": ["WA1OPSQA01", "WA1OPSQA02"]}),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(body.as_array().unwrap().len(), 2);

    // Python SDK createSnapshot: form-encoded, scalar serverIds.
    let response = server
        .http
        .post(url("createSnapshot"))
        .bearer_auth(&token)
        .form(&[("serverIds", "WA1OPSQA01"), ("snapshotExpirationDays", "7")])
        .send()
        .await
        .unwrap();
    let (code, body) = split(response).await;
    assert_eq!(code, 200, "{body}");
    let id = status_id(&body[0]);
    let job = server.wait_for(&token, "OPSQ", &id, JobStatus::Succeeded).await;
    assert_eq!(job["payload"]["snapshotExpirationDays"], 7);

    // Repeated form fields.
    let response = server
        .http
        .post(url("pause"))
        .bearer_auth(&token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("serverIds=WA1OPSQA01&serverIds=WA1OPSQA02")
        .send()
        .await
        .unwrap();
    let (code, body) = split(response).await;
    assert_eq!(code, 200);
    assert_eq!(body.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn names_that_cannot_be_queued_get_an_error_message_and_no_links() {
    let server = TestServer::start().await;
    let token = server.admin_token().await;
    let long = "A".repeat(300);
    let (code, body) = server
        .post_json(
            &token,
            "/v2/operations/OPSQ/servers/powerOff",
            &json!(["WA1OPSQOK01", "bad name", "", long, "wa1opsqok01"]),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let elements = body.as_array().unwrap();
    assert_eq!(elements.len(), 5);
    assert_eq!(elements[0]["isQueued"], true);
    for element in &elements[1..] {
        assert_eq!(element["isQueued"], false, "{element}");
        assert!(element["errorMessage"].as_str().unwrap().len() > 10);
        assert!(element.get("links").is_none());
    }
    assert_eq!(elements[1]["server"], "bad name");
}

#[tokio::test]
async fn viewers_may_read_but_not_submit_and_unknown_operations_are_404() {
    let server = TestServer::start().await;
    server.add_user("viewer", "OPSQ", &["AccountViewer"]).await;
    let viewer = server.token("viewer", PASSWORD).await;
    let (code, body) =
        server.post_json(&viewer, "/v2/operations/OPSQ/servers/powerOn", &json!(["WA1OPSQA01"])).await;
    assert_error(code, &body, 403);
    let (code, body) =
        server.post_json(&viewer, "/v2/operations/OPSQ/jobs", &json!({"kind": "backup.run"})).await;
    assert_error(code, &body, 403);

    let admin = server.admin_token().await;
    let id = server.submit(&admin, "OPSQ", "backup.run").await;
    assert_eq!(server.status_of(&viewer, "OPSQ", &id).await.0, 200);

    let (code, body) =
        server.post_json(&admin, "/v2/operations/OPSQ/servers/explode", &json!(["WA1OPSQA01"])).await;
    assert_error(code, &body, 404);
    assert!(body["message"].as_str().unwrap().contains("powerOn"), "lists the valid operations: {body}");
}

#[tokio::test]
async fn wrongly_shaped_bodies_are_400() {
    let server = TestServer::start().await;
    let token = server.admin_token().await;
    for bad in [
        json!([]),
        json!([1, 2]),
        json!({"serverIds": 5}),
        json!({"servers": ["x"]}),
        json!(null),
        json!("WA1OPSQA01"),
        json!((0..1001).map(|i| format!("S{i}")).collect::<Vec<_>>()),
    ] {
        let (code, body) = server.post_json(&token, "/v2/operations/OPSQ/servers/powerOn", &bad).await;
        assert_error(code, &body, 400);
    }
    for days in [json!(0), json!(11), json!("seven"), json!(1.5)] {
        let (code, body) = server
            .post_json(
                &token,
                "/v2/operations/OPSQ/servers/createSnapshot",
                &json!({"serverIds": ["WA1OPSQA01"], "snapshotExpirationDays": days}),
            )
            .await;
        assert_error(code, &body, 400);
    }
}
