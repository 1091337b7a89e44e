//! `GET /openapi.json` on a running server, and the answers of every route checked
//! against the document it serves: the answer shapes are described by hand next to
//! the `json!` that builds them, so this is what keeps the two alike.

use opsq_domain::AccountAlias;
use opsq_store::ApiKey;
use reqwest::header::{HeaderMap, CONTENT_TYPE, COOKIE, SET_COOKIE};
use reqwest::RequestBuilder;
use serde_json::{json, Value};

use crate::harness::{TestServer, ROOT};
use crate::schema_check::Document;

async fn fetch_document(server: &TestServer) -> Document {
    let response = server.http.get(server.url("/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()[CONTENT_TYPE].to_str().unwrap().to_string();
    assert!(content_type.starts_with("application/json"), "{content_type}");
    Document(response.json().await.expect("the document is JSON"))
}

/// Sends a request; the status, headers and JSON body of its answer.
async fn send(request: RequestBuilder) -> (u16, HeaderMap, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON answer {status}: {text:?}"));
    (status, headers, body)
}

#[tokio::test]
async fn the_server_serves_its_document_without_a_token() {
    let server = TestServer::start().await;
    let document = fetch_document(&server).await.0;
    assert_eq!(document["openapi"], "3.1.0");
    for path in [
        "/v2/authentication/login",
        "/v2/operations/{alias}/status/{statusId}",
        "/v2/operations/{alias}/servers/{operation}",
        "/v2/operations/{alias}/jobs",
        "/v2/operations/{alias}/jobs/{statusId}",
        "/v2/workers/claim",
        "/v2/workers/jobs/{statusId}/heartbeat",
        "/healthz",
        "/openapi.json",
        "/REST/Queue/GetRequestStatus/{format}",
    ] {
        assert!(document["paths"][path].is_object(), "{path} is missing");
    }
    assert_eq!(document["components"]["securitySchemes"]["bearerToken"]["scheme"], "bearer");
    let generated = serde_json::to_value(opsq_server::openapi::document()).unwrap();
    assert_eq!(
        document, generated,
        "the server serves another document than opsq_server::openapi::document()"
    );
}

#[tokio::test]
async fn v2_answers_fit_the_document() {
    let server = TestServer::start().await;
    let doc = fetch_document(&server).await;
    let http = &server.http;
    let url = |path: &str| server.url(path);

    for path in ["/healthz", "/readyz"] {
        let (status, headers, body) = send(http.get(url(path))).await;
        doc.check("get", path, status, &headers, &body);
    }

    let login = "/v2/authentication/login";
    let (status, headers, body) =
        send(http.post(url(login)).json(&json!({"username": "admin", "password": "wrong"}))).await;
    assert_eq!(status, 400);
    doc.check("post", login, status, &headers, &body);
    let (status, headers, body) = send(
        http.post(url(login)).json(&json!({"username": "admin", "password": server.admin_password.clone()})),
    )
    .await;
    doc.check("post", login, status, &headers, &body);
    let token = body["bearerToken"].as_str().unwrap().to_string();

    let status_path = "/v2/operations/{alias}/status/{statusId}";
    let (status, headers, body) = send(http.get(url("/v2/operations/OPSQ/status/wa1-1"))).await;
    assert_eq!(status, 401);
    doc.check("get", status_path, status, &headers, &body);

    let (status, headers, body) = send(
        http.post(url("/v2/operations/OPSQ/servers/powerOn"))
            .bearer_auth(&token)
            .json(&json!(["WA1OPSQWEB01", "not a name"])),
    )
    .await;
    assert_eq!(body[0]["isQueued"], true);
    assert_eq!(body[1]["isQueued"], false);
    doc.check("post", "/v2/operations/{alias}/servers/{operation}", status, &headers, &body);
    let server_job = body[0]["links"][0]["id"].as_str().unwrap().to_string();

    let (status, headers, body) =
        send(http.get(url(&format!("/v2/operations/OPSQ/status/{server_job}"))).bearer_auth(&token)).await;
    doc.check("get", status_path, status, &headers, &body);
    let (status, headers, body) =
        send(http.get(url("/v2/operations/OPSQ/status/wa1-999999")).bearer_auth(&token)).await;
    assert_eq!(status, 404);
    doc.check("get", status_path, status, &headers, &body);
    let (status, headers, body) =
        send(http.get(url("/v2/operations/NOSUCH/status/wa1-1")).bearer_auth(&token)).await;
    assert_eq!(status, 403);
    doc.check("get", status_path, status, &headers, &body);

    let jobs = "/v2/operations/{alias}/jobs";
    let submit = |body: Value, key: &str| {
        http.post(url("/v2/operations/OPSQ/jobs"))
            .bearer_auth(&token)
            .header("Idempotency-Key", key)
            .json(&body)
    };
    let first = json!({"kind": "backup.run", "title": "Back up", "payload": {"disk": 1}});
    let (status, headers, body) = send(submit(first.clone(), "key-1")).await;
    assert_eq!(status, 202);
    doc.check("post", jobs, status, &headers, &body);
    let (status, headers, body) = send(submit(first, "key-1")).await;
    assert_eq!(status, 200);
    doc.check("post", jobs, status, &headers, &body);
    let (status, headers, body) = send(submit(json!({"kind": "backup.other"}), "key-1")).await;
    assert_eq!(status, 409);
    doc.check("post", jobs, status, &headers, &body);

    let (status, headers, body) =
        send(http.post(url("/v2/operations/OPSQ/jobs/batch")).bearer_auth(&token).json(
            &json!({"jobs": [{"kind": "backup.run"}, {"kind": "backup.run", "idempotencyKey": "key-2"},
                         {"kind": "backup.other", "idempotencyKey": "key-1"}]}),
        ))
        .await;
    assert_eq!(
        body["jobs"][2]["error"].as_str().map(|e| e.contains("Idempotency-Key")),
        Some(true),
        "{body}"
    );
    doc.check("post", "/v2/operations/{alias}/jobs/batch", status, &headers, &body);

    let (status, headers, body) =
        send(http.get(url(&format!("/v2/operations/OPSQ/jobs/{server_job}"))).bearer_auth(&token)).await;
    assert!(body["history"].is_array());
    doc.check("get", "/v2/operations/{alias}/jobs/{statusId}", status, &headers, &body);
    let (status, headers, body) =
        send(http.get(url("/v2/operations/OPSQ/jobs?limit=2&kind=backup.*")).bearer_auth(&token)).await;
    assert!(body["nextBefore"].is_i64(), "{body}");
    doc.check("get", jobs, status, &headers, &body);
    let (status, headers, body) =
        send(http.get(url("/v2/operations/OPSQ/jobs?status=nonsense")).bearer_auth(&token)).await;
    assert_eq!(status, 400);
    doc.check("get", jobs, status, &headers, &body);

    let claim = "/v2/workers/claim";
    let (status, headers, body) = send(
        http.post(url(claim))
            .bearer_auth(&token)
            .json(&json!({"kinds": ["backup.run"], "limit": 10, "workerId": "openapi-test"})),
    )
    .await;
    doc.check("post", claim, status, &headers, &body);
    let claimed: Vec<(String, String)> = body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| (job["id"].as_str().unwrap().to_string(), job["leaseToken"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(claimed.len(), 3, "{body}");
    let worker_call = |id: &str, call: &str, body: Value| {
        http.post(url(&format!("/v2/workers/jobs/{id}/{call}"))).bearer_auth(&token).json(&body)
    };

    let (id, lease) = &claimed[0];
    let heartbeat = "/v2/workers/jobs/{statusId}/heartbeat";
    let progress =
        json!({"leaseToken": lease, "progress": {"percent": 50, "stepNumber": 1, "description": "half"}});
    let (status, headers, body) = send(worker_call(id, "heartbeat", progress)).await;
    doc.check("post", heartbeat, status, &headers, &body);
    let complete = "/v2/workers/jobs/{statusId}/complete";
    let done = json!({"leaseToken": lease, "result": {"bytes": 1}});
    let (status, headers, body) = send(worker_call(id, "complete", done.clone())).await;
    assert_eq!(body["status"], "succeeded");
    doc.check("post", complete, status, &headers, &body);
    let (status, headers, body) = send(worker_call(id, "complete", done)).await;
    assert_eq!(status, 409);
    doc.check("post", complete, status, &headers, &body);

    let (id, lease) = &claimed[1];
    let failure = json!({"leaseToken": lease, "error": "disk gone", "retryable": false});
    let (status, headers, body) = send(worker_call(id, "fail", failure)).await;
    assert_eq!(body["status"], "failed");
    doc.check("post", "/v2/workers/jobs/{statusId}/fail", status, &headers, &body);

    let report = "/v2/workers/report";
    let (id, lease) = &claimed[0];
    let again = json!({"outcomes": [{"id": id, "leaseToken": lease, "result": 1}],
                       "claim": {"kinds": ["backup.run"], "limit": 1}});
    let (status, headers, body) = send(http.post(url(report)).bearer_auth(&token).json(&again)).await;
    assert_eq!((status, &body["outcomes"][0]["httpStatus"]), (200, &json!(409)), "{body}");
    doc.check("post", report, status, &headers, &body);
    let both = json!({"outcomes": [{"id": id, "leaseToken": lease, "result": 1, "error": "x"}]});
    let (status, headers, body) = send(http.post(url(report)).bearer_auth(&token).json(&both)).await;
    assert_eq!(status, 400);
    doc.check("post", report, status, &headers, &body);

    let cancel = "/v2/operations/{alias}/jobs/{statusId}/cancel";
    let (id, _) = &claimed[2];
    let cancel_call =
        |id: &str| http.post(url(&format!("/v2/operations/OPSQ/jobs/{id}/cancel"))).bearer_auth(&token);
    let (status, headers, body) = send(cancel_call(id).json(&json!({"reason": "test"}))).await;
    assert_eq!(status, 202);
    doc.check("post", cancel, status, &headers, &body);
    let waiting = server.submit(&token, ROOT, "nobody.runs").await;
    let (status, headers, body) = send(cancel_call(&waiting)).await;
    assert_eq!(status, 200);
    doc.check("post", cancel, status, &headers, &body);
    let (status, headers, body) = send(cancel_call(&waiting)).await;
    assert_eq!(status, 409);
    doc.check("post", cancel, status, &headers, &body);
}

#[tokio::test]
async fn v1_replies_fit_the_document() {
    let server = TestServer::start().await;
    let doc = fetch_document(&server).await;
    let password = "v1 key password";
    server
        .store
        .create_api_key(ApiKey {
            key: "openapi-key".into(),
            account: AccountAlias::parse(ROOT).unwrap(),
            password_hash: opsq_server::auth::hash_password(password).unwrap(),
        })
        .await
        .unwrap();
    let token = server.admin_token().await;
    let job = server.submit(&token, ROOT, "nobody.runs").await;
    let number = job.split('-').nth(1).unwrap().to_string();

    let call = |path: &str, body: Value, cookie: Option<&str>| {
        let mut request = server.http.post(server.url(path)).json(&body);
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, cookie);
        }
        request
    };
    let logon = "/REST/Auth/Logon/{format}";
    let response =
        call("/REST/Auth/Logon/JSON", json!({"APIKey": "openapi-key", "Password": password}), None)
            .send()
            .await
            .unwrap();
    let cookie = response.headers()[SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_string();
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["StatusCode"], 0);
    doc.check("post", logon, status, &headers, &body);

    let calls = [
        (
            "/REST/Queue/GetRequestStatus/{format}",
            "/REST/Queue/GetRequestStatus",
            json!({"RequestID": number}),
        ),
        (
            "/REST/Queue/ListQueueRequests/{format}",
            "/REST/Queue/ListQueueRequests",
            json!({"ItemStatusType": 1}),
        ),
        (
            "/REST/Queue/GetRequestStatus/{format}",
            "/REST/Queue/GetRequestStatus",
            json!({"RequestID": "999999"}),
        ),
    ];
    for (template, path, parameters) in calls {
        let (status, headers, body) =
            send(call(&format!("{path}/JSON"), parameters.clone(), Some(&cookie))).await;
        doc.check("post", template, status, &headers, &body);
        let response = call(&format!("{path}/XML"), parameters, Some(&cookie)).send().await.unwrap();
        let status = response.status().as_u16();
        doc.check_xml("post", template, status, &response.text().await.unwrap());
    }

    let (status, headers, body) = send(call("/REST/Auth/Logout/JSON", json!({}), Some(&cookie))).await;
    doc.check("post", "/REST/Auth/Logout/{format}", status, &headers, &body);
    let (status, headers, body) = send(call("/REST/Auth/Logout/Nonsense", json!({}), None)).await;
    assert_eq!(status, 404);
    doc.check("post", "/REST/Auth/Logout/{format}", status, &headers, &body);
}
