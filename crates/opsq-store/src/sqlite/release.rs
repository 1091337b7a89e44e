//! A worker hands back a job it claimed but never started (it was shutting down):
//! the job runs again at once, and the attempt does not count (see `rules::release`).
//! Recorded as an outcome is, with the attempt taken off the job's count.

use opsq_domain::Job;

use super::jobs::{record_finished, running_attempt};
use super::SqliteStore;
use crate::{now_ms, rules, StoreError};

impl SqliteStore {
    pub(crate) async fn release(&self, number: i64, lease_token: String) -> Result<Job, StoreError> {
        let job = self
            .write(move |c| {
                let now = now_ms();
                let running = running_attempt(c, number, &lease_token, now)?;
                let released =
                    rules::release(running.attempt, running.cancel_reason.as_deref(), running.error, now)?;
                record_finished(c, number, &lease_token, &released.finished, released.uncounted, now)
            })
            .await?;
        Ok(job.decode()?)
    }
}
