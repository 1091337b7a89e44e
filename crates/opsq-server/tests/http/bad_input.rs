use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::harness::{assert_error, split, TestServer};

#[tokio::test]
async fn huge_bodies_are_413_with_a_message_whether_declared_or_streamed() {
    let server = TestServer::start().await;
    let token = server.admin_token().await;
    let big = format!("[\"{}\"]", "A".repeat(3 * 1024 * 1024));
    for path in
        ["/v2/operations/OPSQ/servers/powerOn", "/v2/operations/OPSQ/jobs", "/v2/authentication/login"]
    {
        let response = server
            .http
            .post(server.url(path))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await
            .unwrap();
        let (code, body) = split(response).await;
        assert_error(code, &body, 413);
    }
    let chunks = futures::stream::iter((0..64).map(|_| Ok::<_, std::io::Error>(vec![b'A'; 64 * 1024])));
    let response = server
        .http
        .post(server.url("/v2/operations/OPSQ/servers/powerOn"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    let (code, body) = split(response).await;
    assert_error(code, &body, 413);
}

#[tokio::test]
async fn malformed_paths_methods_and_types_get_json_4xx() {
    let server = TestServer::start().await;
    let token = server.admin_token().await;
    let (code, body) = server.get(&token, "/v2/nothing/here").await;
    assert_error(code, &body, 404);
    let (code, body) = server.get(&token, "/v2/operations/%FF%FE/status/wa1-1").await;
    assert!((400..500).contains(&code), "{code} {body}");
    let response = server
        .http
        .delete(server.url("/v2/operations/OPSQ/status/wa1-1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (code, body) = split(response).await;
    assert_error(code, &body, 405);
    let response = server
        .http
        .post(server.url("/v2/operations/OPSQ/servers/powerOn"))
        .bearer_auth(&token)
        .header("content-type", "text/xml")
        .body("<servers/>")
        .send()
        .await
        .unwrap();
    let (code, body) = split(response).await;
    assert_error(code, &body, 415);
    let response = server
        .http
        .post(server.url("/v2/operations/OPSQ/servers/powerOn"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("[\"WA1OPSQA01\"")
        .send()
        .await
        .unwrap();
    let (code, body) = split(response).await;
    assert_error(code, &body, 400);
    assert!(body["message"].as_str().unwrap().contains("JSON"));
}

/// Random bytes, random JSON and random ids at every endpoint: never a 5xx, always
/// an answer (the client has a timeout, so a hang fails the test).
#[tokio::test]
async fn random_input_never_gets_a_server_error() {
    let server = TestServer::start().await;
    let token = server.admin_token().await;
    let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let samples = [
        json!(null),
        json!(true),
        json!(1e308),
        json!(-1),
        json!(""),
        json!([[[]]]),
        json!({"serverIds": [null]}),
        json!({"kind": "a", "payload": {"deep": [[[[1]]]]}}),
        json!({"username": 1, "password": []}),
        json!({"kind": "x", "maxAttempts": -1}),
    ];
    let paths = [
        "/v2/authentication/login",
        "/v2/operations/OPSQ/servers/powerOn",
        "/v2/operations/OPSQ/servers/createSnapshot",
        "/v2/operations/OPSQ/jobs",
    ];
    for round in 0..120 {
        let path = paths[round % paths.len()];
        let body: Vec<u8> = if round % 3 == 0 {
            (0..rng.gen_range(0..200)).map(|_| rng.gen()).collect()
        } else {
            samples[rng.gen_range(0..samples.len())].to_string().into_bytes()
        };
        let content_type =
            ["application/json", "application/x-www-form-urlencoded", "", "text/plain"][round % 4];
        let mut request = http.post(server.url(path)).bearer_auth(&token).body(body);
        if !content_type.is_empty() {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.expect("the server answered");
        assert!(response.status().as_u16() < 500, "{path}: {}", response.status());
        let id: String = (0..rng.gen_range(0..40)).map(|_| rng.gen_range(b' '..b'~') as char).collect();
        let encoded: String = id.bytes().map(|b| format!("%{b:02X}")).collect();
        let response = http
            .get(server.url(&format!("/v2/operations/OPSQ/status/{encoded}")))
            .bearer_auth(&token)
            .send()
            .await
            .expect("the server answered");
        assert!(
            response.status().is_client_error() || response.status() == 200,
            "{id:?}: {}",
            response.status()
        );
    }
}
