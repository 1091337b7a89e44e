//! The embedded store: one SQLite file in WAL mode.
//!
//! One write connection commits whatever writes are waiting in one transaction (group
//! commit); each write runs in its own savepoint so one failing write does not undo
//! its neighbours. A writer thread commits what queues; a submission that finds it
//! idle commits on its own thread instead (see [`SqliteStore::write_then`]).
//! Reads use a small pool of read-only connections, which WAL lets run while the
//! writer commits.

mod accounts;
mod control;
mod finisher;
mod history;
mod housekeeping;
mod jobs;
mod release;
mod rows;
mod schema;
mod status_cache;
mod wal_space;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};

use crate::StoreError;

/// Most writes a single transaction takes before it commits.
const MAX_BATCH: usize = 512;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A queued write; it gets no connection when the transaction could not even start.
type WriteOp = Box<dyn FnOnce(Option<&Connection>) -> (bool, Completion) + Send>;

pub(crate) struct SqliteStore {
    path: PathBuf,
    writer: mpsc::UnboundedSender<WriteOp>,
    committer: Arc<Committer>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    statuses: Arc<status_cache::StatusCache>,
    /// Successes waiting to be recorded together (see `finisher`).
    successes: Arc<finisher::SuccessQueue>,
    /// Where pruning goes on (see `housekeeping`).
    prune_cursor: housekeeping::PruneCursor,
}

/// The write connection and what every commit must keep current, shared by the
/// writer thread and the callers that commit while it is idle.
struct Committer {
    conn: Mutex<WriteConnection>,
    /// Set while the writer thread waits for work: nothing is queued, so a caller
    /// may commit its write itself.
    writer_idle: AtomicBool,
    /// Every job row a transaction changes, so the status cache can drop it.
    touched: Arc<Mutex<Vec<i64>>>,
    statuses: Arc<status_cache::StatusCache>,
}

struct WriteConnection {
    conn: Connection,
    /// `PRAGMA data_version` when last looked: it moves only when another
    /// connection (another process) commits.
    seen_version: Option<i64>,
}

