//! Whose each job is (its account and location), kept in memory for the calls that
//! only need to know whether a worker may touch a job: its heartbeat, outcome or
//! report.
//!
//! A worker reports on jobs it claimed moments ago, so their rows had just changed
//! and every such check was a read the status cache could not answer: on SQLite a
//! read transaction that found the database changed (dropping the reader's page
//! cache and its memory map), on PostgreSQL a statement ahead of the outcome's own.
//! A job's account and location never change and its number is never reused, so
//! what is kept here is exact with no invalidation, on every node sharing a store.
//! A job pruned since it was kept is still answered here; the store refuses the
//! call that follows (its row is gone), as it would have a moment later anyway.
//!
//! Should a store move back in time under running nodes (a PostgreSQL failover to a
//! replica that lost its last commits, a point-in-time restore), numbers are handed
//! out again and an entry can name a lost job's owner. The calls checked here then
//! still need the attempt's lease token, which only the new job's own claim handed
//! out, and that claim replaces the entry: a stale entry can refuse a worker, never
//! let one in. Calls without a lease token (a cancel) read the job instead.

use opsq_domain::{AccountAlias, Job, Location};

use crate::job_map::JobMap;

/// A job's owner: what access checks need, and never changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOwner {
    pub account: AccountAlias,
    pub location: Location,
}

impl JobOwner {
    pub(crate) fn of(job: &Job) -> Self {
        Self { account: job.account.clone(), location: job.location.clone() }
    }
}

/// The owners kept, by job number.
pub(crate) type JobOwners = JobMap<JobOwner>;
