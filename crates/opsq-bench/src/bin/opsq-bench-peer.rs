//! opsq as a peer of the shared job-queue benchmark (`../shared/bench/peers`): the
//! command its harness calls, speaking its protocol over opsq's public HTTP API.
//!
//! ```text
//! opsq-bench-peer setup                       (re)start opsq-bench-server on a fresh store
//! opsq-bench-peer enqueue bulk N KIND         POST /jobs/batch, $PB_BATCH jobs per call
//! opsq-bench-peer enqueue single N KIND       POST /jobs, one at a time
//! opsq-bench-peer enqueue paced N KIND RATE   POST /jobs on an absolute RATE/s schedule
//! opsq-bench-peer enqueue concurrent N KIND C POST /jobs from C concurrent clients (S64)
//! opsq-bench-peer worker                      inproc: open the server's runner until SIGTERM;
//!                                             external: an opsq-client worker process
//! opsq-bench-peer pending                     jobs not yet ended
//! opsq-bench-peer stop                        stop the server started by setup
//! ```
//!
//! Settings come from the environment: `OPSQ_BENCH_STATE` (directory for the server's
//! store, log, pid and token), `OPSQ_BENCH_PORT`, `OPSQ_BENCH_MODE` (`inproc` or
//! `external`), `OPSQ_BENCH_SERVER` (the server binary), `OPSQ_BENCH_STORE` (`sqlite`,
//! or `pg` to use the harness's `$PB_PG_URL`), `OPSQ_BENCH_SEED` (finished jobs to store
//! before the server starts, for the growth workload W4), and the harness's `PB_RESULTS`,
//! `PB_CONCURRENCY`, `PB_BATCH`.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use opsq_bench::{epoch_ms, recorder_line, BENCH_KINDS};
use opsq_client::worker::{handler_fn, CancellationToken, Worker, WorkerConfig};
use opsq_client::Client;
use serde_json::{json, Value};

const PAD: &str = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
/// Like the peers' `single` mode: a sequential enqueue stops after this long.
const SINGLE_CAP: Duration = Duration::from_secs(30);

struct Env {
    state: PathBuf,
    base: String,
    inproc: bool,
}

impl Env {
    fn from_env() -> anyhow::Result<Self> {
        let state = PathBuf::from(std::env::var("OPSQ_BENCH_STATE").context("OPSQ_BENCH_STATE")?);
        let port = std::env::var("OPSQ_BENCH_PORT").unwrap_or_else(|_| "58101".into());
        let inproc = std::env::var("OPSQ_BENCH_MODE").as_deref() != Ok("external");
        Ok(Self { state, base: format!("http://127.0.0.1:{port}"), inproc })
    }

    fn token(&self) -> anyhow::Result<String> {
        std::fs::read_to_string(self.state.join("token")).context("no token: run `setup` first")
    }

    fn jobs_url(&self) -> String {
        format!("{}/v2/operations/OPSQ/jobs", self.base)
    }
}

fn payload(i: usize, kind: &str) -> Value {
    json!({"i": i, "k": kind, "ts": epoch_ms(), "pad": PAD})
}

fn job(i: usize, kind: &str) -> Value {
    json!({"kind": format!("bench.{kind}"), "payload": payload(i, kind)})
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env = Env::from_env()?;
    match args.first().map(String::as_str) {
        Some("setup") => setup(&env).await,
        Some("stop") => stop_server(&env),
        Some("enqueue") => enqueue(&env, &args[1..]).await,
        Some("worker") => worker(&env).await,
        Some("pending") => pending(&env).await,
        _ => bail!("usage: opsq-bench-peer setup|enqueue|worker|pending|stop"),
    }
}

fn pid_file(env: &Env) -> PathBuf {
    env.state.join("server.pid")
}

