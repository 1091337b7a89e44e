//! Short-lived copies of rows every submission reads and operators rarely change
//! (a kind's defaults, an account's location), so a submit costs one store write
//! instead of a write and two reads. A change made elsewhere (`opsq admin kind set`,
//! another node) shows within [`RECENT_TTL`].

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a copy is trusted.
pub const RECENT_TTL: Duration = Duration::from_secs(1);
/// Entries kept before the map starts over (kinds and accounts are few).
const CAPACITY: usize = 4096;

pub struct Recent<K, V> {
    ttl: Duration,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K, V> Default for Recent<K, V> {
    fn default() -> Self {
        Self::with_ttl(RECENT_TTL)
    }
}

impl<K, V> Recent<K, V> {
    pub fn with_ttl(ttl: Duration) -> Self {
        Self { ttl, entries: Mutex::new(HashMap::new()) }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Recent<K, V> {
    /// The copy of `key` if it is fresh, else what `load` reads (kept on success).
    /// The lock is never held across the load.
    pub async fn get_or_load<E, F, Fut>(&self, key: &K, load: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        if let Some((at, value)) = self.lock().get(key) {
            if at.elapsed() < self.ttl {
                return Ok(value.clone());
            }
        }
        let value = load().await?;
        let mut entries = self.lock();
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(key.clone(), (Instant::now(), value.clone()));
        Ok(value)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (Instant, V)>> {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn load_twice(recent: &Recent<&'static str, u32>) -> (u32, u32) {
        let mut loads = 0;
        let mut last = 0;
        for value in [7, 8] {
            last = recent
                .get_or_load(&"k", || {
                    loads += 1;
                    async move { Ok::<_, ()>(value) }
                })
                .await
                .unwrap();
        }
        (last, loads)
    }

    #[tokio::test]
    async fn a_fresh_copy_is_reused() {
        assert_eq!(load_twice(&Recent::default()).await, (7, 1));
    }

    #[tokio::test]
    async fn a_stale_copy_is_read_again() {
        assert_eq!(load_twice(&Recent::with_ttl(Duration::ZERO)).await, (8, 2));
    }

    #[tokio::test]
    async fn a_failed_load_is_not_kept() {
        let recent: Recent<&str, u32> = Recent::default();
        assert_eq!(recent.get_or_load(&"k", || async { Err::<u32, _>("down") }).await, Err("down"));
        assert_eq!(recent.get_or_load(&"k", || async { Ok::<_, &str>(1) }).await, Ok(1));
    }
}
