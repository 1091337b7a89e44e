//! Slows down password guessing: after a few failures for one username or one client
//! address, further attempts are refused for a delay that doubles with each failure,
//! capped so that the real user is never locked out for long.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed before attempts are delayed.
const FREE_FAILURES_PER_USER: u32 = 5;
const FREE_FAILURES_PER_CLIENT: u32 = 20;
/// Failures older than this are forgotten.
const WINDOW: Duration = Duration::from_secs(15 * 60);
const MAX_DELAY: Duration = Duration::from_secs(60);
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

#[derive(Default)]
pub struct LoginThrottle {
    entries: Mutex<HashMap<String, Failures>>,
}

impl LoginThrottle {
    fn keys(username: &str, client: &str) -> [(String, u32); 2] {
        [
            (format!("user:{}", username.to_lowercase()), FREE_FAILURES_PER_USER),
            (format!("client:{client}"), FREE_FAILURES_PER_CLIENT),
        ]
    }

    /// How long the caller must wait before this attempt is considered, if at all.
    pub fn retry_after(&self, username: &str, client: &str, now: Instant) -> Option<Duration> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        Self::keys(username, client)
            .iter()
            .filter_map(|(key, free)| {
                let failures = entries.get(key)?;
                if failures.count < *free || now.duration_since(failures.last) > WINDOW {
                    return None;
                }
                let exponent = (failures.count - free).min(16);
                let delay = Duration::from_secs(1u64 << exponent).min(MAX_DELAY);
                let ready_at = failures.last + delay;
                (ready_at > now).then(|| ready_at - now)
            })
            .max()
    }

    pub fn record_failure(&self, username: &str, client: &str, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() > MAX_ENTRIES {
            entries.retain(|_, f| now.duration_since(f.last) <= WINDOW);
        }
        for (key, _) in Self::keys(username, client) {
            let entry = entries.entry(key).or_insert(Failures { count: 0, last: now });
            if now.duration_since(entry.last) > WINDOW {
                entry.count = 0;
            }
            entry.count += 1;
            entry.last = now;
        }
    }

    /// A correct password clears the username's failures (not the client's).
    pub fn record_success(&self, username: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(&format!("user:{}", username.to_lowercase()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_after_free_failures_and_stay_capped() {
        let throttle = LoginThrottle::default();
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES_PER_USER {
            assert!(throttle.retry_after("bob", "1.2.3.4", t0).is_none());
            throttle.record_failure("bob", "1.2.3.4", t0);
        }
        let first = throttle.retry_after("BOB", "5.6.7.8", t0).expect("throttled");
        assert!(first <= Duration::from_secs(1));
        for _ in 0..30 {
            throttle.record_failure("bob", "1.2.3.4", t0);
        }
        let capped = throttle.retry_after("bob", "9.9.9.9", t0).unwrap();
        assert!(capped <= MAX_DELAY);
        assert!(throttle.retry_after("bob", "9.9.9.9", t0 + MAX_DELAY + Duration::from_secs(1)).is_none());
        throttle.record_success("bob");
        assert!(throttle.retry_after("bob", "9.9.9.9", t0).is_none());
        assert!(throttle.retry_after("alice", "9.9.9.9", t0).is_none());
    }
}
