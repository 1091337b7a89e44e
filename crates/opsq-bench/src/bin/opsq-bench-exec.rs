//! Execution benchmarks against a running opsq (see bench/README.md):
//!
//! - `throughput`: bulk-submit N no-op jobs (batches of 1000), run them, drain; jobs/s.
//!   `--mode inproc` runs the built-in `opsq.noop` kind in the server; `--mode external`
//!   runs kind `bench.ext` in workers of this process (the opsq-client worker library,
//!   over HTTP), `--workers W --concurrency C`.
//! - `latency`: single submits at a fixed rate; submit-to-start and submit-to-done
//!   p50/p99 from the jobs' own server-side timestamps.
//! - `rescue`: a worker claims a job and dies (stops heartbeating); the time until
//!   another worker gets the job.
//!
//! Prints one `BENCH_RESULT {json}` line per measurement.

use std::time::{Duration, Instant};

use opsq_bench::flag;
use opsq_client::worker::{handler_fn, CancellationToken, Worker, WorkerConfig};
use opsq_client::Client;
use serde_json::{json, Value};

struct Target {
    http: reqwest::Client,
    server: String,
    token: String,
}

impl Target {
    async fn post(&self, path: &str, body: &Value) -> Value {
        let response = self
            .http
            .post(format!("{}{path}", self.server))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .expect("request");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "POST {path}: {status} {body}");
        body
    }

    async fn get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.server))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request");
        assert!(response.status().is_success(), "GET {path}: {}", response.status());
        response.json().await.expect("JSON")
    }

    /// Waits until no job of `kind` is waiting or running.
    async fn drain(&self, kind: &str, deadline: Duration) {
        let started = Instant::now();
        loop {
            let open = self
                .get(&format!(
                    "/v2/operations/OPSQ/jobs?kind={kind}&status=notStarted,executing,resumed&limit=1"
                ))
                .await;
            if open["items"].as_array().is_none_or(|items| items.is_empty()) {
                return;
            }
            assert!(started.elapsed() < deadline, "jobs of {kind} still open after {deadline:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn start_workers(
    server: &str,
    token: &str,
    kind: &str,
    workers: usize,
    concurrency: usize,
) -> CancellationToken {
    let shutdown = CancellationToken::new();
    for i in 0..workers {
        let client = Client::new(server).expect("client").with_token(token.to_string());
        let config = WorkerConfig {
            kinds: vec![kind.to_string()],
            concurrency,
            worker_id: format!("bench-{i}"),
            wait_seconds: 5,
            shutdown_grace: Duration::from_secs(5),
        };
        let handler = handler_fn(|_job, _ctx| async { Ok(json!({})) });
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _ = Worker::new(client, config).run(handler, shutdown).await;
        });
    }
    shutdown
}

async fn throughput(target: &Target, args: &[String]) {
    let mode = flag(args, "--mode").unwrap_or_else(|| "inproc".into());
    let jobs: usize = flag(args, "--jobs").and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let workers: usize = flag(args, "--workers").and_then(|v| v.parse().ok()).unwrap_or(2);
    let concurrency: usize = flag(args, "--concurrency").and_then(|v| v.parse().ok()).unwrap_or(32);
    let kind = if mode == "external" { "bench.ext" } else { "opsq.noop" };
    let shutdown = (mode == "external")
        .then(|| start_workers(&target.server, &target.token, kind, workers, concurrency));
    let started = Instant::now();
    let mut submitted = 0;
    while submitted < jobs {
        let n = (jobs - submitted).min(1000);
        let batch: Vec<Value> = (0..n).map(|_| json!({"kind": kind})).collect();
        target.post("/v2/operations/OPSQ/jobs/batch", &json!({"jobs": batch})).await;
        submitted += n;
    }
    let submit_secs = started.elapsed().as_secs_f64();
    target.drain(kind, Duration::from_secs(600)).await;
    let total = started.elapsed().as_secs_f64();
    if let Some(shutdown) = shutdown {
        shutdown.cancel();
    }
    println!(
        "BENCH_RESULT {}",
        json!({"bench": "throughput", "mode": mode, "jobs": jobs, "submit_s": submit_secs, "total_s": total,
               "jobs_per_s": jobs as f64 / total, "submits_per_s": jobs as f64 / submit_secs})
    );
}

