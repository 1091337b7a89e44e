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
    // History entries derived from the job row (see `history`): rows written before
    // this have all their entries in `job_events`, so they start with none derived.
    r#"
ALTER TABLE jobs ADD COLUMN attempt_started_at INTEGER;
ALTER TABLE jobs ADD COLUMN derived_events INTEGER NOT NULL DEFAULT 0;
"#,
    // Pruning walks job numbers instead (see `housekeeping`): every success paid for
    // this index's update.
    r#"
DROP INDEX jobs_finished;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Migration 4 derives history entries from job rows; a store written before it
    /// has every entry as a row, and must read back each entry once, in order.
    #[test]
    fn upgrade_keeps_the_history_written_before_it() {
        let dir = tempfile::TempDir::new().expect("temporary directory");
        let mut conn = Connection::open(dir.path().join("opsq.db")).expect("open");
        for sql in &MIGRATIONS[..3] {
            conn.execute_batch(sql).expect("an earlier migration");
        }
        conn.execute_batch(
            "PRAGMA user_version = 3;
             INSERT INTO jobs (number, account, location, kind, title, payload, status, status_at,
                               created_at, run_after, attempt, max_attempts, safe_to_repeat, submitter,
                               finished_at)
             VALUES (7, 'ACME', 'VA1', 't.work', '', 'null', 'succeeded', 30, 10, 10, 1, 1, 1, 'u', 30);
             INSERT INTO job_events (job, at, status, attempt, message) VALUES
                 (7, 10, 'notStarted', 0, 'accepted'),
                 (7, 20, 'executing', 1, 'attempt 1 started by w-1'),
                 (7, 30, 'succeeded', 1, 'succeeded');",
        )
        .expect("a job written by the earlier schema");

        migrate(&mut conn).expect("upgrade");

        let events = super::super::history::read(&conn, 7).expect("read the history");
        let entries: Vec<(i64, &str)> = events.iter().map(|e| (e.at, e.message.as_str())).collect();
        assert_eq!(entries, [(10, "accepted"), (20, "attempt 1 started by w-1"), (30, "succeeded")]);
    }
}
