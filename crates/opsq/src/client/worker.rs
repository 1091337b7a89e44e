//! `opsq worker`: run jobs of some kinds with a shell command per job, through the
//! worker library of [`opsq_client::worker`] and the [`ExecHandler`].

use std::{io::IsTerminal, process::ExitCode, time::Duration};

use anyhow::{bail, Context};
use opsq_client::{
    worker::{default_worker_id, CancellationToken, Worker, WorkerConfig},
    Client,
};
use tracing_subscriber::EnvFilter;

use super::exec::ExecHandler;

/// Arguments of `opsq worker`.
#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    /// A job kind to run: an exact name or a glob such as 'server.*' (repeat for more).
    #[arg(long = "kind", value_name = "KIND", required = true)]
    kinds: Vec<String>,
    /// How many jobs run at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=100))]
    concurrency: u32,
    /// The shell command run (with `sh -c`) for each job: the payload on stdin,
    /// OPSQ_JOB_* in the environment, `PROGRESS <percent> <step> <text>` lines on
    /// stdout for progress, the rest of stdout as the result; exit 0 succeeds, 75
    /// retries, others fail. See docs/workers.md.
    #[arg(long, value_name = "CMD")]
    exec: Option<String>,
    /// A name for logs and job history [default: HOST/pid-PID].
    #[arg(long, value_name = "ID")]
    worker_id: Option<String>,
    /// On SIGTERM or Ctrl-C, how long running jobs may go on before they are stopped
    /// and handed back to run again.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    shutdown_grace_secs: u64,
    /// How long one claim waits for work before asking again.
    #[arg(long, value_name = "SECS", default_value_t = 25, value_parser = clap::value_parser!(u64).range(1..=30))]
    wait_secs: u64,
    /// The opsq server (default: the one logged in to). The token is the saved login's,
    /// or OPSQ_TOKEN's when set; its user needs the Worker role.
    #[arg(long, env = "OPSQ_SERVER")]
    server: Option<String>,
}

/// Runs until SIGTERM or Ctrl-C, then shuts down gracefully.
pub async fn run(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let Some(command) = args.exec.filter(|c| !c.trim().is_empty()) else {
        bail!(
            "opsq worker needs --exec CMD: the shell command to run for each job, e.g. \
             --exec './handle-job.sh' (payload on stdin, OPSQ_JOB_* in its environment; see docs/workers.md)"
        );
    };
    if let Some(bad) = args.kinds.iter().find(|k| !opsq_domain::JobKind::is_valid_pattern(k)) {
        bail!("--kind {bad:?} is not a kind or glob: use letters, digits, '.', '_', '-' and the globs * ? [...]");
    }
    // Workers run unattended: their log is the record of what ran where.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("OPSQ_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();

    let resolved = super::credentials(args.server, None)?;
    let client = Client::new(&resolved.server)?.with_token(resolved.token);
    let config = WorkerConfig {
        kinds: args.kinds,
        concurrency: args.concurrency as usize,
        worker_id: args.worker_id.unwrap_or_else(default_worker_id),
        wait_seconds: args.wait_secs,
        shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
    };
    let handler = ExecHandler { command, server: client.server().to_string() };
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    Worker::new(client, config).run(handler, shutdown).await.context("the worker stopped")?;
    Ok(ExitCode::SUCCESS)
}

/// Fires `shutdown` on the first SIGTERM or SIGINT.
async fn stop_on_signal(shutdown: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for SIGTERM; only Ctrl-C stops the worker gracefully");
            let _ = tokio::signal::ctrl_c().await;
            shutdown.cancel();
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
    shutdown.cancel();
}
