use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{temp_dir, ServerProcess};

async fn queue(server: &ServerProcess, token: &str, count: usize) -> Vec<String> {
    let names: Vec<String> = (0..count).map(|i| format!("WA1OPSQSRV{i:02}")).collect();
    let response = reqwest::Client::new()
        .post(server.url("/v2/operations/OPSQ/servers/powerOn"))
        .bearer_auth(token)
        .json(&names)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body.as_array().unwrap().iter().map(|e| e["links"][0]["id"].as_str().unwrap().to_string()).collect()
}

async fn wait_until_some_execute(server: &ServerProcess, token: &str, ids: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for id in ids {
            let (_, body) = server.get(token, &format!("/v2/operations/OPSQ/status/{id}")).await;
            if body["status"] == "executing" {
                return;
            }
        }
        assert!(Instant::now() < deadline, "no job started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_until_all_succeed(server: &ServerProcess, token: &str, ids: &[String]) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut jobs = Vec::new();
    for id in ids {
        loop {
            let (code, job) = server.get(token, &format!("/v2/operations/OPSQ/jobs/{id}")).await;
            assert_eq!(code, 200, "job {id} must survive the restart: {job}");
            if job["status"] == "succeeded" {
                jobs.push(job);
                break;
            }
            assert_ne!(job["status"], "failed", "{job}");
            assert!(Instant::now() < deadline, "job {id} never finished: {job}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    jobs
}

#[tokio::test]
async fn every_accepted_job_survives_kill_9_and_runs_to_its_end() {
    let (_guard, data) = temp_dir();
    let slow = ["--simulate", "--sim-step-ms", "400", "--concurrency", "4"];
    let server = ServerProcess::start(&data, &slow);
    let password = server.admin_password.clone().unwrap();
    let token = server.login("admin", &password).await;
    let ids = queue(&server, &token, 12).await;
    wait_until_some_execute(&server, &token, &ids).await;
    server.kill9();

    // Same data directory: no new admin password, the old token still works.
    let server = ServerProcess::start(&data, &["--simulate", "--sim-step-ms", "20"]);
    assert!(server.admin_password.is_none(), "the password is printed only once");
    let jobs = wait_until_all_succeed(&server, &token, &ids).await;
    let interrupted = jobs
        .iter()
        .filter(|job| job["history"].as_array().unwrap().iter().any(|e| e["status"] == "resumed"))
        .count();
    assert!(interrupted >= 1, "at least one job was running at the kill and resumed");
    for job in &jobs {
        let outcomes =
            job["history"].as_array().unwrap().iter().filter(|e| e["status"] == "succeeded").count();
        assert_eq!(outcomes, 1, "one recorded outcome: {job}");
    }
}

#[tokio::test]
async fn graceful_shutdown_lets_running_jobs_finish_or_hands_them_back() {
    let (_guard, data) = temp_dir();
    let server = ServerProcess::start(&data, &["--simulate", "--sim-step-ms", "100", "--concurrency", "2"]);
    let password = server.admin_password.clone().unwrap();
    let token = server.login("admin", &password).await;
    let ids = queue(&server, &token, 6).await;
    wait_until_some_execute(&server, &token, &ids).await;
    let status = server.terminate();
    assert!(status.success(), "clean exit: {status:?}");

    let server = ServerProcess::start(&data, &["--simulate", "--sim-step-ms", "20"]);
    let jobs = wait_until_all_succeed(&server, &token, &ids).await;
    assert_eq!(jobs.len(), ids.len());
}
