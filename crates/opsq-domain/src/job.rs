use serde::{Deserialize, Serialize};

use crate::{AccountAlias, JobKind, JobStatus, Location, Millis, StatusId};

/// Where a running job says it is: percent, step number and a human description.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub percent: u8,
    pub step_number: u32,
    pub description: String,
}

/// Everything needed to accept a job, before the store gives it a number.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub account: AccountAlias,
    pub location: Location,
    pub kind: JobKind,
    pub title: String,
    pub payload: serde_json::Value,
    pub max_attempts: u32,
    /// Whether running it twice is harmless; decides `resumed` versus `unknown` when
    /// a worker is lost mid-run.
    pub safe_to_repeat: bool,
    pub idempotency_key: Option<String>,
    /// A digest of the submission, compared when the idempotency key is reused.
    pub request_hash: Option<String>,
    pub submitter: String,
}

/// A job as stored, with every field of PRODUCT.md §1.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    pub number: i64,
    pub account: AccountAlias,
    pub location: Location,
    pub kind: JobKind,
    pub title: String,
    pub payload: serde_json::Value,
    pub status: JobStatus,
    pub progress: Progress,
    pub status_at: Millis,
    pub created_at: Millis,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    pub run_after: Millis,
    pub attempt: u32,
    pub max_attempts: u32,
    pub safe_to_repeat: bool,
    pub result: Option<serde_json::Value>,
    pub error: Option<String>,
    pub idempotency_key: Option<String>,
    pub submitter: String,
    pub cancel_requested: bool,
}

impl Job {
    pub fn status_id(&self) -> StatusId {
        StatusId::new(self.location.clone(), self.number)
    }
}

/// One transition in a job's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobEvent {
    pub at: Millis,
    pub status: JobStatus,
    pub attempt: u32,
    pub message: String,
}