/// Stops the server this state directory started (by its recorded pid), waiting for
/// it to exit; SIGKILL after 15 s.
fn stop_server(env: &Env) -> anyhow::Result<()> {
    let Ok(pid) = std::fs::read_to_string(pid_file(env)) else { return Ok(()) };
    let pid: i32 = pid.trim().parse().context("server.pid")?;
    // SAFETY: kill(2) with a pid we started; signal 0 only checks it still exists.
    let alive = |pid| unsafe { libc::kill(pid, 0) == 0 };
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    // The server was started by an earlier `setup` process, so it is never this
    // process's child: once it exits, signal 0 fails.
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if alive(pid) {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    std::fs::remove_file(pid_file(env))?;
    Ok(())
}

async fn setup(env: &Env) -> anyhow::Result<()> {
    stop_server(env)?;
    std::fs::create_dir_all(&env.state)?;
    for stale in ["data", "credentials.json", "token"] {
        let path = env.state.join(stale);
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else if path.exists() {
            std::fs::remove_file(&path)?;
        }
    }
    let binary = PathBuf::from(std::env::var("OPSQ_BENCH_SERVER").context("OPSQ_BENCH_SERVER")?);
    let pg_url = match std::env::var("OPSQ_BENCH_STORE").as_deref() {
        Ok("pg") => Some(std::env::var("PB_PG_URL").context("PB_PG_URL")?),
        _ => None,
    };
    let seed: usize = std::env::var("OPSQ_BENCH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    if seed > 0 {
        let mut seeder = Command::new(binary.with_file_name("opsq-bench-seed"));
        seeder.args(["--jobs", &seed.to_string(), "--account", "SEED", "--kind", "bench.seed", "--finished"]);
        match &pg_url {
            Some(url) => seeder.args(["--database-url", url]),
            None => seeder.arg("--data-dir").arg(env.state.join("data")),
        };
        let status = seeder.stdout(Stdio::null()).status()?;
        if !status.success() {
            bail!("seeding {seed} jobs failed: {status}");
        }
    }
    let port = env.base.rsplit(':').next().unwrap_or("58101").to_string();
    let mut command = Command::new(binary);
    command
        .args(["--listen", &format!("127.0.0.1:{port}"), "--state-dir"])
        .arg(&env.state)
        .args(["--mode", if env.inproc { "inproc" } else { "external" }])
        .args(["--concurrency", &std::env::var("PB_CONCURRENCY").unwrap_or_else(|_| "64".into())]);
    if let Some(url) = &pg_url {
        command.args(["--database-url", url]);
    }
    let log = std::fs::File::create(env.state.join("server.log"))?;
    // Its own session, so the harness's process-group kills of workers never reach it.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let child = command.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).spawn()?;
    std::fs::write(pid_file(env), child.id().to_string())?;

    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = http.get(format!("{}/readyz", env.base)).send().await {
            if response.status().is_success() {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!("opsq-bench-server did not become ready; see {}", env.state.join("server.log").display());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let credentials: Value =
        serde_json::from_str(&std::fs::read_to_string(env.state.join("credentials.json"))?)?;
    let login: Value = http
        .post(format!("{}/v2/authentication/login", env.base))
        .json(&json!({"username": credentials["username"], "password": credentials["password"]}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = login["bearerToken"].as_str().context("login reply without bearerToken")?;
    std::fs::write(env.state.join("token"), token)?;
    Ok(())
}

async fn post(http: &reqwest::Client, url: &str, token: &str, body: &Value) -> anyhow::Result<()> {
    let response = http.post(url).bearer_auth(token).json(body).send().await?;
    if !response.status().is_success() {
        bail!("POST {url}: {} {}", response.status(), response.text().await.unwrap_or_default());
    }
    Ok(())
}

async fn enqueue(env: &Env, args: &[String]) -> anyhow::Result<()> {
    let mode = args.first().context("enqueue MODE N KIND")?.as_str();
    let n: usize = args.get(1).context("enqueue MODE N KIND")?.parse()?;
    let kind = args.get(2).map_or("b", String::as_str);
    let token = env.token()?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    let url = env.jobs_url();
    let batch: usize = std::env::var("PB_BATCH").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let t0 = epoch_ms();
    let started = Instant::now();
    let mut sent = 0;
    match mode {
        "bulk" => {
            while sent < n {
                let jobs: Vec<Value> = (sent..n.min(sent + batch)).map(|i| job(i, kind)).collect();
                post(&http, &format!("{url}/batch"), &token, &json!({"jobs": jobs})).await?;
                sent += jobs.len();
            }
        }
        "single" => {
            while sent < n && started.elapsed() < SINGLE_CAP {
                post(&http, &url, &token, &job(sent, kind)).await?;
                sent += 1;
            }
        }
        "paced" => {
            let rate: f64 = args.get(3).map_or(Ok(50.0), |r| r.parse())?;
            for i in 0..n {
                let due = started + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                post(&http, &url, &token, &job(i, kind)).await?;
                sent += 1;
            }
        }
        "concurrent" => {
            let clients: usize = args.get(3).map_or(Ok(64), |c| c.parse())?;
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..clients {
                let (http, url, token, next, kind) =
                    (http.clone(), url.clone(), token.clone(), next.clone(), kind.to_string());
                tasks.spawn(async move {
                    let mut done = 0;
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= n {
                            return Ok::<_, anyhow::Error>(done);
                        }
                        post(&http, &url, &token, &job(i, &kind)).await?;
                        done += 1;
                    }
                });
            }
            while let Some(done) = tasks.join_next().await {
                sent += done??;
            }
        }
        other => bail!("unknown enqueue mode {other}"),
    }
    let t1 = epoch_ms();
    let batch = if mode == "bulk" { batch } else { 1 };
    println!("{}", json!({"t0": t0, "t1": t1, "n": sent, "mode": mode, "batch": batch}));
    Ok(())
}

async fn worker(env: &Env) -> anyhow::Result<()> {
    let results = std::env::var("PB_RESULTS").context("PB_RESULTS")?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    if env.inproc {
        let http = reqwest::Client::new();
        let control = format!("{}/bench/runner", env.base);
        http.post(&control).json(&json!({"results": results})).send().await?.error_for_status()?;
        term.recv().await;
        http.post(&control).json(&json!({})).send().await?.error_for_status()?;
        return Ok(());
    }
    let concurrency: usize = std::env::var("PB_CONCURRENCY").ok().and_then(|v| v.parse().ok()).unwrap_or(24);
    let file = Arc::new(Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(&results)?));
    let client = Client::new(&env.base)?.with_token(env.token()?);
    let config = WorkerConfig {
        kinds: BENCH_KINDS.iter().map(|k| k.to_string()).collect(),
        concurrency,
        worker_id: format!("bench-{}", std::process::id()),
        wait_seconds: 5,
        shutdown_grace: Duration::from_secs(3),
    };
    let handler = handler_fn(move |job, _ctx| {
        let line = recorder_line(&job.payload);
        let file = file.clone();
        async move {
            if let Some(line) = line {
                let mut file = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let _ = file.write_all(line.as_bytes());
            }
            Ok(Value::Null)
        }
    });
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        term.recv().await;
        stop.cancel();
    });
    Worker::new(client, config).run(handler, shutdown).await?;
    Ok(())
}

async fn pending(env: &Env) -> anyhow::Result<()> {
    let token = env.token()?;
    let listed: Value = reqwest::Client::new()
        .get(format!("{}?status=notStarted,executing,resumed&limit=1000", env.jobs_url()))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    println!("{}", listed["items"].as_array().map_or(0, Vec::len));
    Ok(())
}
