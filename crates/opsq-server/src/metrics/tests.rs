use std::collections::BTreeMap;

use opsq_domain::JobStatus;
use opsq_store::{Rescued, UnfinishedCounts};

use super::Metrics;

/// Every sample as `name{labels}` → value, after checking the text is valid 0.0.4:
/// each sample follows the `# HELP` and `# TYPE` lines of its own name.
fn samples(text: &str) -> BTreeMap<String, f64> {
    let mut described: Option<(String, bool)> = None;
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("a HELP line has a name and a text");
            assert!(!help.is_empty(), "{name} has no help");
            described = Some((name.to_string(), false));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("a TYPE line has a name and a type");
            assert!(["counter", "gauge"].contains(&kind), "{name} is a {kind}");
            assert_eq!(described, Some((name.to_string(), false)), "TYPE {name} follows its HELP");
            described = Some((name.to_string(), true));
        } else {
            assert!(!line.starts_with('#'), "a line 0.0.4 does not know: {line}");
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            let name = series.split('{').next().unwrap_or(series);
            assert_eq!(
                described.as_ref().map(|(n, typed)| (n.as_str(), *typed)),
                Some((name, true)),
                "{line}"
            );
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line}"));
            assert!(samples.insert(series.to_string(), value).is_none(), "{series} twice");
        }
    }
    samples
}

