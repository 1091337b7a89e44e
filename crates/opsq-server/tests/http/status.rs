use base64::Engine;
use opsq_domain::{JobStatus, Progress};
use opsq_server::auth::TokenKeys;
use opsq_store::JobOutcome;
use serde_json::json;

use crate::harness::{alias, assert_error, claim_one, TestServer, PASSWORD};

#[tokio::test]
async fn reports_every_status_as_the_job_moves() {
    let server = TestServer::start().await;
    let token = server.admin_token().await;

    // Nobody handles this kind: it waits, notStarted.
    let waiting = server.submit(&token, "OPSQ", "backup.run").await;
    let (code, body) = server.status_of(&token, "OPSQ", &waiting).await;
    assert_eq!((code, body), (200, json!({"status": "notStarted"})));

    // The simulator runs server.* jobs to the end.
    let simulated = server.submit(&token, "OPSQ", "server.powerOn").await;
    server.wait_for(&token, "OPSQ", &simulated, JobStatus::Succeeded).await;
    assert_eq!(server.status_of(&token, "opsq", &simulated).await.1, json!({"status": "succeeded"}));

    // A worker claims the waiting jobs: executing, then the other statuses.
    let mut numbers = vec![];
    for kind in ["t.fail", "t.resume", "t.unknown", "t.run"] {
        let id = server.submit(&token, "OPSQ", kind).await;
        numbers.push(id);
    }
    let failing = server.store.claim(claim_one("t.fail", "w:1")).await.unwrap().remove(0);
    assert_eq!(server.status_of(&token, "OPSQ", &numbers[0]).await.1["status"], "executing");
    server
        .store
        .finish(failing.job.number, &failing.lease_token, JobOutcome::Fatal("boom".into()))
        .await
        .unwrap();
    assert_eq!(server.status_of(&token, "OPSQ", &numbers[0]).await.1["status"], "failed");

    server.store.claim(claim_one("t.resume", "lost:1")).await.unwrap();
    server.store.rescue(Some("lost:".into())).await.unwrap();
    assert_eq!(server.status_of(&token, "OPSQ", &numbers[1]).await.1["status"], "resumed");

    let (code, body) = server
        .post_json(&token, "/v2/operations/OPSQ/jobs", &json!({"kind": "t.unsafe", "safeToRepeat": false}))
        .await;
    assert_eq!(code, 202);
    let unsafe_id = body["id"].as_str().unwrap().to_string();
    server.store.claim(claim_one("t.unsafe", "gone:1")).await.unwrap();
    server.store.rescue(Some("gone:".into())).await.unwrap();
    assert_eq!(server.status_of(&token, "OPSQ", &unsafe_id).await.1["status"], "unknown");

    let running = server.store.claim(claim_one("t.run", "w:2")).await.unwrap().remove(0);
    let progress = Progress { percent: 40, step_number: 2, description: "Copying".into() };
    server.store.heartbeat(running.job.number, &running.lease_token, Some(progress), 60_000).await.unwrap();
    let (_, job) = server.get(&token, &format!("/v2/operations/OPSQ/jobs/{}", numbers[3])).await;
    assert_eq!(job["status"], "executing");
    assert_eq!(job["progress"], json!({"percent": 40, "stepNumber": 2, "description": "Copying"}));
}

#[tokio::test]
async fn ids_and_aliases_are_accepted_in_any_case() {
    let server = TestServer::start().await;
    let token = server.admin_token().await;
    let id = server.submit(&token, "OPSQ", "backup.run").await;
    for (alias, id) in [("OPSQ", id.to_uppercase()), ("opsq", id.clone()), ("OpSq", id.to_uppercase())] {
        let (code, body) = server.status_of(&token, alias, &id).await;
        assert_eq!(code, 200, "{alias} {id}: {body}");
    }
}

#[tokio::test]
async fn unknown_malformed_and_other_locations_ids_are_404() {
    let server = TestServer::start().await;
    let token = server.admin_token().await;
    let id = server.submit(&token, "OPSQ", "backup.run").await;
    let number = id.split('-').nth(1).unwrap();
    for bad in [
        "wa1-999999".to_string(),
        format!("ca3-{number}"),
        "wa1".into(),
        "wa1-abc".into(),
        "wa1-0".into(),
        "12345".into(),
        "wa1-99999999999999999999999".into(),
        format!("wa1-{}", "9".repeat(3000)),
    ] {
        let (code, body) = server.status_of(&token, "OPSQ", &bad).await;
        assert_error(code, &body, 404);
    }
}

