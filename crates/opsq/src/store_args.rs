//! Where the store is: `--data-dir` (embedded SQLite) or `--database-url`
//! (PostgreSQL), shared by `serve` and `admin` so both always open the same store.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use opsq_store::Store;

#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// Directory of the embedded SQLite store [default: the user's data dir, e.g. ~/.local/share/opsq].
    #[arg(long, env = "OPSQ_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL (postgres://user:password@host:port/db): a store shared by any
    /// number of nodes. Takes precedence over --data-dir.
    #[arg(long, env = "OPSQ_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
}

impl StoreArgs {
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(crate::default_data_dir)
    }

    pub async fn open(&self) -> anyhow::Result<Store> {
        if let Some(url) = self.database_url.as_deref().filter(|u| !u.trim().is_empty()) {
            return Store::open_postgres(url).await.context("opening the PostgreSQL store");
        }
        let dir = self.data_dir();
        Store::open_sqlite(&dir).with_context(|| format!("opening the store in {}", dir.display()))
    }
}