impl Committer {
    /// Commits `batch` in one transaction on the connection `guard` holds.
    fn commit(&self, guard: &mut WriteConnection, batch: impl Iterator<Item = WriteOp>) {
        let version = guard
            .conn
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut statement| statement.query_row([], |r| r.get::<_, i64>(0)))
            .ok();
        if version != guard.seen_version {
            self.statuses.clear();
            guard.seen_version = version;
        }
        // The cache forgets what the transaction changed before any caller hears of
        // the commit, so a caller's next status read sees its own write.
        commit_batch(&guard.conn, batch, || {
            self.statuses.committed(&mut self.touched.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WriteConnection> {
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl SqliteStore {
    pub(crate) fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let io_error = |source| StoreError::Io { path: data_dir.display().to_string(), source };
        if !data_dir.exists() {
            std::fs::create_dir_all(data_dir).map_err(io_error)?;
            // The store holds password hashes and the token signing key.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(io_error)?;
            }
        }
        let path = data_dir.join("opsq.db");
        let mut write_conn = Connection::open(&path)?;
        write_conn.busy_timeout(BUSY_TIMEOUT)?;
        plan_once(&write_conn)?;
        write_conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;
             PRAGMA temp_store=MEMORY; PRAGMA wal_autocheckpoint={};",
            wal_space::AUTOCHECKPOINT_PAGES
        ))?;
        schema::migrate(&mut write_conn)?;
        wal_space::ensure(&write_conn, &data_dir.join("opsq.db-wal"))?;

        let reader_count = std::thread::available_parallelism().map_or(4, |n| n.get() * 2).max(4);
        let readers =
            (0..reader_count).map(|_| open_reader(&path).map(Mutex::new)).collect::<Result<Vec<_>, _>>()?;

        // Every job row a transaction changes, so the status cache can drop it.
        let touched: Arc<Mutex<Vec<i64>>> = Arc::default();
        {
            let touched = touched.clone();
            write_conn.update_hook(Some(
                move |_: rusqlite::hooks::Action, _: &str, table: &str, rowid: i64| {
                    if table == "jobs" {
                        touched.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(rowid);
                    }
                },
            ));
        }
        write_conn.set_prepared_statement_cache_capacity(64);
        let statuses = Arc::new(status_cache::StatusCache::default());
        let seen_version = write_conn.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0)).ok();
        let committer = Arc::new(Committer {
            conn: Mutex::new(WriteConnection { conn: write_conn, seen_version }),
            writer_idle: AtomicBool::new(false),
            touched,
            statuses: statuses.clone(),
        });
        let (writer, ops) = mpsc::unbounded_channel();
        let thread_committer = committer.clone();
        std::thread::Builder::new()
            .name("opsq-sqlite-writer".into())
            .spawn(move || run_writer(&thread_committer, ops))
            .map_err(|source| StoreError::Io { path: path.display().to_string(), source })?;
        Ok(Self {
            path,
            writer,
            committer,
            readers,
            next_reader: AtomicUsize::new(0),
            statuses,
            successes: Arc::default(),
            prune_cursor: Arc::default(),
        })
    }

    pub(crate) fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    pub(crate) fn ping(&self) -> Result<(), StoreError> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())))
    }

    /// Runs a read on a pooled read-only connection. Point reads take microseconds, so
    /// they run on the caller's thread instead of paying for a thread hop.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        let n = self.readers.len();
        for i in 0..n {
            if let Ok(conn) = self.readers[(start + i) % n].try_lock() {
                return f(&conn).map_err(StoreError::from);
            }
        }
        let conn = self.readers[start % n].lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&conn).map_err(StoreError::from)
    }

    /// Queues a write for the writer thread and waits until its transaction committed.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.write_with(f, |_| {}, Commit::Queued).await
    }

    /// A submission's write: [`Self::write`], with `committed` run once the write
    /// committed (it runs even if the caller stopped waiting meanwhile), committed
    /// on the caller's thread when the writer thread is idle.
    ///
    /// At a low rate every submission found the writer thread asleep, and waking it,
    /// then waking the runtime again for the answer and for the runner the job was
    /// dispatched to, took 0.34 ms of the 1.43 ms from a submission to its job's
    /// start in a syscall trace (0.11 ms to wake the writer, 0.23 ms from the sync
    /// to the handler); committing in place took about 6% off W2's p50
    /// (bench/RESULTS.md, step 23). Committing in place blocks one runtime thread for
    /// the commit, so only submissions do it, and only when nothing else is waiting
    /// to be written: under load the writer thread groups commits as before. (A
    /// short write by another process, `opsq admin`, can hold it up to the busy
    /// timeout, as it would the writer thread.)
    pub(crate) async fn write_then<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        committed: impl FnOnce(&mut T) + Send + 'static,
    ) -> Result<T, StoreError> {
        self.write_with(f, committed, Commit::InPlaceIfIdle).await
    }

    async fn write_with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        committed: impl FnOnce(&mut T) + Send + 'static,
        how: Commit,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        let op: WriteOp = Box::new(move |conn| {
            let mut result = match conn {
                Some(conn) => f(conn),
                None => Err(StoreError::Unavailable("could not start a write transaction".into())),
            };
            let ok = result.is_ok();
            let completion: Completion = Box::new(move |outcome: Result<(), StoreError>| {
                if let (Ok(()), Ok(value)) = (&outcome, &mut result) {
                    committed(value);
                }
                let _ = tx.send(outcome.and(result));
            });
            (ok, completion)
        });
        self.commit_op(op, how).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Hands `op` to the writer thread, or commits it here (see [`Commit`]); gives it
    /// back if the writer is gone.
    fn commit_op(&self, op: WriteOp, how: Commit) -> Result<(), WriteOp> {
        if how == Commit::InPlaceIfIdle && self.committer.writer_idle.load(Ordering::SeqCst) {
            if let Ok(mut guard) = self.committer.conn.try_lock() {
                self.committer.commit(&mut guard, std::iter::once(op));
                return Ok(());
            }
        }
        self.writer.send(op).map_err(|mpsc::error::SendError(op)| op)
    }
}

