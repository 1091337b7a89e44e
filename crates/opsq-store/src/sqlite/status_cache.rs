//! The statuses clients poll, kept in memory so a status read costs a hash lookup
//! instead of a read transaction.
//!
//! Exact, not eventually consistent: the writer connection's update hook records
//! every job row a transaction touches, and after the commit those entries are
//! dropped. A read that raced a commit (it started before the commit, and would
//! store what it read after the entries were dropped) is not stored: each entry is
//! stored only if no commit ended since the read began. Another process writing
//! the file (`opsq admin` with `--data-dir`) empties the whole cache: the writer
//! sees `PRAGMA data_version` move before its next transaction, and housekeeping
//! writes every second, so such a change shows within about a second.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::job_map::JobMap;
use crate::types::JobStatusRow;

#[derive(Default)]
pub(crate) struct StatusCache {
    rows: JobMap<JobStatusRow>,
    /// Commits whose touched jobs were dropped so far.
    commits: AtomicU64,
}

/// Where a read stood when it began, for [`StatusCache::store`].
pub(crate) struct ReadStart(u64);

impl StatusCache {
    /// Call before reading the database.
    pub(crate) fn begin_read(&self) -> ReadStart {
        ReadStart(self.commits.load(Ordering::Acquire))
    }

    pub(crate) fn get(&self, number: i64) -> Option<JobStatusRow> {
        self.rows.get(number)
    }

    /// Keeps what a read found, unless a commit ended since it began.
    pub(crate) fn store(&self, start: ReadStart, row: JobStatusRow) {
        let mut shard = self.rows.shard(row.number);
        // Checked under the shard lock, which `committed` also takes: a commit either
        // ended before this check (the row is not stored) or drops it afterwards.
        if self.commits.load(Ordering::Acquire) != start.0 {
            return;
        }
        JobMap::insert_into(&mut shard, row.number, row);
    }

    /// Drops the jobs a transaction touched; call once it committed or rolled back.
    pub(crate) fn committed(&self, touched: &mut Vec<i64>) {
        // A transaction that changed no job cannot have raced a status read.
        if touched.is_empty() {
            return;
        }
        // Every shard stays locked until the commit count has moved: a read that
        // began before must not store between the two.
        let mut shards = self.rows.lock_all();
        for number in touched.drain(..) {
            JobMap::remove_from(&mut shards, number);
        }
        self.commits.fetch_add(1, Ordering::AcqRel);
    }

    /// Forgets everything: the database changed in ways this process did not see.
    pub(crate) fn clear(&self) {
        let mut shards = self.rows.lock_all();
        shards.iter_mut().for_each(|shard| shard.clear());
        self.commits.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use opsq_domain::{AccountAlias, JobStatus, Location};

    use super::*;

    fn row(number: i64, status: JobStatus) -> JobStatusRow {
        JobStatusRow {
            number,
            account: AccountAlias::parse("ACME").unwrap(),
            location: Location::parse("WA1").unwrap(),
            status,
        }
    }

    #[test]
    fn a_commit_drops_what_it_touched() {
        let cache = StatusCache::default();
        cache.store(cache.begin_read(), row(1, JobStatus::NotStarted));
        cache.store(cache.begin_read(), row(2, JobStatus::NotStarted));
        cache.committed(&mut vec![1]);
        assert_eq!(cache.get(1), None);
        assert_eq!(cache.get(2).map(|r| r.status), Some(JobStatus::NotStarted));
    }

    #[test]
    fn a_commit_that_touched_no_job_does_not_fence_reads() {
        let cache = StatusCache::default();
        let start = cache.begin_read();
        cache.committed(&mut Vec::new());
        cache.store(start, row(1, JobStatus::Executing));
        assert_eq!(cache.get(1).map(|r| r.status), Some(JobStatus::Executing));
    }

    #[test]
    fn a_read_that_raced_a_commit_is_not_kept() {
        let cache = StatusCache::default();
        let start = cache.begin_read();
        cache.committed(&mut vec![7]);
        cache.store(start, row(1, JobStatus::Executing));
        assert_eq!(cache.get(1), None);
    }

    #[test]
    fn clear_forgets_everything_and_fences_reads_in_flight() {
        let cache = StatusCache::default();
        cache.store(cache.begin_read(), row(1, JobStatus::Unknown));
        let start = cache.begin_read();
        cache.clear();
        cache.store(start, row(2, JobStatus::Unknown));
        assert_eq!((cache.get(1), cache.get(2)), (None, None));
    }

    #[test]
    fn a_full_shard_starts_over() {
        let cache = StatusCache::default();
        let same_shard = |i: usize| (i * 16) as i64;
        for i in 0..=crate::job_map::SHARD_CAPACITY {
            cache.store(cache.begin_read(), row(same_shard(i), JobStatus::Succeeded));
        }
        assert_eq!(cache.rows.shard(0).len(), 1);
    }
}
