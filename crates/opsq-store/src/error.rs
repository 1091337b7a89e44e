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