async fn latency(target: &Target, args: &[String]) {
    let mode = flag(args, "--mode").unwrap_or_else(|| "inproc".into());
    let rate: f64 = flag(args, "--rate").and_then(|v| v.parse().ok()).unwrap_or(50.0);
    let seconds: f64 = flag(args, "--seconds").and_then(|v| v.parse().ok()).unwrap_or(10.0);
    let kind = if mode == "external" { "bench.extlat" } else { "opsq.noop" };
    let shutdown = (mode == "external").then(|| start_workers(&target.server, &target.token, kind, 1, 16));
    // Let a worker's first claim start waiting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let count = (rate * seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut ticker = tokio::time::interval(interval);
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        ticker.tick().await;
        let job = target.post("/v2/operations/OPSQ/jobs", &json!({"kind": kind})).await;
        ids.push(job["id"].as_str().unwrap().to_string());
    }
    target.drain(kind, Duration::from_secs(120)).await;
    if let Some(shutdown) = shutdown {
        shutdown.cancel();
    }
    let parse = |v: &Value| chrono_ms(v.as_str().unwrap_or_default());
    let (mut to_start, mut to_done) = (Vec::new(), Vec::new());
    for id in &ids {
        let job = target.get(&format!("/v2/operations/OPSQ/jobs/{id}")).await;
        let created = parse(&job["createdDate"]);
        to_start.push(parse(&job["startedDate"]) - created);
        to_done.push(parse(&job["finishedDate"]) - created);
    }
    to_start.sort_by(f64::total_cmp);
    to_done.sort_by(f64::total_cmp);
    println!(
        "BENCH_RESULT {}",
        json!({"bench": "latency", "mode": mode, "jobs": count, "rate": rate,
               "start_p50_ms": percentile(&to_start, 0.5), "start_p99_ms": percentile(&to_start, 0.99),
               "done_p50_ms": percentile(&to_done, 0.5), "done_p99_ms": percentile(&to_done, 0.99)})
    );
}

/// Milliseconds since the epoch of an RFC 3339 UTC date with milliseconds
/// (`2026-11-22T23:44:16.909Z`), as opsq writes them.
fn chrono_ms(date: &str) -> f64 {
    let parse =
        |range: std::ops::Range<usize>| date.get(range).and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
    let (year, month, day) = (parse(0..4), parse(5..7), parse(8..10));
    let (hour, minute, second, milli) = (parse(11..13), parse(14..16), parse(17..19), parse(20..23));
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((((days * 24 + hour) * 60 + minute) * 60 + second) * 1000 + milli) as f64
}

async fn rescue(target: &Target, _args: &[String]) {
    // The kind's lease is set by the script (`opsq admin kind set bench.rescue --lease-secs N`).
    let job = target.post("/v2/operations/OPSQ/jobs", &json!({"kind": "bench.rescue"})).await;
    let id = job["id"].as_str().unwrap().to_string();
    let claimed =
        target.post("/v2/workers/claim", &json!({"kinds": ["bench.rescue"], "workerId": "doomed"})).await;
    assert_eq!(claimed["jobs"][0]["id"], id.as_str(), "the doomed worker got the job");
    let lease = claimed["jobs"][0]["leaseSeconds"].as_i64().unwrap_or(0);
    let died = Instant::now();
    loop {
        let again =
            target.post("/v2/workers/claim", &json!({"kinds": ["bench.rescue"], "waitSeconds": 30})).await;
        if again["jobs"].as_array().is_some_and(|jobs| !jobs.is_empty()) {
            break;
        }
        assert!(died.elapsed() < Duration::from_secs(300), "the job never came back");
    }
    let secs = died.elapsed().as_secs_f64();
    println!(
        "BENCH_RESULT {}",
        json!({"bench": "rescue", "lease_s": lease, "death_to_rerun_s": secs, "overhead_s": secs - lease as f64})
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let target = Target {
        http: reqwest::Client::new(),
        server: flag(&args, "--server").expect("--server URL"),
        token: flag(&args, "--token")
            .or_else(|| std::env::var("OPSQ_TOKEN").ok())
            .expect("--token or OPSQ_TOKEN"),
    };
    match args.get(1).map(String::as_str) {
        Some("throughput") => throughput(&target, &args).await,
        Some("latency") => latency(&target, &args).await,
        Some("rescue") => rescue(&target, &args).await,
        _ => {
            eprintln!("usage: opsq-bench-exec throughput|latency|rescue --server URL --token T [options]");
            std::process::exit(2);
        }
    }
}
