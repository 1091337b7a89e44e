//! The shared store: one PostgreSQL database that any number of opsq nodes use at
//! once.
//!
//! Every operation is one transaction on a pooled connection, and every
//! read-then-write locks what it read (`SELECT ... FOR UPDATE`), so concurrent calls
//! from many nodes keep the same rules the single-writer SQLite store keeps. Claims
//! take waiting jobs with `FOR UPDATE SKIP LOCKED`, so claimers never wait for each
//! other. Attempt outcomes, the busiest write, are recorded many to a statement
//! ([`finisher`]); PostgreSQL groups the flushes of other concurrent commits itself.
//!
//! Connections are plain TCP (`NoTls`): TLS to the database is not supported yet, so
//! run it on a trusted network or through a local proxy.

mod accounts;
mod batcher;
mod claims;
mod control;
mod finisher;
mod glob;
mod history;
mod housekeeping;
mod jobs;
mod release;
mod rows;
mod schema;
pub(crate) mod signals;
mod statistics;
mod status_reader;
mod submitter;

use std::time::Duration;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::Host;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use crate::StoreError;

/// Most connections one node holds. Each operation holds one for a few round trips,
/// so this serves thousands of operations a second while leaving room on the server
/// for many nodes (PostgreSQL's default limit is 100 connections).
const MAX_CONNECTIONS: usize = 16;
/// How long an operation waits for a connection (pool exhausted), a new connection
/// (server down), or a check of an idle one before it fails as `Unavailable`: long
/// enough for a busy moment, short enough that a dead database is an error rather
/// than a hang.
const POOL_TIMEOUT: Duration = Duration::from_secs(5);
/// Unanswered traffic on an open connection (server gone without a word) fails the
/// connection after this long instead of the TCP default of many minutes.
const TCP_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct PostgresStore {
    pool: Pool,
    description: String,
    config: tokio_postgres::Config,
    /// Started on first use, so short-lived processes (the admin CLI) never listen
    /// or compete for the housekeeping lock.
    signals: std::sync::OnceLock<tokio::sync::broadcast::Sender<crate::Signal>>,
    leader: std::sync::OnceLock<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    announcer: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<()>>,
    finisher: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<finisher::FinishRequest>>,
    statistics: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<u64>>,
    status_reader: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<status_reader::StatusRequest>>,
    submitter: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<submitter::SubmitRequest>>,
}

impl PostgresStore {
    /// Connects to the database at `url` (a `postgres://` URL or a key=value string)
    /// and applies migrations.
    pub(crate) async fn open(url: &str) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|e| StoreError::Invalid(format!("invalid PostgreSQL URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(POOL_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("opsq");
        }
        // Every statement is prepared once per connection and reused. Left to choose,
        // PostgreSQL planned the submission insert afresh at each call (its plan for
        // the actual arrays always looked cheaper than the generic one), which took
        // 0.39 ms of a single submit's 0.62 ms in the database (server log, W2); with
        // its generic plan, 0.07 + 0.29 ms. The claim and outcome statements bound in
        // 0.03 ms already, so were not planned at each call. The listing, whose best plan depends
        // on its values, asks for custom plans itself. Options given in the URL come
        // after this one, so they win.
        let options = match config.get_options() {
            Some(given) => format!("-c plan_cache_mode=force_generic_plan {given}"),
            None => "-c plan_cache_mode=force_generic_plan".to_string(),
        };
        config.options(&options);
        // Settings given in the URL win; these are only defaults.
        if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
            config.keepalives_idle(TCP_TIMEOUT);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_TIMEOUT);
        }
        let description = describe(&config);

        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            // A broken connection is noticed by the query that uses it (and reported
            // as `Unavailable`); checking each one on checkout would cost a round trip.
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(MAX_CONNECTIONS)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_TIMEOUT))
            .create_timeout(Some(POOL_TIMEOUT))
            .recycle_timeout(Some(POOL_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Invalid(format!("cannot build the PostgreSQL pool: {e}")))?;
        let mut client = pool.get().await?;
        schema::migrate(&mut client).await?;
        drop(client);
        Ok(Self {
            pool,
            description,
            config,
            signals: Default::default(),
            leader: Default::default(),
            announcer: Default::default(),
            finisher: Default::default(),
            statistics: Default::default(),
            status_reader: Default::default(),
            submitter: Default::default(),
        })
    }

    /// Signals from every node sharing the database.
    pub(crate) fn subscribe(&self) -> tokio::sync::broadcast::Receiver<crate::Signal> {
        self.signals
            .get_or_init(|| {
                let (sender, _) = tokio::sync::broadcast::channel(1024);
                signals::spawn_listener(self.config.clone(), sender.clone());
                sender
            })
            .subscribe()
    }

    /// Whether this node holds the housekeeping lock now.
    pub(crate) fn is_housekeeper(&self) -> bool {
        let leader = self.leader.get_or_init(|| {
            let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            signals::spawn_leader_election(self.config.clone(), flag.clone());
            flag
        });
        leader.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn describe(&self) -> String {
        self.description.clone()
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await?;
        Ok(())
    }

    /// Tells every node, after the commit, that jobs are ready (coalesced; see
    /// [`signals::spawn_announcer`]).
    pub(crate) fn announce_ready(&self) {
        let _ = self.announcer.get_or_init(|| signals::spawn_announcer(self.pool.clone())).send(());
    }

    /// Counts jobs this node inserted, so the planner statistics follow bursts (see
    /// [`statistics`]).
    pub(crate) fn note_inserted(&self, count: usize) {
        if count == 0 {
            return;
        }
        let keeper = self.statistics.get_or_init(|| statistics::spawn_statistics_keeper(self.pool.clone()));
        let _ = keeper.send(count as u64);
    }

    /// A pooled connection, for one operation only: it goes back to the pool when
    /// dropped, so no operation holds one across unrelated waits.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        Ok(self.pool.get().await?)
    }
}

/// `postgres://user@host:port/db`, without the password, for logs.
fn describe(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let name = match host {
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string(),
            };
            match config.get_ports().get(i).or(config.get_ports().first()) {
                Some(port) => format!("{name}:{port}"),
                None => name,
            }
        })
        .collect();
    let user = config.get_user().map(|u| format!("{u}@")).unwrap_or_default();
    format!("postgres://{user}{}/{}", hosts.join(","), config.get_dbname().unwrap_or_default())
}

/// Statement helpers over a connection or a transaction. Every statement goes
/// through the connection's statement cache, so each is parsed and planned once per
/// connection rather than once per call.
pub(crate) async fn query(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, StoreError> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.query(&statement, params).await?)
}

pub(crate) async fn query_opt(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>, StoreError> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.query_opt(&statement, params).await?)
}

pub(crate) async fn query_one(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Row, StoreError> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.query_one(&statement, params).await?)
}

pub(crate) async fn execute(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, StoreError> {
    let statement = c.prepare_cached(sql).await?;
    Ok(c.execute(&statement, params).await?)
}
