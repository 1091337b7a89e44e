//! Embedded migrations, applied in order at open. `opsq_schema_migrations` records
//! the versions applied, and the whole run happens in one transaction that first
//! takes a transaction-level advisory lock, so nodes starting at once apply each
//! migration exactly once: the others wait, then find nothing left to do.
//!
//! Tables and columns are named as in the SQLite store. Times are `BIGINT`
//! milliseconds from opsq's own clock (never the database's `now()`), so both stores
//! agree on what a timestamp means; JSON is `TEXT` (see `rows::json_at`).

use deadpool_postgres::Client;

use crate::{now_ms, StoreError};

/// The advisory lock key of migrations: "opsq" in ASCII, then schema lock number 1.
/// Any constant works as long as every opsq build uses the same one.
const MIGRATION_LOCK: i64 = 0x6f70_7371_0000_0001;

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE accounts (
    alias      TEXT PRIMARY KEY,
    location   TEXT NOT NULL,
    parent     TEXT REFERENCES accounts(alias),
    created_at BIGINT NOT NULL
);
CREATE INDEX accounts_parent ON accounts(parent);

-- SQLite matches usernames with COLLATE NOCASE, which folds ASCII letters only;
-- username_key is the name with ASCII letters lowered (done in Rust), so both stores
-- agree on which names collide, and username keeps the spelling given.
CREATE TABLE users (
    username_key  TEXT PRIMARY KEY,
    username      TEXT NOT NULL,
    account       TEXT NOT NULL REFERENCES accounts(alias),
    password_hash TEXT NOT NULL,
    roles         TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);

CREATE TABLE api_keys (
    key           TEXT PRIMARY KEY,
    account       TEXT NOT NULL REFERENCES accounts(alias),
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);

-- An identity column never hands a number out twice, even after pruning (as
-- SQLite's AUTOINCREMENT).
CREATE TABLE jobs (
    number           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account          TEXT NOT NULL,
    location         TEXT NOT NULL,
    kind             TEXT NOT NULL,
    title            TEXT NOT NULL,
    payload          TEXT NOT NULL,
    status           TEXT NOT NULL,
    percent          INTEGER NOT NULL DEFAULT 0,
    step_number      INTEGER NOT NULL DEFAULT 0,
    step_desc        TEXT NOT NULL DEFAULT '',
    status_at        BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    run_after        BIGINT NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    safe_to_repeat   BOOLEAN NOT NULL,
    lease_owner      TEXT,
    lease_token      TEXT,
    lease_until      BIGINT,
    result           TEXT,
    error            TEXT,
    idempotency_key  TEXT,
    request_hash     TEXT,
    submitter        TEXT NOT NULL,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    cancel_reason    TEXT
);
CREATE UNIQUE INDEX jobs_idempotency ON jobs(account, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- Claims filter kinds with a regex, which no index serves, so the waiting index is
-- in claim order instead: a claim walks it from the oldest runnable job and stops
-- after `limit` matches.
CREATE INDEX jobs_waiting ON jobs(run_after, number) WHERE status IN ('notStarted', 'resumed');
CREATE INDEX jobs_leased ON jobs(lease_until) WHERE status = 'executing';
CREATE INDEX jobs_by_account ON jobs(account, number);
CREATE INDEX jobs_finished ON jobs(finished_at) WHERE status IN ('succeeded', 'failed');
CREATE INDEX jobs_unknown ON jobs(status_at) WHERE status = 'unknown';

CREATE TABLE job_events (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job     BIGINT NOT NULL,
    at      BIGINT NOT NULL,
    status  TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX job_events_by_job ON job_events(job, id);

CREATE TABLE v1_sessions (
    token_hash TEXT PRIMARY KEY,
    api_key    TEXT NOT NULL,
    account    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX v1_sessions_by_expiry ON v1_sessions(expires_at);

CREATE TABLE kinds (
    kind           TEXT PRIMARY KEY,
    lease_ms       BIGINT,
    max_attempts   INTEGER,
    safe_to_repeat BOOLEAN,
    updated_at     BIGINT NOT NULL
);
"#,
    // History entries derived from the job row (see `history`): rows written before
    // this have all their entries in `job_events`, so they start with none derived.
    r#"
ALTER TABLE jobs ADD COLUMN attempt_started_at BIGINT,
                 ADD COLUMN derived_events INTEGER NOT NULL DEFAULT 0;
"#,
    // Waiting jobs by kind, in claim order within each kind (as in the SQLite store):
    // a claim walks only its own kinds (see `claims::claim_ctes`). The index it
    // replaces was in claim order across kinds, so a claim for a kind with nothing
    // waiting read every other kind's waiting job.
    r#"
DROP INDEX jobs_waiting;
CREATE INDEX jobs_waiting ON jobs(kind, run_after, number) WHERE status IN ('notStarted', 'resumed');
"#,
];

pub(crate) async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS opsq_schema_migrations (
             version    INTEGER PRIMARY KEY,
             applied_at BIGINT NOT NULL
         )",
    )
    .await?;
    let applied: i32 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM opsq_schema_migrations", &[])
        .await?
        .try_get(0)?;
    let skip = crate::rules::migrations_to_skip(i64::from(applied), MIGRATIONS.len())?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(skip) {
        tx.batch_execute(sql).await?;
        let version = index as i32 + 1;
        tx.execute(
            "INSERT INTO opsq_schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[&version, &now_ms()],
        )
        .await?;
        tracing::info!(version, "applied a PostgreSQL schema migration");
    }
    tx.commit().await?;
    Ok(())
}
