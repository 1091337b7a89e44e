use thiserror::Error;

/// Why a store operation did not happen. Callers map these to HTTP statuses in one
/// place; the variants say what went wrong in terms a caller can act on.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{0} already exists")]
    Duplicate(String),
    #[error("{0} was not found")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    /// A write from an attempt that no longer holds the job's lease (fencing).
    #[error("the lease on job {0} is no longer held by this attempt")]
    LeaseLost(i64),
    #[error("the store is shutting down")]
    Closed,
    #[error("the database is busy or unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("cannot open the data directory {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match err.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                StoreError::Unavailable(err.to_string())
            }
            Some(ErrorCode::ConstraintViolation) => StoreError::Duplicate(err.to_string()),
            _ => StoreError::Database(err.to_string()),
        }
    }
}

impl From<tokio_postgres::Error> for StoreError {
    /// Unique violations are duplicates; anything that says the server is gone, busy
    /// or out of resources is `Unavailable` (a caller may retry, the server answers
    /// 503); the rest are plain database errors.
    fn from(err: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        if let Some(db) = err.as_db_error() {
            let text = match db.detail() {
                Some(detail) => format!("{} ({detail})", db.message()),
                None => db.message().to_string(),
            };
            let code = db.code();
            return if *code == SqlState::UNIQUE_VIOLATION {
                StoreError::Duplicate(text)
            } else if code.code().starts_with("08")
                || code.code().starts_with("53")
                || code.code().starts_with("57P")
                || [
                    SqlState::T_R_SERIALIZATION_FAILURE,
                    SqlState::T_R_DEADLOCK_DETECTED,
                    SqlState::LOCK_NOT_AVAILABLE,
                    SqlState::QUERY_CANCELED,
                ]
                .contains(code)
            {
                StoreError::Unavailable(text)
            } else {
                StoreError::Database(text)
            };
        }
        // Without a server error, the failure is the connection's (refused, reset,
        // closed, timed out) unless it is about converting values.
        let io = std::error::Error::source(&err).is_some_and(|s| s.is::<std::io::Error>());
        let text = err.to_string();
        let connection = io
            || err.is_closed()
            || text.starts_with("error connecting")
            || text.starts_with("error communicating")
            || text.starts_with("timeout");
        let text = match std::error::Error::source(&err) {
            Some(source) => format!("{text}: {source}"),
            None => text,
        };
        if connection {
            StoreError::Unavailable(text)
        } else {
            StoreError::Database(text)
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    /// A pool that cannot hand out a connection in time means the database is down
    /// or saturated: `Unavailable`, never a hang.
    fn from(err: deadpool_postgres::PoolError) -> Self {
        use deadpool_postgres::PoolError;
        match err {
            PoolError::Backend(err) => match StoreError::from(err) {
                StoreError::Database(text) => StoreError::Unavailable(text),
                other => other,
            },
            PoolError::Closed => StoreError::Closed,
            PoolError::Timeout(kind) => {
                StoreError::Unavailable(format!("no database connection became available in time ({kind:?})"))
            }
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}
