//! Helpers for the benchmarks under `bench/` at the repository root; the binaries are
//! what the scripts run:
//!
//! - `opsq-bench-seed`: fills an embedded store with jobs before the server starts.
//! - `opsq-bench-trivial-axum`: the baseline, an axum handler doing no work, served on
//!   the same path shape and the same tokio multi-thread runtime as `opsq serve`.

/// The kinds the peer benchmark's jobs run as: `bench.` and the harness's one-letter
/// kind (W1 `b`, W2 warm-up `w` and latency `l`, S `s`).
pub const BENCH_KINDS: [&str; 4] = ["bench.b", "bench.w", "bench.l", "bench.s"];

/// Milliseconds since the epoch with microseconds, the clock every peer records with.
pub fn epoch_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// The line every peer's handler appends per job: `<kind> <i> <enqueue_ts> <pickup_ts>`,
/// from the harness's payload `{"i", "k", "ts", "pad"}`; `None` for other payloads.
pub fn recorder_line(payload: &serde_json::Value) -> Option<String> {
    let pickup = epoch_ms();
    let (kind, i, ts) = (payload["k"].as_str()?, payload["i"].as_i64()?, payload["ts"].as_f64()?);
    Some(format!("{kind} {i} {ts:.3} {pickup:.3}\n"))
}

/// Parses `--name value` pairs; the binaries take few options, so no argument parser.
pub fn flag(args: &[String], name: &str) -> Option<String> {
    args.windows(2).find(|w| w[0] == name).map(|w| w[1].clone())
}

#[cfg(test)]
mod tests {
    use super::{flag, recorder_line};

    #[test]
    fn recorder_line_has_the_harness_format() {
        let payload = serde_json::json!({"i": 7, "k": "b", "ts": 1700000000000.25, "pad": "x"});
        let line = recorder_line(&payload).expect("line");
        let fields: Vec<&str> = line.trim_end().split(' ').collect();
        assert_eq!(&fields[..3], ["b", "7", "1700000000000.250"]);
        assert!(fields[3].parse::<f64>().expect("pickup") > 1_700_000_000_000.0);
        assert!(recorder_line(&serde_json::json!({"i": 1})).is_none());
    }

    #[test]
    fn flag_finds_the_value_after_its_name() {
        let args: Vec<String> =
            ["x", "--jobs", "10", "--dir", "/tmp/d"].iter().map(|s| s.to_string()).collect();
        assert_eq!(flag(&args, "--jobs").as_deref(), Some("10"));
        assert_eq!(flag(&args, "--dir").as_deref(), Some("/tmp/d"));
        assert_eq!(flag(&args, "--nope"), None);
    }
}
