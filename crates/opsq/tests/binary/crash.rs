//! The crash test: a few thousand jobs run through several external `opsq worker`
//! processes while the server and the workers are killed with SIGKILL at random
//! moments and restarted. Afterwards every accepted job has ended `succeeded` or
//! `failed`, no job recorded an outcome twice, no attempt ran twice, and no job whose
//! kind is not safe to repeat started again without a resolution.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use opsq_domain::JobStatus;
use opsq_store::{JobFilter, Resolution, Store};
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::harness::{opsq, temp_dir, text, ServerProcess, BIN};

const JOBS: usize = 2000;
const WORKERS: usize = 3;
const CHAOS_ROUNDS: usize = 10;

fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

struct WorkerProcess(Child);

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_worker(base: &str, token: &str, script: &Path, config: &Path, index: usize) -> WorkerProcess {
    let child = Command::new(BIN)
        .args([
            "worker",
            "--kind",
            "crash.*",
            "--concurrency",
            "4",
            "--wait-secs",
            "2",
            "--shutdown-grace-secs",
            "5",
        ])
        .args(["--worker-id", &format!("crash-{index}"), "--server", base, "--exec"])
        .arg(script)
        .env("OPSQ_TOKEN", token)
        .env("OPSQ_CONFIG_DIR", config)
        .env("OPSQ_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn opsq worker");
    WorkerProcess(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_survive_random_kill_9s_of_server_and_workers() {
    let (guard, data) = temp_dir();
    let address = free_address();
    let serve_args = ["--lease-secs", "2"];
    let mut server = ServerProcess::start_on(&data, &address, &serve_args);
    let token = server.login("admin", server.admin_password.as_deref().unwrap()).await;
    for (kind, safe) in [("crash.safe", "true"), ("crash.unsafe", "false")] {
        let out = opsq(
            &[
                "admin",
                "kind",
                "set",
                kind,
                "--lease-secs",
                "2",
                "--max-attempts",
                "5",
                "--safe-to-repeat",
                safe,
            ],
            &data,
            "",
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
    }

    // Every start of an attempt is logged by the job's command itself.
    let starts = guard.path().join("starts.log");
    let script = guard.path().join("job.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$OPSQ_JOB_NUMBER $OPSQ_JOB_ATTEMPT\" >> {}\ncat > /dev/null\nsleep 0.1\necho '{{\"ok\": true}}'\n",
            starts.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let http = reqwest::Client::new();
    let mut unsafe_jobs = std::collections::HashSet::new();
    for batch in 0..JOBS / 1000 {
        let jobs: Vec<_> = (0..1000)
            .map(|i| json!({"kind": if i % 10 == 0 { "crash.unsafe" } else { "crash.safe" }, "payload": {"i": batch * 1000 + i}}))
            .collect();
        let response = http
            .post(server.url("/v2/operations/OPSQ/jobs/batch"))
            .bearer_auth(&token)
            .json(&json!({"jobs": jobs}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let body: serde_json::Value = response.json().await.unwrap();
        for (i, answer) in body["jobs"].as_array().unwrap().iter().enumerate() {
            if i % 10 == 0 {
                unsafe_jobs.insert(answer["number"].as_i64().unwrap());
            }
        }
    }

    let config = guard.path().join("config");
    let mut workers: Vec<WorkerProcess> =
        (0..WORKERS).map(|i| start_worker(&server.base, &token, &script, &config, i)).collect();

    // Chaos: random SIGKILLs of the server or one worker, each restarted at once.
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x0b5e55ed);
    let mut server_kills = 0;
    for _ in 0..CHAOS_ROUNDS {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(200..1200))).await;
        if rng.gen_bool(0.4) {
            server.kill9();
            server_kills += 1;
            server = ServerProcess::start_on(&data, &address, &serve_args);
        } else {
            let victim = rng.gen_range(0..WORKERS);
            let _ = workers[victim].0.kill();
            let _ = workers[victim].0.wait();
            workers[victim] = start_worker(&server.base, &token, &script, &config, victim);
        }
    }
    assert!(server_kills >= 1, "the seed kills the server at least once");

    // Let everything finish; settle unknown outcomes as an operator would (retry).
    let store = Store::open_sqlite(&data).unwrap();
    let root = opsq_domain::AccountAlias::parse("OPSQ").unwrap();
    let mut retries_by_resolution: HashMap<i64, usize> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        for job in store.unknown_jobs(1000).await.unwrap() {
            store.resolve(job.number, Resolution::Retry, "crash test: not done").await.unwrap();
            *retries_by_resolution.entry(job.number).or_default() += 1;
        }
        let open = store
            .list_jobs(JobFilter {
                accounts: vec![root.clone()],
                statuses: vec![
                    JobStatus::NotStarted,
                    JobStatus::Executing,
                    JobStatus::Resumed,
                    JobStatus::Unknown,
                ],
                kind: None,
                before: None,
                limit: 1,
            })
            .await
            .unwrap();
        if open.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "jobs still open after the deadline, e.g. {:?}", open[0]);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(workers);

    // Real starts, as logged by the job command: no attempt of a job ran twice.
    let mut starts_by_job: HashMap<i64, Vec<u32>> = HashMap::new();
    for line in std::fs::read_to_string(&starts).unwrap().lines() {
        let mut parts = line.split_whitespace();
        let number: i64 = parts.next().unwrap().parse().unwrap();
        let attempt: u32 = parts.next().unwrap().parse().unwrap();
        starts_by_job.entry(number).or_default().push(attempt);
    }

    let mut seen = 0;
    let mut succeeded = 0;
    let mut before = None;
    loop {
        let page = store
            .list_jobs(JobFilter {
                accounts: vec![root.clone()],
                statuses: vec![],
                kind: Some("crash.*".into()),
                before,
                limit: 500,
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        before = Some(last.number);
        for job in &page {
            seen += 1;
            assert!(job.status.is_terminal(), "job {} ended {}", job.number, job.status);
            succeeded += usize::from(job.status == JobStatus::Succeeded);
            let history = store.job_events(job.number).await.unwrap();
            let outcomes = history.iter().filter(|e| e.status.is_terminal()).count();
            assert_eq!(outcomes, 1, "job {} recorded {outcomes} outcomes: {history:?}", job.number);
            let mut attempts = starts_by_job.get(&job.number).cloned().unwrap_or_default();
            attempts.sort_unstable();
            let distinct = attempts.windows(2).all(|w| w[0] != w[1]);
            assert!(distinct, "job {} ran an attempt twice: {attempts:?}", job.number);
            if unsafe_jobs.contains(&job.number) {
                let allowed = 1 + retries_by_resolution.get(&job.number).copied().unwrap_or(0);
                assert!(
                    attempts.len() <= allowed,
                    "not-safe job {} started {} times with {} resolutions: {history:?}",
                    job.number,
                    attempts.len(),
                    allowed - 1
                );
            }
        }
    }
    assert_eq!(seen, JOBS, "every accepted job is still there");
    eprintln!(
        "crash test: {JOBS} jobs, {server_kills} server kills, {} unknown outcomes resolved, {succeeded} succeeded",
        retries_by_resolution.values().sum::<usize>()
    );
    assert!(succeeded * 10 >= JOBS * 9, "most jobs succeed despite the kills: {succeeded}");
}