#[tokio::test]
async fn access_flows_down_the_account_tree_never_up_or_sideways() {
    let server = TestServer::start().await;
    server.add_account("PARNT", "WA1", Some("OPSQ")).await;
    server.add_account("CHILD", "CA3", Some("PARNT")).await;
    server.add_account("SIBL", "WA1", Some("OPSQ")).await;
    server.add_user("parent-admin", "PARNT", &["ServerAdmin"]).await;
    server.add_user("child-admin", "CHILD", &["ServerAdmin"]).await;
    server.add_user("sibling-admin", "SIBL", &["ServerAdmin"]).await;
    let parent = server.token("parent-admin", PASSWORD).await;
    let child = server.token("child-admin", PASSWORD).await;
    let sibling = server.token("sibling-admin", PASSWORD).await;

    let child_job = server.submit(&child, "CHILD", "backup.run").await;
    assert!(child_job.starts_with("ca3-"), "jobs take their account's location: {child_job}");
    let parent_job = server.submit(&parent, "PARNT", "backup.run").await;

    // A parent reads its sub-account's jobs, through either alias.
    assert_eq!(server.status_of(&parent, "CHILD", &child_job).await.0, 200);
    assert_eq!(server.status_of(&parent, "PARNT", &child_job).await.0, 200);
    // Never the reverse, nor sideways.
    let (code, body) = server.status_of(&child, "PARNT", &parent_job).await;
    assert_error(code, &body, 403);
    let (code, body) = server.status_of(&sibling, "PARNT", &parent_job).await;
    assert_error(code, &body, 403);
    // Another account's job through one's own alias is simply not there.
    let (code, body) = server.status_of(&child, "CHILD", &parent_job).await;
    assert_error(code, &body, 404);
    let (code, body) = server.status_of(&sibling, "SIBL", &child_job).await;
    assert_error(code, &body, 404);
    // Unknown and malformed aliases are refused the same way.
    for alias in ["NOPE", "x", "toolongalias1", &"A".repeat(3000)] {
        let (code, body) = server.status_of(&child, alias, &child_job).await;
        assert_error(code, &body, 403);
    }
}

#[tokio::test]
async fn missing_malformed_tampered_expired_unsigned_and_foreign_tokens_are_401() {
    let server = TestServer::start().await;
    let token = server.admin_token().await;
    let id = server.submit(&token, "OPSQ", "backup.run").await;
    let path = server.url(&format!("/v2/operations/OPSQ/status/{id}"));

    let missing = server.http.get(&path).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    let (_, body) = crate::harness::split(missing).await;
    assert!(body["message"].as_str().unwrap().contains("denied"));

    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: serde_json::Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["urn:tier3:account-alias"] = json!("ROOT");
    let tampered = format!("{}.{}.{}", parts[0], b64.encode(claims.to_string()), parts[2]);
    let unsigned = format!("{}.{}.", b64.encode(br#"{"alg":"none","typ":"JWT"}"#), parts[1]);

    let secret = server.store.setting_or_init("token_signing_key", String::new).await.unwrap();
    let keys = TokenKeys::from_secret(&base64::engine::general_purpose::STANDARD.decode(secret).unwrap());
    let long_ago = opsq_store::now_ms() / 1000 - 15 * 24 * 3600;
    let expired = keys.issue("admin", "OPSQ", "WA1", vec!["AccountAdmin".into()], long_ago).unwrap();
    let foreign = TokenKeys::from_secret(b"some other deployment")
        .issue("admin", "OPSQ", "WA1", vec!["AccountAdmin".into()], opsq_store::now_ms() / 1000)
        .unwrap();
    let fresh =
        keys.issue("admin", "OPSQ", "WA1", vec!["AccountAdmin".into()], opsq_store::now_ms() / 1000).unwrap();
    assert_eq!(server.status_of(&fresh, "OPSQ", &id).await.0, 200, "the harness signs valid tokens");

    for (name, header) in [
        ("malformed", "Bearer not-a-jwt".to_string()),
        ("wrong scheme", format!("Basic {token}")),
        ("tampered", format!("Bearer {tampered}")),
        ("alg none", format!("Bearer {unsigned}")),
        ("expired", format!("Bearer {expired}")),
        ("foreign key", format!("Bearer {foreign}")),
        ("huge", format!("Bearer {}", "a".repeat(20_000))),
    ] {
        let response = server.http.get(&path).header("authorization", header).send().await.unwrap();
        let (code, body) = crate::harness::split(response).await;
        assert_eq!(code, 401, "{name}: {body}");
    }
    let _ = alias("OPSQ");
}
