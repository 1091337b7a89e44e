//! A worker for `backup.*` jobs, as in docs/workers.md: run it against a server with
//! `OPSQ_TOKEN=... cargo run -p opsq-client --example backup_worker`, stop it with Ctrl-C.

use std::time::Duration;

use opsq_client::worker::{handler_fn, CancellationToken, WorkError, Worker, WorkerConfig};
use opsq_client::Client;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = std::env::var("OPSQ_SERVER").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let client = Client::new(&server)?.with_token(std::env::var("OPSQ_TOKEN")?);
    let config = WorkerConfig {
        kinds: vec!["backup.*".into()],
        concurrency: 4,
        shutdown_grace: Duration::from_secs(30),
        ..WorkerConfig::default()
    };
    let handler = handler_fn(|job, ctx| async move {
        let disk = job.payload["disk"].as_u64().ok_or_else(|| WorkError::fatal("payload has no disk"))?;
        ctx.progress(10, 1, format!("Copying disk {disk}"));
        tokio::select! {
            // Fires on a cancel request, a lost lease, or the end of the shutdown grace.
            _ = ctx.cancelled() => Err(WorkError::retryable("stopped")),
            copied = copy_disk(disk) => copied
                .map(|bytes| serde_json::json!({"bytes": bytes}))
                .map_err(|err| WorkError::retryable(err.to_string())),
        }
    });
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_signal.cancel();
    });
    Worker::new(client, config).run(handler, shutdown).await?;
    Ok(())
}

async fn copy_disk(_disk: u64) -> std::io::Result<u64> {
    Ok(1 << 20)
}
