//! `opsq serve`.

use std::fs::File;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use opsq_domain::{AccountAlias, Location};
use opsq_server::{HousekeepingConfig, RunnerConfig, ServeOptions, ServerConfig};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (use port 0 for any free port).
    #[arg(long, env = "OPSQ_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    #[command(flatten)]
    store: crate::store_args::StoreArgs,
    /// Run built-in simulated handlers for every server.* job kind.
    #[arg(long, env = "OPSQ_SIMULATE")]
    simulate: bool,
    /// Duration of each simulated step, in milliseconds.
    #[arg(long, env = "OPSQ_SIM_STEP_MS", default_value_t = 300)]
    sim_step_ms: u64,
    /// Alias of the root account created on first start.
    #[arg(long, env = "OPSQ_ROOT_ALIAS", default_value = "OPSQ")]
    root_alias: String,
    /// Location (data-center code) of the root account created on first start.
    #[arg(long, env = "OPSQ_ROOT_LOCATION", default_value = "WA1")]
    root_location: String,
    /// Lease of a running job, renewed by heartbeats, in seconds.
    #[arg(long, env = "OPSQ_LEASE_SECS", default_value_t = 30)]
    lease_secs: u64,
    /// Jobs the in-process runner runs at once.
    #[arg(long, env = "OPSQ_CONCURRENCY", default_value_t = 64)]
    concurrency: usize,
    /// Days finished jobs are kept before being pruned.
    #[arg(long, env = "OPSQ_RETENTION_DAYS", default_value_t = 30)]
    retention_days: u64,
    /// Seconds a job may stay `unknown` (worker lost, kind not safe to repeat) before
    /// it ends `failed`, unless a probe or an operator resolves it first. Checked by
    /// housekeeping once a minute, so a job may end up to a minute after that.
    #[arg(long, env = "OPSQ_UNKNOWN_TIMEOUT_SECS", default_value_t = 3600)]
    unknown_timeout_secs: u64,
    /// Seconds running jobs get to finish at shutdown before being handed back.
    #[arg(long, env = "OPSQ_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    shutdown_grace_secs: u64,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("OPSQ_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let alias = AccountAlias::parse(&args.root_alias).context("--root-alias")?;
    let location = Location::parse(&args.root_location).context("--root-location")?;
    // One server per data directory: a starting server takes back every in-process
    // lease of the store, which is only right if it is the store's only server.
    let _lock = match &args.store.database_url {
        Some(_) => None,
        None => {
            let dir = args.store.data_dir();
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("creating the data directory {}", dir.display()))?;
            Some(lock_data_dir(&dir)?)
        }
    };
    // Bound before the store is bootstrapped: a port in use ends the start before an
    // admin is created, and once the admin password is printed, connections to the
    // port are accepted (they wait in the backlog until the server serves).
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let store = args.store.open().await?;

    if let Some(created) = opsq_server::bootstrap(&store, alias, location).await? {
        println!(
            "opsq: created root account {} ({}) and user \"{}\"",
            created.account, created.location, created.username
        );
        println!("opsq: admin password (shown once): {}", created.password);
    }
    let server_config =
        ServerConfig { default_lease_ms: args.lease_secs.max(1) as i64 * 1000, ..ServerConfig::default() };
    let state = opsq_server::app_state(store.clone(), server_config).await?;
    let address = listener.local_addr()?;
    println!("opsq: listening on http://{address}");
    tracing::info!(%address, store = %store.describe(), simulate = args.simulate, "opsq serving");

    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let options = ServeOptions {
        simulate: args.simulate,
        sim_step: Duration::from_millis(args.sim_step_ms),
        runner: RunnerConfig {
            concurrency: args.concurrency.max(1),
            lease: Duration::from_secs(args.lease_secs.max(1)),
            shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
            ..RunnerConfig::default()
        },
        housekeeping: HousekeepingConfig {
            retention: Duration::from_secs(args.retention_days * 24 * 3600),
            unknown_timeout: Duration::from_secs(args.unknown_timeout_secs.max(1)),
            ..HousekeepingConfig::default()
        },
        ..ServeOptions::default()
    };
    opsq_server::serve(state, listener, options, shutdown).await?;
    tracing::info!("opsq stopped");
    Ok(ExitCode::SUCCESS)
}

/// One server per data directory: the in-process runner takes back every lease of a
/// previous run at start, which is only right if no other server is running on it.
fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<File> {
    let path = dir.join("opsq.lock");
    let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another opsq server is already running on {}; stop it or use another --data-dir",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(err)) => {
            Err(err).with_context(|| format!("locking {}", path.display()))
        }
    }
}

async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = ctrl_c.await;
                shutdown.cancel();
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down: no new requests or claims; running jobs get the grace period");
    shutdown.cancel();
}