#[test]
fn a_new_node_shows_every_counter_at_zero_and_what_it_runs() {
    let text = Metrics::new().render(None).unwrap();
    let samples = samples(&text);
    for series in [
        "opsq_jobs_submitted_total",
        "opsq_attempts_started_total",
        r#"opsq_attempt_outcomes_total{outcome="succeeded"}"#,
        r#"opsq_attempt_outcomes_total{outcome="failed"}"#,
        r#"opsq_attempt_outcomes_total{outcome="retried"}"#,
        r#"opsq_attempt_outcomes_total{outcome="released"}"#,
        r#"opsq_attempts_rescued_total{status="resumed"}"#,
        r#"opsq_attempts_rescued_total{status="unknown"}"#,
        r#"opsq_attempts_rescued_total{status="failed"}"#,
        r#"opsq_cancels_total{effect="ended"}"#,
        r#"opsq_cancels_total{effect="requested"}"#,
        r#"opsq_unknown_resolved_total{by="probe",status="succeeded"}"#,
        r#"opsq_unknown_resolved_total{by="probe",status="failed"}"#,
        r#"opsq_unknown_resolved_total{by="probe",status="resumed"}"#,
        r#"opsq_unknown_resolved_total{by="timeout",status="failed"}"#,
    ] {
        assert_eq!(samples.get(series), Some(&0.0), "{series} in\n{text}");
    }
    let build = format!(r#"opsq_build_info{{version="{}"}}"#, env!("CARGO_PKG_VERSION"));
    assert_eq!(samples.get(&build), Some(&1.0), "{text}");
    let started = samples["process_start_time_seconds"];
    let now = opsq_store::now_ms() as f64 / 1000.0;
    assert!(started > now - 60.0 && started <= now + 1.0, "started at {started}, now {now}");
}

#[test]
fn without_the_store_it_says_so_and_shows_no_queue_depth() {
    let text = Metrics::new().render(None).unwrap();
    let samples = samples(&text);
    assert_eq!(samples.get("opsq_store_up"), Some(&0.0), "{text}");
    assert!(!text.contains("opsq_jobs{"), "a depth nobody counted: {text}");
}

#[test]
fn the_store_s_counts_show_by_status() {
    let counts =
        UnfinishedCounts { not_started: 5, executing: 3, resumed: 2, unknown: 1, oldest_due_at: None };
    let text = Metrics::new().render(Some(counts)).unwrap();
    let samples = samples(&text);
    assert_eq!(samples.get("opsq_store_up"), Some(&1.0), "{text}");
    for (status, want) in [("notStarted", 5.0), ("executing", 3.0), ("resumed", 2.0), ("unknown", 1.0)] {
        assert_eq!(samples.get(&format!(r#"opsq_jobs{{status="{status}"}}"#)), Some(&want), "{text}");
    }
    assert_eq!(samples.get("opsq_oldest_waiting_seconds"), Some(&0.0), "nothing due waits: {text}");
}

#[test]
fn the_oldest_due_job_shows_how_long_it_has_waited() {
    let due_at = opsq_store::now_ms() - 90_000;
    let counts =
        UnfinishedCounts { not_started: 1, oldest_due_at: Some(due_at), ..UnfinishedCounts::default() };
    let text = Metrics::new().render(Some(counts)).unwrap();
    let waited = samples(&text)["opsq_oldest_waiting_seconds"];
    assert!((90.0..100.0).contains(&waited), "waited {waited} s since 90 s ago: {text}");
    assert_eq!(super::waited_seconds(Some(5_000), 2_000), 0.0, "due after this node's now");
    assert_eq!(super::waited_seconds(Some(1_000), 3_500), 2.5);
    assert_eq!(super::waited_seconds(None, 3_500), 0.0);
}

#[test]
fn counts_land_in_their_own_series() {
    let metrics = Metrics::new();
    let jobs = metrics.jobs().clone();
    jobs.submitted(4, 1);
    jobs.submitted(0, 0);
    jobs.attempts_started(2);
    for status in [JobStatus::Succeeded, JobStatus::Succeeded, JobStatus::Failed, JobStatus::Resumed] {
        jobs.attempt_ended(status);
    }
    jobs.attempt_ended(JobStatus::Executing);
    let rescued = |number, status| Rescued { number, status };
    jobs.rescued(&[
        rescued(1, JobStatus::Resumed),
        rescued(2, JobStatus::Unknown),
        rescued(3, JobStatus::Unknown),
        rescued(4, JobStatus::Failed),
    ]);
    jobs.released(JobStatus::Resumed);
    jobs.released(JobStatus::Failed);
    jobs.cancelled(false);
    jobs.cancelled(true);
    jobs.cancelled(true);
    for status in [JobStatus::Succeeded, JobStatus::Resumed, JobStatus::Resumed, JobStatus::Unknown] {
        jobs.probe_resolved(status);
    }
    jobs.unknown_timed_out(3);
    jobs.unknown_timed_out(0);
    let samples = samples(&metrics.render(None).unwrap());
    let expected = [
        ("opsq_jobs_submitted_total", 4.0),
        ("opsq_attempts_started_total", 3.0),
        (r#"opsq_attempt_outcomes_total{outcome="succeeded"}"#, 2.0),
        (r#"opsq_attempt_outcomes_total{outcome="failed"}"#, 2.0),
        (r#"opsq_attempt_outcomes_total{outcome="retried"}"#, 1.0),
        (r#"opsq_attempt_outcomes_total{outcome="released"}"#, 1.0),
        (r#"opsq_attempts_rescued_total{status="resumed"}"#, 1.0),
        (r#"opsq_attempts_rescued_total{status="unknown"}"#, 2.0),
        (r#"opsq_attempts_rescued_total{status="failed"}"#, 1.0),
        (r#"opsq_cancels_total{effect="ended"}"#, 1.0),
        (r#"opsq_cancels_total{effect="requested"}"#, 2.0),
        (r#"opsq_unknown_resolved_total{by="probe",status="succeeded"}"#, 1.0),
        (r#"opsq_unknown_resolved_total{by="probe",status="failed"}"#, 0.0),
        (r#"opsq_unknown_resolved_total{by="probe",status="resumed"}"#, 2.0),
        (r#"opsq_unknown_resolved_total{by="timeout",status="failed"}"#, 3.0),
    ];
    for (series, want) in expected {
        assert_eq!(samples.get(series), Some(&want), "{series}");
    }
}

#[test]
fn two_servers_count_apart() {
    let (one, other) = (Metrics::new(), Metrics::new());
    one.jobs().submitted(1, 0);
    assert_eq!(samples(&other.render(None).unwrap())["opsq_jobs_submitted_total"], 0.0);
}
