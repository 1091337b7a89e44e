//! opsq as the peer benchmark runs it (see bench/README.md): the real server, with
//! a root account whose credentials go to `--state-dir`, and, in `--mode inproc`,
//! an in-process handler for the benchmark's kinds that records each job the way
//! every peer's handler does. The runner is held back until the benchmark's
//! "worker" opens it (`POST /bench/runner {"results": path}`), so jobs pile up
//! during the bulk enqueue exactly as they do for the peers.
//!
//! `opsq-bench-server --listen 127.0.0.1:58101 --state-dir DIR [--database-url URL]
//!  [--mode inproc|external] [--concurrency 64]`

use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use axum::Json;
use futures::future::BoxFuture;
use opsq_bench::{flag, recorder_line, BENCH_KINDS};
use opsq_domain::{AccountAlias, Location};
use opsq_server::runner::{HandlerError, JobContext, JobHandler};
use opsq_server::{Registry, RunnerConfig, ServeOptions, ServerConfig};
use opsq_store::Store;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// mimalloc rather than glibc malloc: glibc's malloc and free were about 15% of the
/// server's CPU per status read (perf, W3 on PostgreSQL), and mimalloc cut the CPU
/// per read by a fifth on PostgreSQL and a tenth on SQLite (bench/RESULTS.md, step 14).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Appends one line per job to the results file the benchmark's worker named.
struct Recorder {
    file: Arc<Mutex<Option<File>>>,
}

impl JobHandler for Recorder {
    fn run(&self, ctx: JobContext) -> BoxFuture<'static, Result<Value, HandlerError>> {
        let line = recorder_line(&ctx.job.payload);
        let file = self.file.clone();
        Box::pin(async move {
            let mut file = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let (Some(file), Some(line)) = (file.as_mut(), line) {
                file.write_all(line.as_bytes()).map_err(|e| HandlerError::Fatal(e.to_string()))?;
            }
            Ok(Value::Null)
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber_init();
    let args: Vec<String> = std::env::args().collect();
    let listen = flag(&args, "--listen").unwrap_or_else(|| "127.0.0.1:58101".into());
    let state_dir = std::path::PathBuf::from(flag(&args, "--state-dir").expect("--state-dir"));
    let inproc = flag(&args, "--mode").as_deref() != Some("external");
    let concurrency: usize = flag(&args, "--concurrency").and_then(|v| v.parse().ok()).unwrap_or(64);
    std::fs::create_dir_all(&state_dir)?;
    let store = match flag(&args, "--database-url") {
        Some(url) => Store::open_postgres(&url).await?,
        None => Store::open_sqlite(&state_dir.join("data"))?,
    };
    let alias = AccountAlias::parse("OPSQ")?;
    if let Some(created) = opsq_server::bootstrap(&store, alias, Location::parse("WA1")?).await? {
        std::fs::write(
            state_dir.join("credentials.json"),
            json!({"username": created.username, "password": created.password}).to_string(),
        )?;
    }
    let state = opsq_server::app_state(store, ServerConfig::default()).await?;

    let file: Arc<Mutex<Option<File>>> = Arc::default();
    let (gate_tx, gate_rx) = watch::channel(false);
    let mut handlers = Registry::default();
    if inproc {
        for kind in BENCH_KINDS {
            handlers.register(kind, Arc::new(Recorder { file: file.clone() }));
        }
    }
    let control = axum::Router::new().route(
        "/bench/runner",
        post(move |Json(body): Json<Value>| {
            let (file, gate_tx) = (file.clone(), gate_tx.clone());
            async move {
                let opened = body["results"]
                    .as_str()
                    .map(|path| std::fs::OpenOptions::new().create(true).append(true).open(path));
                let opened = opened.transpose().map_err(|e| e.to_string())?;
                let running = opened.is_some();
                *file.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = opened;
                gate_tx.send_replace(running);
                Ok::<_, String>(Json(json!({"running": running})))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let shutdown = CancellationToken::new();
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("SIGTERM handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            shutdown.cancel();
        });
    }
    let options = ServeOptions {
        runner: RunnerConfig {
            concurrency,
            poll_interval: Duration::from_millis(500),
            shutdown_grace: Duration::from_secs(5),
            ..RunnerConfig::default()
        },
        handlers,
        runner_gate: Some(gate_rx),
        extra_routes: Some(control),
        ..ServeOptions::default()
    };
    opsq_server::serve(state, listener, options, shutdown).await
}

fn tracing_subscriber_init() {
    // Warnings only: like the peers, per-job info logging is off while measuring.
    let _ = tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("OPSQ_LOG")
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_writer(std::io::stderr)
            .finish(),
    );
}
