//! Helpers for the benchmarks under `bench/` at the repository root; the binaries are
//! what the scripts run:
//!
//! - `opsq-bench-seed`: fills an embedded store with jobs before the server starts.
//! - `opsq-bench-trivial-axum`: the baseline, an axum handler doing no work, served on
//!   the same path shape and the same tokio multi-thread runtime as `opsq serve`.

/// Parses `--name value` pairs; the binaries take few options, so no argument parser.
pub fn flag(args: &[String], name: &str) -> Option<String> {
    args.windows(2).find(|w| w[0] == name).map(|w| w[1].clone())
}

#[cfg(test)]
mod tests {
    use super::flag;

    #[test]
    fn flag_finds_the_value_after_its_name() {
        let args: Vec<String> =
            ["x", "--jobs", "10", "--dir", "/tmp/d"].iter().map(|s| s.to_string()).collect();
        assert_eq!(flag(&args, "--jobs").as_deref(), Some("10"));
        assert_eq!(flag(&args, "--dir").as_deref(), Some("/tmp/d"));
        assert_eq!(flag(&args, "--nope"), None);
    }
}
