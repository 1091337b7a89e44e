use std::time::{Duration, Instant};

use base64::Engine;
use opsq_server::BAD_CREDENTIALS;
use serde_json::{json, Value};

use crate::harness::{split, TestServer, PASSWORD};

fn decode_segment(token: &str, index: usize) -> Value {
    let segment = token.split('.').nth(index).expect("JWT segment");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(segment).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn json_login_returns_the_recorded_fields_and_a_fourteen_day_hs256_jwt() {
    let server = TestServer::start().await;
    server.add_user("Demo.User@example.com", "OPSQ", &["AccountViewer", "ServerAdmin"]).await;
    let (code, body) = split(server.login("demo.user@EXAMPLE.com", PASSWORD).await).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["userName"], "Demo.User@example.com");
    assert_eq!(body["accountAlias"], "OPSQ");
    assert_eq!(body["locationAlias"], "WA1");
    assert_eq!(body["roles"], json!(["AccountViewer", "ServerAdmin"]));
    let token = body["bearerToken"].as_str().unwrap();
    let header = decode_segment(token, 0);
    assert_eq!(header["alg"], "HS256");
    assert_eq!(header["typ"], "JWT");
    let claims = decode_segment(token, 1);
    assert_eq!(claims["iss"], "urn:api-tier3");
    assert_eq!(claims["aud"], "urn:tier3-users");
    assert_eq!(claims["urn:tier3:account-alias"], "OPSQ");
    assert_eq!(claims["urn:tier3:location-alias"], "WA1");
    assert_eq!(claims["unique_name"], "Demo.User@example.com");
    assert_eq!(claims["role"], json!(["AccountViewer", "ServerAdmin"]));
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["nbf"].as_i64().unwrap(), 1_209_600);
}

#[tokio::test]
async fn form_login_with_capitalised_fields_and_odd_content_types_work() {
    let server = TestServer::start().await;
    let password = server.admin_password.clone();
    let form = server
        .http
        .post(server.url("/v2/authentication/login"))
        .form(&[("Username", "admin"), ("Password", password.as_str())])
        .send()
        .await
        .unwrap();
    let (code, body) = split(form).await;
    assert_eq!(code, 200, "{body}");
    assert!(body["bearerToken"].as_str().unwrap().len() > 20);

    let upper_json = server
        .http
        .post(server.url("/v2/authentication/login"))
        .header("Content-Type", "Application/JSON; charset=utf-8")
        .body(json!({ "USERNAME": "admin", "PassWord": password }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(upper_json.status(), 200);
}

#[tokio::test]
async fn bad_credentials_answer_400_with_the_recorded_message_for_any_cause() {
    let server = TestServer::start().await;
    let (wrong_password_code, wrong_password) = split(server.login("admin", "nope").await).await;
    let (unknown_user_code, unknown_user) = split(server.login("nobody", "nope").await).await;
    for (code, body) in [(wrong_password_code, &wrong_password), (unknown_user_code, &unknown_user)] {
        assert_eq!(code, 400);
        assert_eq!(body["message"], BAD_CREDENTIALS);
    }
    assert_eq!(wrong_password, unknown_user, "no user enumeration");
}

#[tokio::test]
async fn missing_fields_and_malformed_bodies_are_400_with_a_message() {
    let server = TestServer::start().await;
    for body in ["{\"username\": \"admin\"}", "{nope", "[]", "\"admin\"", ""] {
        let response = server
            .http
            .post(server.url("/v2/authentication/login"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let (code, answer) = split(response).await;
        assert_eq!(code, 400, "body {body:?}: {answer}");
        assert!(answer["message"].as_str().unwrap().len() > 10);
    }
}

#[tokio::test]
async fn repeated_failures_are_slowed_down_but_the_user_gets_back_in_soon() {
    let server = TestServer::start().await;
    let mut throttled = None;
    for _ in 0..12 {
        let response = server.login("admin", "wrong").await;
        if response.status() == 429 {
            throttled = Some(response);
            break;
        }
        assert_eq!(response.status(), 400);
    }
    let throttled = throttled.expect("failures were never throttled");
    let retry_after: u64 = throttled.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after));
    let (_, body) = split(throttled).await;
    assert!(body["message"].as_str().unwrap().contains("try again"));

    // Another user is not affected by admin's failures.
    server.add_user("other", "OPSQ", &["AccountViewer"]).await;
    assert_eq!(server.login("other", PASSWORD).await.status(), 200);

    // The real admin gets in again within a short, bounded delay.
    let password = server.admin_password.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = server.login("admin", &password).await.status();
        if status == 200 {
            break;
        }
        assert_eq!(status, 429);
        assert!(Instant::now() < deadline, "admin stayed locked out");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
