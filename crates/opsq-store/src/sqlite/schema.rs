//! Embedded migrations, applied in order at open; `PRAGMA user_version` records how
//! many have run, so opening an up-to-date store costs one read.

use rusqlite::Connection;

use crate::StoreError;

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
    created_at INTEGER NOT NULL
);
CREATE INDEX accounts_parent ON accounts(parent);

CREATE TABLE users (
    username      TEXT PRIMARY KEY COLLATE NOCASE,
    account       TEXT NOT NULL REFERENCES accounts(alias),
    password_hash TEXT NOT NULL,
    roles         TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE api_keys (
    key           TEXT PRIMARY KEY,
    account       TEXT NOT NULL REFERENCES accounts(alias),
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE jobs (
    number           INTEGER PRIMARY KEY AUTOINCREMENT,
    account          TEXT NOT NULL,
    location         TEXT NOT NULL,
    kind             TEXT NOT NULL,
    title            TEXT NOT NULL,
    payload          TEXT NOT NULL,
    status           TEXT NOT NULL,
    percent          INTEGER NOT NULL DEFAULT 0,
    step_number      INTEGER NOT NULL DEFAULT 0,
    step_desc        TEXT NOT NULL DEFAULT '',
    status_at        INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    run_after        INTEGER NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    safe_to_repeat   INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_token      TEXT,
    lease_until      INTEGER,
    result           TEXT,
    error            TEXT,
    idempotency_key  TEXT,
    request_hash     TEXT,
    submitter        TEXT NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX jobs_idempotency ON jobs(account, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_waiting ON jobs(kind, run_after) WHERE status IN ('notStarted', 'resumed');
CREATE INDEX jobs_leased ON jobs(lease_until) WHERE status = 'executing';
CREATE INDEX jobs_by_account ON jobs(account, number);

CREATE TABLE job_events (
    id      INTEGER PRIMARY KEY,
    job     INTEGER NOT NULL,
    at      INTEGER NOT NULL,
    status  TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX job_events_by_job ON job_events(job, id);
"#,
    r#"
CREATE TABLE v1_sessions (
    token_hash TEXT PRIMARY KEY,
    api_key    TEXT NOT NULL,
    account    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX v1_sessions_by_expiry ON v1_sessions(expires_at);
"#,
    r#"
ALTER TABLE jobs ADD COLUMN cancel_reason TEXT;
CREATE TABLE kinds (
    kind           TEXT PRIMARY KEY,
    lease_ms       INTEGER,
    max_attempts   INTEGER,
    safe_to_repeat INTEGER,
    updated_at     INTEGER NOT NULL
);
CREATE INDEX jobs_finished ON jobs(finished_at) WHERE status IN ('succeeded', 'failed');
CREATE INDEX jobs_unknown ON jobs(status_at) WHERE status = 'unknown';
"#,
];

pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let applied: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let skip = crate::rules::migrations_to_skip(applied, MIGRATIONS.len())?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(skip) {
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", index + 1))?;
    }
    tx.commit()?;
    Ok(())
}
