//! Seeds an embedded opsq store with `--jobs N` waiting jobs of an unhandled kind, in
//! batches, before `opsq serve` opens it (the server locks its data directory).
//!
//! Jobs do not need their account row: `opsq serve` bootstraps the root account and
//! its admin user on first start, whether or not jobs already exist.
//!
//! With `--database-url URL` it seeds a PostgreSQL store instead.
//!
//! Usage: opsq-bench-seed (--data-dir DIR | --database-url URL) [--jobs 100000] [--batch 1000]
//!        [--account OPSQ] [--location WA1] [--kind bench.noop] [--finished]
//!
//! `--finished` then runs every seeded job to `succeeded` through the store's own
//! claim and finish, so the store holds history (the growth workload, W4) rather
//! than a backlog.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use opsq_bench::flag;
use opsq_domain::{AccountAlias, JobKind, Location, NewJob};
use opsq_store::Store;

/// Batches in flight at once, so the store's writer always has the next one queued.
const IN_FLIGHT: usize = 4;

fn main() -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => match runtime.block_on(run()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("opsq-bench-seed: {err}");
                ExitCode::FAILURE
            }
        },
        Err(err) => {
            eprintln!("opsq-bench-seed: could not start the runtime: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let database_url = flag(&args, "--database-url");
    let data_dir = flag(&args, "--data-dir").map(PathBuf::from);
    let number = |name: &str, default: usize| -> Result<usize, String> {
        flag(&args, name).map_or(Ok(default), |v| v.parse().map_err(|e| format!("{name}: {e}")))
    };
    let jobs = number("--jobs", 100_000)?;
    let batch = number("--batch", 1000)?.max(1);
    let text = |name: &str, default: &str| flag(&args, name).unwrap_or_else(|| default.to_string());
    let account = AccountAlias::parse(&text("--account", "OPSQ")).map_err(|e| e.to_string())?;
    let location = Location::parse(&text("--location", "WA1")).map_err(|e| e.to_string())?;
    let kind = JobKind::parse(&text("--kind", "bench.noop")).map_err(|e| e.to_string())?;

    let started = Instant::now();
    let store = match (&database_url, &data_dir) {
        (Some(url), _) => Store::open_postgres(url).await.map_err(|e| format!("opening {url}: {e}"))?,
        (None, Some(dir)) => {
            Store::open_sqlite(dir).map_err(|e| format!("opening {}: {e}", dir.display()))?
        }
        (None, None) => return Err("--data-dir or --database-url is required".into()),
    };
    let new_job = || NewJob {
        account: account.clone(),
        location: location.clone(),
        kind: kind.clone(),
        title: "bench".into(),
        payload: serde_json::Value::Null,
        max_attempts: 1,
        safe_to_repeat: true,
        idempotency_key: None,
        request_hash: None,
        submitter: "bench".into(),
    };
    let mut pending = tokio::task::JoinSet::new();
    let mut created = 0usize;
    let mut queued = 0usize;
    while queued < jobs || !pending.is_empty() {
        while queued < jobs && pending.len() < IN_FLIGHT {
            let size = batch.min(jobs - queued);
            let store = store.clone();
            let chunk: Vec<NewJob> = (0..size).map(|_| new_job()).collect();
            pending.spawn(async move { store.submit(chunk).await });
            queued += size;
        }
        if let Some(done) = pending.join_next().await {
            let outcomes = done.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
            created += outcomes.len();
        }
    }
    let finished = args.iter().any(|a| a == "--finished");
    if finished {
        finish_all(&store, kind.as_str()).await?;
    }
    let elapsed = started.elapsed();
    println!(
        "seeded {created} {}jobs ({account}, {location}, kind {kind}) in {:.2} s ({:.0} jobs/s) into {}",
        if finished { "finished " } else { "" },
        elapsed.as_secs_f64(),
        created as f64 / elapsed.as_secs_f64().max(1e-9),
        store.describe()
    );
    Ok(())
}

/// Claims and succeeds every waiting job of `kind`, a claim batch at a time.
async fn finish_all(store: &Store, kind: &str) -> Result<(), String> {
    loop {
        let claims = store
            .claim(opsq_store::ClaimRequest {
                kinds: vec![kind.to_string()],
                limit: 1000,
                owner: "seed".into(),
                lease_ms: 600_000,
                accounts: None,
            })
            .await
            .map_err(|e| e.to_string())?;
        if claims.is_empty() {
            return Ok(());
        }
        let mut finishing = tokio::task::JoinSet::new();
        for claim in claims {
            let store = store.clone();
            finishing.spawn(async move {
                let outcome = opsq_store::JobOutcome::Succeeded(serde_json::Value::Null);
                store.finish(claim.job.number, &claim.lease_token, outcome).await
            });
        }
        while let Some(done) = finishing.join_next().await {
            done.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
        }
    }
}
