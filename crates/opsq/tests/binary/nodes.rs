//! Several `opsq serve` nodes on one PostgreSQL database, and PostgreSQL outages.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{opsq_with, temp_dir, text, ServerProcess, BIN};
use crate::pg::PgCluster;

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn post(server: &ServerProcess, token: &str, path: &str, body: &Value) -> (u16, Value) {
    let response =
        reqwest::Client::new().post(server.url(path)).bearer_auth(token).json(body).send().await.unwrap();
    let code = response.status().as_u16();
    (code, response.json().await.unwrap_or(Value::Null))
}

fn start_node(url: &str, data: &std::path::Path, extra: &[&str]) -> ServerProcess {
    let mut args = vec!["--database-url", url];
    args.extend_from_slice(extra);
    ServerProcess::start(data, &args)
}

/// Polls `GET .../jobs/{id}` on `server` until `done`, failing after the deadline.
async fn until(
    server: &ServerProcess,
    token: &str,
    id: &str,
    secs: u64,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (code, job) = server.get(token, &format!("/v2/operations/OPSQ/jobs/{id}")).await;
        if code == 200 && done(&job) {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id} never got there: {code} {job}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_one_database_and_a_kill_9_loses_nothing() {
    let Some(cluster) = PgCluster::start() else { return };
    let url = cluster.database("opsq_nodes");
    let (guard, data) = temp_dir();
    let node_args = ["--simulate", "--sim-step-ms", "40", "--lease-secs", "2"];
    let first = start_node(&url, &data, &node_args);
    let password = first.admin_password.clone().expect("the first node bootstraps");
    let mut nodes = vec![first, start_node(&url, &data, &node_args), start_node(&url, &data, &node_args)];
    assert!(nodes[1].admin_password.is_none() && nodes[2].admin_password.is_none(), "bootstrapped once");

    // A token from one node works on every node.
    let token = nodes[0].login("admin", &password).await;
    for node in &nodes {
        assert_eq!(node.get(&token, "/v2/operations/OPSQ/jobs?limit=1").await.0, 200);
    }

    // An external worker on node 1 runs ext.* jobs; nodes run server.* in process.
    let script = guard.path().join("job.sh");
    std::fs::write(&script, "#!/bin/sh\ncat > /dev/null\nsleep 0.05\necho '{\"ok\": true}'\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let worker = std::process::Command::new(BIN)
        .args([
            "worker",
            "--kind",
            "ext.*",
            "--concurrency",
            "4",
            "--wait-secs",
            "2",
            "--server",
            &nodes[1].base,
            "--exec",
        ])
        .arg(&script)
        .env("OPSQ_TOKEN", &token)
        .env("OPSQ_CONFIG_DIR", guard.path())
        .env("OPSQ_LOG", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed on every exit path, a failing assertion included.
    let worker = KillOnDrop(worker);

    // Submit through every node in turn; each write is visible on the next node at once.
    let mut ids = Vec::new();
    for round in 0..12 {
        let node = &nodes[round % nodes.len()];
        let kind = if round % 2 == 0 { "server.powerOn" } else { "ext.copy" };
        let jobs: Vec<Value> =
            (0..50).map(|i| json!({"kind": kind, "payload": {"round": round, "i": i}})).collect();
        let (code, body) = post(node, &token, "/v2/operations/OPSQ/jobs/batch", &json!({"jobs": jobs})).await;
        assert_eq!(code, 202, "{body}");
        for answer in body["jobs"].as_array().unwrap() {
            ids.push(answer["id"].as_str().unwrap().to_string());
        }
        let last = ids.last().unwrap();
        let (code, _) =
            nodes[(round + 1) % nodes.len()].get(&token, &format!("/v2/operations/OPSQ/status/{last}")).await;
        assert_eq!(code, 200, "a write acknowledged by one node is visible on the next");
        if round == 5 {
            // Mid-run, node 2 dies with its in-process jobs.
            nodes.pop().unwrap().kill9();
        }
    }

    // Every job ends once, on the surviving nodes.
    for id in &ids {
        let job =
            until(&nodes[0], &token, id, 90, |j| j["status"] == "succeeded" || j["status"] == "failed").await;
        assert_eq!(job["status"], "succeeded", "{job}");
        let history = job["history"].as_array().unwrap();
        let outcomes =
            history.iter().filter(|e| e["status"] == "succeeded" || e["status"] == "failed").count();
        assert_eq!(outcomes, 1, "one recorded outcome: {job}");
    }
    drop(worker);

    // An admin command and a v1 session work across nodes too.
    let out = opsq_with(
        &["admin", "api-key", "add", "--account", "OPSQ", "--json"],
        &[("OPSQ_DATABASE_URL", url.as_str())],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key: Value = serde_json::from_slice(&out.stdout).unwrap();
    let http = reqwest::Client::new();
    let logon = http
        .post(nodes[0].url("/REST/Auth/Logon/JSON"))
        .json(&json!({"APIKey": key["apiKey"], "Password": key["password"]}))
        .send()
        .await
        .unwrap();
    let cookie = logon.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let number = ids[0].split('-').nth(1).unwrap();
    let status: Value = http
        .post(nodes[1].url(&format!("/REST/Queue/GetRequestStatus/JSON?RequestID={number}")))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["StatusCode"], 0, "a v1 session from one node is valid on another: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_on_one_node_stops_a_job_running_on_another_at_once() {
    let Some(cluster) = PgCluster::start() else { return };
    let url = cluster.database("opsq_cancel");
    let (_guard, data) = temp_dir();
    // A 30 s lease: heartbeats every 10 s, so only a notification can be this fast.
    let runner = start_node(&url, &data, &["--simulate", "--sim-step-ms", "5000", "--lease-secs", "30"]);
    let token = runner.login("admin", runner.admin_password.as_deref().unwrap()).await;
    let other = start_node(&url, &data, &["--lease-secs", "30"]);
    let (code, job) =
        post(&other, &token, "/v2/operations/OPSQ/jobs", &json!({"kind": "server.reboot"})).await;
    assert_eq!(code, 202);
    let id = job["id"].as_str().unwrap().to_string();
    until(&other, &token, &id, 20, |j| j["status"] == "executing").await;
    let asked = Instant::now();
    let (code, _) = post(&other, &token, &format!("/v2/operations/OPSQ/jobs/{id}/cancel"), &json!({})).await;
    assert_eq!(code, 202);
    let ended = until(&other, &token, &id, 20, |j| j["status"] == "failed").await;
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "delivered by NOTIFY, not the next heartbeat: {:?}",
        asked.elapsed()
    );
    assert!(ended["error"].as_str().unwrap().starts_with("cancelled"), "{ended}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_postgres_is_down_the_api_answers_503_and_then_recovers_by_itself() {
    let Some(cluster) = PgCluster::start() else { return };
    let url = cluster.database("opsq_outage");
    let (_guard, data) = temp_dir();
    let server = start_node(&url, &data, &["--simulate", "--sim-step-ms", "20"]);
    let token = server.login("admin", server.admin_password.as_deref().unwrap()).await;
    let (code, before) =
        post(&server, &token, "/v2/operations/OPSQ/jobs", &json!({"kind": "server.powerOn"})).await;
    assert_eq!(code, 202);
    let before = before["id"].as_str().unwrap().to_string();
    until(&server, &token, &before, 20, |j| j["status"] == "succeeded").await;

    cluster.stop();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = server.get(&token, &format!("/v2/operations/OPSQ/status/{before}")).await;
        if code == 503 {
            assert!(body["message"].as_str().unwrap().contains("unavailable"), "{body}");
            break;
        }
        assert_eq!(code, 200, "only 200 or 503 while the database goes away: {body}");
        assert!(Instant::now() < deadline, "never answered 503");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, body) =
        post(&server, &token, "/v2/operations/OPSQ/jobs", &json!({"kind": "server.powerOn"})).await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(server.get(&token, "/readyz").await.0, 503);
    assert_eq!(server.get(&token, "/healthz").await.0, 200, "the process itself is fine");

    cluster.start_again();
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let (code, body) =
            post(&server, &token, "/v2/operations/OPSQ/jobs", &json!({"kind": "server.powerOn"})).await;
        if code == 202 {
            break body["id"].as_str().unwrap().to_string();
        }
        assert_eq!(code, 503, "{body}");
        assert!(Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    until(&server, &token, &after, 30, |j| j["status"] == "succeeded").await;
    let (code, job) = server.get(&token, &format!("/v2/operations/OPSQ/jobs/{before}")).await;
    assert_eq!((code, job["status"].as_str()), (200, Some("succeeded")), "nothing accepted before was lost");
    assert_eq!(server.get(&token, "/readyz").await.0, 200);
}
