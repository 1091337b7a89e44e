//! opsq's storage: one [`Store`] handle over the embedded SQLite store or a shared
//! PostgreSQL database, with the same operations and the same rules on each (one
//! conformance suite, `tests/conformance`, runs against both).
//!
//! Every write that a client is told about is committed before the call returns. On
//! SQLite, concurrent writes are grouped into few transactions (group commit), so
//! durability does not cost one fsync per job; PostgreSQL groups commits itself.

pub mod backoff;
mod dispatch;
mod error;
mod job_map;
mod owners;
mod postgres;
mod rules;
mod sqlite;
mod store;
mod types;

pub use dispatch::{Dispatch, ListedOffer};
pub use error::StoreError;
pub use owners::JobOwner;
pub use store::Store;

/// What nodes sharing a store tell each other (PostgreSQL `NOTIFY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Jobs became claimable: wake runners and long-polling workers.
    JobsReady,
    /// A cancel was requested for this running job: stop it if it runs here.
    Cancel(i64),
}
pub use types::{
    Account, ApiKey, CancelOutcome, Claim, ClaimRequest, HeartbeatAck, JobFilter, JobOutcome, JobStatusRow,
    KindSettings, NewUser, NextJob, Rescued, Resolution, SubmitOutcome, UnfinishedCounts, User, V1Session,
};

/// The current wall-clock time in milliseconds since the Unix epoch.
pub fn now_ms() -> opsq_domain::Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