/// Where a write commits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Commit {
    /// On the writer thread, grouped with whatever else is waiting.
    Queued,
    /// On the caller's thread when the writer thread waits for work (nothing to
    /// group it with), else queued.
    InPlaceIfIdle,
}

/// Plans each cached statement once, whatever its parameters. Otherwise SQLite
/// re-prepares any statement whose plan looked at a bound value (partial-index and
/// GLOB checks do) every time that parameter is bound: the claim statement was being
/// parsed and planned again on every claim.
fn plan_once(conn: &Connection) -> Result<(), StoreError> {
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    plan_once(&conn)?;
    // Reads go through the memory map instead of a read() call per page.
    conn.execute_batch("PRAGMA mmap_size = 268435456;")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn run_writer(committer: &Committer, mut ops: mpsc::UnboundedReceiver<WriteOp>) {
    let mut batch: Vec<WriteOp> = Vec::with_capacity(MAX_BATCH);
    loop {
        committer.writer_idle.store(true, Ordering::SeqCst);
        let Some(first) = ops.blocking_recv() else { break };
        committer.writer_idle.store(false, Ordering::SeqCst);
        let mut guard = committer.lock();
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match ops.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        committer.commit(&mut guard, batch.drain(..));
    }
    committer.writer_idle.store(false, Ordering::SeqCst);
}

/// Runs one of the writer's fixed statements from the statement cache: parsing
/// `SAVEPOINT`/`RELEASE` afresh for every write cost more than most writes.
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Runs a batch in one transaction; `ended` runs once it committed or rolled back,
/// before any caller is told the outcome.
fn commit_batch(conn: &Connection, batch: impl Iterator<Item = WriteOp>, ended: impl FnOnce()) {
    let mut completions: Vec<Completion> = Vec::new();
    if let Err(err) = exec(conn, "BEGIN IMMEDIATE") {
        tracing::error!(error = %err, "could not start a write transaction");
        for op in batch {
            let (_, completion) = op(None);
            completion(Ok(()));
        }
        return;
    }
    for op in batch {
        if exec(conn, "SAVEPOINT op").is_err() {
            continue;
        }
        // A panicking write must not take the writer thread (and every later write)
        // down: its savepoint is rolled back and its caller sees the store as closed.
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| op(Some(conn))));
        let (ok, completion) = match ran {
            Ok((ok, completion)) => (ok, Some(completion)),
            Err(_) => {
                tracing::error!("a store write panicked; it was rolled back");
                (false, None)
            }
        };
        let rolled_back = if ok { Ok(()) } else { exec(conn, "ROLLBACK TO op") };
        if let Err(err) = rolled_back.and_then(|()| exec(conn, "RELEASE op")) {
            tracing::error!(error = %err, "could not end a savepoint");
        }
        completions.extend(completion);
    }
    let committed = exec(conn, "COMMIT").map_err(StoreError::from);
    if committed.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    ended();
    for completion in completions {
        let outcome = match &committed {
            Ok(()) => Ok(()),
            Err(err) => Err(StoreError::Unavailable(err.to_string())),
        };
        completion(outcome);
    }
}

/// A job row written straight into `jobs`, past submission, for unit tests that need
/// rows a store would take long to make (tens of thousands, statuses without their
/// history): `kind` and `status` as given, created at `created_at` (ms) and due at 10,
/// ended at `finished_at`.
#[cfg(test)]
fn insert_test_job(
    c: &Connection,
    kind: &str,
    status: &str,
    created_at: i64,
    finished_at: Option<i64>,
) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO jobs (account, location, kind, title, payload, status, status_at, created_at, run_after,
                           max_attempts, safe_to_repeat, submitter, finished_at)
         VALUES ('ACME', 'VA1', ?1, '', 'null', ?2, 10, ?3, 10, 1, 1, 'u', ?4)",
    )?
    .execute(rusqlite::params![kind, status, created_at, finished_at])?;
    Ok(())
}
