//! A bounded in-memory map from job numbers to what is kept about them, shared by the
//! embedded store's status cache and the map of job owners.
//!
//! Sharded so that many callers at once rarely wait on one lock; bounded by starting
//! a full shard over, since an entry lost that way costs only the read it saved.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

const SHARDS: usize = 16;
/// Entries per shard before the shard starts over: at most 65,536 jobs in all.
pub(crate) const SHARD_CAPACITY: usize = 4096;

pub(crate) type Shard<'a, V> = MutexGuard<'a, HashMap<i64, V>>;

pub(crate) struct JobMap<V> {
    shards: [Mutex<HashMap<i64, V>>; SHARDS],
}

impl<V> Default for JobMap<V> {
    fn default() -> Self {
        Self { shards: std::array::from_fn(|_| Mutex::default()) }
    }
}

impl<V: Clone> JobMap<V> {
    pub(crate) fn get(&self, number: i64) -> Option<V> {
        self.shard(number).get(&number).cloned()
    }

    /// Keeps (or replaces) `number`'s entry.
    pub(crate) fn insert(&self, number: i64, value: V) {
        Self::insert_into(&mut self.shard(number), number, value);
    }
}

impl<V> JobMap<V> {
    /// The shard that holds `number`, locked.
    pub(crate) fn shard(&self, number: i64) -> Shard<'_, V> {
        lock(&self.shards[index(number)])
    }

    /// Every shard, locked in order (index them with [`JobMap::remove_from`]).
    pub(crate) fn lock_all(&self) -> Vec<Shard<'_, V>> {
        self.shards.iter().map(lock).collect()
    }

    /// Keeps `value` in `number`'s locked shard, starting the shard over when full.
    pub(crate) fn insert_into(shard: &mut Shard<'_, V>, number: i64, value: V) {
        if shard.len() >= SHARD_CAPACITY && !shard.contains_key(&number) {
            shard.clear();
        }
        shard.insert(number, value);
    }

    /// Drops `number`'s entry from the shards [`JobMap::lock_all`] locked.
    pub(crate) fn remove_from(shards: &mut [Shard<'_, V>], number: i64) {
        shards[index(number)].remove(&number);
    }
}

fn index(number: i64) -> usize {
    number.rem_euclid(SHARDS as i64) as usize
}

fn lock<V>(shard: &Mutex<HashMap<i64, V>>) -> Shard<'_, V> {
    shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_value_it_was_last_given() {
        let map = JobMap::default();
        assert_eq!(map.get(7), None);
        map.insert(7, "first");
        map.insert(7, "second");
        assert_eq!((map.get(7), map.get(8)), (Some("second"), None));
    }

    #[test]
    fn a_full_shard_starts_over_instead_of_growing() {
        let map = JobMap::default();
        let same_shard = |i: usize| (i * SHARDS) as i64;
        for i in 0..SHARD_CAPACITY {
            map.insert(same_shard(i), i);
        }
        map.insert(same_shard(0), 0);
        assert_eq!(map.shard(0).len(), SHARD_CAPACITY, "replacing an entry of a full shard keeps the rest");
        map.insert(same_shard(SHARD_CAPACITY), SHARD_CAPACITY);
        assert_eq!(map.shard(0).len(), 1, "the shard started over when full");
        assert_eq!(
            (map.get(same_shard(SHARD_CAPACITY)), map.get(same_shard(0))),
            (Some(SHARD_CAPACITY), None)
        );
    }

    #[test]
    fn removes_through_the_locked_shards() {
        let map = JobMap::default();
        map.insert(1, 'a');
        map.insert(2, 'b');
        JobMap::remove_from(&mut map.lock_all(), 1);
        assert_eq!((map.get(1), map.get(2)), (None, Some('b')));
    }
}
