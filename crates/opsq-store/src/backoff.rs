//! Exponential backoff with jitter, so retries of many jobs do not arrive in lockstep.

use std::time::Duration;

use rand::Rng;

/// `base * 2^(attempt-1)`, capped at `max`, then scaled by a random 50-100%.
pub fn delay(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exponent = attempt.saturating_sub(1).min(20);
    let full = base.saturating_mul(1u32 << exponent).min(max);
    full.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
}

/// The wait before a failed job's next attempt: 1 s after the first attempt,
/// doubling up to 5 minutes, with jitter. Every backend and every worker path uses
/// this one rule (a worker may ask for a specific delay instead).
pub fn retry_delay(attempt: u32) -> Duration {
    delay(attempt, Duration::from_secs(1), Duration::from_secs(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps() {
        let base = Duration::from_secs(1);
        let max = Duration::from_secs(300);
        for _ in 0..100 {
            let first = delay(1, base, max);
            assert!(first >= Duration::from_millis(500) && first <= base);
            let fourth = delay(4, base, max);
            assert!(fourth >= Duration::from_secs(4) && fourth <= Duration::from_secs(8));
            assert!(delay(40, base, max) <= max);
        }
    }
}
